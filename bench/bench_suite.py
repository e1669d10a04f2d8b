"""Benchmark: what the in-process CLI helper (`tests.helpers.run_cli`) saves over starting the console script.

Runs each given test file twice, side by side in one invocation: with ``MVLEVAL_TEST_CLI=subprocess`` (every
`run_cli` call starts the installed ``mvleval`` script, as these tests did before issue 26) and in-process (the
default). Both runs are `pytest -q -n 0 -p no:cacheprovider FILE` in a fresh interpreter; it reports the wall time and
the CPU time (user + system, the pytest process and every child it started), and their ratios. CPU seconds are the
figure to read on a shared machine: wall time moves with the other users' load, CPU time much less. Both runs must pass
the same number of tests, or it says so and exits 1.

Run: ``OMP_NUM_THREADS=1 python bench/bench_suite.py tests/test_first_hour.py tests/test_cli_errors.py [--rounds 1]``
(default files: the ones that converted the most console-script calls).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FILES = ["tests/test_first_hour.py", "tests/test_cli_errors.py", "tests/test_hostile_input.py"]


def run_file(path: str, mode: str) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of pytest and its children, pytest's summary line) of one file in one mode."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.pop("MVLEVAL_TEST_CLI", None)
    if mode == "subprocess":
        env["MVLEVAL_TEST_CLI"] = "subprocess"
    argv = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", path]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, check=False)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", default=DEFAULT_FILES)
    parser.add_argument("--rounds", type=int, default=1, help="alternate the two modes this many times per file")
    args = parser.parse_args()
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    print(
        f"{'file':<34} {'console script (wall / CPU)':>27} {'in-process (wall / CPU)':>27} {'wall ratio':>10} {'CPU ratio':>9}"
    )
    status = 0
    totals = {"subprocess": [0.0, 0.0], "inprocess": [0.0, 0.0]}
    for path in args.files:
        measured: dict[str, list[tuple[float, float, str]]] = {"subprocess": [], "inprocess": []}
        for _ in range(args.rounds):
            for mode in ("subprocess", "inprocess"):
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
    return status


if __name__ == "__main__":
    sys.exit(main())
