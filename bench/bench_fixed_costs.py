"""Benchmark: the fixed costs of small runs, side by side in one run of this script.

1. `mvleval score` on a 3-caption xFlickrCo run vs on a 3-question xGQA run (goal: the caption run costs no more
   than twice the question run; language fidelity loaded lingua's 1- to 5-gram models of every Latin-script language
   for the unrestricted check of one long caption, 7-14 s, in every command). Each is timed twice: with the cache of
   lingua's rankings that its `mvleval run` filled (what `mvleval score` of a run finds: the run ranked the same
   texts; mvleval.metrics.ranking_cache) and with an empty cache (a text never ranked on this machine). Code without
   that cache (PYTHONPATH of an older checkout) gives the same time for both.
2. `mvleval data check` on an XM3600-shaped benchmark (300 images captioned in all 36 languages, the shape of the
   real one: each image cited by 36 languages) and on the real xFlickrCo annotation files (placeholder images).

The runs are made once with a tiny mBLIP-shaped checkpoint (mvleval.testing.factory) on the real annotation files of
../shared/data (xFlickrCo test en, xGQA dev en; placeholder JPEGs), and each prediction is then replaced by its first
reference (what a trained model writes: a caption, a short answer); each command then runs as a fresh subprocess,
interleaved, --rounds times, and the median of each is compared (these machines are shared and noisy: only the
ratios measured in one run mean something).

Run: ``OMP_NUM_THREADS=1 python bench/bench_fixed_costs.py [--rounds 3] [--workdir DIR] [--data ../shared/data]``.
The code measured is the `mvleval` importable by this interpreter (PYTHONPATH decides), so the same script measures
another checkout: ``PYTHONPATH=/path/to/other/checkout python bench/bench_fixed_costs.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _mvleval(
    *args: object, check: bool = True, cache: Path | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "COLUMNS": "200"}
    if cache is not None:
        if cache.name.startswith("empty"):  # a cache folder that holds nothing at each call
            shutil.rmtree(cache, ignore_errors=True)
        env["MVLEVAL_CACHE_DIR"] = str(cache)
    import mvleval

    # run from the checkout this interpreter imports mvleval from: `python -m` puts the working folder first on the
    # path, so another folder's mvleval would be measured instead
    checkout = Path(mvleval.__file__).resolve().parents[1]
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "mvleval", *map(str, args)], capture_output=True, text=True, env=env, cwd=checkout
    )
    elapsed = time.perf_counter() - started
    if check and proc.returncode not in (0, 1):
        raise SystemExit(
            f"mvleval {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return elapsed, proc


def _placeholders(paths: list[Path], size: tuple[int, int] = (640, 480)) -> None:
    from PIL import Image

    for i, path in enumerate(paths):
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        img = Image.new("RGB", size, ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256))
        img.save(path, format="JPEG", quality=90)


def _run(task: str, split: str, data: Path, images: Path, model: Path, out: Path, cache: Path) -> Path:
    from mvleval.benchmarks.registry import load_task

    examples = load_task(task).examples(data, images, "en", split)[:3]
    _placeholders(sorted({p for e in examples for p in e.images}), (96, 96))
    _, proc = _mvleval(
        "run",
        "--task",
        task,
        "--model",
        model,
        "--data-root",
        data,
        "--image-root",
        images,
        "--lang",
        "en",
        "--split",
        split,
        "--limit",
        3,
        "--out",
        out,
        "--num-beams",
        1,
        "--max-new-tokens",
        8,
        "--overwrite",
        cache=cache,
    )
    match = re.search(r"Run record: (\S+\.json)", proc.stdout.replace("\n", ""))
    if not match:
        raise SystemExit(proc.stdout + proc.stderr)
    record = Path(match.group(1))
    # what a trained model answers: a caption, a short answer (the tiny model's ten-token gibberish would be judged
    # by other rules than real outputs); `mvleval score` recomputes every score from these
    samples = record.parent / json.loads(record.read_text(encoding="utf-8"))["samples_file"]
    rows = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        row["prediction"] = row["references"][0]
    samples.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return record


def _xm3600_shaped(root: Path, n_images: int) -> tuple[Path, Path]:
    """An XM3600-format captions.jsonl: n_images images, each captioned in all 36 languages (caption-like text)."""
    from mvleval.benchmarks.registry import load_task

    langs = load_task("xm3600").languages
    data = root / "xm3600-data"
    (data / "xm3600").mkdir(parents=True, exist_ok=True)
    words = ["a", "man", "woman", "dog", "street", "with", "red", "car", "near", "the", "house", "walking", "on"]
    lines = []
    for i in range(n_images):
        entry: dict[str, object] = {"image/key": f"{i:016x}", "image/locale": "en"}
        for lang in langs:
            text = " ".join(words[(i + k * 7) % len(words)] for k in range(8))
            entry[lang] = {"caption": [text], "caption/tokenized": [text], "caption/tokenized/lowercase": [text]}
        lines.append(json.dumps(entry))
    (data / "xm3600" / "captions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    images = root / "xm3600-images"
    _placeholders([images / "xm3600" / f"{i:016x}.jpg" for i in range(n_images)])
    return data, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--xm3600-images", type=int, default=300)
    parser.add_argument("--no-data-check", action="store_true", help="time the two scores only")
    args = parser.parse_args()
    import mvleval

    print(
        f"mvleval {mvleval.__version__} from {Path(mvleval.__file__).parent}; OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; {os.cpu_count()} CPUs; {args.rounds} rounds (median)"
    )
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-fixed-"))
    work.mkdir(parents=True, exist_ok=True)
    from mvleval.testing.factory import build_tiny_checkpoint

    model = work / "tiny-mt5"
    if not (model / "config.json").is_file():
        build_tiny_checkpoint(model, "mt5", seed=0)
    images = work / "images"
    warm, empty = work / "cache-of-the-runs", work / "empty-cache"  # MVLEVAL_CACHE_DIR of each command
    shutil.rmtree(warm, ignore_errors=True)
    captions = _run("xflickrco", "test", args.data, images, model, work / "runs", warm)
    questions = _run("xgqa", "dev", args.data, images, model, work / "runs", warm)
    xm_data, xm_images = _xm3600_shaped(work, args.xm3600_images)
    flickr_images = work / "flickr-images"
    from mvleval.benchmarks.registry import load_task

    task = load_task("xflickrco")
    flickr_langs = [lang for lang in task.languages if task.annotation_path(args.data, lang, "test").is_file()]
    _placeholders(
        sorted(
            {
                p
                for lang in flickr_langs
                for e in task.examples(args.data, flickr_images, lang, "test")
                for p in e.images
            }
        )
    )

    commands: dict[str, tuple[list[object], Path]] = {
        "score xflickrco (3 captions), after its run": (["score", captions], warm),
        "score xgqa (3 questions), after its run": (["score", questions], warm),
        "score xflickrco (3 captions), empty cache": (["score", captions], empty),
        "score xgqa (3 questions), empty cache": (["score", questions], empty),
    }
    if not args.no_data_check:
        xm_check: list[object] = [
            "data",
            "check",
            "--task",
            "xm3600",
            "--data-root",
            xm_data,
            "--image-root",
            xm_images,
        ]
        flickr_check: list[object] = [
            "data",
            "check",
            "--task",
            "xflickrco",
            "--data-root",
            args.data,
            "--image-root",
            flickr_images,
            *[x for lang in flickr_langs for x in ("--lang", lang)],
        ]
        _mvleval(*flickr_check, cache=warm)  # untimed: the references ranked once, as by an earlier data check
        commands.update(
            {
                f"data check xm3600 ({args.xm3600_images} images x 36 languages), empty cache": (xm_check, empty),
                f"data check xflickrco ({' '.join(flickr_langs)}), empty cache": (flickr_check, empty),
                f"data check xflickrco ({' '.join(flickr_langs)}), checked before": (flickr_check, warm),
            }
        )
    times: dict[str, list[float]] = {name: [] for name in commands}
    for r in range(args.rounds):
        order = list(commands)[r % len(commands) :] + list(commands)[: r % len(commands)]
        for name in order:
            command, cache = commands[name]
            elapsed, _ = _mvleval(*command, cache=cache)
            times[name].append(elapsed)
    medians = {name: statistics.median(values) for name, values in times.items()}
    width = max(map(len, medians))
    for name, value in medians.items():
        print(f"  {name:<{width}}  {value:6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times[name])})")
    for when in ("after its run", "empty cache"):
        ratio = medians[f"score xflickrco (3 captions), {when}"] / medians[f"score xgqa (3 questions), {when}"]
        print(f"score, {when}: 3 captions / 3 questions = {ratio:.2f}x (goal <= 2)")
    print(f"workdir: {work}")


if __name__ == "__main__":
    main()
