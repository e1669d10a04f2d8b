"""Benchmark: what the in-process CLI helper (`tests.helpers.run_cli`) saves over starting the console script.

Runs each given test file twice, side by side in one invocation: with ``MVLEVAL_TEST_CLI=subprocess`` (every
`run_cli` call starts the installed ``mvleval`` script, as these tests did before issue 26) and in-process (the
default). Both runs are `pytest -q -n 0 -p no:cacheprovider FILE` in a fresh interpreter; it reports the wall time and
the CPU time (user + system, the pytest process and every child it started), and their ratios. CPU seconds are the
figure to read on a shared machine: wall time moves with the other users' load, CPU time much less. Both runs must pass
the same number of tests, or it says so and exits 1.

Run: ``OMP_NUM_THREADS=1 python bench/bench_suite.py tests/test_first_hour.py tests/test_cli_errors.py [--rounds 1]``
(default files: the ones that converted the most console-script calls).

``--against REV``: the same table for a commit's tests and code (``git archive REV``, in a temporary folder) against the
working tree's, both in-process: what a change to the suite saved, file by file (issue 26 item 3). A file whose test
counts differ between the two is reported, and the script exits 1.
``OMP_NUM_THREADS=1 python bench/bench_suite.py --against 6593663 tests/test_exit_codes.py tests/test_demo.py``
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FILES = ["tests/test_first_hour.py", "tests/test_cli_errors.py", "tests/test_hostile_input.py"]


def run_file(path: str, mode: str, root: Path = REPO) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of pytest and its children, pytest's summary line) of one file in one mode, with the
    tests and code of `root` (the working tree, or a commit's export)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    env.pop("MVLEVAL_TEST_CLI", None)
    # the real annotation files of ../shared (tests/conftest.py looks beside the tests' own checkout, which a commit's
    # export in a temporary folder has not)
    env.setdefault("MVLEVAL_SHARED", str(REPO.parent / "shared"))
    if mode == "subprocess":
        env["MVLEVAL_TEST_CLI"] = "subprocess"
    argv = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", path]
    # SIGINT as a terminal leaves it (a shell's background job ignores it, and Python keeps it ignored): the Ctrl-C
    # tests send one
    restore_sigint = None if os.name == "nt" else (lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=root, check=False, preexec_fn=restore_sigint
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = next((line for line in reversed(done.stdout.splitlines()) if re.search(r"\d+ (passed|failed)", line)), "")
    if done.returncode != 0:
        raise SystemExit(f"{path} ({mode}) failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return wall, cpu, summary


def counts(summary: str) -> str:
    """The outcome counts of a pytest summary line, without its time."""
    return " ".join(re.findall(r"\d+ (?:passed|failed|skipped|errors?)", summary))


def row(name: str, sub_wall: float, sub_cpu: float, own_wall: float, own_cpu: float) -> str:
    """One line of the table: both modes' wall and CPU seconds, then how many times more the console script took."""
    return (
        f"{name:<34} {sub_wall:7.1f} s / {sub_cpu:6.1f} s CPU {own_wall:7.1f} s / {own_cpu:6.1f} s CPU"
        f" {sub_wall / own_wall:9.2f}x {sub_cpu / own_cpu:8.2f}x"
    )


def export(rev: str, into: Path) -> Path:
    """The commit's files (``git archive``) in `into`; mvleval.tasks linked to its tasks/ as the editable install maps
    them."""
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"git archive {rev} failed: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    if (into / "tasks").is_dir() and not (into / "mvleval" / "tasks").exists():
        (into / "mvleval" / "tasks").symlink_to(Path("..") / "tasks")
    return into


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", default=DEFAULT_FILES)
    parser.add_argument("--rounds", type=int, default=1, help="alternate the two modes this many times per file")
    parser.add_argument("--against", metavar="REV", help="compare a commit's tests and code with the working tree's")
    args = parser.parse_args()
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    before = None
    if args.against:
        before = export(args.against, Path(tempfile.mkdtemp(prefix="bench-suite-")))
        print(
            f"{'file':<34} {args.against[:12] + ' (wall / CPU)':>27} {'this tree (wall / CPU)':>27} {'wall ratio':>10}"
            f" {'CPU ratio':>9}"
        )
    else:
        print(
            f"{'file':<34} {'console script (wall / CPU)':>27} {'in-process (wall / CPU)':>27} {'wall ratio':>10}"
            f" {'CPU ratio':>9}"
        )
    status = 0
    totals = {"subprocess": [0.0, 0.0], "inprocess": [0.0, 0.0]}
    for path in args.files:
        measured: dict[str, list[tuple[float, float, str]]] = {"subprocess": [], "inprocess": []}
        for _ in range(args.rounds):
            for mode in ("subprocess", "inprocess"):
                if before is not None:  # "subprocess" holds the commit's figures, "inprocess" this tree's
                    root = before if mode == "subprocess" else REPO
                    if not (root / path).is_file():
                        raise SystemExit(f"{path} is not in {'the commit' if root == before else 'this tree'}")
                    measured[mode].append(run_file(path, "inprocess", root))
                else:
                    measured[mode].append(run_file(path, mode))
        sub_wall = min(m[0] for m in measured["subprocess"])
        sub_cpu = min(m[1] for m in measured["subprocess"])
        own_wall = min(m[0] for m in measured["inprocess"])
        own_cpu = min(m[1] for m in measured["inprocess"])
        for mode, wall, cpu in (("subprocess", sub_wall, sub_cpu), ("inprocess", own_wall, own_cpu)):
            totals[mode][0] += wall
            totals[mode][1] += cpu
        same = counts(measured["subprocess"][0][2]) == counts(measured["inprocess"][0][2])
        if not same:
            status = 1
        outcome = counts(measured["inprocess"][0][2]) if same else f"DIFFERENT: {measured}"
        print(row(Path(path).name, sub_wall, sub_cpu, own_wall, own_cpu) + f"  {outcome}", flush=True)
    (sw, sc), (ow, oc) = totals["subprocess"], totals["inprocess"]
    print(row("all", sw, sc, ow, oc))
    if before is not None:
        shutil.rmtree(before, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
