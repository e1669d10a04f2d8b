"""Benchmark: the cost of CIDEr's 1000-resample bootstrap interval relative to one CIDEr computation.

Workload: one XM3600-size language (3600 images, 1 prediction and 2 references each), synthesised from the real
captions in ../shared/data like bench_cider.py (random captions from a fixed vocabulary when ../shared is absent).
Each resample recomputes the corpus score including the document frequencies; per-example n-gram statistics are
reused, and blocks of resamples are scored with sparse matrix products. The interval's cost is measured as
Cider.score with the interval minus Cider.score without it (so it includes building the resampling statistics).
Target: 1000 resamples <= 10x one CIDEr computation.

Run: ``OMP_NUM_THREADS=1 python bench/bench_bootstrap.py [--resamples 1000] [--images 3600]``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def corpus(n_images: int) -> tuple[list[str], list[list[str]]]:
    """Predictions and 2 references per image: bench_cider's synthetic English, or random captions without data."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        import bench_cider

        return bench_cider.synthesise(bench_cider.load_pools(), "en", n_images, 2, 0)
    except (OSError, FileNotFoundError):
        rng = random.Random(0)
        vocab = [f"w{i}" for i in range(3000)]

        def cap() -> str:
            return " ".join(rng.choice(vocab) for _ in range(rng.randint(6, 14))) + "."

        return [cap() for _ in range(n_images)], [[cap(), cap()] for _ in range(n_images)]


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    """The fastest of `repeats` wall-clock timings of fn() (these machines are noisy)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--images", type=int, default=3600)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from mvleval.metrics import Cider
    from mvleval.metrics.cider import cider_from_tokens
    from mvleval.metrics.ptb import ptb_tokenize_lines

    preds, refs = corpus(args.images)
    plain = Cider(bootstrap_resamples=0)
    with_interval = Cider(bootstrap_resamples=args.resamples, seed=0)
    plain.score(["A warm-up, isn't it?"], [["warm up"]], "en")  # build the lexer once, outside the timings
    t_score = best_of(3, lambda: plain.score(preds, refs, "en"))
    hyp_tok = ptb_tokenize_lines(preds)
    flat = ptb_tokenize_lines([r for rs in refs for r in rs])
    grouped = [flat[2 * i : 2 * i + 2] for i in range(len(preds))]
    t_core = best_of(3, lambda: cider_from_tokens(hyp_tok, grouped))
    # the interval's whole cost: Cider.score with the interval minus without (building the resampling statistics,
    # which a plain score does not need, and the resamples)
    t_with = best_of(2, lambda: with_interval.score(preds, refs, "en"))
    t_boot = t_with - t_score
    result = with_interval.score(preds, refs, "en")
    print(f"CIDEr bootstrap: {args.images} images x 2 references, {args.resamples} resamples (seed 0)")
    print(f"  corpus CIDEr {result.value:.4f}, 95% interval {result.interval}")
    print(f"  one Cider.score (PTB + n-grams + CIDEr):  {t_score * 1000:8.1f} ms")
    print(f"  one CIDEr from tokens (n-grams + CIDEr):  {t_core * 1000:8.1f} ms")
    print(f"  Cider.score with the interval:            {t_with * 1000:8.1f} ms")
    print(
        f"  the interval ({args.resamples} resamples + their statistics): {t_boot * 1000:8.1f} ms "
        f"({t_boot / max(args.resamples, 1) * 1000:.2f} ms per resample)"
    )
    ratio = t_boot / t_score
    print(f"  interval / one Cider.score:               {ratio:8.1f}x (target <= 10x)")
    print(f"  interval / one CIDEr from tokens:         {t_boot / t_core:8.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
