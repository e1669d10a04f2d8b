"""Numbers that cannot be forged by accident (issue #30), through the command (`mvleval.cli.main` in-process):
scores come from the benchmark's data, a record's files lie beside it, and bad records are refused (exit 2, the file
named, no traceback)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import run_records, sample_rows


def main(*args: object) -> tuple[int, str]:
    """Run the console script's entry point in-process: (exit code, stdout + stderr with whitespace collapsed)."""
    import contextlib
    import io

    from mvleval.cli import main as cli_main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        cli_main([str(a) for a in args])
    text = out.getvalue() + err.getvalue()
    assert "Traceback" not in text, text
    return int(exc.value.code or 0), " ".join(text.split())


@dataclass(frozen=True)
class World:
    data_root: Path
    image_root: Path
    run: Path  # a real xGQA run of the tiny model (en, ru; 6 each), its per-sample file beside it


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_mt5_dir: Path) -> World:
    from mvleval.demo.command import build_demo_data

    root = tmp_path_factory.mktemp("forgery")
    data_root, image_root = build_demo_data(root / "demo", n_train=0, n_test=6)
    out = root / "runs"
    code, text = main(
        "run",
        "--task",
        "xgqa",
        "--model",
        tiny_mt5_dir,
        "--data-root",
        data_root,
        "--image-root",
        image_root,
        "--lang",
        "en",
        "--lang",
        "ru",
        "--out",
        out,
        "--num-beams",
        "1",
        "--max-new-tokens",
        "3",
    )
    assert code == 0, text
    [run] = run_records(out)
    return World(data_root, image_root, run)


def copy_run(world: World, folder: Path) -> Path:
    """A copy of the run's record and per-sample file in `folder` (a fresh copy of the data too is not needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    record = json.loads(world.run.read_text(encoding="utf-8"))
    shutil.copy(world.run.parent / record["samples_file"], folder / record["samples_file"])
    target = folder / world.run.name
    shutil.copy(world.run, target)
    return target


def write_rows(record_path: Path, rows: list[dict]) -> None:
    record = json.loads(record_path.read_text(encoding="utf-8"))
    (record_path.parent / record["samples_file"]).write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )


def edit_record(record_path: Path, **changes: object) -> None:
    record = json.loads(record_path.read_text(encoding="utf-8"))
    record.update(changes)
    record_path.write_text(json.dumps(record), encoding="utf-8")


def score(world: World, record: Path, *extra: object) -> tuple[int, str]:
    return main("score", record, "--data-root", world.data_root, "--image-root", world.image_root, *extra)


# -- a record's files lie beside it ---------------------------------------------------------------------------------
@pytest.mark.parametrize("samples_file", ["/etc/passwd", "../other/x.samples.jsonl", "sub/x.samples.jsonl", ".."])
@pytest.mark.parametrize("command", ["score", "gate", "bless", "report", "leaderboard"])
def test_a_samples_file_outside_the_records_folder_is_refused_before_it_is_read(
    world: World, tmp_path: Path, samples_file: str, command: str
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.samples.jsonl").write_text(
        (world.run.parent / json.loads(world.run.read_text())["samples_file"]).read_text()
    )
    record = copy_run(world, tmp_path / "mine")
    edit_record(record, samples_file=samples_file)
    args = {
        "score": ["score", record, "--data-root", world.data_root],
        "gate": ["gate", world.run, "--baseline", record, "--paired"],
        "bless": ["baseline", "bless", record, "--note", "n", "--dir", tmp_path / "baselines"],
        "report": ["report", record, "--out", tmp_path / "r.html"],
        "leaderboard": ["leaderboard", record, "--out", tmp_path / "lb"],
    }[command]
    code, text = main(*args)
    assert code == 2, text
    assert "samples_file" in text and "not a plain file name" in text, text
    assert str(record) in text
    assert "delete the line" not in text and "root:" not in text
    assert (
        not (tmp_path / "baselines").exists() and not (tmp_path / "r.html").exists() and not (tmp_path / "lb").exists()
    )


def test_a_samples_file_linked_out_of_the_folder_is_refused(world: World, tmp_path: Path) -> None:
    record = copy_run(world, tmp_path / "mine")
    name = json.loads(record.read_text())["samples_file"]
    other = copy_run(world, tmp_path / "other")
    (record.parent / name).unlink()
    (record.parent / name).symlink_to(other.parent / name)
    for args in (
        ["score", record, "--data-root", world.data_root],
        ["report", record, "--out", tmp_path / "r.html"],
        ["gate", world.run, "--baseline", record, "--paired"],
    ):
        code, text = main(*args)
        assert code == 2 and "link to a file outside the record's folder" in text, text


# -- every record field's type is validated at the boundary ---------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [("schema_version", "2"), ("schema_version", True), ("duration_s", "1.5"), ("samples_file", 7), ("task", [])],
)
def test_a_record_field_of_the_wrong_type_is_refused_with_the_records_path(
    world: World, tmp_path: Path, field: str, value: object
) -> None:
    record = copy_run(world, tmp_path)
    edit_record(record, **{field: value})
    for args in (
        ["score", record, "--data-root", world.data_root],
        ["gate", record, "--baseline", world.run],
        ["leaderboard", record, "--out", tmp_path / "lb"],
    ):
        code, text = main(*args)
        assert code == 2, text
        assert str(record) in text and field in text, text


def test_a_nested_field_of_the_wrong_type_is_refused(world: World, tmp_path: Path) -> None:
    record = copy_run(world, tmp_path)
    data = json.loads(record.read_text())
    data["task"]["n_examples"]["en"] = "6"
    record.write_text(json.dumps(data))
    code, text = score(world, record)
    assert code == 2 and "task.n_examples.en" in text and str(record) in text, text


# -- scores come from the benchmark's data --------------------------------------------------------------------------
def test_score_refuses_a_samples_file_whose_reference_was_edited(world: World, tmp_path: Path) -> None:
    record = copy_run(world, tmp_path)
    rows = sample_rows(record)
    i = next(i for i, r in enumerate(rows) if r["lang"] == "ru")
    rows[i]["references"] = ["forged"]
    rows[i]["prediction"] = "forged"
    write_rows(record, rows)
    before = record.read_text()
    code, text = score(world, record)
    assert code == 2, text
    assert "references differ from the task's data" in text and f".samples.jsonl:{i + 1}" in text, text
    assert record.read_text() == before  # nothing rewritten


def test_score_refuses_edited_ids_and_prompts(world: World, tmp_path: Path) -> None:
    record = copy_run(world, tmp_path)
    rows = sample_rows(record)
    rows[0]["id"] = "not-in-the-data"
    rows[1]["prompt"] = "Question: something else? Short answer:"
    write_rows(record, rows)
    code, text = score(world, record)
    assert code == 2, text
    assert "not among the examples" in text and "prompt differs" in text and "has no row" in text, text


def test_score_takes_new_predictions_and_the_datas_references(world: World, tmp_path: Path) -> None:
    record = copy_run(world, tmp_path)
    rows = sample_rows(record)
    for row in rows:
        row["prediction"] = row["references"][0] if row["lang"] == "ru" else "zzz"
    write_rows(record, rows)
    code, text = score(world, record)
    assert code == 0, text
    scored = json.loads(record.read_text())
    assert scored["scores"]["exact_match"]["per_lang"] == {"en": 0.0, "ru": 1.0}
    from mvleval.record.provenance import file_sha256

    assert scored["samples_sha256"] == file_sha256(record.parent / scored["samples_file"])


def test_score_reads_a_fixed_label_from_the_data(world: World, tmp_path: Path) -> None:
    data_root = tmp_path / "data"
    shutil.copytree(world.data_root, data_root, ignore=shutil.ignore_patterns("images"))
    record = copy_run(world, tmp_path / "run")
    rows = sample_rows(record)
    first_ru = next(r for r in rows if r["lang"] == "ru")
    questions_path = data_root / "xgqa/data/few_shot/ru/test.json"
    questions = json.loads(questions_path.read_text(encoding="utf-8"))
    questions[first_ru["id"]]["answer"] = "fixed label"
    questions_path.write_text(json.dumps(questions, ensure_ascii=False), encoding="utf-8")
    first_ru["prediction"] = "fixed label"
    write_rows(record, rows)
    fingerprint = json.loads(record.read_text())["provenance"]["data_fingerprint"]
    code, text = main("score", record, "--data-root", data_root, "--image-root", world.image_root)
    assert code == 0, text
    assert "changed since the run" in text
    scored = json.loads(record.read_text())
    assert scored["provenance"]["data_fingerprint"] != fingerprint
    assert scored["scores"]["exact_match"]["per_lang"]["ru"] > 0
    fixed = next(r for r in sample_rows(record) if r["lang"] == "ru" and r["id"] == first_ru["id"])
    assert fixed["references"] == ["fixed label"] and fixed["scores"]["exact_match"] == 1.0


def test_score_reads_the_data_where_the_record_says_it_is(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MVLEVAL_DATA", raising=False)
    record = copy_run(world, tmp_path)
    assert json.loads(record.read_text())["provenance"]["data_root"] == str(world.data_root.resolve())
    code, text = main("score", record)
    assert code == 0, text


def test_score_without_a_data_root_names_the_option(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MVLEVAL_DATA", raising=False)
    record = copy_run(world, tmp_path)
    data = json.loads(record.read_text())
    data["provenance"]["data_root"] = str(tmp_path / "moved-away")
    record.write_text(json.dumps(data, indent=2))
    code, text = main("score", record)
    assert (
        code == 2 and "--data-root" in text and "no data root" in text and "moved-away, which no longer exists" in text
    ), text


def test_gate_refuses_a_baseline_whose_samples_changed_after_blessing(world: World, tmp_path: Path) -> None:
    code, text = main("baseline", "bless", world.run, "--note", "n", "--dir", tmp_path / "baselines")
    assert code == 0, text
    baseline = tmp_path / "baselines" / "xgqa" / "main.json"
    assert json.loads(baseline.read_text())["samples_sha256"]
    code, text = main("gate", world.run, "--baseline", baseline, "--paired")
    assert code == 0, text
    rows = sample_rows(baseline)
    rows[0]["scores"]["exact_match"] = 1.0
    write_rows(baseline, rows)
    code, text = main("gate", world.run, "--baseline", baseline, "--paired")
    assert code == 2 and "changed after its scores were computed" in text, text
    code, text = main("gate", world.run, "--baseline", baseline)
    assert code == 2 and "changed after its scores were computed" in text, text


def test_bless_refuses_a_run_whose_samples_were_edited(world: World, tmp_path: Path) -> None:
    record = copy_run(world, tmp_path / "run")
    rows = sample_rows(record)
    rows[0]["prediction"] = rows[0]["references"][0]
    write_rows(record, rows)
    code, text = main("baseline", "bless", record, "--note", "n", "--dir", tmp_path / "baselines")
    assert code == 2 and "changed after its scores were computed" in text, text
    assert not (tmp_path / "baselines").exists()


def test_a_baseline_without_a_samples_hash_is_gated_with_a_warning(world: World, tmp_path: Path) -> None:
    baseline = copy_run(world, tmp_path / "old")
    data = json.loads(baseline.read_text())
    data.pop("samples_sha256", None)
    baseline.write_text(json.dumps(data))
    code, text = main("gate", world.run, "--baseline", baseline)
    assert code == 0, text
    assert "no samples_sha256" in text, text


def test_gate_without_paired_needs_no_per_sample_file(world: World, tmp_path: Path) -> None:
    (tmp_path / "alone").mkdir()
    alone = tmp_path / "alone" / world.run.name
    shutil.copy(world.run, alone)  # the record without its per-sample file: not read without --paired
    code, text = main("gate", alone, "--baseline", world.run)
    assert code == 0, text
    code, text = main("gate", alone, "--baseline", world.run, "--paired")
    assert code == 2 and "per-sample file" in text, text


@pytest.mark.parametrize("command", ["gate-paired", "bless", "report"])
def test_a_score_edited_in_the_record_is_refused_where_the_samples_are_read(
    world: World, tmp_path: Path, command: str
) -> None:
    record = copy_run(world, tmp_path / "run")
    data = json.loads(record.read_text())
    data["scores"]["exact_match"]["per_lang"]["ru"] = 0.5  # the per-sample scores (hash-checked) say otherwise
    del data["scores_sha256"]  # as in a record of mvleval < 0.2, which vouched for no scores
    record.write_text(json.dumps(data))
    args = {
        "gate-paired": ["gate", world.run, "--baseline", record, "--paired"],
        "bless": ["baseline", "bless", record, "--note", "n", "--dir", tmp_path / "baselines"],
        "report": ["report", record, "--out", tmp_path / "r.html"],
    }[command]
    code, text = main(*args)
    assert code == 2, text
    assert "exact_match for ru is 0.5" in text and "do not follow from its samples" in text, text


@pytest.mark.parametrize("command", ["gate", "gate-as-baseline", "leaderboard", "bless", "report"])
def test_a_score_edited_by_hand_is_refused_wherever_numbers_are_read(
    world: World, tmp_path: Path, command: str
) -> None:
    """Every record vouches for its scores (scores_sha256): a number edited afterwards, even a corpus metric the
    per-sample file cannot re-derive, is refused by every command that shows or compares numbers; `score` mends it."""
    record = copy_run(world, tmp_path / "run")
    data = json.loads(record.read_text())
    assert data["scores_sha256"]
    data["scores"]["exact_match"]["mean"] = 0.99
    record.write_text(json.dumps(data, indent=2))
    args = {
        "gate": ["gate", record, "--baseline", world.run],
        "gate-as-baseline": ["gate", world.run, "--baseline", record],
        "leaderboard": ["leaderboard", record, "--out", tmp_path / "lb"],
        "bless": ["baseline", "bless", record, "--note", "n", "--dir", tmp_path / "baselines"],
        "report": ["report", record, "--out", tmp_path / "r.html"],
    }[command]
    code, text = main(*args)
    assert code == 2, text
    assert "scores were changed after mvleval wrote them" in text and "mvleval score" in text, text
    assert "0.99" not in text and "99.0" not in text
    code, text = score(world, record)
    assert code == 0, text
    code, text = main(*args)
    assert code in (0, 1) and "scores were changed" not in text, text


def test_an_edited_score_is_refused_by_the_installed_console_script(world: World, tmp_path: Path) -> None:
    import os
    import subprocess

    record = copy_run(world, tmp_path / "run")
    data = json.loads(record.read_text())
    data["scores"]["exact_match"]["mean"] = 0.99
    record.write_text(json.dumps(data, indent=2))
    exe = shutil.which("mvleval")
    assert exe, "the mvleval console script is not installed (pip install -e .)"
    result = subprocess.run(
        [exe, "gate", str(record), "--baseline", str(world.run)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"},
        timeout=300,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        "scores were changed after mvleval wrote them" in " ".join(result.stderr.split())
        and "Traceback" not in result.stderr
    )


def test_a_label_fixed_in_a_benchmark_folder_counts_when_rescoring(tmp_path: Path, tiny_mt5_dir: Path) -> None:
    from tests.test_refusals import bench

    rows = [
        {"id": str(i), "lang": "en", "images": ["a.jpg"], "question": f"Is it red {i}?", "answers": [a]}
        for i, a in enumerate(["yes", "no", "no"])
    ]
    folder = bench(tmp_path, "version: 1\ndescription: d\nkind: yesno\nprompt: '{question} Yes or no?'\n", rows)
    out = tmp_path / "runs"
    code, text = main(
        "run", "--task", folder, "--model", tiny_mt5_dir, "--out", out, "--num-beams", "1", "--max-new-tokens", "2"
    )
    assert code == 0, text
    [record] = run_records(out)
    lines = sample_rows(record)
    for row in lines:
        row["prediction"] = "yes"
    write_rows(record, lines)
    code, text = main("score", record)
    assert code == 0, text
    assert json.loads(record.read_text())["scores"]["exact_match"]["per_lang"]["en"] == pytest.approx(1 / 3)
    # row 2's label was wrong: fixed in data.jsonl, rescoring reads it (the per-sample file still holds the old one)
    rows[1]["answers"] = ["yes"]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    code, text = main("score", record)
    assert code == 0 and "changed since the run" in text, text
    assert json.loads(record.read_text())["scores"]["exact_match"]["per_lang"]["en"] == pytest.approx(2 / 3)
    assert {r["id"]: r["references"] for r in sample_rows(record)}["1"] == ["yes"]
    # a forged reference in the per-sample file against unchanged data is refused, naming the line
    lines = sample_rows(record)
    lines[2]["references"] = ["yes"]
    write_rows(record, lines)
    code, text = main("score", record)
    assert code == 2 and ".samples.jsonl:3" in text and "references differ" in text, text


@pytest.mark.parametrize(
    ("field", "value", "command"),
    [
        ("scores", None, "gate"),
        ("scores", {"exact_match": "1"}, "gate"),
        ("prediction", 5, "report"),
        ("references", "yes", "report"),
    ],
)
def test_a_per_sample_field_of_the_wrong_type_is_refused_with_its_row(
    world: World, tmp_path: Path, field: str, value: object, command: str
) -> None:
    record = copy_run(world, tmp_path / "run")
    data = json.loads(record.read_text())
    data.pop("samples_sha256")  # a record from before samples hashes: its rows are read as they are
    record.write_text(json.dumps(data))
    rows = sample_rows(record)
    rows[3][field] = value
    write_rows(record, rows)
    args = {
        "gate": ["gate", world.run, "--baseline", record, "--paired"],
        "report": ["report", record, "--out", tmp_path / "r.html"],
    }[command]
    code, text = main(*args)
    assert code == 2, text
    assert f"'{field}' must be" in text and "(row 4)" in text, text
