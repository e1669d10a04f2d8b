"""Packaging: the built wheel ships every task file (a plain `pip install .` must find the tasks)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mvleval.benchmarks.registry import task_names

REPO = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_tasks(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    [wheel] = list(tmp_path.glob("mvleval-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for task in task_names():
        assert f"mvleval/tasks/{task}.py" in names
    assert {"mvleval/tasks/README.md", "mvleval/py.typed", "mvleval/cli.py"} <= names
    # the HTML pages inline these files: a wheel without them writes no report
    assert {
        "mvleval/compare/report/build.py",
        "mvleval/compare/report/report.js",
        "mvleval/compare/report/report.css",
        "mvleval/compare/report/leaderboard.js",
    } <= names
    # --json's schemas (docs/json-output.md): tools load them from the installed package
    assert {
        f"mvleval/schemas/{name}.json" for name in ("tasks", "run", "score", "gate", "data-check", "leaderboard")
    } <= names
    assert (
        len(task_names()) == 12
    )  # mBLIP's six, MTVQA, CVQA, xMMMU, M3Exam, Kaleidoscope (direct and chain of thought)


def test_the_readmes_test_command_is_the_one_ci_runs() -> None:
    """The README's "Run the tests" command stands verbatim in .ci/run: a newcomer tests what CI tests."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("Run the tests:", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    [command] = [line for line in block.splitlines() if line.strip()]
    assert "pytest" in command and "-c .ci/constraints.txt" in command
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command.strip() in [line.strip() for line in ci], command


def test_the_core_needs_no_torch_and_dev_installs_every_extra() -> None:
    """`pip install mvleval` is the served-model install (no torch); the local-model packages are the hf extra, which
    `all` and `dev` pull; .ci/run proves the core in its own venv (bash .ci/core) before the README's test command."""
    import re

    tomllib = pytest.importorskip("tomllib")
    from mvleval.util.extras import HF_PACKAGES

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower().replace("-", "_") for r in requirements}

    core, extras = names(project["dependencies"]), project["optional-dependencies"]
    # psutil is small and may well join the core; the rest is the model stack (huggingface_hub is core: data fetch)
    model_stack = set(HF_PACKAGES) - {"psutil"}
    assert not core & model_stack, core & model_stack
    assert {
        "httpx",
        "sacrebleu",
        "lingua_language_detector",
        "matplotlib",
        "pandas",
        "huggingface_hub",
        "pyarrow",
    } <= core  # served models, metrics, leaderboard
    assert set(HF_PACKAGES) <= names(extras["hf"])
    assert "mvleval[hf]" in extras["all"] and "mvleval[all]" in extras["dev"]
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines() if line.strip()]
    assert ci[-1].startswith("pip install torch==2.13.0 && ") and "pytest" in ci[-1]  # the README's command, last
    assert "bash .ci/core" in ci


def test_ci_checks_lint_layout_and_types_before_the_demo() -> None:
    """Issue 22, item 6: `.ci/run` runs ruff (check and format) and strict mypy before any evaluation; the tools are
    configured in pyproject.toml and pinned in the constraints, so a developer's check is CI's."""
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines() if line.strip()]
    tomllib = pytest.importorskip("tomllib")
    lint = ci.index("ruff check . && ruff format --check . && mypy")
    assert lint < next(i for i, line in enumerate(ci) if line.startswith("mvleval demo"))
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert config["tool"]["mypy"]["strict"] is True and config["tool"]["mypy"]["files"] == ["mvleval"]
    assert config["tool"]["ruff"]["line-length"] == 120
    pins = (REPO / ".ci" / "constraints.txt").read_text(encoding="utf-8").split()
    assert any(p.startswith("ruff==") for p in pins) and any(p.startswith("mypy==") for p in pins)


def test_every_ci_pytest_can_read_the_suites_options() -> None:
    """Issue 26, item 3: pyproject's addopts run the suite on every core (`-n auto`, pytest-xdist) and print the ten
    slowest tests, and deselect nothing (the `slow` tests run in every plain `python -m pytest -q`, CI's included).
    Every place that installs pytest for CI installs pytest-xdist with it, or that pytest stops at its own options:
    the dev extra and the constraints for .ci/run and .ci/newest, and .ci/core's fresh virtual environment."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    addopts = config["tool"]["pytest"]["ini_options"]["addopts"].split()
    assert "--durations=10" in addopts and "-m" not in addopts, addopts
    assert addopts[addopts.index("-n") + 1] == "auto", addopts
    # a file per worker, handed out in tests/conftest.py's order (the longest files first), not re-sorted by xdist
    assert addopts[addopts.index("--dist") + 1] == "loadfile" and "--no-loadscope-reorder" in addopts, addopts
    assert any(r.startswith("pytest-xdist") for r in config["project"]["optional-dependencies"]["dev"])
    assert any(p.startswith("pytest-xdist==") for p in (REPO / ".ci" / "constraints.txt").read_text().split())
    core = (REPO / ".ci" / "core").read_text(encoding="utf-8").splitlines()
    installs = [line for line in core if "pip install" in line and " pytest" in line]
    assert installs and all("pytest-xdist" in line for line in installs), installs


def test_every_package_folder_ships_in_the_wheel() -> None:
    """A non-editable `pip install .` (the core venv of .ci/run, a user's install) gets every package under mvleval/:
    setuptools' package list is written out, so a new folder must be added to it."""
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "mvleval").rglob("__init__.py")} | {
        "mvleval.tasks"
    }
    assert folders <= listed, sorted(folders - listed)
