"""Benchmark: `mvleval data fetch` against a local stand-in of the hub (tests/hubserver.py), side by side in one run.

An XM3600-shaped mirror (--images images of ~640x480 JPEG, one parquet file per language, every language embedding
the same images, as floschne/xm3600 does) is served on 127.0.0.1. Timed, in order, each as a fresh `mvleval` process:

1. first fetch of one language (download, verify both hashes, write the captions and the images);
2. the same fetch again (goal: nothing downloaded, nothing written, a small fraction of 1.);
3. the same fetch with HF_HUB_OFFLINE=1 (goal: as 2., with no network);
4. a second language (goal: its parquet downloaded, no image written again: they are already in the data root).

Only the ratios within one run mean something (these machines are shared and noisy).

Run: ``OMP_NUM_THREADS=1 python bench/bench_data_fetch.py [--images 300] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mvleval.data.fetch import load_lock
from tests.hubserver import Hub


def _jpeg(i: int) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(i)
    img = Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=60)
    return buf.getvalue()


def _mirror(n: int, langs: list[str]) -> dict[str, bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = [_jpeg(i) for i in range(n)]
    files = {}
    for lang in langs:
        rows = [
            {
                "image_id": f"{i:016x}",
                "image": {"bytes": images[i], "path": None},
                "image_locale": "en",
                "captions": [f"{lang} caption {i}"],
                "captions_tokenized": [f"{lang} caption {i}"],
                "captions_tokenized_lowercase": [f"{lang} caption {i}"],
            }
            for i in range(n)
        ]
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buf)
        files[f"data/{lang}-00000-of-00001.parquet"] = buf.getvalue()
    return files


def _fetch(root: Path, env: dict[str, str], lang: str) -> float:
    args = [sys.executable, "-m", "mvleval", "data", "fetch", "--task", "xm3600", "--lang", lang, "--data-root", root]
    start = time.perf_counter()
    result = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stdout + result.stderr)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    lock = load_lock()["xm3600"]
    hub = Hub().start()
    files = _mirror(opts.images, ["de", "fr"])
    hub.add(lock.repo, files, lock.revision)
    size = len(files["data/de-00000-of-00001.parquet"])
    times: dict[str, list[float]] = {k: [] for k in ("first", "again", "offline", "second language")}
    for _ in range(opts.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "data"
            env = {
                **os.environ,
                "PYTHONPATH": str(REPO),
                "HF_ENDPOINT": hub.url,
                "HF_HUB_CACHE": str(Path(tmp) / "hf"),
                "HF_HUB_OFFLINE": "0",
                "OMP_NUM_THREADS": "1",
            }
            times["first"].append(_fetch(root, env, "de"))
            times["again"].append(_fetch(root, env, "de"))
            times["offline"].append(_fetch(root, {**env, "HF_HUB_OFFLINE": "1"}, "de"))
            before = len(list((root / "images" / "xm3600").iterdir()))
            times["second language"].append(_fetch(root, env, "fr"))
            assert len(list((root / "images" / "xm3600").iterdir())) == before == opts.images
    hub.stop()
    first = statistics.median(times["first"])
    print(f"xm3600-shaped mirror: {opts.images} images, {size / 1e6:.1f} MB per language; median of {opts.rounds}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"  {name:16s} {med:6.2f} s  ({med / first:.3f} of the first fetch)  runs: {values}")
    print(f"  byte transfers: {dict(hub.gets)}")


if __name__ == "__main__":
    main()
