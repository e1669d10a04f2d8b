"""Benchmarks from a file (issue 14 item 1): a benchmark written as a user would, run through the `mvleval` console
script on a tiny model; every bad row reported with its line number; nothing written for an invalid file; the
protocol hash; records that `score`, the leaderboard and the gate read again from the path they keep."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mvleval.benchmarks.filetask import load_file_task
from mvleval.record.schema import read_record, read_samples
from mvleval.util.errors import MvlevalError
from tests.helpers import run_cli

# -- a benchmark written as a user would, from the docs only -----------------------------------------------------------
CAPTION_HEADER = """\
version: 1
description: Captions of coloured shapes in English, German and Chinese
kind: caption
prompt: "Caption in {language}: "
generation: {num_beams: 1, max_new_tokens: 6}
licence: CC0
"""
# several references in three scripts; en has one reference per image, so a prediction equal to it scores CIDEr 10 by
# hand (every n-gram of the hypothesis and the reference match: cosine 1 at each of the 4 orders, length penalty 1)
CAPTION_ROWS = [
    {"id": "r", "lang": "en", "images": ["red.png"], "answers": ["a red square on white paper"]},
    {"id": "g", "lang": "en", "images": ["green.png"], "answers": ["a green circle in the middle"]},
    {"id": "b", "lang": "en", "images": ["blue.png"], "answers": ["one small blue triangle pointing up"]},
    {
        "id": "r",
        "lang": "de",
        "images": ["red.png"],
        "answers": ["ein rotes Quadrat auf weißem Papier", "rotes Quadrat"],
    },
    {"id": "g", "lang": "de", "images": ["green.png"], "answers": ["ein grüner Kreis in der Mitte", "grüner Kreis"]},
    {"id": "r", "lang": "zh", "images": ["red.png"], "answers": ["白纸上的红色正方形", "红色正方形"]},
    {"id": "g", "lang": "zh", "images": ["green.png"], "answers": ["中间的绿色圆圈", "一个绿色圆"]},
]
YESNO_HEADER = """\
version: 3
description: Are both pictures the same colour?
kind: yesno
prompt: 'Based on the two images, is it correct to say "{question}"? Yes or no?'
generation: {num_beams: 1, max_new_tokens: 3}
"""
YESNO_ROWS = [
    {"id": 1, "lang": "de", "images": ["red.png", "red.png"], "question": "Beide Bilder sind rot.", "answers": ["yes"]},
    {"id": 2, "lang": "de", "images": ["red.png", "blue.png"], "question": "Beide Bilder sind rot.", "answers": ["no"]},
    {
        "id": 3,
        "lang": "tr",
        "images": ["green.png", "green.png"],
        "question": "İki resim de yeşil.",
        "answers": ["Yes"],
    },
    {"id": 4, "lang": "tr", "images": ["green.png", "red.png"], "question": "İki resim de kırmızı.", "answers": ["no"]},
]
MC_HEADER = """\
version: 1
description: Which colour is the shape?
kind: multiple_choice
prompt: "Question: {question} {choices} Answer with the letter:"
choices_separator: " "
answer_language: en
generation: {num_beams: 1, max_new_tokens: 3}
"""
MC_ROWS = [
    {
        "id": "q1",
        "lang": "en",
        "images": ["red.png"],
        "question": "What colour is it?",
        "choices": ["red", "green", "blue"],
        "answers": ["red"],
    },
    {
        "id": "q2",
        "lang": "en",
        "images": ["blue.png"],
        "question": "What colour is it?",
        "choices": ["red", "green", "blue"],
        "answers": ["blue"],
    },
    {
        "id": "q1",
        "lang": "id",
        "images": ["green.png"],
        "question": "Apa warnanya?",
        "choices": ["merah", "hijau"],
        "answers": ["hijau"],
    },
    {
        "id": "q2",
        "lang": "id",
        "images": ["red.png"],
        "question": "Apa warnanya?",
        "choices": ["merah", "hijau"],
        "answers": ["merah"],
    },
]


def write_benchmark(folder: Path, header: str, rows: list[dict[str, object]]) -> Path:
    from PIL import Image

    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    for name, rgb in (("red", (220, 20, 20)), ("green", (20, 200, 20)), ("blue", (20, 20, 220))):
        Image.new("RGB", (32, 32), rgb).save(images / f"{name}.png")
    (folder / "benchmark.yaml").write_text(header, encoding="utf-8")
    (folder / "data.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return folder


def cli(*args: object, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    # in-process, answered as the console script answers (tests/test_cli_inprocess.py)
    return run_cli(*args, cwd=cwd, drop_env=("GITHUB_STEP_SUMMARY",))


def record_path(proc: subprocess.CompletedProcess[str]) -> Path:
    match = re.search(r"Run record: (\S+\.json)", proc.stdout.replace("\n", ""))
    assert match, proc.stdout + proc.stderr
    return Path(match.group(1))


def rewrite_predictions(record: Path, predict: dict[tuple[str, str], str]) -> None:
    """Edit a run's per-sample file as a user would: replace predictions by (lang, id)."""
    samples = record.parent / read_record(record).samples_file
    rows = list(read_samples(samples))
    for row in rows:
        row["prediction"] = predict.get((row["lang"], row["id"]), row["prediction"])
    samples.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


# -- validation: every problem at once, with file:line; nothing written -------------------------------------------------
BAD_ROWS: list[tuple[str, str]] = [
    ('{"id": "a", "lang": "de", "images": ["red.png", "blue.png"], "question": "q?", "answers": ["yes"]}', ""),  # valid
    (
        '{"id": "a", "lang": "de", "images": ["red.png"], "question": "q?", "answers": ["no"]}',
        "id already used in this language and split (ids must be unique within a language and split) ('a', first on line 1)",
    ),
    (
        '{"id": "b", "lang": "de", "images": ["red.png"], "question": "q?", "answers": []}',
        "'answers' must be a non-empty list",
    ),
    ('{"id": "c", "lang": "de", "question": "q?", "answers": ["yes"]}', "the field 'images' is missing"),
    (
        '{"id": "d", "lang": "de", "images": "red.png", "question": "q?", "answers": ["yes"]}',
        "'images' must be a list of paths",
    ),
    (
        '{"id": "e", "lang": "de", "images": ["../../etc/passwd"], "question": "q?", "answers": ["yes"]}',
        "escapes the image root",
    ),
    (
        '{"id": "f", "lang": "de", "images": ["red.png"], "question": "q?", "answers": ["yes"], "anwser_lang": "en"}',
        "unknown field ('anwser_lang', did you mean 'answer_lang'?)",
    ),
    (
        '{"id": "g", "lang": "de", "images": ["red.png"], "question": "q?", "answers": ["vielleicht"]}',
        "not in the label vocabulary",
    ),
    (
        '{"id": "h", "lang": "de", "images": ["red.png"], "answers": ["yes"]}',
        "the prompt uses {question} but the row has no 'question'",
    ),
    (
        '{"id": "i", "lang": "quz", "images": ["red.png"], "question": "q?", "answers": ["yes"]}',
        "lingua cannot check 'quz'",
    ),
    ('{"id": "j", "lang": "de", "images": ["red.png"], "question": "q?", "answers": ["yes"]', "not valid JSON"),
    ('["not", "an", "object"]', "expected a JSON object"),
]


def test_every_bad_row_is_reported_with_its_line_and_nothing_is_written(tmp_path: Path) -> None:
    header = YESNO_HEADER.replace("version: 3", "version: 1\nmetrics: [exact_match, language_fidelity]") + "promt: x\n"
    bench = write_benchmark(tmp_path / "bad-bench", header, [])
    (bench / "data.jsonl").write_text("\n".join(line for line, _ in BAD_ROWS) + "\n", encoding="utf-8")
    out = tmp_path / "runs"
    proc = cli("run", "--task", bench, "--model", tmp_path / "no-model", "--out", out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    message = proc.stderr
    assert "Traceback" not in proc.stderr
    # the folder is named once, in the heading; each problem then names its file (relative to it) and line
    assert f"the benchmark 'bad-bench' ({bench}) cannot be used:" in message
    assert "benchmark.yaml:7: unknown key 'promt'. Did you mean 'prompt'?" in message
    for lineno, (_, expected) in enumerate(BAD_ROWS, start=1):
        if expected:
            assert re.search(
                r"^\s*" + re.escape(f"data.jsonl:{lineno}: ") + r".*" + re.escape(expected), message, re.M
            ), (lineno, expected, message)
    assert "problem(s)" not in message
    assert not out.exists()  # nothing written for an invalid benchmark
    # the same report from data check, before any model is named
    proc = cli("data", "check", "--task", bench)
    assert proc.returncode == 2 and "data.jsonl:2" in " ".join(proc.stderr.split())


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda h: h.replace("kind: yesno", "kind: yes_no"), "'kind' must be one of"),
        (lambda h: h + "metrics: [exact_match, cidr]\n", "unknown metric 'cidr'. Did you mean 'cider'?"),
        (lambda h: h.replace("{question}", "{questoin}"), "placeholder {questoin}. Did you mean 'question'?"),
        (lambda h: h.replace("version: 3\n", ""), "the key 'version' is required"),
        (lambda h: h + "name: other\n", "name 'other' differs from the folder/file stem"),
        (lambda h: h + "generation: {beams: 2}\n", "'generation' is given twice"),
    ],
)
def test_header_problems_name_their_line(tmp_path: Path, edit: object, expected: str) -> None:
    bench = write_benchmark(tmp_path / "yn", edit(YESNO_HEADER), YESNO_ROWS)  # type: ignore[operator]
    with pytest.raises(MvlevalError) as err:
        load_file_task(bench)
    assert (
        expected in err.value.what
        and f"({bench}) cannot be used:" in err.value.what
        and "\n  benchmark.yaml:" in err.value.what
    )


def test_a_builtin_name_and_a_missing_header_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MvlevalError, match="name of a built-in task"):
        load_file_task(write_benchmark(tmp_path / "xgqa", YESNO_HEADER, YESNO_ROWS))
    (tmp_path / "lonely.jsonl").write_text(json.dumps(YESNO_ROWS[0]) + "\n", encoding="utf-8")
    with pytest.raises(MvlevalError, match="lonely.yaml"):
        load_file_task(tmp_path / "lonely.jsonl")
    # the single-file form: bench.jsonl with its header beside it as bench.yaml
    (tmp_path / "lonely.yaml").write_text(YESNO_HEADER, encoding="utf-8")
    task = load_file_task(str(tmp_path / "lonely.jsonl"))
    assert task.name == "lonely" and task.split_languages("test") == ("de",)


@pytest.mark.parametrize(
    ("prediction", "label"),
    [
        ("A", "A"),
        ("a", "A"),
        ("(B) green", "B"),
        ("b.", "B"),
        (" 'C'", "C"),
        ("Blue", None),
        ("", None),
        ("1", None),
        ("B2", None),
    ],
)
def test_choice_accuracy_reads_the_label_a_prediction_starts_with(prediction: str, label: str | None) -> None:
    from mvleval.metrics.choice import ChoiceAccuracy, predicted_label

    assert predicted_label(prediction) == label
    result = ChoiceAccuracy(bootstrap_resamples=0).score([prediction], [["B", "A"]], "en")
    assert result.value == (1.0 if label in ("A", "B") else 0.0)


def test_exact_match_on_letter_labels_is_refused(tmp_path: Path) -> None:
    bench = write_benchmark(tmp_path / "mc", MC_HEADER + "metrics: [exact_match]\n", MC_ROWS)
    with pytest.raises(MvlevalError, match="exact_match cannot score letter labels"):
        load_file_task(bench)


# -- protocol hash: the header and its version, not the rows ---------------------------------------------------------
def test_protocol_hash_covers_prompts_metrics_generation_and_version(tmp_path: Path) -> None:
    def hash_of(header: str, rows: list[dict[str, object]] = CAPTION_ROWS, style: str = "mblip") -> str:
        folder = tmp_path / f"h{len(list(tmp_path.iterdir()))}" / "caps"
        return load_file_task(write_benchmark(folder, header, rows), style).protocol_hash()

    base = hash_of(CAPTION_HEADER)
    assert hash_of(CAPTION_HEADER) == base  # deterministic
    assert hash_of(CAPTION_HEADER, CAPTION_ROWS[:4]) == base  # rows are the data fingerprint's business
    for changed in (
        CAPTION_HEADER.replace("version: 1", "version: 2"),
        CAPTION_HEADER.replace("Caption in", "Describe in"),
        CAPTION_HEADER + "metrics: [cider]\n",
        CAPTION_HEADER.replace("max_new_tokens: 6", "max_new_tokens: 7"),
        CAPTION_HEADER + "languages: [de, en, zh]\n",
    ):
        assert hash_of(changed) != base, changed
    assert hash_of(CAPTION_HEADER, style="chat") != base


# -- a user's benchmarks through `mvleval run` on a tiny model --------------------------------------------------------
@pytest.fixture(scope="module")
def user_benchmarks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("user-benchmarks")
    write_benchmark(root / "shape-captions", CAPTION_HEADER, CAPTION_ROWS)
    write_benchmark(root / "same-colour", YESNO_HEADER, YESNO_ROWS)
    write_benchmark(root / "colour-choice", MC_HEADER, MC_ROWS)
    return root


@pytest.mark.slow
def test_user_benchmarks_run_score_and_gate(user_benchmarks: Path, tiny_mt5_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    # relative paths as a user types them; one model load for the three benchmarks
    proc = cli(
        "run",
        "--task",
        "./shape-captions",
        "--task",
        "./same-colour/",
        "--task",
        "./colour-choice/benchmark.yaml",
        "--model",
        tiny_mt5_dir,
        "--out",
        out,
        cwd=user_benchmarks,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = {read_record(p).task.name: p for p in sorted(out.glob("*.json"))}
    assert set(records) == {"shape-captions", "same-colour", "colour-choice"}

    # complete records: name = folder, version from the header, where the benchmark is, every language and metric
    caps = read_record(records["shape-captions"])
    assert caps.task.source == str((user_benchmarks / "shape-captions").resolve())
    assert caps.task.languages == ["de", "en", "zh"] and caps.task.n_examples == {"de": 2, "en": 3, "zh": 2}
    assert list(caps.scores) == ["cider", "language_fidelity"]
    assert caps.model.generation["num_beams"] == 1 and caps.model.generation["max_new_tokens"] == 6
    assert list(caps.provenance.annotation_files) == ["data.jsonl"]
    samples = {(r["lang"], r["id"]): r for r in read_samples(records["shape-captions"].parent / caps.samples_file)}
    assert samples[("de", "r")]["prompt"] == "Caption in German: "
    assert samples[("zh", "g")]["references"] == ["中间的绿色圆圈", "一个绿色圆"]
    yes_no = read_record(records["same-colour"])
    assert (
        yes_no.task.version == 3
        and yes_no.task.languages == ["de", "tr"]
        and list(yes_no.scores) == ["exact_match", "relaxed_accuracy"]
    )
    rows = {(r["lang"], r["id"]): r for r in read_samples(records["same-colour"].parent / yes_no.samples_file)}
    assert rows[("tr", "3")]["references"] == ["yes"]  # "Yes" in the file: yes/no labels are lower-cased
    assert rows[("de", "2")]["images"] == ["red.png", "blue.png"]  # both images, in order
    assert (
        rows[("de", "1")]["prompt"]
        == 'Based on the two images, is it correct to say "Beide Bilder sind rot."? Yes or no?'
    )
    mc = read_record(records["colour-choice"])
    rows = {(r["lang"], r["id"]): r for r in read_samples(records["colour-choice"].parent / mc.samples_file)}
    assert (
        rows[("en", "q2")]["prompt"] == "Question: What colour is it? A. red B. green C. blue Answer with the letter:"
    )
    assert rows[("en", "q2")]["references"] == ["C"] and rows[("id", "q1")]["references"] == ["B"]

    # scores by hand: predictions edited in the per-sample files, rescored by `mvleval score`
    rewrite_predictions(
        records["shape-captions"],
        {
            ("en", "r"): "a red square on white paper",
            ("en", "g"): "a green circle in the middle",
            ("en", "b"): "one small blue triangle pointing up",
        },
    )
    rewrite_predictions(
        records["same-colour"], {("de", "1"): "Yes.", ("de", "2"): "yes", ("tr", "3"): "yes", ("tr", "4"): "no"}
    )
    rewrite_predictions(
        records["colour-choice"],
        {("en", "q1"): "A", ("en", "q2"): "(B) green", ("id", "q1"): "b.", ("id", "q2"): "Blue"},
    )
    for path in records.values():
        proc = cli("score", path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    caps = read_record(records["shape-captions"])
    assert caps.scores["cider"].per_lang["en"] == pytest.approx(10.0)  # hypothesis = the only reference, 6 words
    assert read_record(records["same-colour"]).scores["exact_match"].per_lang == {"de": 0.5, "tr": 1.0}
    # letters: "A" is right for en q1 and id q2 (VQA cleaning would delete it as an article: choice_accuracy reads labels)
    assert read_record(records["colour-choice"]).scores["choice_accuracy"].per_lang == {"en": 0.5, "id": 0.5}

    # leaderboard and gate read the records (and the benchmark again, from the path the record keeps)
    proc = cli("leaderboard", out, "--out", tmp_path / "lb")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    board = (tmp_path / "lb" / "leaderboard.md").read_text(encoding="utf-8")
    assert "same-colour v3 [test] exact_match" in board and "shape-captions v1 [test] cider" in board
    proc = cli("gate", records["same-colour"], "--baseline", records["same-colour"])
    assert proc.returncode == 0 and "PASS" in proc.stdout, proc.stdout + proc.stderr

    # a header edited without a version bump, a version bump, a moved benchmark: `score` refuses, saying why
    header = user_benchmarks / "same-colour" / "benchmark.yaml"
    original = header.read_text(encoding="utf-8")
    header.write_text(original.replace("Yes or no?", "Answer yes or no."), encoding="utf-8")
    proc = cli("score", records["same-colour"])
    assert proc.returncode == 2 and "changed since the run" in proc.stderr, proc.stderr
    header.write_text(original.replace("version: 3", "version: 4"), encoding="utf-8")
    proc = cli("score", records["same-colour"])
    assert proc.returncode == 2 and "v4" in proc.stderr, proc.stderr
    header.write_text(original, encoding="utf-8")
    moved = user_benchmarks / "moved"
    (user_benchmarks / "same-colour").rename(moved)
    try:
        proc = cli("score", records["same-colour"])
        assert proc.returncode == 2 and "no longer there" in " ".join(proc.stderr.split()), proc.stderr
    finally:
        moved.rename(user_benchmarks / "same-colour")
    assert cli("score", records["same-colour"]).returncode == 0


def test_gate_refuses_another_version_of_the_file(user_benchmarks: Path, tiny_mt5_dir: Path, tmp_path: Path) -> None:
    bench = tmp_path / "same-colour"
    shutil.copytree(user_benchmarks / "same-colour", bench)
    args = ["--model", tiny_mt5_dir, "--lang", "de"]
    first = cli("run", "--task", bench, "--out", tmp_path / "v1", *args)
    assert first.returncode == 0, first.stdout + first.stderr
    header = bench / "benchmark.yaml"
    header.write_text(header.read_text(encoding="utf-8").replace("version: 3", "version: 4"), encoding="utf-8")
    second = cli("run", "--task", bench, "--out", tmp_path / "v2", *args)
    assert second.returncode == 0, second.stdout + second.stderr
    proc = cli("gate", record_path(second), "--baseline", record_path(first))
    assert proc.returncode == 2 and "version" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
