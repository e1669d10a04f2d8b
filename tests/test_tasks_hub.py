"""The benchmarks read from their Hugging Face dataset files (MTVQA, CVQA): `mvleval run` end to end on parquet files
the tests write in the published schemas, scorer parity with the authors' code, embedded images materialised once,
and one clear error paragraph for each kind of malformed file."""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mvleval.benchmarks.hubdata import IMAGE_NAME_PREFIX, image_dir
from tests.helpers import (
    CVQA_ROWS,
    ChatHandler,
    cli,
    console_script,
    invoke_run,
    run_cli,
    sample_rows,
    write_cvqa,
    write_kaleidoscope,
    write_m3exam,
    write_mtvqa,
    write_xmmmu,
)
from tests.test_json_output import validate

MODEL = "scripted-vlm"


# -- the authors' scorer, for parity ------------------------------------------------------------------------------------
def bytedance_mtvqa_accuracy(entries: list[dict[str, Any]]) -> float:
    """MTVQA's per-language accuracy as bytedance/MTVQA scripts/acc.py computes it (evaluate_exact_match_accuracy),
    rewritten here from reading it: `annotation` a string or a list, `answer` the prediction."""
    scores = []
    for elem in entries:
        annotations = [elem["annotation"]] if isinstance(elem["annotation"], str) else elem["annotation"]
        scores.append(
            max(
                1.0 if a.strip().lower() in elem["answer"].strip().lower().replace(".", "") else 0.0
                for a in annotations
            )
        )
    return sum(scores) / len(scores)


#: (language, prediction, reference): real-looking MTVQA predictions, including the rule's corners (a period inside the
#: reference never matches; case, surrounding text and a trailing period do not matter; no Unicode normalisation)
MTVQA_PARITY: list[tuple[str, str, str]] = [
    ("de", "Kaffeehaus", "Kaffeehaus"),
    ("de", "Das Café heißt Kaffeehaus.", "Kaffeehaus"),
    ("de", "kaffeehaus", "Kaffeehaus"),
    ("de", "3.5", "3.5"),  # the prediction loses its period, the reference keeps it: a miss, as in the authors' script
    ("de", "35", "3.5"),
    ("de", "2,50 €", "2,50 €"),
    ("de", "2.50 €", "2,50 €"),
    ("de", "Kaffee Haus", "Kaffeehaus"),
    ("ja", "営業中です。", "営業中"),
    ("ja", "営業中", "営業中"),
    ("ja", "ＯＰＥＮ", "OPEN"),  # full-width: no NFKC in the authors' rule
    ("ja", "閉店", "営業中"),
    ("th", "ก๋วยเตี๋ยว", "ก๋วยเตี๋ยว"),
    ("th", "ร้าน ก๋วยเตี๋ยว ค่ะ", "ก๋วยเตี๋ยว"),
    ("th", "ข้าวมันไก่", "ก๋วยเตี๋ยว"),
    ("ar", "  مرحبا  ", "مرحبا"),
    ("ar", "", "مرحبا"),
    ("vi", "Phở Hà Nội", "phở"),
    ("vi", "ST.", "St."),
]


def test_mtvqa_scorer_agrees_with_the_authors_script() -> None:
    from mvleval.metrics.contains import ContainsAccuracy

    metric = ContainsAccuracy()
    langs = sorted({lang for lang, _, _ in MTVQA_PARITY})
    ours, theirs = {}, {}
    for lang in langs:
        rows = [(p, r) for lg, p, r in MTVQA_PARITY if lg == lang]
        ours[lang] = metric.score([p for p, _ in rows], [[r] for _, r in rows], lang).value
        theirs[lang] = bytedance_mtvqa_accuracy([{"annotation": r, "answer": p} for p, r in rows])
    assert ours == pytest.approx(theirs)
    # the table exercises hits and misses in every language (a constant scorer would not pass)
    assert {v for v in theirs.values()} - {0.0, 1.0} and ours["de"] == pytest.approx(4 / 8)


# -- a served model that answers from a script ---------------------------------------------------------------------------
class ScriptedServer:
    """An OpenAI-compatible server on 127.0.0.1 answering each prompt from `answers` (first key contained in the
    prompt's text wins; else "I am not sure."); it keeps what each request held (text parts and image count)."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.requests: list[list[dict[str, Any]]] = []
        server = self

        class Handler(ChatHandler):
            served_model = MODEL

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                content = body["messages"][0]["content"]
                server.requests.append(content)
                text = "".join(part.get("text", "") for part in content)
                answer = next((a for key, a in answers.items() if key in text), "I am not sure.")
                self._send(
                    200,
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "model": MODEL,
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}
                        ],
                        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
                    },
                )

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[ScriptedServer]]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    started: list[ScriptedServer] = []

    def start(answers: dict[str, str]) -> ScriptedServer:
        s = ScriptedServer(answers)
        started.append(s)
        return s

    yield start  # type: ignore[misc]
    for s in started:
        s.close()


def _run(server: ScriptedServer, task: str, data_root: Path, out: Path, langs: list[str], *extra: str) -> Path:
    return invoke_run(
        [
            "run",
            "--task",
            task,
            "--model",
            f"openai:{MODEL}",
            "--base-url",
            server.url,
            "--data-root",
            data_root,
            "--out",
            out,
            "--cache",
            "off",
            *extra,
        ],
        langs,
    )


def test_cvqa_run_scores_each_pair_in_both_variants(scripted: Any, tmp_path: Path) -> None:
    """`mvleval run --task cvqa` on afaji/cvqa-shaped parquet: the local-language and the English variant, scored per
    country-language pair against the gold letter, with the answers a chat model writes (phrases, other scripts)."""
    data = write_cvqa(tmp_path / "data")
    server = scripted(
        {
            "この料理の名前は": "答えは C です。",  # ja-JP q0, local: correct (C)
            "どの地域の": "B",  # ja-JP q1, local: wrong (gold A)
            "What is the name of this dish?": "The answer is (C) Ramen.",  # english: correct
            "Which region": "Hokkaido",  # english: the option's text -> A, correct
            "¿Qué se celebra": "Respuesta: B",  # es-MX: correct
            "ይህ ምን ዓይነት": "maybe",  # am-ET: a format error
        }
    )
    local = _run(server, "cvqa", data, tmp_path / "runs", ["ja-JP", "es-MX", "am-ET"])
    english = _run(server, "cvqa", data, tmp_path / "runs", ["ja-JP"], "--split", "test_en")
    rec = json.loads(local.read_text())
    score = rec["scores"]["choice_accuracy"]
    assert score["per_lang"] == {"ja-JP": 0.5, "es-MX": 1.0, "am-ET": 0.0}
    assert score["mean"] == pytest.approx(0.5)
    assert json.loads(english.read_text())["scores"]["choice_accuracy"]["per_lang"] == {"ja-JP": 1.0}
    # and per Category within each pair: ja-JP's Food question right, its Traditions question wrong
    assert score["by_group"] == {
        "ja-JP": {"Food": {"n": 1, "value": 1.0}, "Traditions": {"n": 1, "value": 0.0}},
        "es-MX": {"Traditions": {"n": 1, "value": 1.0}},
        "am-ET": {"Food": {"n": 1, "value": 0.0}},
    }
    # every question reached the model with its one image and its options as A./B./C./D. lines
    assert all(sum(p["type"] == "image_url" for p in c) == 1 for c in server.requests)
    rows = {r["id"]: r for r in sample_rows(local)}
    assert rows["5919991144272485961_0"]["prompt"].startswith("この料理の名前は何ですか？\nA. 寿司\nB. 天ぷら\n")
    # the images are named by content, the same on every machine; two questions share one image
    names = {r["id"]: r["images"] for r in rows.values()}
    assert all(n[0].startswith(IMAGE_NAME_PREFIX) for n in names.values())
    assert names["5919991144272485961_0"] == names["5919991144272485961_1"] != names["88812_0"]


def test_mtvqa_run_matches_the_authors_script_and_mean_over_languages(scripted: Any, tmp_path: Path) -> None:
    data = write_mtvqa(tmp_path / "data")
    server = scripted(
        {
            "Was kostet": "Der Kaffee kostet 2,50 €.",
            "Wie heißt": "Café Central",
            "Welche Zahl": "3.5",
            "ร้านนี้": "ก๋วยเตี๋ยว",
            "看板": "営業中。",
        }
    )
    record = _run(server, "mtvqa", data, tmp_path / "runs", ["de", "th", "ja"])
    rec = json.loads(record.read_text())
    rows = sample_rows(record)
    # the authors' script on the same predictions, per language, then the mean over languages
    theirs = {
        lang: bytedance_mtvqa_accuracy(
            [{"annotation": r["references"], "answer": r["prediction"]} for r in rows if r["lang"] == lang]
        )
        for lang in ("de", "th", "ja")
    }
    score = rec["scores"]["contains_accuracy"]
    assert score["per_lang"] == pytest.approx(theirs) and theirs["de"] == pytest.approx(1 / 3)
    assert score["mean"] == pytest.approx(sum(theirs.values()) / 3)
    assert {r["id"] for r in rows if r["lang"] == "de"} == {"101_0", "101_1", "102_0"}
    assert all(
        "Answer the question using a word or phrase in the language of the question." in r["prompt"] for r in rows
    )


def test_embedded_images_are_written_once_and_work_from_a_read_only_data_root(tmp_path: Path) -> None:
    """The images inside the parquet files become content-addressed files in the cache dir: a second read writes
    nothing, and a read-only data root is fine."""
    from mvleval.benchmarks.registry import load_task

    data = write_mtvqa(tmp_path / "data")
    for path in sorted(data.rglob("*"), reverse=True):
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        task = load_task("mtvqa")
        first = task.examples(data, data / "images", "de")
        files = sorted(image_dir().rglob("*.png"))
        stamps = {p: p.stat().st_mtime_ns for p in files}
        again = task.examples(data, data / "images", "de")
        assert [e.images for e in again] == [e.images for e in first]
        assert sorted(image_dir().rglob("*.png")) == files and {p: p.stat().st_mtime_ns for p in files} == stamps
        assert len(files) == 2  # two German images (one serves two questions)
        assert not list(image_dir().rglob(".part-*"))
        from PIL import Image

        assert Image.open(first[0].images[0]).size == (32, 32)
    finally:
        for path in data.rglob("*"):
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


# -- bad files: one paragraph naming file and row, exit 2 ------------------------------------------------------------------
def _bad_cvqa(tmp_path: Path, **change: Any) -> Path:
    rows = [dict(r) for r in CVQA_ROWS]
    rows[1].update(change)
    return write_cvqa(tmp_path / "data", rows)


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        ({"Subset": "('Klingon', 'Qo'noS')"}, ["unknown country-language pair", "Klingon", "row 1"]),
        ({"Label": -1}, ["'Label' must be the index of the correct option", "withheld", "row 1"]),
        ({"Options": ["nur eine"]}, ["the options must be 2-4 non-empty texts", "row 1"]),
    ],
)
def test_malformed_cvqa_rows_are_one_clear_error(
    change: dict[str, Any], needles: list[str], scripted: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _bad_cvqa(tmp_path, **change)
    server = scripted({})
    code, out, err = cli(
        capsys,
        "run",
        "--task",
        "cvqa",
        "--model",
        f"openai:{MODEL}",
        "--base-url",
        server.url,
        "--data-root",
        data,
        "--lang",
        "ja-JP",
        "--out",
        tmp_path / "runs",
    )
    text = " ".join((out + err).split())
    assert code == 2 and "Traceback" not in text, text
    assert "test-00000-of-00001.parquet" in text
    for needle in needles:
        assert needle in text, text


def test_mtvqa_file_without_a_column_and_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`mvleval data check` on an MTVQA file that lacks columns, and on a data root without the dataset."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "data" / "mtvqa" / "data"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"id": [1], "lang": ["DE"]}), folder / "test-00000-of-00001.parquet")
    code, out, err = cli(capsys, "data", "check", "--task", "mtvqa", "--data-root", tmp_path / "data", "--lang", "de")
    text = " ".join((out + err).split())
    # data check's convention: the problems in its table, exit 1
    assert code == 1 and "lacks the column(s) image, qa_pairs" in text and "mvleval data fetch" in text, text
    (tmp_path / "empty").mkdir()
    code, out, err = cli(capsys, "data", "check", "--task", "mtvqa", "--data-root", tmp_path / "empty", "--lang", "de")
    text = " ".join((out + err).split())
    assert code == 1 and "Traceback" not in text and "huggingface.co/datasets/ByteDance/MTVQA" in text, text
    assert "mtvqa/data/test-00000-of-00001.parquet" in "".join(text.split())  # a long path wraps anywhere
    command = f"mvleval data fetch --task mtvqa --data-root {tmp_path / 'empty'} --lang de"
    assert "".join(command.split()) in "".join(text.split()), text  # the fix names the command that gets the data


def test_cvqa_through_the_installed_console_script(tmp_path: Path) -> None:
    """`mvleval tasks` and `mvleval data check` as a user runs them: the new tasks listed with languages, size and
    licence; the data checked without a traceback."""
    env_root = tmp_path / "data"
    write_cvqa(env_root)
    r = console_script("tasks")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    for needle in ("mtvqa", "cvqa", "CC BY-NC 4.0", "ja-JP", "6,778 questions"):
        assert needle in text, text
    r = console_script("data", "check", "--task", "cvqa", "--data-root", env_root, "--lang", "ja-JP", "--lang", "es-MX")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert os.environ.get("MVLEVAL_CACHE_DIR")  # the images went to this test's cache, not the user's


# -- xMMMU: MMMU's parsing, interleaved images, text-only questions -------------------------------------------------------
ART = ["Cubism", "Impressionism", "Baroque", "Surrealism"]

#: (prediction, choices or None for an open question, gold, correct by MMMU's eval_utils): each row worked out by hand
#: from MMMU-Benchmark/MMMU eval/eval_utils.py; `None` = MMMU's parser finds nothing and guesses at random (here: wrong)
MMMU_PARITY: list[tuple[str, list[str] | None, str, bool | None]] = [
    ("B", ART, "B", True),
    ("(B) Impressionism", ART, "B", True),
    ("The answer is B.", ART, "B", True),
    ("A and B", ART, "B", True),  # several letters: the last one
    ("(C) or maybe (B)", ART, "B", True),
    ("(C) Baroque", ART, "B", False),
    ("I think it is Impressionism because of the light", ART, "B", True),  # > 5 words: the option's text
    ("Impressionism", ART, "B", None),  # one word, no letter: MMMU guesses
    ("b", ART, "B", None),  # letters are case-sensitive in MMMU's parser
    ("The area is 12.5 square units.", None, "12.5", True),
    ("12.50", None, "12.5", True),
    ("about 13", None, "12.5", False),
    ("It is 3.429", None, "['24/7', '3.429']", True),  # several gold answers, as MMMU stores them
    ("The capital is Paris.", None, "Paris", True),
    ("Lyon", None, "Paris", False),
    ("x = 1,250", None, "1250", True),
]


def test_mmmu_scorer_matches_mmmus_parsing_table() -> None:
    from mvleval.metrics.mmmu import MmmuAccuracy

    result = MmmuAccuracy().score(
        [p for p, _, _, _ in MMMU_PARITY], [[g] for _, _, g, _ in MMMU_PARITY], "en", [c for _, c, _, _ in MMMU_PARITY]
    )
    assert result.per_example == [1.0 if ok else 0.0 for _, _, _, ok in MMMU_PARITY]
    guesses = sum(ok is None for _, _, _, ok in MMMU_PARITY)
    assert result.extra["format_error_rate"] == pytest.approx(guesses / len(MMMU_PARITY))


def test_xmmmu_run_interleaves_images_and_asks_text_only_questions(scripted: Any, tmp_path: Path) -> None:
    """`mvleval run --task xmmmu` on a served model: each image where its <image k> marker stands (in the question or
    as an option), no image for a text-only question, and MMMU's parsing of the answers."""
    from tests.helpers import write_xmmmu

    data = write_xmmmu(tmp_path / "data")
    server = scripted(
        {
            "art movement": "(B) Impressionism",
            "is a neuron": "The answer is C",
            "shaded region": "The area is 12.5",
            "elasticity": "I cannot tell.",
        }
    )
    record = _run(server, "xmmmu", data, tmp_path / "runs", ["en"])
    score = json.loads(record.read_text())["scores"]["mmmu_accuracy"]
    assert score["per_lang"] == {"en": 0.75}
    # MMMU's per-subject accuracy: each subject's questions (the id's middle part), wrong only in Economics
    assert score["by_group"] == {
        "en": {
            "Art": {"n": 1, "value": 1.0},
            "Biology": {"n": 1, "value": 1.0},
            "Economics": {"n": 1, "value": 0.0},
            "Math": {"n": 1, "value": 1.0},
        }
    }
    assert {r["id"]: r["group"] for r in sample_rows(record)}["validation_Biology_3"] == "Biology"
    # `mvleval score` computes them again from the data and the per-sample file; the report shows them
    before = json.loads(record.read_text())
    scored = run_cli("score", record, "--data-root", data, "--json")
    assert scored.returncode == 0, scored.stderr
    assert json.loads(record.read_text())["scores"] == before["scores"]
    (summary,) = validate("score", scored.stdout)["runs"]
    assert summary["scores"]["mmmu_accuracy"]["by_group"] == before["scores"]["mmmu_accuracy"]["by_group"]
    page = tmp_path / "report.html"
    assert run_cli("report", record, "--out", page).returncode == 0
    html = page.read_text(encoding="utf-8")
    assert '<section id="groups"><h2>mmmu_accuracy per group</h2>' in html
    assert re.search(r"<tr><th>Economics</th><td>[^<]*0\.0[^<]*<small>n=1</small></td></tr>", html), html[:2000]
    shapes = {}
    for content in server.requests:
        text = "".join(p.get("text", "") for p in content)
        key = next(k for k in ("art movement", "neuron", "shaded", "elasticity") if k in text)
        shapes[key] = ["img" if p["type"] == "image_url" else p["text"][:8] for p in content]
    assert shapes["art movement"] == ["img", " Which a"]
    assert shapes["neuron"] == ["Which of", "img", "\n(B) ", "img", "\n(C) ", "img", "\n\nAnswer"]
    assert shapes["shaded"] == ["Compare ", "img", " and ", "img", ". What i"]
    assert shapes["elasticity"] == ["If the p"]  # text only
    rows = {r["id"]: r for r in sample_rows(record)}
    assert [len(rows[i]["images"]) for i in ("validation_Economics_2", "validation_Art_1", "validation_Math_7")] == [
        0,
        1,
        2,
    ]


def test_xmmmu_on_a_local_model_and_mblip_refusing_text_only(
    tiny_mt5_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Hugging Face vision-LLM answers 0-, 1-, 2- and 3-image questions in one run (a batch never mixes image
    counts); mBLIP, which answers questions about images, refuses the text-only one in one paragraph."""
    pytest.importorskip("torch")
    from mvleval.testing.tiny_vlm import build_tiny_vlm
    from tests.helpers import write_xmmmu

    data = write_xmmmu(tmp_path / "data")
    model = build_tiny_vlm("llava", tmp_path / "llava")
    record = invoke_run(
        [
            "run",
            "--task",
            "xmmmu",
            "--model",
            model,
            "--data-root",
            data,
            "--out",
            tmp_path / "runs",
            "--max-new-tokens",
            "2",
            "--batch-size",
            "4",
            "--cache",
            "off",
        ],
        ["en"],
    )
    rows = sample_rows(record)
    assert sorted(len(r["images"]) for r in rows) == [0, 1, 2, 3]
    assert all(isinstance(r["prediction"], str) for r in rows)
    code, out, err = cli(
        capsys,
        "run",
        "--task",
        "xmmmu",
        "--model",
        tiny_mt5_dir,
        "--data-root",
        data,
        "--lang",
        "en",
        "--out",
        tmp_path / "mblip",
        "--max-new-tokens",
        "2",
        "--cache",
        "off",
    )
    text = " ".join((out + err).split())
    assert code == 2 and "Traceback" not in text and "text-only" in text, text


# -- Kaleidoscope: text-only questions, image options, letters of other scripts -------------------------------------------
#: (prediction, gold, correct, parseable) by the authors' reading (the dataset card and israfelsr/kaleidoscope: JSON,
#: <ANSWER> tags or a bare letter; Cyrillic and Arabic letters mapped; anything else unparseable, counted wrong)
KALEIDOSCOPE_PARITY: list[tuple[str, str, bool, bool]] = [
    ('{"choice": "B"}', "B", True, True),
    ('```json\n{"choice": "C"}\n```', "C", True, True),
    ("<ANSWER> D </ANSWER>", "D", True, True),
    ("B", "B", True, True),
    ("Б", "B", True, True),  # Cyrillic Be
    ("Ц", "C", True, True),
    ("Г", "D", True, True),
    ("Д", "D", True, True),
    ("ب", "B", True, True),  # Arabic baa
    ("أ", "A", True, True),
    ('{"choice": "ج"}', "C", True, True),
    ("A", "B", False, True),
    ("I am not sure.", "B", False, False),
    ("", "A", False, False),
]


def test_kaleidoscope_reading_matches_the_authors_rules() -> None:
    from mvleval.metrics.choice import ChoiceAccuracy

    options = ["Hund", "Katze", "Pferd", "Kuh"]
    result = ChoiceAccuracy(script_letters=True).score(
        [p for p, _, _, _ in KALEIDOSCOPE_PARITY],
        [[g] for _, g, _, _ in KALEIDOSCOPE_PARITY],
        "ru",
        [options] * len(KALEIDOSCOPE_PARITY),
    )
    assert result.per_example == [1.0 if ok else 0.0 for _, _, ok, _ in KALEIDOSCOPE_PARITY]
    parseable = [ok for _, _, ok, parsed in KALEIDOSCOPE_PARITY if parsed]
    assert result.extra["format_error_rate"] == pytest.approx(1 - len(parseable) / len(KALEIDOSCOPE_PARITY))
    assert result.extra["valid_accuracy"] == pytest.approx(sum(parseable) / len(parseable))
    # without the map (every other task), a Cyrillic letter is no label
    assert ChoiceAccuracy().score(["Б"], [["B"]], "ru", [options]).per_example == [0.0]


def test_kaleidoscope_run_with_image_options_and_text_only_questions(scripted: Any, tmp_path: Path) -> None:
    from tests.helpers import write_kaleidoscope

    data = write_kaleidoscope(tmp_path / "data")
    server = scripted(
        {
            "Welches Tier": '{"choice": "B"}',
            "7 mal 8": "<ANSWER> B </ANSWER>",
            "Dreieck": "C",
            "столицей": "Б",
            "عاصمة": "ب",  # wrong: the gold is A
        }
    )
    record = _run(server, "kaleidoscope", data, tmp_path / "runs", ["de", "ru", "ar"])
    score = json.loads(record.read_text())["scores"]["choice_accuracy"]
    assert score["per_lang"] == {"de": 1.0, "ru": 1.0, "ar": 0.0}
    shapes = {}
    for content in server.requests:
        text = "".join(p.get("text", "") for p in content)
        key = next(k for k in ("Welches Tier", "7 mal 8", "Dreieck", "столицей", "عاصمة") if k in text)
        shapes[key] = ["img" if p["type"] == "image_url" else "text" for p in content]
    assert shapes["Welches Tier"] == ["img", "text"] and shapes["عاصمة"] == ["img", "text"]
    assert shapes["7 mal 8"] == ["text"] and shapes["столицей"] == ["text"]  # text-only: no image at all
    assert shapes["Dreieck"] == ["text", "img", "text", "img", "text", "img", "text"]  # the options are images


def test_kaleidoscope_cot_asks_in_language_and_reads_only_the_tagged_answer(scripted: Any, tmp_path: Path) -> None:
    """The chain-of-thought regime on the same files: the in-language instruction, the question's image after its
    text, an image option after its label line; the answer between the last <ANSWER> tags, reasoning never read."""
    from tests.helpers import write_kaleidoscope

    data = write_kaleidoscope(tmp_path / "data")
    server = scripted(
        {
            "Welches Tier": "A wäre ein Hund, das Tier miaut aber. <ANSWER> B </ANSWER>",
            "7 mal 8": "7 mal 8 ist 56, also B.",  # no tags: a format error, not "B"
            "Dreieck": "<ANSWER> C </ANSWER>",
            "столицей": "Москва. <ANSWER> Б </ANSWER>",
            "عاصمة": "<ANSWER> ب </ANSWER>",  # wrong: the gold is A
        }
    )
    record = _run(server, "kaleidoscope_cot", data, tmp_path / "runs", ["de", "ru", "ar"])
    rec = json.loads(record.read_text())
    score = rec["scores"]["choice_accuracy"]
    assert score["per_lang"] == {"de": pytest.approx(2 / 3), "ru": 1.0, "ar": 0.0}
    assert score["extra"]["de"]["format_error_rate"] == pytest.approx(1 / 3)
    assert "answer-tags" in score["signature"] and rec["model"]["generation"]["max_new_tokens"] == 1024
    shapes = {}
    for content in server.requests:
        text = "".join(p.get("text", "") for p in content)
        key = next(k for k in ("Welches Tier", "7 mal 8", "Dreieck", "столицей", "عاصمة") if k in text)
        shapes[key] = ["img" if p["type"] == "image_url" else "text" for p in content]
        if key == "Welches Tier":
            assert content[0]["text"].startswith("Im Folgenden ist eine Multiple-Choice-Frage. Denken Sie Schritt")
    assert shapes["Welches Tier"] == ["text", "img", "text"]  # the image after the question text
    assert shapes["7 mal 8"] == ["text"]
    assert shapes["Dreieck"] == ["text", "img", "text", "img", "text", "img", "text"]
    assert score["by_group"]["de"] == {"Biology": {"n": 3, "value": pytest.approx(2 / 3)}}  # the files' category_en


def test_kaleidoscope_without_its_zip_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.helpers import write_kaleidoscope

    data = write_kaleidoscope(tmp_path / "data")
    (data / "kaleidoscope" / "data.zip").unlink()
    code, out, err = cli(capsys, "data", "check", "--task", "kaleidoscope", "--data-root", data, "--lang", "de")
    text = " ".join((out + err).split())
    assert code == 1 and "Traceback" not in text and "need data.zip, which is not there" in text, text


# -- M3Exam: the authors' prompt and eval.py -------------------------------------------------------------------------------
def m3exam_compute_acc_score(preds: list[dict[str, str]]) -> tuple[int, int]:
    """(total, match) as DAMO-NLP-SG/M3Exam eval.py's compute_acc_score counts them, rewritten from reading it."""
    match = total = 0
    for question in preds:
        total += 1
        answer = str(question["answer_text"]).strip()
        pred = question["pred"].strip()
        if len(pred) > 1:
            pred = pred[0] if pred[0] != "(" else pred[1]
        match += answer == pred
    return total, match


#: (prediction, gold): real-looking answers to digit- and letter-labelled exams
M3EXAM_PARITY = [
    ("2", "2"),
    ("(2) 4", "2"),
    ("(3)", "2"),
    ("B", "B"),
    ("B) the second", "B"),
    ("The answer is B", "B"),
    ("Bản", "B"),
    ("b", "B"),
    ("  C  ", "C"),
    ("คำตอบ: 2", "2"),
    ("", "A"),
    ("(", "A"),
]


def test_m3exam_scorer_agrees_with_the_authors_eval() -> None:
    from mvleval.metrics.m3exam import M3ExamAccuracy

    result = M3ExamAccuracy().score([p for p, _ in M3EXAM_PARITY], [[g] for _, g in M3EXAM_PARITY], "en")
    total, match = m3exam_compute_acc_score([{"answer_text": g, "pred": p} for p, g in M3EXAM_PARITY])
    assert result.value == pytest.approx(match / total) and 0 < match < total
    # row by row too
    for (p, g), ours in zip(M3EXAM_PARITY, result.per_example or []):
        assert ours == m3exam_compute_acc_score([{"answer_text": g, "pred": p}])[1], (p, g)


def test_m3exam_run_places_base64_images_at_their_markers(scripted: Any, tmp_path: Path) -> None:
    from tests.helpers import write_m3exam

    data = write_m3exam(tmp_path / "data")
    server = scripted({"รูปนี้มีกี่ด้าน": "(2) 4", "Which shows a mammal": "A. the first"})
    record = _run(server, "m3exam", data, tmp_path / "runs", ["th", "en"])
    assert json.loads(record.read_text())["scores"]["m3exam_accuracy"]["per_lang"] == {"th": 1.0, "en": 0.0}
    shapes = sorted(["img" if p["type"] == "image_url" else "text" for p in c] for c in server.requests)
    assert shapes == [["text", "img", "text"], ["text", "img", "text", "img", "text"]]


def test_report_shows_the_materialised_images(
    scripted: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mvleval report` finds the images a dataset file embeds (named hub-images/<sha256>.<ext>) in the cache dir."""
    data = write_cvqa(tmp_path / "data")
    server = scripted({})
    record = _run(server, "cvqa", data, tmp_path / "runs", ["ja-JP"])
    page = tmp_path / "report.html"
    code, out, err = cli(capsys, "report", record, "--out", page, "--image-root", data / "images")
    assert code == 0, out + err
    html = page.read_text(encoding="utf-8")
    assert "data:image/jpeg;base64," in html and "missing" not in (out + err).lower(), out + err


# -- `mvleval data fetch` then `mvleval run`, for each new benchmark (the local hub of tests/hubserver.py) -------------------
#: (task, the languages run, whether the repo splits its files by language (then fetched with --lang), the staged files'
#: writer); the writers put the repo's files under <root>/<task>/
FETCH_CASES = [
    ("mtvqa", ["de", "th"], False, lambda root: write_mtvqa(root)),
    ("cvqa", ["ja-JP", "es-MX"], False, lambda root: write_cvqa(root)),
    ("xmmmu", ["en"], True, lambda root: write_xmmmu(root)),
    ("m3exam", ["th", "en"], True, lambda root: write_m3exam(root)),
    ("kaleidoscope", ["ar", "de", "ru"], False, lambda root: write_kaleidoscope(root)),
]


@pytest.mark.parametrize(("task", "langs", "by_lang", "write"), FETCH_CASES, ids=[c[0] for c in FETCH_CASES])
def test_data_fetch_then_run(
    task: str,
    langs: list[str],
    by_lang: bool,
    write: Any,
    scripted: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue #24's done-when: `mvleval data fetch --task T` from a hub serving the dataset repo's files as published,
    then `mvleval run --task T` on the fetched data root, with nothing else in between; the record names the source."""
    from contextlib import contextmanager

    from mvleval.data.fetch import load_lock
    from tests.hubserver import hub_fixture

    staged = write(tmp_path / "staged") / task
    files = {p.relative_to(staged).as_posix(): p.read_bytes() for p in sorted(staged.rglob("*")) if p.is_file()}
    assert files, "nothing staged: the test would prove nothing"
    source = load_lock()[task]
    root = tmp_path / "data"
    with contextmanager(hub_fixture)(tmp_path, monkeypatch) as hub:
        hub.add(source.repo, files, source.revision)
        lang_flags = [x for lang in langs for x in ("--lang", lang)] if by_lang else []
        code, out, err = cli(
            capsys, "data", "fetch", "--task", task, "--data-root", root, "--accept-terms", *lang_flags
        )
        assert code == 0, out + err
    fetched = {p.relative_to(root / task).as_posix(): p.read_bytes() for p in (root / task).rglob("*") if p.is_file()}
    assert {k: v for k, v in fetched.items() if k in files} == files  # every published file, byte for byte
    server = scripted({})
    record = json.loads(_run(server, task, root, tmp_path / "runs", langs).read_text())
    assert record["task"]["name"] == task and record["scores"], record.get("scores")
    assert server.requests, "the model was never asked: the run proved nothing"
    assert record["provenance"]["data_source"]["repo"] == source.repo


def test_languages_without_examples_are_one_line_with_a_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Kaleidoscope's one file holds every language: a run over all 18 with data for 3 names the 15 empty ones once,
    counted with the first places, never a line each."""
    data = write_kaleidoscope(tmp_path / "data")
    code, out, err = cli(capsys, "run", "--task", "kaleidoscope", "--model", "openai:m", "--data-root", data,
                         "--out", tmp_path / "runs", "-M", "base_url=http://127.0.0.1:9/v1")  # fmt: skip
    text = out + err
    assert code == 2 and "Traceback" not in text, text
    assert "15 languages: no examples of the language in the test split" in " ".join(text.split()), text
    assert len([line for line in text.splitlines() if "no examples" in line]) == 1, text


def test_kaleidoscope_cot_without_data_names_the_fetch_of_kaleidoscope(tmp_path: Path) -> None:
    """Another regime of a task reads that task's files: the fix fetches them (there is no separate source)."""
    proc = run_cli(
        "run", "--task", "kaleidoscope_cot", "--lang", "de", "--model", "openai:m", "-M", "base_url=http://127.0.0.1:9/v1",
        "--data-root", tmp_path, "--out", tmp_path / "runs",
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"mvleval data fetch --task kaleidoscope --lang de --data-root {tmp_path}" in proc.stderr.replace("\n", "")
