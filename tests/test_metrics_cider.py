"""Tests of CIDEr-D: hand-computed values, parity with pycocoevalcap (its Cider; its Java PTBTokenizer on real
captions), the bootstrap's resampled document frequencies, and input errors.

Reference values: the hand-computed row is derived in its comment; the other table rows were computed once with
pycocoevalcap 1.2's ``Cider().compute_score`` and are also re-checked live when pycocoevalcap is installed.
"""

from __future__ import annotations

import math
import random
import unicodedata
from pathlib import Path

import pytest

from mvleval.metrics import Cider, MetricResult
from mvleval.metrics.cider import cider_from_tokens, cider_interval, cider_stats
from mvleval.util.errors import MvlevalError

from .test_metrics_ptb import java_tokenize, real_corpora, require_java

# (hypotheses, references per image, corpus CIDEr)
TABLE = [
    # Hand-computed: N = 2 images, so every n-gram of image 0 has idf = ln 2 (df = 1) and "c" (in no reference)
    # has idf = ln 2 too. Image 0: orders 1 and 2 are identical vectors (cosine 1), orders 3-4 empty (0), equal
    # lengths (penalty 1): 10 * (1 + 1 + 0 + 0) / 4 = 5. Image 1: "c" vs "d" share nothing: 0. Mean: 2.5.
    (["a b", "c"], [["a b"], ["d"]], 2.5),
    # A single image: idf = log(1) - log(1) = 0 for every n-gram, so all vectors are zero: 0.
    (["a dog runs"], [["a dog runs"]], 0.0),
    # pycocoevalcap 1.2: empty hypothesis, a one-word hypothesis against three references (one empty), a long one
    (["", "a", "a b c d e f g"], [["a b"], ["a", "a a a", ""], ["x y z"]], 0.540544296918546),
]


@pytest.mark.parametrize(("hyps", "refs", "expected"), TABLE)
def test_table(hyps: list[str], refs: list[list[str]], expected: float) -> None:
    value, per_image = cider_from_tokens(hyps, refs)
    assert value == pytest.approx(expected, abs=1e-12)
    assert len(per_image) == len(hyps)
    assert value == pytest.approx(sum(per_image) / len(per_image), abs=1e-12)


def _pycoco_cider(hyps: list[str], refs: list[list[str]]) -> tuple[float, list[float]]:
    cider = pytest.importorskip("pycocoevalcap.cider.cider")
    score, scores = cider.Cider().compute_score(
        {i: list(r) for i, r in enumerate(refs)}, {i: [h] for i, h in enumerate(hyps)}
    )
    return float(score), [float(x) for x in scores]


@pytest.mark.parametrize(("hyps", "refs", "expected"), TABLE)
def test_table_against_pycocoevalcap(hyps: list[str], refs: list[list[str]], expected: float) -> None:
    value, per_image = _pycoco_cider(hyps, refs)
    ours, ours_per = cider_from_tokens(hyps, refs)
    assert ours == pytest.approx(value, abs=1e-12)
    assert ours_per == pytest.approx(per_image, abs=1e-12)


def test_random_corpora_against_pycocoevalcap() -> None:
    """Random token corpora with a small vocabulary (many shared n-grams, repeated n-grams, varying lengths and
    reference counts) agree with pycocoevalcap's Cider per image, on the plain path and the bootstrap statistics.
    Many small corpora: n-grams that occur once in the corpus are skipped before sorting (by their once-only
    prefix or suffix), which tiny corpora exercise in every combination (an earlier version lost the 4-grams of
    skipped 3-grams; 5 corpora did not catch it, 200 did)."""
    rng = random.Random(3)
    vocab = "a b c d e f g h".split()
    for _ in range(200):
        n = rng.randint(1, 12)
        hyps = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 9))) for _ in range(n)]
        refs = [
            [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 9))) for _ in range(rng.randint(1, 5))]
            for _ in range(n)
        ]
        value, per_image = _pycoco_cider(hyps, refs)
        ours, ours_per = cider_from_tokens(hyps, refs)
        assert ours == pytest.approx(value, abs=1e-9)
        assert ours_per == pytest.approx(per_image, abs=1e-9)
        assert cider_stats(hyps, refs).scores()[0] == pytest.approx(value, abs=1e-9)


@pytest.mark.parametrize("odd", ["", "\x00"])
def test_sparse_corpora_against_pycocoevalcap(odd: str) -> None:
    """A large vocabulary makes most 3- and 4-grams occur once in the corpus (cider_stats splits those off early)
    and leaves hypothesis n-grams absent from every reference; irregular whitespace and, in one run, a "\x00" word
    (the separator of cider_stats' joined split, which then splits caption by caption) must change nothing.
    Reference values: pycocoevalcap's Cider on the same strings, also on resampled corpora."""
    rng = random.Random(11)
    vocab = [f"w{i}" for i in range(60)] + ([odd] if odd else [])

    def cap() -> str:
        return rng.choice(["", " ", "\t"]).join(
            rng.choice(vocab) + rng.choice([" ", "  ", "\t "]) for _ in range(rng.randint(0, 12))
        )

    n = 40
    hyps = [cap() for _ in range(n)]
    refs = [[cap() for _ in range(rng.randint(1, 4))] for _ in range(n)]
    value, per_image = _pycoco_cider(hyps, refs)
    ours, ours_per = cider_from_tokens(hyps, refs)
    assert ours == pytest.approx(value, abs=1e-9)
    assert ours_per == pytest.approx(per_image, abs=1e-9)
    stats = cider_stats(hyps, refs)
    for seed in range(2):
        r = random.Random(seed)
        idx = [r.randrange(n) for _ in range(n)]
        expected, _ = _pycoco_cider([hyps[i] for i in idx], [refs[i] for i in idx])
        assert stats.scores([idx.count(i) for i in range(n)])[0] == pytest.approx(expected, abs=1e-12)


def test_bootstrap_weights_equal_resampled_corpus() -> None:
    """Scoring with image multiplicities equals pycocoevalcap's Cider on the explicitly resampled corpus (duplicated
    images counted again in the document frequencies), so bootstrap replicates are exact."""
    rng = random.Random(5)
    vocab = "a b c d e f".split()
    n = 30
    hyps = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 8))) for _ in range(n)]
    refs = [
        [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 8))) for _ in range(rng.randint(1, 3))]
        for _ in range(n)
    ]
    stats = cider_stats(hyps, refs)
    for seed in range(3):
        r = random.Random(seed)
        idx = [r.randrange(n) for _ in range(n)]
        weights = [idx.count(i) for i in range(n)]
        expected, _ = _pycoco_cider([hyps[i] for i in idx], [refs[i] for i in idx])
        assert stats.scores(weights)[0] == pytest.approx(expected, abs=1e-12)


def test_block_resamples_equal_resampled_corpora() -> None:
    """CiderStats.resample_scores (the bootstrap's block path, sparse products over many resamples at once) gives,
    row by row, pycocoevalcap's Cider on the explicitly resampled corpus, and the value of scoring that row alone."""
    from mvleval.metrics.bootstrap import resample_counts

    rng = random.Random(8)
    vocab = [f"w{i}" for i in range(12)]
    n = 25
    hyps = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 10))) for _ in range(n)]
    refs = [
        [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 10))) for _ in range(rng.randint(1, 3))]
        for _ in range(n)
    ]
    stats = cider_stats(hyps, refs)
    counts = next(resample_counts(n, 6, seed=4))
    block = stats.resample_scores(counts)
    assert block.shape == (6,)
    for row, got in zip(counts, block):
        idx = [i for i in range(n) for _ in range(int(row[i]))]
        expected, _ = _pycoco_cider([hyps[i] for i in idx], [refs[i] for i in idx])
        assert got == pytest.approx(expected, abs=1e-12)
        assert got == pytest.approx(stats.scores(row)[0], abs=1e-12)


def test_interval_is_seeded_and_brackets_the_value() -> None:
    rng = random.Random(1)
    vocab = "a b c d e f g h".split()
    hyps = [" ".join(rng.choice(vocab) for _ in range(6)) for _ in range(200)]
    refs = [[" ".join(rng.choice(vocab) for _ in range(6)) for _ in range(2)] for _ in range(200)]
    stats = cider_stats(hyps, refs)
    value, _ = stats.scores()
    a = cider_interval(stats, 200, seed=0)
    b = cider_interval(stats, 200, seed=0)
    c = cider_interval(stats, 200, seed=1)
    assert a == b
    assert a != c
    assert a is not None and a[0] < value < a[1]
    assert cider_interval(stats, 0, seed=0) is None


def test_metric_result_fields() -> None:
    metric = Cider(bootstrap_resamples=50)
    result = metric.score(
        ["A dog runs on the grass.", "Two cats."], [["A dog is running.", "A dog runs."], ["Two cats sleep."]], "en"
    )
    assert isinstance(result, MetricResult)
    assert result.value is not None and len(result.per_example or []) == 2
    assert result.interval is not None and result.interval[0] <= result.interval[1]
    assert result.signature.startswith("cider|n=4|sigma=6|tok=ptb-py-2|seg=none|nfc|boot=50,seed=0,unit=example|")
    assert Cider.name == "cider"
    assert "ja:sudachipy-" in metric.signature() and "th:pythainlp-" in metric.signature()
    ja = metric.score(["犬が走る"], [["犬が走っている"]], "ja")
    assert "seg=ja:sudachipy-" in ja.signature and "-A-" in ja.signature
    assert "seg=zh:char" in metric.score(["狗"], [["狗"]], "zh").signature


def test_empty_corpus_gives_none_with_note() -> None:
    result = Cider().score([], [], "en")
    assert result.value is None and result.note and result.per_example == []


@pytest.mark.parametrize(
    ("preds", "refs"),
    [
        (["a"], []),  # length mismatch
        (["a"], [[]]),  # no reference
        (["a"], ["a dog"]),  # a bare string instead of a list
        ([None], [["a"]]),  # not a string
        (["a"], [[3]]),
    ],
)
def test_bad_input_raises(preds: list, refs: list) -> None:
    with pytest.raises(MvlevalError):
        Cider(bootstrap_resamples=0).score(preds, refs, "en")


def test_bad_parameters_raise() -> None:
    with pytest.raises(MvlevalError):
        Cider(bootstrap_resamples=-1)
    with pytest.raises(MvlevalError):
        Cider(sigma=0)


# ---------------------------------------------------------------------------------------------------------------
# End-to-end parity with pycocoevalcap's Java tokenizer + Cider on the real captions


def _cases(shared_data: Path) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(name, lang, predictions, references) built from the real texts of every available language:
    (a) one reference as prediction, the others (or, with one caption per image, the neighbour's) as references;
    (b) predictions shuffled across images."""
    corpora = real_corpora(shared_data)
    cases = []
    f30k = corpora["flickr30k"][1]
    groups = [f30k[i : i + 5] for i in range(0, len(f30k), 5)]
    cases.append(("flickr30k-loo", "en", [g[0] for g in groups], [g[1:] for g in groups]))
    rng = random.Random(0)
    shuffled = [g[0] for g in groups]
    rng.shuffle(shuffled)
    cases.append(("flickr30k-shuffled", "en", shuffled, groups))
    for name, (lang, texts) in corpora.items():
        if name == "flickr30k":
            continue
        texts = texts[: 2 * (len(texts) // 2)]
        preds, refs = texts[0::2], [[t] for t in texts[1::2]]
        cases.append((f"{name}-pairs", lang, preds, refs))
        shuffled = list(preds)
        rng.shuffle(shuffled)
        cases.append((f"{name}-shuffled", lang, shuffled, refs))
    return cases


def test_end_to_end_parity_with_java_pipeline(shared_data: Path) -> None:
    """mvleval's Cider.score on raw captions == segmentation + NFC + Java PTBTokenizer + pycocoevalcap Cider, within
    1e-6, for every real corpus (de/en/ja/zh xFlickrCO, Flickr30k 5 refs, XVNLI en/ar, MaRVL id/zh); Java runs once."""
    require_java()
    pytest.importorskip("pycocoevalcap.cider.cider")
    from mvleval.metrics.segment import normalize_captions

    cases = _cases(shared_data)
    # one JVM for everything: concatenate every case's (normalised) references, then predictions
    lines: list[str] = []
    spans = []
    for _, lang, preds, refs in cases:
        flat = normalize_captions([r for rs in refs for r in rs], lang)
        hyp = normalize_captions(preds, lang)
        spans.append((len(lines), len(flat), len(hyp)))
        lines += flat + hyp
    java = java_tokenize(lines)
    metric = Cider(bootstrap_resamples=0)
    for (name, lang, preds, refs), (start, n_ref, n_hyp) in zip(cases, spans):
        ref_tok = java[start : start + n_ref]
        hyp_tok = java[start + n_ref : start + n_ref + n_hyp]
        grouped, i = [], 0
        for rs in refs:
            grouped.append(ref_tok[i : i + len(rs)])
            i += len(rs)
        expected, _ = _pycoco_cider(hyp_tok, grouped)
        got = metric.score(preds, refs, lang).value
        assert got is not None and math.isfinite(got)
        assert abs(got - expected) <= 1e-6, (name, got, expected)


def test_nfc_is_applied_before_tokenising() -> None:
    decomposed = unicodedata.normalize("NFD", "Ein Hund läuft über die Straße.")
    composed = unicodedata.normalize("NFC", decomposed)
    m = Cider(bootstrap_resamples=0)
    refs = [[composed], ["Zwei Katzen schlafen."]]
    assert m.score([decomposed, "x"], refs, "de").per_example == m.score([composed, "x"], refs, "de").per_example
