"""Tests of the seeded bootstrap helpers and the paired bootstrap used by the CI regression gate.

Expected values are exact arithmetic on hand-made score lists (stated per test), not recorded outputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from mvleval.metrics import PairedBootstrap, paired_bootstrap
from mvleval.metrics.bootstrap import bootstrap_mean_interval, percentile_interval, resample_counts
from mvleval.util.errors import MvlevalError


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


# -- clustered resampling (issue 25 part 3) ---------------------------------------------------------------------------
def test_clustered_interval_covers_the_true_value_and_the_per_question_one_does_not() -> None:
    """Simulation with a known within-image correlation: 100 images, 6 questions each; image i's questions are right
    with probability p_i ~ Beta(1.2, 0.8) (mean 0.6, intra-image correlation 1 / (1.2 + 0.8 + 1) = 1/3). Over 400 seeded
    replications the clustered 95% interval must cover the true accuracy 0.6 in 93-97% of them; the per-question
    interval, which treats the 600 answers as independent, visibly does not (its design effect is 1 + 5/3)."""
    import numpy as np

    from mvleval.metrics.bootstrap import bootstrap_mean_interval, clustered

    n_images, per_image, reps = 100, 6, 400
    keys = [f"img{i}" for i in range(n_images) for _ in range(per_image)]
    covered = {"image": 0, "example": 0}
    for rep in range(reps):
        rng = np.random.default_rng(10_000 + rep)
        p = rng.beta(1.2, 0.8, size=n_images)
        y = (rng.random((n_images, per_image)) < p[:, None]).astype(float).ravel()
        with clustered(keys, "image"):
            low, high = bootstrap_mean_interval(y, 500, seed=rep)
        covered["image"] += low <= 0.6 <= high
        low, high = bootstrap_mean_interval(y, 500, seed=rep)
        covered["example"] += low <= 0.6 <= high
    clustered_rate, naive_rate = covered["image"] / reps, covered["example"] / reps
    assert 0.93 <= clustered_rate <= 0.97, clustered_rate
    assert naive_rate < 0.85, naive_rate


def test_one_example_per_cluster_draws_exactly_what_per_example_resampling_draws() -> None:
    import numpy as np

    from mvleval.metrics.bootstrap import bootstrap_mean_interval, bootstrap_signature, clustered, resample_counts

    x = np.random.default_rng(3).random(57)
    plain = bootstrap_mean_interval(x, 300, 7)
    with clustered([str(i) for i in range(57)], "image"):
        assert bootstrap_mean_interval(x, 300, 7) == plain
        assert bootstrap_signature(300, 7) == "boot=300,seed=7,unit=image"
    assert bootstrap_signature(300, 7) == "boot=300,seed=7,unit=example"
    # a cluster's examples are drawn together: two examples of one cluster always have the same multiplicity
    counts = next(resample_counts(4, 50, 0, clusters=["a", "b", "a", "c"]))
    assert (counts[:, 0] == counts[:, 2]).all() and counts.shape == (50, 4)
    assert not (counts[:, 0] == counts[:, 1]).all()


def test_clustered_paired_bootstrap_is_wider_when_differences_share_an_image() -> None:
    from mvleval.metrics.bootstrap import paired_bootstrap

    # the run lost 6 answers, all about two images: per question that looks significant, per image it is two events
    a = [1.0] * 60
    b = [0.0] * 6 + [1.0] * 54
    keys = ["img0"] * 3 + ["img1"] * 3 + [f"img{i}" for i in range(2, 56)]
    per_question = paired_bootstrap(a, b, n_resamples=1000, seed=0)
    per_image = paired_bootstrap(a, b, n_resamples=1000, seed=0, clusters=keys)
    assert per_question.delta == per_image.delta
    assert per_image.low < per_question.low


def test_image_clusters_join_examples_that_share_any_image() -> None:
    from pathlib import Path

    from mvleval.benchmarks.task import Example, image_clusters

    def ex(i: str, *images: str) -> Example:
        return Example(id=i, lang="en", prompt="", images=tuple(Path(p) for p in images), references=("x",), target="x")

    keys = image_clusters(
        [ex("1", "a.jpg"), ex("2", "b.jpg", "c.jpg"), ex("3", "a.jpg"), ex("4", "c.jpg", "d.jpg"), ex("5", "e.jpg")]
    )
    assert keys[0] == keys[2] and keys[1] == keys[3] and len(set(keys)) == 3
