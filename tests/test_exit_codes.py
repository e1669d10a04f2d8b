"""Every exit code the CLI documents reaches the shell, one table row per (command, situation, expected code): every
row through the installed `mvleval` console script in a subprocess; one row per exit code (0, 1, 2 for a user error,
2 for a usage error, the help) through `python -m mvleval` too, and the other rows a second time through the script's
`main()` in-process (tests.helpers.run_cli) instead of a second interpreter. Ctrl-C: a real SIGINT to the console
script's process group, and the same exit path in-process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import perfect_copy, run_cli, run_records

MVLEVAL = shutil.which("mvleval")
ENTRY_POINTS = {
    "console-script": [MVLEVAL] if MVLEVAL else None,
    "python -m": [sys.executable, "-m", "mvleval"],
    "in-process": [],  # tests.helpers.run_cli: the console script's main() in this process
}
#: the rows `python -m mvleval` runs too: one per exit code and kind (the module and the script call the same main())
PYTHON_M_ROWS = {
    "gate pass: a run against itself",
    "gate regression: a clearly better baseline",
    "user error: unknown task",
    "usage: unknown option",
    "help",
}


@dataclass(frozen=True)
class World:
    """A real run of the tiny model and the records gated against it."""

    model: Path
    data_root: Path
    image_root: Path
    run: Path  # the tiny (untrained) model's xGQA record
    perfect: Path  # the same examples with every prediction replaced by its reference, rescored by `mvleval score`
    other_version: Path  # the run's record claiming another task version (not comparable)
    out: Path


def _cli(entry: list[str], *args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    if not entry:  # in-process, answered as the process answers (same environment, exit code, stdout, stderr)
        return run_cli(*args, drop_env=("GITHUB_STEP_SUMMARY",))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    env.pop("GITHUB_STEP_SUMMARY", None)
    return subprocess.run([*entry, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_mt5_dir: Path) -> World:
    from mvleval.demo.command import build_demo_data

    root = tmp_path_factory.mktemp("exit-codes")
    data_root, image_root = build_demo_data(root / "demo", n_train=0, n_test=6)
    out = root / "runs"
    # the set-up runs in-process (the rows below are what is tested through the installed script)
    r = _cli(
        ENTRY_POINTS["in-process"],
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
        "de",
        "--out",
        out,
        "--num-beams",
        "1",
        "--max-new-tokens",
        "3",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    [run] = [p for p in out.glob("*.json")]
    record = json.loads(run.read_text())
    assert record["scores"]["exact_match"]["mean"] < 0.5  # an untrained tiny model: far below the perfect baseline

    # the perfect baseline: the same run with each prediction replaced by its reference, scored by the CLI itself
    base_dir = root / "baselines"
    perfect = perfect_copy(run, base_dir)
    r = _cli(ENTRY_POINTS["in-process"], "score", perfect, "--data-root", data_root, "--image-root", image_root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(perfect.read_text())["scores"]["exact_match"]["mean"] == 1.0

    other = base_dir / "other-version.json"
    changed = json.loads(run.read_text())
    changed["task"]["version"] += 1
    other.write_text(json.dumps(changed))
    return World(tiny_mt5_dir, data_root, image_root, run, perfect, other, out)


def _broken_images(world: World, tmp: Path) -> Path:
    """An image root with one of the annotation's images missing."""
    root = tmp / "images"
    shutil.copytree(world.image_root, root)
    next((root / "gqa").glob("*.jpg")).unlink()
    return root


def _linked_bench(world: World, tmp: Path, target: str = "image", n_bad: int = 0) -> Path:
    """A benchmark folder whose images are symbolic links into the demo's image collection (target "image"), or whose
    one image links to a text file (target "text"); n_bad more rows whose image path escapes the image root."""
    bench = tmp / "linked"
    (bench / "images").mkdir(parents=True)
    source = sorted((world.image_root / "gqa").glob("*.jpg"))[0]
    if target == "text":
        source = tmp / "notes.txt"
        source.write_text("not an image\n", encoding="utf-8")
    (bench / "images" / "x.jpg").symlink_to(source)
    (bench / "benchmark.yaml").write_text(
        "version: 1\ndescription: linked\nkind: vqa\nprompt: 'Q: {question} A:'\n", encoding="utf-8"
    )
    rows = [{"id": "a", "lang": "en", "images": ["x.jpg"], "question": "colour?", "answers": ["red"]}]
    rows += [
        {"id": f"b{i}", "lang": "en", "images": [f"../x{i}.jpg"], "question": "?", "answers": ["r"]}
        for i in range(n_bad)
    ]
    (bench / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return bench


def _short_samples(world: World, tmp: Path) -> Path:
    """A copy of the run's record whose per-sample file lost its last row (a file from another, shorter run)."""
    folder = tmp / "short"
    folder.mkdir()
    record = json.loads(world.run.read_text(encoding="utf-8"))
    samples = (world.run.parent / record["samples_file"]).read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / record["samples_file"]).write_text("".join(samples[:-1]), encoding="utf-8")
    record.pop(
        "samples_sha256", None
    )  # a record that does not vouch for its file (older mvleval): the counts are checked
    copy = folder / world.run.name
    copy.write_text(json.dumps(record), encoding="utf-8")
    return copy


#: (name, arguments as a function of the world and a temp folder, expected exit code, text expected in the output)
ROWS: list[tuple[str, Callable[[World, Path], list[object]], int, str]] = [
    ("gate pass: a run against itself", lambda w, t: ["gate", w.run, "--baseline", w.run], 0, "PASS"),
    (
        "gate regression: a clearly better baseline",
        lambda w, t: ["gate", w.run, "--baseline", w.perfect],
        1,
        "REGRESSION",
    ),
    (
        "gate regression with --paired",
        lambda w, t: ["gate", w.run, "--baseline", w.perfect, "--paired"],
        1,
        "REGRESSION",
    ),
    (
        "gate not comparable: other task version",
        lambda w, t: ["gate", w.run, "--baseline", w.other_version],
        2,
        "version",
    ),
    (
        "gate: missing run record",
        lambda w, t: ["gate", t / "nope.json", "--baseline", w.run],
        2,
        "run record not found",
    ),
    ("gate: bad --max-drop", lambda w, t: ["gate", w.run, "--baseline", w.run, "--max-drop", "lots"], 2, "max-drop"),
    (
        "run --gate regression",
        lambda w, t: [
            "run",
            "--task",
            "xgqa",
            "--model",
            w.model,
            "--data-root",
            w.data_root,
            "--image-root",
            w.image_root,
            "--lang",
            "en",
            "--lang",
            "de",
            "--out",
            t / "runs",
            "--num-beams",
            "1",
            "--max-new-tokens",
            "3",
            "--gate",
            w.perfect,
        ],
        1,
        "REGRESSION",
    ),
    (
        "run --gate pass",
        lambda w, t: [
            "run",
            "--task",
            "xgqa",
            "--model",
            w.model,
            "--data-root",
            w.data_root,
            "--image-root",
            w.image_root,
            "--lang",
            "en",
            "--lang",
            "de",
            "--out",
            t / "runs",
            "--num-beams",
            "1",
            "--max-new-tokens",
            "3",
            "--gate",
            w.run,
        ],
        0,
        "PASS",
    ),
    (
        "gate --paired: a per-sample file that does not match its record",
        lambda w, t: ["gate", _short_samples(w, t), "--baseline", w.run, "--paired"],
        2,
        "does not match the run record",
    ),
    (
        "report: a per-sample file that does not match its record",
        lambda w, t: ["report", _short_samples(w, t), "--out", t / "r.html"],
        2,
        "does not match its record",
    ),
    (
        "data check: everything present",
        lambda w, t: [
            "data",
            "check",
            "--task",
            "xgqa",
            "--data-root",
            w.data_root,
            "--image-root",
            w.image_root,
            "--lang",
            "en",
        ],
        0,
        "xgqa",
    ),
    (
        "data check: a missing image",
        lambda w, t: [
            "data",
            "check",
            "--task",
            "xgqa",
            "--data-root",
            w.data_root,
            "--image-root",
            _broken_images(w, t),
            "--lang",
            "en",
        ],
        1,
        "missing",
    ),
    (
        "data check: a benchmark whose images are links elsewhere",
        lambda w, t: ["data", "check", "--task", _linked_bench(w, t)],
        0,
        "All annotation and image files are present",
    ),
    (
        "data check: a link to a text file is not an image",
        lambda w, t: ["data", "check", "--task", _linked_bench(w, t, "text")],
        1,
        "x.jpg: not an image Pillow can read",
    ),
    (
        "user error: 1,000 rows escaping the image root, reported once",
        lambda w, t: ["tasks", "--task", _linked_bench(w, t, n_bad=1000)],
        2,
        "1,000 rows: image path escapes the image root, e.g. data.jsonl:2",
    ),
    (
        "user error: unknown task",
        lambda w, t: ["run", "--task", "xgq", "--model", "m", "--data-root", t],
        2,
        "Did you mean 'xgqa'",
    ),
    (
        "user error: missing model folder",
        lambda w, t: [
            "run",
            "--task",
            "xgqa",
            "--model",
            t / "no-model",
            "--data-root",
            w.data_root,
            "--image-root",
            w.image_root,
            "--lang",
            "en",
            "--out",
            t / "runs",
        ],
        2,
        "model folder not found",
    ),
    ("usage: unknown option", lambda w, t: ["run", "--task", "xgqa", "--modle", "x"], 2, "No such option"),
    ("usage: unknown command", lambda w, t: ["reprot"], 2, "No such command"),
    ("usage: missing required option", lambda w, t: ["gate", w.run], 2, "Missing option"),
    ("usage: no arguments shows the help", lambda w, t: [], 2, "Usage"),
    ("help", lambda w, t: ["--help"], 0, "Usage"),
    ("tasks", lambda w, t: ["tasks"], 0, "xgqa"),
]


#: every row through the console script, and a second time through `python -m` (PYTHON_M_ROWS) or in-process
CASES = [
    pytest.param(entry, *row, id=f"{row[0]}-{entry}")
    for row in ROWS
    for entry in ("console-script", "python -m" if row[0] in PYTHON_M_ROWS else "in-process")
]


@pytest.mark.parametrize(("entry_name", "name", "args", "code", "needle"), CASES)
def test_exit_code(
    world: World,
    tmp_path: Path,
    entry_name: str,
    name: str,
    args: Callable[[World, Path], list[object]],
    code: int,
    needle: str,
) -> None:
    assert not set(PYTHON_M_ROWS) - {row[0] for row in ROWS}, "a PYTHON_M_ROWS name that is no row"
    entry = ENTRY_POINTS[entry_name]
    assert entry is not None, "the mvleval console script is not installed"
    result = _cli(entry, *args(world, tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == code, f"{name}: exit {result.returncode}, expected {code}\n{output}"
    assert "Traceback" not in output, output
    assert needle.lower() in " ".join(output.split()).lower(), output


def _long_run(world: World, out: Path) -> list[object]:
    """A run of one example per batch over five languages: long enough to be interrupted while it generates."""
    return [
        "run",
        "--task",
        "xgqa",
        "--model",
        world.model,
        "--data-root",
        world.data_root,
        "--image-root",
        world.image_root,
        "--out",
        out,
        "--batch-size",
        "1",
        "--num-beams",
        "5",
        "--max-new-tokens",
        "10",
        *[x for lang in ("en", "de", "id", "ru", "zh") for x in ("--lang", lang)],
    ]


@pytest.mark.parametrize("entry_name", ["console-script"])  # `python -m` calls the same main(): below, in-process
def test_ctrl_c_exits_130_with_the_resume_hint(world: World, tmp_path: Path, entry_name: str) -> None:
    """SIGINT to the process group (what a terminal's Ctrl-C sends) while `run` generates: exit 130, the hint to
    --resume, and the interrupted run continues with --resume."""
    entry = ENTRY_POINTS[entry_name]
    assert entry
    out = tmp_path / "runs"
    args = _long_run(world, out)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*entry, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        partials: list[Path] = []
        while time.monotonic() < deadline and proc.poll() is None:
            partials = [p for p in out.glob("*.partial.jsonl") if p.stat().st_size > 0]
            if partials:
                break
            time.sleep(0.05)
        if not partials:
            proc.kill()
            raise AssertionError(f"the run never started generating: {proc.communicate()}")
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout + stderr
    assert "Interrupted" in stderr and "--resume" in stderr, stderr
    assert "Traceback" not in stderr, stderr
    assert not run_records(out), "no record after an interrupt"
    resumed = _cli(entry, *args, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr


def test_an_interrupt_in_process_exits_130_with_the_resume_hint(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same exit path in the console script's main() in this process: a KeyboardInterrupt after the second batch
    was written (where Ctrl-C lands in a real run) exits 130 with the hint to --resume and no record; --resume then
    generates only what is missing and finishes."""
    from mvleval.run.files import RowWriter

    write_batch = RowWriter.write_batch
    written: list[int] = []

    def interrupted_after_two(self: RowWriter, rows: object) -> None:
        write_batch(self, rows)  # type: ignore[arg-type]
        written.append(1)
        if len(written) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(RowWriter, "write_batch", interrupted_after_two)
    monkeypatch.delenv("MVLEVAL_TEST_CLI", raising=False)  # in this process, where the interrupt is patched in
    out = tmp_path / "runs"
    args = _long_run(world, out)
    done = run_cli(*args)
    code, stdout, stderr = done.returncode, done.stdout, done.stderr
    assert code == 130, stdout + stderr
    assert "Interrupted" in stderr and "--resume" in stderr, stderr
    assert "Traceback" not in stderr, stderr
    assert not run_records(out), "no record after an interrupt"
    [partial] = out.glob("*.partial.jsonl")
    assert len(partial.read_text(encoding="utf-8").splitlines()) == 2  # the two batches written before the interrupt
    done = run_cli(*args, "--resume")
    assert done.returncode == 0, done.stdout + done.stderr
    [record] = run_records(out)
    n_examples = json.loads(record.read_text(encoding="utf-8"))["task"]["n_examples"]
    assert sorted(n_examples) == ["de", "en", "id", "ru", "zh"] and all(n > 2 for n in n_examples.values())
    # one batch per example, each written once: the two written before the interrupt were not generated again
    assert len(written) == sum(n_examples.values())
