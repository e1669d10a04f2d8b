"""Tests of the seeded bootstrap helpers and the paired bootstrap used by the CI regression gate.

Expected values are exact arithmetic on hand-made score lists (stated per test), not recorded outputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from mvleval.errors import MvlevalError
from mvleval.metrics import PairedBootstrap, paired_bootstrap
from mvleval.metrics.bootstrap import bootstrap_mean_interval, percentile_interval, resample_counts


def test_resample_counts_are_multinomial_rows() -> None:
    blocks = list(resample_counts(7, 250, seed=3))
    counts = np.concatenate(blocks)
    assert counts.shape == (250, 7)
    assert (counts.sum(axis=1) == 7).all()
    again = np.concatenate(list(resample_counts(7, 250, seed=3)))
    assert (counts == again).all()
    assert not (counts == np.concatenate(list(resample_counts(7, 250, seed=4)))).all()


def test_percentile_interval() -> None:
    values = np.arange(1001, dtype=float)  # 0..1000: the 2.5th and 97.5th percentiles are 25 and 975
    assert percentile_interval(values) == pytest.approx((25.0, 975.0))
    assert percentile_interval(np.array([np.nan, 1.0, 1.0])) == (1.0, 1.0)


def test_mean_interval() -> None:
    x = [0.0, 1.0] * 100  # mean 0.5; the interval must contain it and be symmetric-ish
    low, high = bootstrap_mean_interval(x, 1000, seed=0) or (None, None)
    assert low is not None and high is not None
    assert 0.4 < low < 0.5 < high < 0.6
    assert bootstrap_mean_interval([], 1000, 0) is None
    assert bootstrap_mean_interval(x, 0, 0) is None
    assert bootstrap_mean_interval([1.0] * 10, 100, 0) == (1.0, 1.0)  # constant scores: a point interval


def test_paired_bootstrap_delta_and_p_value() -> None:
    a = [0.0, 1.0, 1.0, 0.0] * 50
    better = [1.0, 1.0, 1.0, 0.0] * 50  # mean 0.75 vs 0.5: delta exactly +0.25, never negative in a resample
    result = paired_bootstrap(a, better)
    assert isinstance(result, PairedBootstrap)
    assert result.delta == pytest.approx(0.25)
    assert result.low > 0 and result.high < 0.5
    assert result.p_value == 1.0
    worse = paired_bootstrap(better, a)  # b worse than a in every resample: the floor 1/(B+1), never 0
    assert worse.delta == pytest.approx(-0.25) and worse.p_value == 1 / 1001
    same = paired_bootstrap(a, a)  # identical runs: delta 0 in every resample, which counts as "not worse"
    assert same.delta == 0.0 and (same.low, same.high) == (0.0, 0.0) and same.p_value == 1.0
    assert (result.n_resamples, result.seed, result.confidence) == (1000, 0, 0.95)


def test_paired_bootstrap_is_seeded() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(300).tolist()
    b = (np.array(a) + rng.normal(0, 0.3, 300)).tolist()
    assert paired_bootstrap(a, b, seed=1) == paired_bootstrap(a, b, seed=1)
    assert paired_bootstrap(a, b, seed=1) != paired_bootstrap(a, b, seed=2)
    narrow = paired_bootstrap(a, b, confidence=0.5)
    wide = paired_bootstrap(a, b, confidence=0.99)
    assert wide.low < narrow.low < narrow.high < wide.high


@pytest.mark.parametrize(
    ("a", "b", "kwargs"),
    [
        ([1.0, 0.0], [1.0], {}),  # length mismatch
        ([], [], {}),
        ([1.0, float("nan")], [1.0, 0.0], {}),
        ([1.0], [1.0], {"n_resamples": 0}),
        ([1.0], [1.0], {"confidence": 1.5}),
        ([1.0], [1.0], {"seed": -1}),
    ],
)
def test_paired_bootstrap_rejects_bad_input(a: list[float], b: list[float], kwargs: dict) -> None:
    with pytest.raises(ValueError):
        paired_bootstrap(a, b, **kwargs)
    with pytest.raises(MvlevalError):
        paired_bootstrap(a, b, **kwargs)
