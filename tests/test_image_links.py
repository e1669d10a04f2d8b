"""Issue 21 items 2 and 3: symbolic links in a benchmark's image folder are followed (only the row's path text must
stay inside the image root; what a link points to must decode as an image), and a benchmark with many problems
gets one short report: each kind of problem once, how many rows have it, the first three places, one fix."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mvleval.cli import main
from mvleval.record.schema import read_record
from tests.test_file_task import YESNO_HEADER

HEADER = YESNO_HEADER  # kind yesno, prompt with {question}, languages from the rows


def _cli(capsys: pytest.CaptureFixture[str], *args: object, cwd: Path | None = None) -> tuple[int, str]:
    """`mvleval ARGS` in this process: (exit code, stdout + stderr)."""
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        with pytest.raises(SystemExit) as exit_:
            main([str(a) for a in args])
    finally:
        os.chdir(old)
    out = capsys.readouterr()
    return int(exit_.value.code or 0), out.out + out.err


def _images(folder: Path) -> dict[str, Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rgb in (("red", (220, 20, 20)), ("green", (20, 200, 20)), ("blue", (20, 20, 220))):
        paths[name] = folder / f"{name}.png"
        Image.new("RGB", (32, 32), rgb).save(paths[name])
    return paths


def _bench(folder: Path, rows: list[dict[str, object]], header: str = HEADER) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "benchmark.yaml").write_text(header, encoding="utf-8")
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


ROWS = [
    {"id": 1, "lang": "de", "images": ["red.png"], "question": "Ist es rot?", "answers": ["yes"]},
    {"id": 2, "lang": "de", "images": ["blue.png"], "question": "Ist es rot?", "answers": ["no"]},
    {"id": 3, "lang": "de", "images": ["green.png"], "question": "Ist es grün?", "answers": ["yes"]},
]


def _linked_bench(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """A benchmark whose images/ holds file links into one shared collection elsewhere."""
    shared = _images(tmp_path / "collection")
    bench = _bench(tmp_path / "bench", ROWS)
    (bench / "images").mkdir()
    for name, target in shared.items():
        os.symlink(target, bench / "images" / f"{name}.png")
    return bench, shared


def test_a_benchmark_of_file_links_runs(tmp_path: Path, tiny_mt5_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench, _ = _linked_bench(tmp_path)
    code, out = _cli(
        capsys,
        "run",
        "--task",
        "./bench",
        "--model",
        tiny_mt5_dir,
        "--out",
        "runs",
        "--num-beams",
        "1",
        "--max-new-tokens",
        "2",
        cwd=tmp_path,
    )
    assert code == 0, out
    [record] = (tmp_path / "runs").glob("*.json")
    assert read_record(record).task.n_examples == {"de": 3}


def test_an_images_folder_linked_elsewhere_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """images -> /elsewhere: the data is accepted (the run gets as far as loading the model, which does not exist)."""
    _images(tmp_path / "collection")
    bench = _bench(tmp_path / "bench", ROWS)
    os.symlink(tmp_path / "collection", bench / "images")
    code, out = _cli(capsys, "run", "--task", bench, "--model", tmp_path / "no-model", "--out", tmp_path / "runs")
    assert code == 2 and "model folder not found" in out, out
    assert "outside the image root" not in out and "symbolic link" not in out
    code, out = _cli(capsys, "data", "check", "--task", bench)
    assert code == 0 and "All annotation and image files are present." in out, out
    # a folder link deeper down (images/sets/coco -> /elsewhere), which mvleval used to refuse
    nested = _bench(tmp_path / "nested", [dict(r, images=[f"sets/coco/{r['images'][0]}"]) for r in ROWS])  # type: ignore[index]
    (nested / "images" / "sets").mkdir(parents=True)
    os.symlink(tmp_path / "collection", nested / "images" / "sets" / "coco")
    code, out = _cli(capsys, "run", "--task", nested, "--model", tmp_path / "no-model", "--out", tmp_path / "runs")
    assert code == 2 and "model folder not found" in out, out
    code, out = _cli(capsys, "data", "check", "--task", nested)
    assert code == 0 and "All annotation and image files are present." in out, out


def test_a_link_to_a_text_file_is_refused_as_not_an_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench, _ = _linked_bench(tmp_path)
    secret = tmp_path / "private" / "notes.txt"
    secret.parent.mkdir()
    secret.write_text("password=hunter2\n", encoding="utf-8")
    (bench / "images" / "blue.png").unlink()
    os.symlink(secret, bench / "images" / "blue.png")
    code, out = _cli(capsys, "data", "check", "--task", bench)
    assert code == 1 and "  blue.png: not an image Pillow can read." in out, out
    assert "hunter2" not in out


def test_path_text_that_leaves_the_image_root_is_still_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench, _ = _linked_bench(tmp_path)
    rows = [dict(ROWS[0], images=["../../etc/passwd"]), dict(ROWS[1], images=["/etc/passwd"])]
    _bench(bench, rows)
    code, out = _cli(capsys, "tasks", "--task", bench)
    assert code == 2, out
    assert "Traceback" not in out
    assert "2 rows: image path escapes the image root" in " ".join(out.split())
    assert "data.jsonl:1 ('../../etc/passwd'), data.jsonl:2 ('/etc/passwd')" in out


def test_relinking_an_image_changes_the_data_fingerprint(tmp_path: Path) -> None:
    from mvleval.run.plan import RunOptions, prepare

    bench, shared = _linked_bench(tmp_path)
    options = RunOptions(
        task=str(bench), model="m", data_root=bench, image_root=bench / "images", out_dir=tmp_path / "runs"
    )
    before = prepare(options).data_fingerprint
    assert prepare(options).data_fingerprint == before  # stable while nothing changes
    (bench / "images" / "red.png").unlink()
    os.symlink(shared["green"], bench / "images" / "red.png")  # same name, another file
    assert prepare(options).data_fingerprint != before


# -- issue 21 item 3: one short report ---------------------------------------------------------------------------------
def _assert_fits_a_screen(out: str) -> None:
    lines = out.rstrip("\n").splitlines()
    assert len(lines) <= 24, out
    assert max(len(line) for line in lines) <= 200, out
    assert "Traceback" not in out and "problem(s)" not in out and "problem(s) with the data" not in out


def test_a_thousand_rows_with_one_problem_fit_a_screen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [dict(ROWS[0], id=i, images=[f"../outside/m{i}.jpg"]) for i in range(1000)]
    bench = _bench(tmp_path / "b", rows)
    code, out = _cli(capsys, "tasks", "--task", bench)
    print(out)
    assert code == 2, out
    _assert_fits_a_screen(out)
    assert out.count("escapes the image root") == 1
    assert (
        "1,000 rows: image path escapes the image root, e.g. "
        "data.jsonl:1 ('../outside/m0.jpg'), data.jsonl:2 ('../outside/m1.jpg'), data.jsonl:3 ('../outside/m2.jpg') "
        "(+997 more)."
    ) in out
    assert (
        f"the benchmark 'b' ({bench}) cannot be used:" in out and out.count("Fix:") == 2
    )  # the kind's own and the common one


def test_five_kinds_of_problem_each_once_with_their_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = []
    for i in range(200):
        kind = i % 5
        row: dict[str, object] = dict(ROWS[0], id=i)
        if kind == 0:
            row["images"] = [f"../m{i}.jpg"]
        elif kind == 1:
            row["lang"] = "Deutsch"
        elif kind == 2:
            row["answers"] = []
        elif kind == 3:
            del row["question"]
        else:
            row["anwsers"] = row.pop("answers")
        rows.append(row)
    bench = _bench(tmp_path / "b5", rows)
    code, out = _cli(capsys, "run", "--task", bench, "--model", tmp_path / "no-model", "--out", tmp_path / "runs")
    print(out)
    assert code == 2, out
    _assert_fits_a_screen(out)
    expected = [
        (
            "40 rows: image path escapes the image root",
            "data.jsonl:1 ('../m0.jpg'), data.jsonl:6 ('../m5.jpg'), data.jsonl:11",
        ),
        ("40 rows: 'lang' must be a language code such as de or zh", "data.jsonl:2 (got 'Deutsch'), data.jsonl:7"),
        (
            "40 rows: 'answers' must be a non-empty list of strings",
            "data.jsonl:3 (got []), data.jsonl:8 (got []), data.jsonl:13",
        ),
        (
            "40 rows: the prompt uses {question} but the row has no 'question'",
            "data.jsonl:4, data.jsonl:9, data.jsonl:14 (+37 more)",
        ),
        ("40 rows: unknown field", "data.jsonl:5 ('anwsers', did you mean 'answers'?)"),
        ("40 rows: the field 'answers' is missing", "data.jsonl:5, data.jsonl:10, data.jsonl:15 (+37 more)"),
    ]
    for kind, places in expected:
        assert out.count(kind) == 1, (kind, out)
        line = next(line for line in out.splitlines() if kind in line)
        assert places in line, (places, line)
    assert not (tmp_path / "runs").exists()
