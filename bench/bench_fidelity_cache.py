"""Language fidelity with the on-disk cache of lingua's rankings: the same verdicts as lingua's own detectors on the
real text of ../shared/data, and what the cache costs and saves.

    OMP_NUM_THREADS=1 python bench/bench_fidelity_cache.py [--data ../shared/data] [--limit N]

Texts: those of bench/bench_fidelity_gibberish.py (every caption, hypothesis and translated question of ../shared/data,
xGQA's gold answers as English, the hand-written rows of 20 more languages; distinct texts), each judged against
its own language with its task's language set. Three ways, verdict by verdict:

1. lingua alone: the decision rule (``judge``) on rankings of detectors built here with lingua's own builder (the
   restricted one and ``from_all_languages()``), no cache and none of mvleval's model-loading steps: what the metric
   computed before the cache;
2. ``LanguageFidelity.verdicts`` with an empty cache folder (rankings made by lingua and written to the file);
3. the same again as a new process would (the file only), with model loading made to fail: every ranking read back.

Prints the count of verdicts that differ (the goal is 0), how many texts the unrestricted detector decided (so
that a cache mixing up the two detectors would show), the file's size, and the time of each way.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_fidelity_gibberish import real_corpora

from mvleval.metrics import LanguageFidelity, ranking_cache
from mvleval.metrics import language_fidelity as lf
from mvleval.metrics.language_fidelity import Verdict, judge


def lingua_alone(corpora: list) -> tuple[list[list[str]], int]:
    from lingua import Language, LanguageDetectorBuilder

    full_detector = LanguageDetectorBuilder.from_all_languages().build()
    restricted: dict[tuple[str, ...], object] = {}
    out, by_full = [], 0
    for _, _, lang, langs, texts in corpora:
        names = LanguageFidelity(langs, bootstrap_resamples=0)._detector_names(lang)
        if names not in restricted:
            restricted[names] = LanguageDetectorBuilder.from_languages(*(getattr(Language, n) for n in names)).build()
        verdicts = []
        for text in texts:
            ranking = [(c.language.name, c.value) for c in restricted[names].compute_language_confidence_values(text)]
            short_or_not_credited = judge(text, lang, ranking) != Verdict.FAITHFUL
            full = (
                None
                if short_or_not_credited
                else [(c.language.name, c.value) for c in full_detector.compute_language_confidence_values(text)]
            )
            verdict = judge(text, lang, ranking, full)
            by_full += verdict == Verdict.WRONG and not short_or_not_credited
            verdicts.append(verdict)
        out.append(verdicts)
    return out, by_full


def metric_verdicts(corpora: list) -> list[list[str]]:
    return [
        LanguageFidelity(langs, bootstrap_resamples=0).verdicts(texts, lang) for _, _, lang, langs, texts in corpora
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, default=Path(os.environ.get("MVLEVAL_SHARED", REPO.parent / "shared")) / "data"
    )
    ap.add_argument("--limit", type=int, default=0, help="texts per corpus (0: all)")
    args = ap.parse_args()
    corpora = [
        (n, k, lg, langs, texts[: args.limit] if args.limit else texts)
        for n, k, lg, langs, texts in real_corpora(args.data)
    ]
    total = sum(len(c[4]) for c in corpora)
    print(f"{total} distinct texts in {len(corpora)} corpora ({args.data})")
    os.environ["MVLEVAL_CACHE_DIR"] = cache = tempfile.mkdtemp(prefix="bench-fidelity-cache-")

    t0 = time.perf_counter()
    expected, by_full = lingua_alone(corpora)
    t1 = time.perf_counter()
    made = metric_verdicts(corpora)
    t2 = time.perf_counter()
    ranking_cache._CACHES.clear()  # a new process's view: the file only

    def no_loading(*args: object) -> None:
        raise AssertionError(f"a ranking was made although it is on disk: {args}")

    lf._load_models = no_loading  # type: ignore[assignment]
    read = metric_verdicts(corpora)
    t3 = time.perf_counter()

    print(f"{'corpus':<28} {'texts':>6} {'made now differ':>16} {'read back differ':>17}")
    for (name, _, _, _, texts), e, m, r in zip(corpora, expected, made, read, strict=True):
        print(
            f"{name:<28} {len(texts):>6} {sum(a != b for a, b in zip(e, m)):>16} {sum(a != b for a, b in zip(e, r)):>17}"
        )
    flat = [v for vs in expected for v in vs]
    diff_made = sum(a != b for e, m in zip(expected, made) for a, b in zip(e, m))
    diff_read = sum(a != b for e, r in zip(expected, read) for a, b in zip(e, r))
    print(f"verdicts: {dict(Counter(flat))}; decided by the unrestricted detector: {by_full}")
    print(f"differ from lingua alone: {diff_made} made now, {diff_read} read back (of {total})")
    path = Path(cache) / ranking_cache.FILE_NAME
    import sqlite3

    rows = sqlite3.connect(path).execute("SELECT count(*) FROM rankings").fetchone()[0]
    print(
        f"cache: {rows} rankings, {path.stat().st_size / 1e6:.1f} MB ({path.stat().st_size / max(rows, 1):.0f} B each)"
    )
    print(
        f"time: lingua alone {t1 - t0:.1f} s (models loaded here), metric with an empty cache {t2 - t1:.1f} s "
        f"(models already loaded), read back {t3 - t2:.1f} s"
    )
    return 0 if diff_made == diff_read == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
