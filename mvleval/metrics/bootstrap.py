"""Seeded bootstrap resampling: 95% intervals for corpus scores and the paired test used by the regression gate.

Every interval here resamples *clusters* with replacement and recomputes the corpus statistic on each resample
(for CIDEr that includes the document frequencies, see cider.py); the interval is the percentile interval
(2.5th and 97.5th percentiles for 95%). Resamples are drawn from ``numpy.random.default_rng(seed)`` so the same
inputs, resample count and seed always give the same interval.

A cluster is a group of examples that are not independent: xGQA asks ~30 questions about one image, MaRVL and XVNLI
reuse images. Resampling questions as if they were independent makes intervals too narrow (tests/
test_metrics_bootstrap.py measures it), so a drawn cluster brings all its examples along. The runner sets the
clusters of the corpus being scored with ``clustered(keys, unit)`` around the metric calls; every metric's interval
goes through ``resample_counts``, which reads them, and ``bootstrap_signature`` writes the same unit into the
signature (``boot=1000,seed=0,unit=image``), so the two cannot disagree. Outside ``clustered`` each example is its own
cluster (``unit=example``). With one example per cluster, in order, the draws are exactly the per-example ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mvleval.util.errors import MvlevalError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "PairedBootstrap",
    "bootstrap_mean_interval",
    "bootstrap_signature",
    "cluster_codes",
    "clustered",
    "paired_bootstrap",
    "percentile_interval",
    "resample_counts",
]

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
# Resample-count matrices are built in blocks of this many rows so memory stays flat for large corpora.
_BLOCK = 100


# (unit, cluster key of each example of the corpus being scored, or None: the unit's keys are set per corpus)
_CLUSTERS: ContextVar[tuple[str, tuple[str, ...] | None]] = ContextVar(
    "mvleval_bootstrap_clusters", default=("example", None)
)


@contextmanager
def clustered(keys: Sequence[str] | None, unit: str) -> Iterator[None]:
    """Resample clusters instead of examples inside this block: `keys[i]` is example i's cluster, `unit` names what a
    cluster is ('image', a benchmark's group field). `keys` None sets only the unit (for signatures computed before
    any corpus is scored)."""
    token = _CLUSTERS.set((unit, tuple(keys) if keys is not None else None))
    try:
        yield
    finally:
        _CLUSTERS.reset(token)


def cluster_unit() -> str:
    """The resampling unit in force ('example' outside `clustered`)."""
    return _CLUSTERS.get()[0]


def cluster_codes(keys: Sequence[str]) -> np.ndarray:
    """Cluster index of each example, clusters numbered in order of first appearance."""
    import numpy as np

    index: dict[str, int] = {}
    return np.asarray([index.setdefault(k, len(index)) for k in keys], dtype=np.int64)


def bootstrap_signature(n_resamples: int, seed: int) -> str:
    """The signature fragment that records how intervals were made, e.g. 'boot=1000,seed=0,unit=image'."""
    return f"boot={n_resamples},seed={seed},unit={cluster_unit()}"


def check_resamples(n_resamples: int, seed: int, error: type[MvlevalError] = MvlevalError) -> None:
    """Reject resample counts and seeds that cannot work (raised at metric construction time)."""
    if not isinstance(n_resamples, int) or isinstance(n_resamples, bool) or n_resamples < 0:
        raise error(
            f"bootstrap_resamples must be a non-negative integer, got {n_resamples!r}.",
            fix="pass e.g. bootstrap_resamples=1000 (0 disables intervals).",
        )
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise error(f"seed must be a non-negative integer, got {seed!r}.", fix="pass e.g. seed=0.")


def resample_counts(n: int, n_resamples: int, seed: int, clusters: Sequence[str] | None = None) -> Iterator[np.ndarray]:
    """Yield blocks of resamples as multiplicities: row r, column i = how often example i was drawn.

    Clusters are drawn with replacement (k draws of k clusters) and each example counts as often as its cluster was
    drawn. Drawing indices with replacement and counting them is equivalent to a multinomial draw, but the index form
    keeps the stream identical to the textbook "resample the list" bootstrap for a given seed.

    Args:
        n: number of examples.
        n_resamples: total number of resamples (rows) yielded across all blocks.
        seed: seed of numpy's default generator.
        clusters: each example's cluster key; default: those set by ``clustered``, else one cluster per example.

    Yields:
        int64 arrays of shape (block, n); with one example per cluster each row sums to n.
    """
    import numpy as np

    if clusters is None:
        clusters = _CLUSTERS.get()[1]
    if clusters is not None and len(clusters) != n:
        raise ValueError(f"resample_counts: {len(clusters)} cluster keys for {n} examples")
    codes = cluster_codes(clusters) if clusters is not None else None
    k = int(codes.max()) + 1 if codes is not None and codes.size else n
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_resamples:
        rows = min(_BLOCK, n_resamples - done)
        idx = rng.integers(0, k, size=(rows, k))
        offsets = (np.arange(rows, dtype=np.int64) * k)[:, None]
        counts = np.bincount((idx + offsets).ravel(), minlength=rows * k).reshape(rows, k)
        yield counts if codes is None or k == n and bool((codes == np.arange(n)).all()) else counts[:, codes]
        done += rows


def percentile_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates.

    Args:
        values: the replicates (NaN replicates are ignored).
        confidence: the interval's coverage, e.g. 0.95 for the 2.5th and 97.5th percentiles.

    Returns:
        (low, high); (nan, nan) when there is no finite replicate.
    """
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return (float(low), float(high))


def bootstrap_mean_interval(
    per_example: Sequence[float] | np.ndarray,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = 0.95,
) -> tuple[float, float] | None:
    """Bootstrap interval of a mean (accuracy-style metrics whose corpus score is the mean of per-example scores).

    Args:
        per_example: the per-example scores.
        n_resamples: number of resamples; 0 disables the interval.
        seed: seed of numpy's default generator.
        confidence: the interval's coverage.

    Returns:
        (low, high), or None for an empty corpus or when n_resamples is 0.
    """
    import numpy as np

    x = np.asarray(per_example, dtype=np.float64)
    if x.size == 0 or n_resamples == 0:
        return None
    # a resample's mean: its examples' sum over its size (clusters differ in size, so the size varies)
    reps = np.concatenate([(counts @ x) / counts.sum(axis=1) for counts in resample_counts(x.size, n_resamples, seed)])
    return percentile_interval(reps, confidence)


@dataclass(frozen=True)
class PairedBootstrap:
    """Result of a paired bootstrap comparing run b against run a on the same examples.

    Attributes:
        delta: mean(b) - mean(a) on the full sample.
        low: lower end of the `confidence` percentile interval of the resampled deltas.
        high: upper end of that interval.
        p_value: (1 + resamples whose delta is >= 0) / (1 + n_resamples). It is a one-sided p-value for the
            hypothesis "b is worse than a": a small value (e.g. < 0.05) means b scored lower than a in almost every
            resample. (It is near 1 when b is better.) The observed sample counts as one of the resamples, so the
            smallest value is 1 / (n_resamples + 1), never 0: 1000 resamples cannot show a p below 0.001.
        n_resamples: number of resamples.
        seed: seed of numpy's default generator.
        confidence: the interval's confidence level.
    """

    delta: float
    low: float
    high: float
    p_value: float
    n_resamples: int
    seed: int
    confidence: float = 0.95


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = 0.95,
    clusters: Sequence[str] | None = None,
) -> PairedBootstrap:
    """Paired bootstrap of the difference in mean per-example score between two runs on the same examples.

    Both runs are resampled with the same indices (the pairing), so example difficulty cancels out. With `clusters`
    (each example's cluster key: its image, a benchmark's group) whole clusters are drawn, as for every interval.

    Args:
        a: per-example scores of the baseline run.
        b: per-example scores of the candidate run, same examples in the same order.
        n_resamples: number of resamples (>= 1).
        seed: seed of numpy's default generator.
        confidence: level of the percentile interval, in (0, 1).

    Returns:
        PairedBootstrap with delta = mean(b) - mean(a), its interval, and p_value = (1 + resamples with delta >= 0)
        / (1 + n_resamples) (small p_value: evidence that b is worse than a; never below 1 / (n_resamples + 1)).

    Raises:
        MvlevalError: on a length mismatch (ValueError subclass semantics are kept: it is also a ValueError),
            empty inputs, non-finite scores or bad parameters.
    """
    import numpy as np

    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    if xa.ndim != 1 or xb.ndim != 1 or xa.shape != xb.shape:
        raise PairedBootstrapError(
            f"paired_bootstrap needs per-example scores of the same examples: got {xa.size} and {xb.size} values.",
            fix="score both runs on the same examples, in the same order.",
        )
    if xa.size == 0:
        raise PairedBootstrapError("paired_bootstrap got no examples.", fix="pass at least one per-example score.")
    if not (np.isfinite(xa).all() and np.isfinite(xb).all()):
        raise PairedBootstrapError(
            "paired_bootstrap got a missing or non-finite per-example score (None/NaN/inf).",
            fix="drop examples without a score from both runs before comparing.",
        )
    check_resamples(n_resamples, seed, PairedBootstrapError)
    if n_resamples < 1:
        raise PairedBootstrapError("paired_bootstrap needs at least one resample.", fix="pass n_resamples=1000.")
    if not 0.0 < confidence < 1.0:
        raise PairedBootstrapError(f"confidence must lie in (0, 1), got {confidence}.", fix="pass e.g. 0.95.")
    diff = xb - xa
    if clusters is not None and len(clusters) != diff.size:
        raise PairedBootstrapError(
            f"paired_bootstrap got {len(clusters)} cluster keys for {diff.size} examples.",
            fix="pass one cluster key per example.",
        )
    reps = np.concatenate(
        [(counts @ diff) / counts.sum(axis=1) for counts in resample_counts(diff.size, n_resamples, seed, clusters)]
    )
    low, high = percentile_interval(reps, confidence)
    return PairedBootstrap(
        delta=float(diff.mean()),
        low=low,
        high=high,
        p_value=float((np.count_nonzero(reps >= 0.0) + 1) / (n_resamples + 1)),
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
    )


class PairedBootstrapError(MvlevalError, ValueError):
    """Bad input to paired_bootstrap: an MvlevalError (user-fixable) that is also a ValueError."""
