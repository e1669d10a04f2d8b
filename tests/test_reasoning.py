"""Chat and reasoning models scored on their answers (issue 25): a served model on 127.0.0.1 that answers a
multiple-choice benchmark folder in many answer forms, with and without a separate ``reasoning_content`` field, run
through the installed console script; thinking removal, the chat clean-up and the chat template's tags as units.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mvleval.metrics.answer import chat_clean, strip_thinking, template_thinking_tags
from tests.helpers import ChatHandler, run_cli, tiny_model

REPO = Path(__file__).resolve().parents[1]

HEADER = """\
version: 1
description: Which animal is it?
kind: multiple_choice
prompt: "Question: {question} {choices} Answer with the letter:"
choices_separator: " "
generation: {num_beams: 1, max_new_tokens: 5}
cluster: photo
"""
ANIMALS = ["cat", "dog", "bird", "horse"]
# question -> (the served model's content, its reasoning_content or None, the gold choice, the label a careful reader
# extracts or None for a format error); two questions share each photo (the cluster field)
ANSWERS: dict[str, tuple[str, str | None, str, str | None]] = {
    "en1": ("The answer is (B).", None, "dog", "B"),
    "en2": ("**C**", None, "bird", "C"),
    "en3": ("A or B", None, "cat", None),
    "en4": ("B", "The ears are pointed, so it could be A. But it barks: B.", "dog", "B"),
    "zh1": ("答案：B", None, "dog", "B"),
    "zh2": ("Ｄ", None, "horse", "D"),
    "zh3": ("", "我在想……还没想完", "cat", None),  # the thinking never ended: no answer
    "zh4": ("图中是一只bird。", None, "bird", "C"),  # the choice's text
    "sw1": ("Jibu ni B", None, "dog", "B"),
    "sw2": ("<think>Labda ni A... hapana.</think>Jibu: D", None, "horse", "D"),
    "sw3": ("Sijui.", None, "cat", None),
    "sw4": ("A", None, "bird", "A"),  # a clear answer, and wrong
}


class ReasoningHandler(ChatHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length))
        text = body["messages"][0]["content"][-1]["text"]
        key = re.search(r"Question: (\w+)", text).group(1)  # type: ignore[union-attr]
        content, reasoning, _, _ = ANSWERS[key]
        message: dict[str, Any] = {"role": "assistant", "content": content or None}
        if reasoning is not None:
            message["reasoning_content"] = reasoning
        self._send(
            200,
            {
                "id": "x",
                "object": "chat.completion",
                "model": self.served_model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop" if content else "length"}],
            },
        )


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ReasoningHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def write_bench(folder: Path) -> Path:
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    rows = []
    for i, (key, (_, _, gold, _)) in enumerate(ANSWERS.items()):
        photo = f"p{i // 2}.png"
        Image.new("RGB", (16, 16), (20 * i, 100, 200)).save(folder / "images" / photo)
        rows.append(
            {
                "id": key,
                "lang": key[:2],
                "images": [photo],
                "question": key,
                "choices": ANIMALS,
                "answers": [gold],
                "photo": f"photo-{i // 2}",
            }
        )
    (folder / "benchmark.yaml").write_text(HEADER, encoding="utf-8")
    (folder / "data.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return folder


def mvleval(*args: object) -> subprocess.CompletedProcess[str]:
    # in-process, answered as the console script answers (tests/test_cli_inprocess.py)
    return run_cli(*args, env={"OPENAI_API_KEY": "none"}, drop_env=("GITHUB_STEP_SUMMARY",))


def test_a_served_chat_and_reasoning_model_is_scored_on_its_answers(server: str, tmp_path: Path) -> None:
    bench = write_bench(tmp_path / "animals")
    out = tmp_path / "runs"
    proc = mvleval(
        "run",
        "--task",
        bench,
        "--model",
        "openai:test-vlm",
        "--base-url",
        server,
        "--out",
        out,
        "--max-new-tokens",
        "512",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record_path = next(p for p in out.glob("*.json") if not p.name.endswith(".manifest.json"))
    record = json.loads(record_path.read_text(encoding="utf-8"))
    rows = {
        r["id"]: r for r in map(json.loads, (out / record["samples_file"]).read_text(encoding="utf-8").splitlines())
    }

    for key, (content, reasoning, gold, label) in ANSWERS.items():
        row = rows[key]
        facts = row["extra"]["choice_accuracy"]
        assert facts["label"] == (label or ""), (key, row)
        assert (facts["rule"] == "format-error") == (label is None)
        gold_label = "ABCD"[ANIMALS.index(gold)]
        assert row["scores"]["choice_accuracy"] == (1.0 if label == gold_label else 0.0), key
        if reasoning is not None:
            # the raw output (thinking included) is kept; the scored answer is what follows the thinking
            assert row["prediction"].startswith("<think>" + reasoning)
            assert row["answer"] == content
        assert row["cluster"] == f"photo-{list(ANSWERS).index(key) // 2}"

    scores = record["scores"]["choice_accuracy"]
    assert scores["per_lang"] == {"en": 0.75, "sw": 0.5, "zh": 0.75}  # 3, 2 and 3 of 4 right
    assert scores["extra"] == {
        "en": {"format_error_rate": 0.25},
        "sw": {"format_error_rate": 0.25},
        "zh": {"format_error_rate": 0.25},
    }
    # each language's interval resampled the photos (two questions each), exactly as the bootstrap does it by hand
    from mvleval.metrics.bootstrap import bootstrap_mean_interval, clustered

    for lang in ("en", "sw", "zh"):
        mine = [r for r in rows.values() if r["lang"] == lang]
        with clustered([r["cluster"] for r in mine], "photo"):
            expected = bootstrap_mean_interval([r["scores"]["choice_accuracy"] for r in mine], 1000, 0)
        assert scores["intervals"][lang] == list(expected)
        if lang == "en":  # right, right | wrong, right: per photo [50, 100], per question wider
            assert (
                expected
                == (0.5, 1.0)
                != bootstrap_mean_interval([r["scores"]["choice_accuracy"] for r in mine], 1000, 0)
            )
    signature = scores["signature"]
    assert "extract=cascade-1" in signature and "unit=photo" in signature and "answer=think-1" in signature
    # the longer token budget is recorded, and such a run is never gated against a protocol run
    assert record["model"]["generation"]["max_new_tokens"] == 512
    protocol = mvleval(
        "run", "--task", bench, "--model", "openai:test-vlm", "--base-url", server, "--out", tmp_path / "p"
    )
    assert protocol.returncode == 0, protocol.stdout + protocol.stderr
    protocol_record = next(p for p in (tmp_path / "p").glob("*.json") if not p.name.endswith(".manifest.json"))
    gate = mvleval("gate", record_path, "--baseline", protocol_record)
    assert gate.returncode == 2 and "max_new_tokens: run 512, baseline 5" in gate.stdout + gate.stderr
    # the report lists the format errors first
    html = tmp_path / "report.html"
    rep = mvleval("report", record_path, "--out", html)
    assert rep.returncode == 0, rep.stdout + rep.stderr
    text = html.read_text(encoding="utf-8")
    assert "format errors" in text.lower()


@pytest.mark.parametrize(
    ("raw", "answer"),
    [
        ("<think>A or B? The fur is grey.</think>B", "B"),
        ("<think>hmm</think>\n\nThe answer is yes.", "The answer is yes."),
        ("<think>still thinking when the tokens ran out", ""),
        (
            "reasoning the template opened </think> no",
            "no",
        ),  # the template wrote <think>: only the closing tag is output
        ("<think>a</think>first<think>b</think>second", "second"),
        ("yes", "yes"),
        (" yes ", " yes "),  # no thinking: the output is scored exactly as it was (mBLIP's protocol)
    ],
)
def test_thinking_is_removed(raw: str, answer: str) -> None:
    assert strip_thinking(raw) == answer


def test_template_tags_and_chat_clean_up() -> None:
    assert strip_thinking("◁think▷x◁/think▷ja", template_thinking_tags("{{ '◁think▷' }} ... {{ '◁/think▷' }}")) == "ja"
    assert template_thinking_tags("{% if enable_thinking %}<think>\n\n</think>{% endif %}") == [("<think>", "</think>")]
    assert template_thinking_tags("{{ messages }}") == [] and template_thinking_tags(None) == []
    for raw, clean in [
        ("Answer: Yes.", "Yes"),
        ("The answer is **no**.", "no"),
        ("Final answer: 2", "2"),
        ("yes", "yes"),
        ("Ja!", "Ja"),
        ("三个。", "三个"),
    ]:
        assert chat_clean(raw) == clean, raw


def test_leaderboard_labels_a_token_budget_other_than_the_protocol_s(server: str, tmp_path: Path) -> None:
    bench = write_bench(tmp_path / "animals")
    out = tmp_path / "runs"
    # alone on the board (no protocol run of the same model to tell it apart from), the budget is still shown
    proc = mvleval(
        "run",
        "--task",
        bench,
        "--model",
        "openai:test-vlm",
        "--base-url",
        server,
        "--out",
        out,
        "--max-new-tokens",
        "256",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = mvleval("leaderboard", out, "--out", tmp_path / "lb1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| openai:test-vlm (served) {max_new_tokens=256} |" in (tmp_path / "lb1" / "leaderboard.md").read_text(
        encoding="utf-8"
    )
    proc = mvleval("run", "--task", bench, "--model", "openai:test-vlm", "--base-url", server, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = mvleval("leaderboard", out, "--out", tmp_path / "lb")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    board = (tmp_path / "lb" / "leaderboard.md").read_text(encoding="utf-8")
    rows = [line for line in board.split("## Columns")[0].splitlines() if line.startswith("| openai:test-vlm")]
    assert len(rows) == 2 and sum("{max_new_tokens=256}" in r for r in rows) == 1, board


def test_a_local_model_s_chat_template_thinking_tags_are_stripped(tmp_path: Path) -> None:
    """A tiny llava whose chat template declares Kimi-VL-style thinking tags (◁think▷...◁/think▷, not the default
    <think>): the record names them, and scoring (here `mvleval score` after the per-sample file's outputs are edited to
    thinking + answer, as a random tiny model cannot think) scores only what follows the thinking."""
    from mvleval.demo.command import build_demo_data
    from mvleval.record.schema import read_record, read_samples

    model = Path(shutil.copytree(tiny_model("vlm", "llava"), tmp_path / "llava"))  # built once per session
    template = model / "chat_template.jinja"
    template.write_text(
        template.read_text(encoding="utf-8") + "{% if false %}◁think▷ ◁/think▷{% endif %}", encoding="utf-8"
    )
    data_root, image_root = build_demo_data(tmp_path / "demo", n_train=0, n_test=4)
    out = tmp_path / "runs"
    proc = mvleval(
        "run",
        "--task",
        "xgqa",
        "--lang",
        "en",
        "--limit",
        "4",
        "--model",
        model,
        "--data-root",
        data_root,
        "--image-root",
        image_root,
        "--out",
        out,
        "--num-beams",
        "1",
        "--max-new-tokens",
        "2",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    path = next(p for p in out.glob("*.json") if not p.name.endswith(".manifest.json"))
    record = read_record(path)
    assert record.model.details["thinking_tags"] == [["◁think▷", "◁/think▷"]]
    samples = path.parent / record.samples_file
    rows = list(read_samples(samples))
    for i, row in enumerate(rows):
        # two answers right after their thinking, one thinking that never ended, one right answer with no thinking
        row["prediction"] = (
            f"◁think▷it is not {row['references'][0]}◁/think▷{row['references'][0]}"
            if i < 2
            else f"◁think▷{row['references'][0]}"
            if i == 2
            else row["references"][0]
        )
    samples.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    proc = mvleval("score", path, "--data-root", data_root, "--image-root", image_root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = read_record(path)
    assert record.scores["exact_match"].per_lang["en"] == 0.75
    rows = list(read_samples(samples))
    assert [r.get("answer") for r in rows] == [rows[0]["references"][0], rows[1]["references"][0], "", None]
    assert rows[0]["prediction"].startswith("◁think▷")  # the raw output is kept


def test_thinking_tags_registered_as_special_tokens_survive_decoding(tmp_path: Path) -> None:
    """A tokenizer that registers <think> and </think> as special tokens (as several reasoning checkpoints do): decoding
    with special tokens skipped would drop the tags and leave the thinking in the answer; the backend keeps exactly the
    tags the chat template declares and still drops padding and end-of-sequence tokens."""
    from transformers import AutoTokenizer

    from mvleval.backends.hf_vlm import decode_keeping_thinking_tags

    tokenizer = AutoTokenizer.from_pretrained(tiny_model("vlm", "llava"))
    tokenizer.add_tokens(["<think>", "</think>"], special_tokens=True)
    template = "{% if thinking %}<think>\n</think>{% endif %}{{ messages }}"

    def ids(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    think, end = tokenizer.convert_tokens_to_ids("<think>"), tokenizer.convert_tokens_to_ids("</think>")
    row = [think, *ids("a cat"), end, *ids("dog"), tokenizer.eos_token_id, tokenizer.pad_token_id]
    plain = tokenizer.batch_decode([row], skip_special_tokens=True)[0]
    assert "<think>" not in plain and strip_thinking(plain.strip()) != "dog"  # what skipping every special token gives

    [kept] = decode_keeping_thinking_tags(tokenizer, [row], template)
    assert kept.startswith("<think>") and "</think>" in kept
    assert tokenizer.eos_token not in kept and tokenizer.pad_token not in kept
    assert strip_thinking(kept.strip()) == "dog"
    # a template without thinking tags: exactly batch_decode(skip_special_tokens=True), as for every protocol model
    assert decode_keeping_thinking_tags(tokenizer, [row], "{{ messages }}") == [plain]
