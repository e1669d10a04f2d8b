"""`mvleval demo` through the console script: the fine-tuned demo model beats the untrained one on every task, passes
the gate against the committed baselines with the flags .ci/run uses, and a run made worse on purpose fails it.

The gate and score commands on the demo's records run in-process (tests.helpers.run_cli: the console script's main(),
its exit code and output; tests/test_exit_codes.py runs them through the installed script). `--native-kernels` and
`--train` run in a fresh interpreter each (kernels are chosen before torch is imported) on fewer of the demo's tasks
(`_demo_subset`): what they add is the kernel choice and the training, not five more evaluations."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mvleval.demo.command import DEMO_LANGUAGES
from tests.helpers import console_script, run_cli

REPO = Path(__file__).resolve().parents[1]
#: The flags .ci/run gates the demo with (keep the two in step).
CI_GATE_FLAGS = ["--max-drop", "2", "--paired"]


def _mvleval(*args: object) -> subprocess.CompletedProcess[str]:
    return console_script(*args, timeout=900, drop_env=("GITHUB_STEP_SUMMARY",))


def _in_process(*args: object) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, drop_env=("GITHUB_STEP_SUMMARY",))


def _demo_subset(tasks: tuple[str, ...], *args: str, train_steps: int = 0) -> str:
    """A `python -c` program: `mvleval demo ARGS` (the console script's main(), in a fresh interpreter) on `tasks`
    only (and `train_steps` training steps with --train); sys.argv[1] is the --out folder."""
    patch = f"d.DEMO_LANGUAGES = {{t: d.DEMO_LANGUAGES[t] for t in {tasks!r}}}; "
    if train_steps:
        patch += f"d.DEMO_TRAINING.update(max_steps={train_steps}, save_every={max(1, train_steps // 2)}); "
    return (
        f"import sys; import mvleval.demo.command as d; {patch}"
        f"from mvleval.cli import main; sys.argv = ['mvleval', 'demo', *{list(args)!r}, '--out', sys.argv[1]]; main()"
    )


def _records(runs: Path, task: str, model_prefix: str) -> Path:
    [path] = [p for p in runs.glob(f"{task}-test-{model_prefix}-*.json") if not p.name.endswith(".manifest.json")]
    return path


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """.ci/run has already run the demo there (same console script: its data and untrained model are reused)."""
    return Path(os.environ.get("MVLEVAL_DEMO_DIR", tmp_path_factory.mktemp("demo") / "demo"))


@pytest.mark.slow
def test_demo_beats_untrained_passes_the_ci_gate_and_a_worse_run_fails_it(demo_dir: Path, tmp_path: Path) -> None:
    out = demo_dir
    result = _mvleval("demo", "--out", out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr  # no library noise without -vv
    runs = out / "runs"
    for task in DEMO_LANGUAGES:
        trained_path = _records(runs, task, "demo-4bit")
        trained = json.loads(trained_path.read_text())
        untrained = json.loads(_records(runs, task, "base").read_text())
        assert trained["model"]["bits"] == 4 and "nf4" in trained["model"]["quantization"]
        # the portable kernels are in force and recorded (the baselines were made with them)
        assert "AVX2 kernels" in trained["provenance"]["device"] and "MKL_CBWR=AVX2" in trained["provenance"]["device"]
        metric = next(iter(trained["scores"]))
        before, after = untrained["scores"][metric]["mean"], trained["scores"][metric]["mean"]
        # "clearly": at least 10 points (x100) better on the headline metric, for every task
        assert after >= before + 0.10, (task, metric, before, after)

        baseline = REPO / "results" / "baselines" / task / "demo.json"
        gated = _in_process("gate", trained_path, "--baseline", baseline, *CI_GATE_FLAGS)
        assert gated.returncode == 0, gated.stdout + gated.stderr

        # The same run with its predictions made worse (every other one emptied), rescored by `mvleval score`:
        # the CI gate must see the regression and exit 1.
        worse_dir = tmp_path / "worse" / task
        worse_dir.mkdir(parents=True)
        worse = worse_dir / trained_path.name
        shutil.copy(trained_path, worse)
        rows = [json.loads(line) for line in (runs / trained["samples_file"]).read_text().splitlines()]
        for i, row in enumerate(rows):
            if i % 2 == 0:
                row["prediction"] = ""
        (worse_dir / trained["samples_file"]).write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        )
        rescored = _in_process("score", worse, "--data-root", out / "data")
        assert rescored.returncode == 0, rescored.stdout + rescored.stderr
        failed = _in_process("gate", worse, "--baseline", baseline, *CI_GATE_FLAGS)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "REGRESSION" in failed.stdout
    text = (out / "leaderboard" / "leaderboard.md").read_text()
    for task in DEMO_LANGUAGES:
        assert task in text


@pytest.mark.slow
def test_demo_native_kernels_are_recorded(tmp_path: Path) -> None:
    """`--native-kernels` leaves torch's own kernel choice alone, and the records say which kernels ran (on xGQA, the
    task whose record is read; in a folder of its own, so its record is the only xGQA one there)."""
    import sys

    out = tmp_path / "d"
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")}
    result = subprocess.run(
        [sys.executable, "-c", _demo_subset(("xgqa",), "--native-kernels"), str(out)],
        capture_output=True,
        text=True,
        env={**env, "OMP_NUM_THREADS": "1"},
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(_records(out / "runs", "xgqa", "demo-4bit").read_text())
    device = record["provenance"]["device"]
    assert "kernels" in device and "MKL_CBWR" not in device and "ATEN_CPU_CAPABILITY" not in device, device


def test_demo_refuses_a_seed_its_packaged_model_was_not_trained_with(tmp_path: Path) -> None:
    """The packaged model is seed 0's: another seed without --train is refused before any work, with the fix."""
    result = _mvleval("demo", "--out", tmp_path / "d", "--seed", "3")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "trained with seed 0" in result.stdout + result.stderr and "--train" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "d").exists()


def test_the_packaged_model_is_checked_against_its_manifest(tmp_path: Path) -> None:
    """A packaged model whose file changed (line endings rewritten by a checkout, a Git LFS pointer, an edit) is refused
    with both hashes' beginnings named, never evaluated; the intact one installs, files byte-identical."""
    from mvleval.demo.command import PACKAGED_MANIFEST, PACKAGED_MODEL, install_packaged_model
    from mvleval.util.errors import MvlevalError

    install_packaged_model(tmp_path / "ok")
    manifest = json.loads((PACKAGED_MODEL / PACKAGED_MANIFEST).read_text())
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == sorted(manifest["files"])
    for name in manifest["files"]:
        assert (tmp_path / "ok" / name).read_bytes() == (PACKAGED_MODEL / name).read_bytes()

    copy = tmp_path / "packaged"
    shutil.copytree(PACKAGED_MODEL, copy)
    (copy / "config.json").write_bytes((copy / "config.json").read_bytes().replace(b"\n", b"\r\n"))
    with pytest.raises(MvlevalError) as err:
        install_packaged_model(tmp_path / "bad", source=copy)
    assert "config.json has SHA-256" in str(err.value) and manifest["files"]["config.json"][:16] in str(err.value)
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_demo_train_fine_tunes_here_and_evaluates_that_model(tmp_path: Path) -> None:
    """`mvleval demo --train` runs the LoRA fine-tuning and 4-bit export itself (here for 6 steps on two of the tasks,
    a question and a captioning one, so the test is short) and evaluates that model, named apart from the packaged
    one."""
    script = _demo_subset(("xgqa", "xflickrco"), "--train", train_steps=6)
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "d")], capture_output=True, text=True, env=env, timeout=900
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fine-tuning with LoRA" in result.stdout and "packaged" not in result.stdout
    for task in ("xgqa", "xflickrco"):
        record = json.loads(_records(tmp_path / "d" / "runs", task, "demo-4bit").read_text())
        assert record["model"]["path"].endswith("-trained-here") and record["model"]["bits"] == 4
    config = json.loads(next((tmp_path / "d" / "models").glob("lora-*/train_config.json")).read_text())
    assert "xgqa" in str(config["task"]) and "xflickrco" in str(config["task"])  # one training on both tasks
    log = (tmp_path / "d" / "models").glob("lora-*/train_log.jsonl")
    assert len(next(log).read_text().splitlines()) == 6
