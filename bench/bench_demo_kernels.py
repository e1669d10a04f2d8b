"""How much the demo gate depends on the CPU's floating-point kernels: the packaged demo model evaluated under every
kernel choice this CPU offers, side by side in one run.

The demo model ships trained (mvleval/demo/model), so the gate in .ci/run depends on inference only. Another CPU (an
Intel Xeon vs an AMD EPYC, AVX2 vs AVX-512) can only change the last bits of the floating-point kernels: torch's own
vectorised kernels (ATen), MKL's GEMMs and oneDNN's convolutions. Each setting below makes this machine take another of
those code paths; the script runs `mvleval demo` under each in a subprocess and prints, per setting, how many of the
744 predictions differ from the committed baselines, and whether `mvleval gate` passes with the flags .ci/run uses
(`--max-drop 2 --paired`) and with `--max-drop 2` alone.

    OMP_NUM_THREADS=1 python bench/bench_demo_kernels.py [--workdir DIR] [--only NAME ...]    # ~35 s a setting
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASKS = ("xgqa", "xflickrco", "xm3600", "marvl", "xvnli")
PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}

#: name -> (environment, extra demo flags). The demo pins PINNED unless a variable is set already or --native-kernels.
SETTINGS: dict[str, tuple[dict[str, str], list[str]]] = {
    "portable (the demo's default)": (PINNED, []),
    "native (this CPU's best: AVX-512 here)": ({}, ["--native-kernels"]),
    "ATen scalar (no vectorised kernels)": ({**PINNED, "ATEN_CPU_CAPABILITY": "default"}, []),
    "ATen AVX-512": ({**PINNED, "ATEN_CPU_CAPABILITY": "avx512"}, []),
    "MKL COMPATIBLE branch (SSE2)": ({**PINNED, "MKL_CBWR": "COMPATIBLE"}, []),
    "MKL AVX-512 branch": ({**PINNED, "MKL_CBWR": "AVX512"}, []),
    "oneDNN SSE4.1": ({**PINNED, "ONEDNN_MAX_CPU_ISA": "SSE41"}, []),
    "oneDNN AVX-512": ({**PINNED, "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, []),
}


def predictions(path: Path) -> dict[tuple[str, str], str]:
    return {
        (r["lang"], r["id"]): r["prediction"] for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())
    }


def run_setting(name: str, env_vars: dict[str, str], flags: list[str], out: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k not in PINNED}
    env.update(env_vars)
    env.setdefault("OMP_NUM_THREADS", "1")
    done = subprocess.run(["mvleval", "demo", "--out", str(out), *flags], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name}: mvleval demo failed\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    differing: list[str] = []
    gates = {"--max-drop 2 --paired": 0, "--max-drop 2": 0}
    total = 0
    for task in TASKS:
        [record] = [
            p for p in (out / "runs").glob(f"{task}-test-demo-4bit-*.json") if not p.name.endswith(".manifest.json")
        ]
        base = REPO / "results" / "baselines" / task / "demo.json"
        ours = predictions(record.with_name(json.loads(record.read_text())["samples_file"]))
        theirs = predictions(base.with_name("demo.samples.jsonl"))
        total += len(ours)
        differing += [
            f"{task} {lang} {i}: {theirs[(lang, i)]!r} -> {p!r}"
            for (lang, i), p in ours.items()
            if theirs[(lang, i)] != p
        ]
        for flags_text in gates:
            gate = subprocess.run(
                ["mvleval", "gate", str(record), "--baseline", str(base), *flags_text.split()],
                env=env,
                capture_output=True,
                text=True,
            )
            gates[flags_text] = max(gates[flags_text], gate.returncode)
    return {"differing": differing, "total": total, "gates": gates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--only", action="append", default=None, help="run only settings whose name contains this")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-demo-kernels-"))
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    print(f"CPU: {cpu}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; workdir {work}")
    print(f"{'kernels':42} {'predictions != baseline':>24}  gate --paired (CI)  gate --max-drop 2 alone")
    for i, (name, (env_vars, flags)) in enumerate(SETTINGS.items()):
        if args.only and not any(o in name for o in args.only):
            continue
        result = run_setting(name, env_vars, flags, work / f"s{i}")
        verdict = {0: "passes", 1: "FAILS (regression)", 2: "refuses (exit 2)"}
        gates = result["gates"]
        print(
            f"{name:42} {len(result['differing']):>10} of {result['total']:<11}  "  # type: ignore[arg-type]
            f"{verdict[gates['--max-drop 2 --paired']]:18}  {verdict[gates['--max-drop 2']]}",
            flush=True,
        )  # type: ignore[index]
        for line in result["differing"]:  # type: ignore[attr-defined]
            print(f"    {line}")
    sys.exit(0)


if __name__ == "__main__":
    main()
