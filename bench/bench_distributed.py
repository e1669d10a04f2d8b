"""Benchmark: a 2-process data-parallel run (torchrun, gloo on CPU) against the same run in one process.

Workload: the demo's synthetic xGQA-format data (drawn JPEGs, questions in 5 languages) scored by a mid-size random
mBLIP-shaped checkpoint (mT5 LLM, 224-pixel ViT), big enough that model loading and process start-up do not dominate:
320 images x 3 questions x 5 languages = 4800 questions (a real xGQA run is 8 x 9666). What stays serial is fixed:
torchrun's start-up, model loading, and rank 0's merging and scoring (the language detector loads in ~5 s), so the
ratio grows with the workload (160 images gave 1.58x once generation had become 1.3x faster, 1.77x before).
Both sides run `python -m mvleval run` as a user would (model load, generation, scoring, record writing); each process
gets one thread (OMP_NUM_THREADS=1), so the 2-process run uses both cores of this machine. The records must be equal
apart from timestamps, durations and the command line (exit 1 otherwise).

Run: ``python bench/bench_distributed.py [--quick] [--images N]`` (~4 minutes; --quick ~1 minute). Goal: >= 1.6x with 2 processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _record(out: Path) -> tuple[dict, bytes]:
    [path] = [p for p in out.glob("*.json") if not p.name.endswith(".manifest.json")]
    record = json.loads(path.read_text())
    samples = (out / record["samples_file"]).read_bytes()
    for key in ("created_at", "duration_s"):
        record.pop(key)
    for key in ("command", "hostname"):
        record["provenance"].pop(key)
    return record, samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller workload")
    parser.add_argument("--images", type=int, default=320, help="distinct images (3 questions each per language)")
    args = parser.parse_args()

    from mvleval.demo.command import build_demo_data
    from mvleval.testing.factory import build_tiny_checkpoint

    work = Path(tempfile.mkdtemp(prefix="mvleval-bench-dist-"))
    n_test = 24 if args.quick else args.images
    data_root, image_root = build_demo_data(work / "demo", n_train=0, n_test=n_test)
    model = build_tiny_checkpoint(
        work / "model", "mt5", seed=0, vision_hidden=192, text_hidden=256, layers=4, image_size=224, num_query_tokens=32
    )
    langs = ["en", "de", "id", "ru", "zh"]
    common = [
        "run",
        "--task",
        "xgqa",
        "--model",
        str(model),
        "--data-root",
        str(data_root),
        "--image-root",
        str(image_root),
        "--batch-size",
        "8",
        *[x for lang in langs for x in ("--lang", lang)],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    n = n_test * 3 * len(langs)
    print(f"workload: {n} questions over {n_test} images, {len(langs)} languages; model {model}")

    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mvleval", *common, "--out", str(work / "single")],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    single = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            "29533",
            "-m",
            "mvleval",
            *common,
            "--out",
            str(work / "multi"),
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    multi = time.perf_counter() - t0

    same = _record(work / "single") == _record(work / "multi")
    print(f"1 process : {single:7.1f} s")
    print(f"2 processes: {multi:7.1f} s")
    print(f"speed-up  : {single / multi:7.2f}x (goal >= 1.6x)   records identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
