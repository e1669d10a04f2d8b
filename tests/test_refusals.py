"""Malformed input, headers that would measure nothing, and shared outputs that are safe to open (issue #30), each
through the command (`mvleval.cli.main` in-process): exit 2 (or data check's 1) with the file named, no traceback."""

from __future__ import annotations

import csv
import json
import struct
import zlib
from pathlib import Path

import pytest

from mvleval.record.schema import write_record
from tests.helpers import placeholder_images, run_records
from tests.test_forgery import main
from tests.test_leaderboard import make_record


def bench(tmp_path: Path, header: str, rows: list[dict] | None = None, name: str = "mybench") -> Path:
    """A benchmark folder: benchmark.yaml (header) + data.jsonl + placeholder images for the rows."""
    folder = tmp_path / name
    folder.mkdir(parents=True)
    (folder / "benchmark.yaml").write_text(header, encoding="utf-8")
    rows = (
        rows
        if rows is not None
        else [
            {"id": "1", "lang": "en", "images": ["a.jpg"], "question": "Is it red?", "answers": ["yes"]},
            {"id": "2", "lang": "en", "images": ["a.jpg"], "question": "Is it blue?", "answers": ["no"]},
        ]
    )
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    placeholder_images(folder / "images" / i for r in rows for i in r["images"])
    return folder


# -- malformed input ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["tasks", "data check"])
def test_a_lone_brace_in_a_prompt_is_a_clean_refusal(tmp_path: Path, command: str) -> None:
    folder = bench(tmp_path, "version: 1\ndescription: d\nkind: vqa\nprompt: 'Q: {question} { A:'\n")
    code, text = main(*command.split(), "--task", folder)
    assert code == 2, text
    assert "benchmark.yaml:4" in text and "not a valid template" in text and "{{" in text, text


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (the pixel data is one empty IDAT chunk)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [20000, 12000])
def test_an_image_whose_header_claims_too_many_pixels_is_refused_by_name(tmp_path: Path, side: int) -> None:
    folder = bench(tmp_path, "version: 1\ndescription: d\nkind: vqa\nprompt: 'Q: {question} A:'\n")
    (folder / "images" / "a.jpg").unlink()
    (folder / "images" / "a.jpg").write_bytes(_png_claiming(side, side))
    code, text = main("data", "check", "--task", folder)
    assert code == 1, text  # data check's own code for problems found
    assert "a.jpg" in text and "too large to decode safely" in text and "89,478,485" in text, text
    assert "UserWarning" not in text and "DecompressionBombWarning" not in text, text


def test_the_pixel_limit_is_recorded() -> None:
    from mvleval.benchmarks.images import MAX_PIXELS
    from mvleval.record.schema import Provenance

    assert "max_image_pixels" in Provenance.model_fields and MAX_PIXELS == 89_478_485


def _leaderboard_runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    write_record(make_record("good"), runs / "good.json")
    (runs / "a-broken.json").write_text("{", encoding="utf-8")
    (runs / "b-wrong-type.json").write_text(
        json.dumps({**json.loads((runs / "good.json").read_text()), "duration_s": "x"}), encoding="utf-8"
    )
    return runs


def test_leaderboard_names_every_unreadable_file_at_once(tmp_path: Path) -> None:
    runs = _leaderboard_runs(tmp_path)
    code, text = main("leaderboard", runs, "--out", tmp_path / "lb")
    assert code == 2, text
    assert "a-broken.json" in text and "b-wrong-type.json" in text and "--skip-bad" in text, text
    assert not (tmp_path / "lb").exists()


def test_leaderboard_skip_bad_ranks_the_readable_records(tmp_path: Path) -> None:
    runs = _leaderboard_runs(tmp_path)
    code, text = main("leaderboard", runs, "--out", tmp_path / "lb", "--skip-bad")
    assert code == 0, text
    assert "Skipped 2 unreadable files" in text and "a-broken.json" in text and "b-wrong-type.json" in text, text
    assert "ckpt/mblip-mt0-xl" in (tmp_path / "lb" / "leaderboard.md").read_text(encoding="utf-8")


# -- headers that cannot silently measure nothing -------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["vqa", "multiple_choice"])
def test_a_prompt_without_the_question_is_refused(tmp_path: Path, kind: str) -> None:
    prompt = "Look at the image. Answer:" if kind == "vqa" else "Pick one: {choices} Answer:"
    rows = [
        {
            "id": "1",
            "lang": "en",
            "images": ["a.jpg"],
            "question": "Is it red?",
            "answers": ["A"],
            **({"choices": ["red", "blue"]} if kind == "multiple_choice" else {}),
        }
    ]
    folder = bench(tmp_path, f"version: 1\ndescription: d\nkind: {kind}\nprompt: '{prompt}'\n", rows)
    code, text = main("tasks", "--task", folder)
    assert code == 2, text
    assert "benchmark.yaml:4" in text and "must show the question" in text and "{question}" in text, text


def test_choice_accuracy_with_answers_given_as_choice_text_is_refused(tmp_path: Path) -> None:
    rows = [
        {
            "id": "1",
            "lang": "en",
            "images": ["a.jpg"],
            "question": "Colour?",
            "choices": ["red", "blue"],
            "answers": ["red"],
        }
    ]
    folder = bench(
        tmp_path,
        "version: 1\ndescription: d\nkind: multiple_choice\nanswer_with: choice\n"
        "metrics: [choice_accuracy]\nprompt: 'Q: {question} {choices} A:'\n",
        rows,
    )
    code, text = main("tasks", "--task", folder)
    assert code == 2, text
    assert "benchmark.yaml:5" in text and "choice_accuracy scores letter labels" in text, text


def test_a_yes_no_vocabulary_is_read_as_the_words_written(tmp_path: Path) -> None:
    folder = bench(
        tmp_path,
        "version: 1\ndescription: d\nkind: yesno\nlabel_vocabulary: [yes, no]\nprompt: '{question} Yes or no?'\n",
    )
    code, text = main("tasks", "--task", folder)
    assert code == 0, text
    assert "got False" not in text
    from mvleval.benchmarks.registry import load_task

    assert load_task(str(folder)).label_vocabulary == frozenset({"yes", "no"})  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numeric_options_are_refused(tmp_path: Path, value: str) -> None:
    code, text = main(
        "run", "--task", "xgqa", "--model", tmp_path, "--data-root", tmp_path, f"--length-penalty={value}"
    )
    assert code == 2 and "--length-penalty must be a finite number" in text, text
    code, text = main("run", "--task", "xgqa", "--model", "openai:m", "--data-root", tmp_path, f"--timeout={value}")
    assert code == 2 and "--timeout must be a finite number" in text, text


def test_a_mistyped_task_is_named_before_the_missing_data_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MVLEVAL_DATA", raising=False)
    code, text = main("run", "--task", "xgq", "--model", tmp_path)
    assert code == 2 and "unknown task 'xgq'" in text and "Did you mean 'xgqa'" in text, text
    code, text = main("data", "check", "--task", "xgq")
    assert code == 2 and "unknown task 'xgq'" in text, text


@pytest.mark.parametrize(
    ("prediction", "label", "relaxed"),
    [
        ("**Yes**", "yes", 1.0),
        ("ｙｅｓ", "yes", 1.0),  # full-width
        ("`no`", "no", 1.0),
        ("Not sure", "no", 0.0),  # a word, not a prefix
        ("Yesterday", "yes", 0.0),
        ("Yes, it is.", "yes", 1.0),
        ("I think no", "no", 1.0),
    ],
)
def test_benchmark_answers_match_words_after_nfkc_and_markdown(prediction: str, label: str, relaxed: float) -> None:
    from mvleval.metrics.exact_match import RelaxedAccuracy

    metric = RelaxedAccuracy(bootstrap_resamples=0, match="words")
    assert metric.score([prediction], [[label]], "en").value == relaxed
    assert "nfkc+md" in metric.signature() and "first-words|last-words" in metric.signature()


def test_builtin_tasks_keep_mblips_relaxed_accuracy() -> None:
    from mvleval.benchmarks.registry import load_task

    for name in ("xgqa", "marvl", "xvnli"):
        relaxed = next(m for m in load_task(name).metrics() if m.name == "relaxed_accuracy")
        assert "rule=startswith|endswith" in relaxed.signature() and "nfkc" not in relaxed.signature()


# -- shared outputs that are safe to open ---------------------------------------------------------------------------
@pytest.mark.filterwarnings("error::UserWarning")  # no library noise (a glyph warning) on the terminal
def test_leaderboard_csv_and_markdown_neutralise_hostile_text(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_record(make_record("r1", model='=HYPERLINK("http://x")|<script>alert(1)</script>'), runs / "r1.json")
    write_record(make_record("r2", model="@SUM(A1)", task="xvnli"), runs / "r2.json")
    write_record(make_record("r3", model="+1", task="marvl"), runs / "r3.json")
    write_record(
        make_record("r4", model="-2\tx", task="xm3600", metric="cider", signature="cider|v=1"), runs / "r4.json"
    )
    code, text = main("leaderboard", runs, "--out", tmp_path / "lb")
    assert code == 0, text
    with (tmp_path / "lb" / "leaderboard.csv").open(encoding="utf-8", newline="") as fh:
        cells = [cell for row in csv.reader(fh) for cell in row]
    assert cells and not [
        c for c in cells if c[:1] in ("=", "+", "@", "\t", "\r") or (c.startswith("-") and not _number(c))
    ]
    models = {c for c in cells if "HYPERLINK" in c or "SUM" in c or c.startswith("'+") or c.startswith("'-")}
    assert '\'=HYPERLINK("http://x")|<script>alert(1)</script>' in models and "'@SUM(A1)" in models
    md = (tmp_path / "lb" / "leaderboard.md").read_text(encoding="utf-8")
    assert "<script>" not in md and "&lt;script&gt;" in md
    for line in md.splitlines():
        if "HYPERLINK" in line:
            assert '")\\|&lt;' in line  # the pipe is escaped: the row keeps its columns


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_a_yes_no_benchmark_scores_emphasis_and_full_width_answers_through_the_command(
    tmp_path: Path, tiny_mt5_dir: Path
) -> None:
    rows = [
        {"id": str(i), "lang": "en", "images": ["a.jpg"], "question": f"Is it red {i}?", "answers": [answer]}
        for i, answer in enumerate(["yes", "yes", "no", "yes", "no"])
    ]
    folder = bench(
        tmp_path,
        "version: 1\ndescription: d\nkind: yesno\nlabel_vocabulary: [yes, no]\nprompt: '{question} Yes or no?'\n",
        rows,
    )
    out = tmp_path / "runs"
    code, text = main(
        "run", "--task", folder, "--model", tiny_mt5_dir, "--out", out, "--num-beams", "1", "--max-new-tokens", "2"
    )
    assert code == 0, text
    [record] = run_records(out)
    samples = record.parent / json.loads(record.read_text())["samples_file"]
    lines = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()]
    answers = {"0": "**Yes**", "1": "ｙｅｓ", "2": "Not sure", "3": "Yesterday", "4": "`No`"}
    for row in lines:
        row["prediction"] = answers[row["id"]]
    samples.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
    code, text = main("score", record)
    assert code == 0, text
    scored = {r["id"]: r["scores"] for r in map(json.loads, samples.read_text(encoding="utf-8").splitlines())}
    assert {i: s["relaxed_accuracy"] for i, s in scored.items()} == {"0": 1.0, "1": 1.0, "2": 0.0, "3": 0.0, "4": 1.0}
    assert {i: s["exact_match"] for i, s in scored.items()} == {"0": 1.0, "1": 1.0, "2": 0.0, "3": 0.0, "4": 1.0}
