"""Benchmark: reading a hub dataset whose images are inside its parquet files (MTVQA-shaped), first and second time.

The first read writes each distinct image once, content-addressed, to the cache dir; the second finds every file and
writes nothing. Both are compared, in one run, with the floor: pyarrow reading the same columns and nothing else.
Goal: the second read within 2x of the floor (hashing the image bytes is the only extra work), and the first read
writing each image exactly once.

Run: ``python bench/bench_hub_images.py [--images 1000] [--kb 100] [--runs 3]`` (a temporary folder; nothing kept).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def build(root: Path, n: int, kb: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = __import__("random").Random(0)
    rows = []
    for i in range(n):
        data = b"\xff\xd8\xff\xe0" + rng.randbytes(kb * 1024)  # JPEG-looking bytes: the reader never decodes them
        qa = str([{"question": f"Frage {i}-{k}?", "answer": f"Antwort {k}"} for k in range(3)])
        rows.append({"image": {"bytes": data, "path": f"{i}.jpg"}, "qa_pairs": qa, "lang": "DE", "id": i})
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("image", image), ("qa_pairs", pa.string()), ("lang", pa.string()), ("id", pa.int64())])
    folder = root / "mtvqa" / "data"
    folder.mkdir(parents=True)
    for k in range(2):
        pq.write_table(pa.Table.from_pylist(rows[k::2], schema=schema), folder / f"test-{k:05d}-of-00002.parquet")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--kb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import pyarrow.parquet as pq

    firsts, seconds, floors = [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            build(root / "data", args.images, args.kb)
            os.environ["MVLEVAL_CACHE_DIR"] = str(root / "cache")
            from mvleval.benchmarks.hubdata import image_dir
            from mvleval.benchmarks.registry import load_task

            files = sorted((root / "data" / "mtvqa" / "data").glob("*.parquet"))
            t = time.perf_counter()
            for f in files:
                pq.read_table(f, columns=["image", "qa_pairs", "lang", "id"]).to_pylist()
            floors.append(time.perf_counter() - t)
            task = load_task("mtvqa")
            t = time.perf_counter()
            first = task.examples(root / "data", root / "images", "de")
            firsts.append(time.perf_counter() - t)
            written = len(list(image_dir().rglob("*.jpg")))
            t = time.perf_counter()
            second = task.examples(root / "data", root / "images", "de")
            seconds.append(time.perf_counter() - t)
            assert [e.images for e in first] == [e.images for e in second] and written == args.images
    floor, first, second = (statistics.median(x) for x in (floors, firsts, seconds))
    print(f"{args.images} images x {args.kb} KB, {3 * args.images} questions, median of {args.runs} runs")
    print(f"  pyarrow read alone (floor)   {floor:6.2f} s")
    print(f"  first read (writes images)   {first:6.2f} s   {first / floor:5.2f}x the floor")
    print(f"  second read (writes nothing) {second:6.2f} s   {second / floor:5.2f}x the floor  (goal <= 2x)")
    return 0 if second / floor <= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
