"""Seeded bootstrap resampling: 95% intervals for corpus scores and the paired test used by the regression gate.

Every interval here resamples *examples* with replacement and recomputes the corpus statistic on each resample
(for CIDEr that includes the document frequencies, see cider.py); the interval is the percentile interval
(2.5th and 97.5th percentiles for 95%). Resamples are drawn from ``numpy.random.default_rng(seed)`` so the same
inputs, resample count and seed always give the same interval.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mvleval.errors import MvlevalError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "PairedBootstrap",
    "bootstrap_mean_interval",
    "bootstrap_signature",
    "paired_bootstrap",
    "percentile_interval",
    "resample_counts",
]

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
# Resample-count matrices are built in blocks of this many rows so memory stays flat for large corpora.
_BLOCK = 100


def bootstrap_signature(n_resamples: int, seed: int) -> str:
    """The signature fragment that records how intervals were made, e.g. 'boot=1000,seed=0'."""
    return f"boot={n_resamples},seed={seed}"


def check_resamples(n_resamples: int, seed: int, error: type[MvlevalError] = MvlevalError) -> None:
    """Reject resample counts and seeds that cannot work (raised at metric construction time)."""
    if not isinstance(n_resamples, int) or isinstance(n_resamples, bool) or n_resamples < 0:
        raise error(
            f"bootstrap_resamples must be a non-negative integer, got {n_resamples!r}.",
            fix="pass e.g. bootstrap_resamples=1000 (0 disables intervals).",
        )
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise error(f"seed must be a non-negative integer, got {seed!r}.", fix="pass e.g. seed=0.")


def resample_counts(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Yield blocks of resamples as multiplicities: row r, column i = how often example i was drawn.

    Drawing indices with replacement and counting them is equivalent to a multinomial draw, but the index form
    keeps the stream identical to the textbook "resample the list" bootstrap for a given seed.

    Args:
        n: number of examples.
        n_resamples: total number of resamples (rows) yielded across all blocks.
        seed: seed of numpy's default generator.

    Yields:
        int64 arrays of shape (block, n) whose rows each sum to n.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    done = 0
    while done < n_resamples:
        rows = min(_BLOCK, n_resamples - done)
        idx = rng.integers(0, n, size=(rows, n))
        offsets = (np.arange(rows, dtype=np.int64) * n)[:, None]
        counts = np.bincount((idx + offsets).ravel(), minlength=rows * n).reshape(rows, n)
        yield counts
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
    reps = np.concatenate([counts @ x for counts in resample_counts(x.size, n_resamples, seed)]) / x.size
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
) -> PairedBootstrap:
    """Paired bootstrap of the difference in mean per-example score between two runs on the same examples.

    Both runs are resampled with the same indices (the pairing), so example difficulty cancels out.

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
    reps = np.concatenate([counts @ diff for counts in resample_counts(diff.size, n_resamples, seed)]) / diff.size
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
