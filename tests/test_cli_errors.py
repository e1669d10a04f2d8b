"""CLI behaviour that needs no model: start-up without torch, and bad input giving one clear error (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mvleval.cli import app
from tests.helpers import assert_user_error, run_cli


def _mvleval(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # in-process, answered as the console script answers (tests/test_cli_inprocess.py); the `python -m mvleval` and
    # console-script tests below start the real process
    return run_cli(*args, cwd=cwd)


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['mvleval', '--help']\n"
        "from mvleval.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "NO-TORCH" in out
    assert "run" in out and "tasks" in out


def test_unknown_task_suggests_the_closest(tmp_path: Path) -> None:
    r = _mvleval("run", "--task", "xgq", "--model", "m", "--data-root", str(tmp_path))
    assert_user_error(r, "unknown task 'xgq'", "Did you mean 'xgqa'?")


def test_missing_data_root(tmp_path: Path) -> None:
    r = _mvleval("run", "--task", "xgqa", "--model", "m", "--data-root", str(tmp_path / "nope"))
    assert_user_error(r, "data root not found", str(tmp_path / "nope"), "--data-root")


def test_no_data_root_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MVLEVAL_DATA", raising=False)
    result = CliRunner().invoke(app, ["run", "--task", "xgqa", "--model", "m"])
    assert isinstance(result.exception, Exception) and "MVLEVAL_DATA" in str(result.exception)


def test_unknown_language(tmp_path: Path) -> None:
    r = _mvleval("run", "--task", "xgqa", "--model", "m", "--data-root", str(tmp_path), "--lang", "dee")
    assert_user_error(r, "no language 'dee'", "Did you mean 'de'?")


def test_missing_annotation_file_names_path(tmp_path: Path) -> None:
    r = _mvleval(
        "run", "--task", "xgqa", "--model", "m", "--data-root", str(tmp_path), "--lang", "de", "--split", "dev"
    )
    assert_user_error(r, str(tmp_path / "xgqa" / "data" / "few_shot" / "de" / "dev.json"), "not found")


def test_unknown_split(tmp_path: Path) -> None:
    r = _mvleval("run", "--task", "xgqa", "--model", "m", "--data-root", str(tmp_path), "--split", "tset")
    assert_user_error(r, "no split 'tset'", "Did you mean 'test'?")


def _write_xgqa(root: Path, lang: str, split: str, payload: str) -> Path:
    path = root / "xgqa" / "data" / "few_shot" / lang / f"{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(payload, encoding="utf-8")
    return path


def test_truncated_annotation_file(tmp_path: Path) -> None:
    _write_xgqa(tmp_path, "de", "dev", '{"1": {"imageId": "a", "question": "Was?", "ans')
    r = _mvleval(
        "run", "--task", "xgqa", "--model", "m", "--data-root", str(tmp_path), "--lang", "de", "--split", "dev"
    )
    assert_user_error(r, "dev.json:1", "not valid JSON")


def test_missing_field(tmp_path: Path) -> None:
    _write_xgqa(tmp_path, "de", "dev", json.dumps({"7": {"imageId": "a", "question": "Was?"}}))
    r = _mvleval(
        "run", "--task", "xgqa", "--model", "m", "--data-root", str(tmp_path), "--lang", "de", "--split", "dev"
    )
    assert_user_error(r, "question 7", "answer")


def test_missing_image_is_reported_before_loading_a_model(tmp_path: Path) -> None:
    _write_xgqa(tmp_path, "de", "dev", json.dumps({"7": {"imageId": "abc", "question": "Was?", "answer": "yes"}}))
    out = tmp_path / "runs"
    r = _mvleval(
        "run",
        "--task",
        "xgqa",
        "--model",
        str(tmp_path / "no-model"),
        "--data-root",
        str(tmp_path),
        "--lang",
        "de",
        "--split",
        "dev",
        "--out",
        str(out),
    )
    assert_user_error(r, "missing", str(tmp_path / "images" / "gqa" / "abc.jpg"), "mvleval data check")
    assert not list(out.glob("*.json"))


def test_image_path_escaping_root_is_refused(tmp_path: Path) -> None:
    _write_xgqa(
        tmp_path, "de", "dev", json.dumps({"7": {"imageId": "../../etc/passwd", "question": "Was?", "answer": "yes"}})
    )
    r = _mvleval(
        "run", "--task", "xgqa", "--model", "m", "--data-root", str(tmp_path), "--lang", "de", "--split", "dev"
    )
    assert_user_error(r, "escapes the image root")


def test_bad_bits(tmp_path: Path) -> None:
    r = _mvleval("run", "--task", "xgqa", "--model", "m", "--data-root", str(tmp_path), "--bits", "3")
    assert_user_error(r, "--bits must be 4, 8, 16 or 32")


def test_tasks_lists_xgqa() -> None:
    import os

    r = subprocess.run(
        [sys.executable, "-m", "mvleval", "tasks"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert r.returncode == 0, r.stderr
    for name in ("xgqa", "xm3600", "xflickrco", "marvl", "xvnli", "exact_match", "cider", "language_fidelity"):
        assert name in r.stdout


# -- names a user copies are never cut (issue 29: 80 columns) ------------------------------------------------------
def test_tasks_in_80_columns_cuts_no_name(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from mvleval.benchmarks.registry import load_task, task_names
    from tests.helpers import cli

    for columns in ("80", "120"):
        monkeypatch.setenv("COLUMNS", columns)
        code, out, _ = cli(capsys, "tasks")
        assert code == 0 and "…" not in out, out
        words = set(out.replace(",", " ").replace("│", " ").split())
        for name in task_names():
            task = load_task(name)
            assert name in words
            # the names `gate --metric` and `--split` take, whole
            assert {m.name for m in task.metrics()} <= words, (columns, out)
            assert set(task.split_names()) <= words, (columns, out)
        assert all(len(line) <= int(columns) for line in out.splitlines())


def _in_terminal(*args: object, columns: int = 80) -> str:
    """Run the console script in a pseudo-terminal of `columns` columns: what a user sees (escape codes removed)."""
    import os
    import pty
    import re
    import shutil

    exe = shutil.which("mvleval")
    assert exe, "the mvleval console script is not installed (pip install -e .)"
    main, child = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([exe, *map(str, args)], stdin=child, stdout=child, stderr=child, env=env)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(main)
    return re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode()).replace("\r\n", "\n")


def test_a_long_path_in_an_error_is_never_broken(tmp_path: Path) -> None:
    root = (
        tmp_path
        / "a-rather-long-folder-name"
        / "iglue"
        / "datasets"
        / "marvl"
        / "zero_shot"
        / "annotations-marvl-id.json"
    )
    text = _in_terminal("data", "check", "--task", "marvl", "--data-root", root)
    assert "Traceback" not in text and "data root not found" in text
    lines = text.splitlines()
    assert any(str(root) in line for line in lines), text  # whole, on one line
    # the paragraph wraps at spaces: lines fit in 80 columns unless they are one unbreakable word (the path)
    assert all(len(line) <= 80 or " " not in line.strip() for line in lines), text


def test_top_level_help_names_every_built_in_task(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 29: `mvleval --help` omitted MaXM."""
    from mvleval.benchmarks.registry import task_names
    from tests.helpers import cli

    code, out, _ = cli(capsys, "--help")
    assert code == 0
    text = " ".join(out.split()).lower()
    missing = [name for name in task_names() if name not in text]
    assert not missing, (missing, out)
