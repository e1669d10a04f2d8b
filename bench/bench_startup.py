"""Benchmark: start-up time of the CLI (`mvleval --help` goal < 0.5 s, `mvleval tasks` goal < 1 s), and proof that
`--help` imports no torch.

Each command runs as a fresh subprocess several times (the first run warms the file cache and is discarded); the
median is compared with its goal. A separate run of `--help` inside one interpreter reports whether torch,
transformers or PIL ended up in sys.modules, and the slowest imports (python -X importtime) of `--help`.

Run: ``python bench/bench_startup.py [--runs 7]``. Exit status 1 when a goal is missed or --help imports torch.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

GOALS = {"--help": 0.5, "tasks": 1.0}
HEAVY = ("torch", "transformers", "PIL", "lingua", "pandas", "matplotlib")

_PROBE = """
import sys
from mvleval.cli import main
sys.argv = ["mvleval", "--help"]
try:
    main()
except SystemExit:
    pass
print("HEAVY:" + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def command() -> list[str]:
    """The console script a user runs, or the module when it is not on PATH."""
    script = shutil.which("mvleval")
    return [script] if script else [sys.executable, "-m", "mvleval"]


def time_runs(argv: list[str], runs: int) -> list[float]:
    times = []
    for i in range(runs + 1):
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")
        if i:  # the first run only warms the file cache
            times.append(elapsed)
    return times


def slowest_imports(n: int = 6) -> list[tuple[float, str]]:
    """The n largest cumulative import times (ms) of `--help`, from python -X importtime."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", _PROBE.format(heavy=HEAVY)],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.removeprefix("import time:").split("|")
            # importtime indents nested imports by two spaces after the bar's one: keep top-level imports only
            if cumulative.strip().isdigit() and not name.startswith("  "):
                rows.append((int(cumulative) / 1000, name.strip()))
    return sorted(rows, reverse=True)[:n]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    base = command()
    ok = True
    print(f"command: {' '.join(base)}; median of {args.runs} subprocess runs (after one warm-up)")
    for sub, goal in GOALS.items():
        times = time_runs([*base, sub], args.runs)
        median = statistics.median(times)
        verdict = "ok" if median < goal else "MISSED"
        ok &= median < goal
        print(
            f"  mvleval {sub:<7} median {median:.3f} s (min {min(times):.3f}, max {max(times):.3f}); goal < {goal} s: {verdict}"
        )

    probe = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY)], capture_output=True, text=True, check=True
    )
    heavy = next((line.removeprefix("HEAVY:") for line in probe.stderr.splitlines() if line.startswith("HEAVY:")), "?")
    print(f"  heavy modules imported by --help: {heavy or 'none'}")
    ok &= "torch" not in heavy.split(",")
    print(
        "  slowest imports of --help (cumulative ms): "
        + ", ".join(f"{name} {ms:.0f}" for ms, name in slowest_imports())
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
