"""The in-process CLI helper (`tests.helpers.run_cli`) against the installed console script: the same argv gives the
same exit code, stdout and stderr, byte for byte, on each exit path (success, usage error, user error, help), and
leaves the test process as it found it. Most CLI tests run through `run_cli`; this file is what lets them."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import pytest

from tests.helpers import console_script, run_cli

CASES = {
    "success": ("tasks",),
    "json": ("tasks", "--json"),
    "usage error": ("run", "--no-such-flag"),
    "user error": ("data", "check", "--task", "xgqa", "--data-root", "{tmp}/nope", "--lang", "en"),
    "unknown task": ("run", "--task", "XGQA", "--model", "m", "--data-root", "{tmp}"),
    "no arguments": (),
    "help": ("score", "-h"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_in_process_answers_as_the_console_script(case: str, tmp_path: Path) -> None:
    args = [a.format(tmp=tmp_path) for a in CASES[case]]
    real = console_script(*args, cwd=tmp_path)
    mine = run_cli(*args, cwd=tmp_path)
    assert (mine.returncode, mine.stdout, mine.stderr) == (real.returncode, real.stdout, real.stderr)
    assert real.stdout or real.stderr  # every case says something


def test_the_test_process_is_left_as_it_was(tmp_path: Path) -> None:
    env, cwd, filters = dict(os.environ), os.getcwd(), list(warnings.filters)
    handlers = logging.getLogger().handlers[:]
    result = run_cli("-v", "tasks", cwd=tmp_path, env={"MVLEVAL_X": "1"}, drop_env=("HOME",))
    assert result.returncode == 0, result.stderr
    assert (dict(os.environ), os.getcwd(), list(warnings.filters)) == (env, cwd, filters)
    assert logging.getLogger().handlers == handlers


def test_a_warning_and_a_child_process_reach_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a process shows on its stderr that pytest would otherwise keep: a Python warning (pytest records them)
    and a child process's output (it writes to file descriptor 2, not to sys.stderr)."""
    import subprocess
    import sys

    import mvleval.cli as cli

    def noisy(*args: object, **kwargs: object) -> None:
        warnings.warn("a library speaks", UserWarning, stacklevel=1)
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('from a child\\n')"], check=True)
        raise SystemExit(3)

    monkeypatch.setattr(cli, "app", noisy)
    result = run_cli("tasks", cwd=tmp_path)
    assert result.returncode == 3
    assert "UserWarning: a library speaks" in result.stderr
    assert "from a child" in result.stderr
