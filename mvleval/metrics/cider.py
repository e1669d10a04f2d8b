"""CIDEr-D exactly as pycocoevalcap computes it (vectorised with numpy), with mBLIP's caption preprocessing.

Pipeline per language (mBLIP's): segment zh/ja/th (segment.py) -> NFC -> PTB tokenizer (ptb.py, a Python copy of
pycocoevalcap's Java step) -> CIDEr-D as in pycocoevalcap's ``cider_scorer.py``:

* n-grams of order 1..4 counted per caption (after ``str.split()``);
* document frequency df(g) = number of images whose references contain g (hypotheses do not count);
  idf(g) = log(number of images) - log(max(1, df(g))), so an n-gram absent from all references gets log(N);
* per order n, the tf-idf vectors of hypothesis and reference are compared by a clipped cosine:
  sum_g min(h_g, r_g) * r_g / (|h| |r|) (the division is skipped when a norm is 0);
* times a Gaussian length penalty exp(-(l_h - l_r)^2 / (2 sigma^2)), sigma = 6, where pycocoevalcap's "length"
  is the number of bigrams, i.e. max(words - 1, 0) (a quirk we keep);
* averaged over the 4 orders and over the references of the image, times 10; the corpus score is the mean.

Every quantity depends on the document frequencies only through u(g) = idf(g)^2, and linearly: the clipped dot
product is sum_g min(tf_h, tf_r) tf_r u(g) and the squared norms are sum_g tf^2 u(g). So the per-example n-gram
statistics are computed once and a bootstrap resample (which changes df through the multiplicity of each image)
costs a few ``numpy.bincount`` calls, not a new CIDEr computation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, ClassVar

from mvleval.errors import MvlevalError
from mvleval.metrics.base import Metric, MetricResult
from mvleval.metrics.bootstrap import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    bootstrap_signature,
    check_resamples,
    percentile_interval,
    resample_counts,
)

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Cider", "CiderStats", "cider_stats", "cider_from_tokens"]

#: Bump when anything that changes CIDEr values changes (it is in the signature).
CIDER_IMPL_VERSION = "mvleval-1"


@dataclass(frozen=True)
class CiderStats:
    """Per-example n-gram statistics of a tokenised corpus, enough to score it under any image multiplicities.

    Row indices: hypothesis rows are image*n + (order-1); reference rows are ref*n + (order-1), where `ref` numbers
    all references of all images in order. `g` indexes the distinct n-grams of the corpus.

    Most n-grams occur in the references of a single image; under resampling their document frequency is just the
    multiplicity of that image, so their contributions are pre-summed per row ("own" arrays) and scaled by one
    factor per image. Only n-grams shared by several images go through the per-n-gram path.
    """

    n_images: int
    n_refs: int
    n: int
    sigma: float
    n_grams: int
    n_shared: int  # n-grams in the references of several images; the *_g arrays below index these (0..n_shared-1)
    ref_image: np.ndarray  # image of each reference
    refs_per_image: np.ndarray
    penalty: np.ndarray  # length penalty of each (hypothesis, reference) pair
    presence_image: np.ndarray  # (image, g) pairs for n-grams in the references of several images
    presence_g: np.ndarray
    # Entries over shared n-grams, stacked: rows [0, R*n) are clipped dot products of reference rows (coefficient
    # min(tf_h, tf_r) * tf_r), rows [R*n, (R+N)*n) squared hypothesis norms (tf_h^2), then squared reference norms
    # (tf_r^2); each row is summed as coef * u[g].
    shared_row: np.ndarray
    shared_g: np.ndarray
    shared_coef: np.ndarray
    match_own: np.ndarray  # per reference row: sum of match_coef over n-grams found only in this image's references
    hyp_other_row: np.ndarray  # hypothesis n-grams found in the references of one other image
    hyp_other_image: np.ndarray
    hyp_other_coef: np.ndarray
    hyp_own: np.ndarray  # per hypothesis row: sum of tf_h^2 over n-grams found only in this image's references
    hyp_const: np.ndarray  # per hypothesis row: sum of tf_h^2 over n-grams in no reference (weight log(N)^2)
    ref_own: np.ndarray  # per reference row: sum of tf_r^2 over n-grams found only in this image's references

    def scores(self, weights: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Corpus CIDEr and per-image scores when image i appears weights[i] times (default: once each).

        With integer multiplicities summing to n_images this equals pycocoevalcap's CIDEr on the resampled corpus
        (duplicated images count again in the document frequencies, as they would there).
        """
        import numpy as np

        n_img, n = self.n_images, self.n
        if n_img == 0:
            return float("nan"), np.zeros(0)
        w = np.ones(n_img) if weights is None else np.asarray(weights, dtype=np.float64)
        log_n = math.log(float(w.sum()))
        # u = idf^2 for n-grams of one image: df is that image's multiplicity
        own = (log_n - np.log(np.maximum(w, 1.0))) ** 2
        df = _sum_by(self.presence_g, w[self.presence_image], self.n_shared)
        u = (log_n - np.log(np.maximum(df, 1.0))) ** 2
        own_ref = np.repeat(own[self.ref_image], n)
        own_hyp = np.repeat(own, n)
        # one gather + one bincount for the three sparse products (clipped dot products, both squared norms)
        sums = _sum_by(self.shared_row, self.shared_coef * u[self.shared_g], (2 * self.n_refs + n_img) * n)
        num = sums[: self.n_refs * n] + self.match_own * own_ref
        hyp2 = sums[self.n_refs * n: (self.n_refs + n_img) * n] + self.hyp_own * own_hyp
        hyp2 += self.hyp_const * (log_n * log_n)
        hyp2 += _sum_by(self.hyp_other_row, self.hyp_other_coef * own[self.hyp_other_image], n_img * n)
        ref2 = sums[(self.n_refs + n_img) * n:] + self.ref_own * own_ref
        # pycocoevalcap divides by norm_h * norm_r only when both are non-zero; otherwise the (zero) sum stays
        den = np.sqrt(hyp2.reshape(n_img, n))[self.ref_image] * np.sqrt(ref2.reshape(self.n_refs, n))
        num = num.reshape(self.n_refs, n)
        val = np.divide(num, den, out=num.copy(), where=den != 0)
        per_ref = val.sum(axis=1) * self.penalty
        per_image = np.bincount(self.ref_image, weights=per_ref, minlength=n_img) * (10.0 / n) / self.refs_per_image
        return float(np.dot(w, per_image) / w.sum()), per_image


def _sum_by(rows: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """Sum `weights` per row index into a float64 array of length `size` (a sparse matrix-vector product)."""
    import numpy as np

    return np.bincount(rows, weights=weights, minlength=size).astype(np.float64, copy=False)


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    """np.unique(x) by sorting (numpy's hash-based unique is several times slower on large int64 keys)."""
    import numpy as np

    if x.size == 0:
        return x
    x = np.sort(x)
    keep = np.empty(x.size, dtype=bool)
    keep[0] = True
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


def _ngram_codes(ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray, cap_of_token: np.ndarray, k: int,
                 vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """(caption, exact integer code) of every k-gram; codes are unique per distinct k-gram."""
    import numpy as np

    pos = np.arange(ids.size) - starts[cap_of_token]
    valid = np.flatnonzero(pos + k <= lengths[cap_of_token])
    code = ids[valid].copy()
    base = vocab
    for off in range(1, k):
        if base > (2**62) // max(vocab, 1):
            # the code would overflow int64: renumber the (k-1)-gram prefixes densely first
            _, code = np.unique(code, return_inverse=True)
            base = int(code.max()) + 1 if code.size else 1
        code = code * vocab + ids[valid + off]
        base = base * vocab
    return cap_of_token[valid], code


def cider_stats(hyp_tokens: Sequence[str], ref_tokens: Sequence[Sequence[str]], n: int = 4,
                sigma: float = 6.0) -> CiderStats:
    """Build CiderStats from PTB-tokenised strings (one hypothesis and >= 1 references per image).

    Args:
        hyp_tokens: tokenised hypothesis per image (tokens separated by whitespace).
        ref_tokens: tokenised references per image.
        n: maximum n-gram order (4 for CIDEr-D).
        sigma: standard deviation of the length penalty (6 for CIDEr-D).
    """
    import numpy as np

    n_img = len(hyp_tokens)
    refs_per_image = np.fromiter((len(r) for r in ref_tokens), dtype=np.int64, count=n_img)
    captions = list(chain(hyp_tokens, chain.from_iterable(ref_tokens)))
    n_refs = len(captions) - n_img
    split = list(map(str.split, captions))  # str.split() as pycocoevalcap's precook
    lengths = np.fromiter(map(len, split), dtype=np.int64, count=len(split))
    words = list(chain.from_iterable(split))
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    ids = np.fromiter(map(vocab.__getitem__, words), dtype=np.int64, count=len(words))
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])) if len(split) else np.zeros(0, dtype=np.int64)
    cap_of_token = np.repeat(np.arange(len(split), dtype=np.int64), lengths)
    ref_image = np.repeat(np.arange(n_img, dtype=np.int64), refs_per_image)
    image_of_cap = np.concatenate((np.arange(n_img, dtype=np.int64), ref_image))

    caps, grams, orders = [], [], []
    n_grams = 0
    for k in range(1, n + 1):
        cap_k, code_k = _ngram_codes(ids, starts, lengths, cap_of_token, k, max(len(vocab), 1))
        uniq, local = np.unique(code_k, return_inverse=True)
        caps.append(cap_k)
        grams.append(local + n_grams)
        orders.append(np.full(cap_k.size, k - 1, dtype=np.int64))
        n_grams += uniq.size
    cap = np.concatenate(caps) if caps else np.zeros(0, dtype=np.int64)
    g = np.concatenate(grams) if grams else np.zeros(0, dtype=np.int64)
    order_of_g = np.zeros(n_grams, dtype=np.int64)
    order_of_g[g] = np.concatenate(orders) if orders else np.zeros(0, dtype=np.int64)
    # term frequencies per (caption, n-gram)
    keys, tf = np.unique(cap * n_grams + g, return_counts=True)
    e_cap, e_g = keys // max(n_grams, 1), keys % max(n_grams, 1)
    tf = tf.astype(np.float64)
    is_hyp = e_cap < n_img
    h_img, h_g, h_tf = e_cap[is_hyp], e_g[is_hyp], tf[is_hyp]
    r_ref, r_g, r_tf = e_cap[~is_hyp] - n_img, e_g[~is_hyp], tf[~is_hyp]
    r_img = ref_image[r_ref]
    # document frequency support: which images' references contain each n-gram
    pres = _sorted_unique(r_img * n_grams + r_g)
    presence_image, presence_g = pres // max(n_grams, 1), pres % max(n_grams, 1)
    df0 = np.bincount(presence_g, minlength=n_grams)
    single_owner = np.full(n_grams, -1, dtype=np.int64)
    single = df0[presence_g] == 1
    single_owner[presence_g[single]] = presence_image[single]
    multi = df0[presence_g] > 1
    # compact numbering of the n-grams shared by several images: only they need per-n-gram weights per resample
    shared_id = np.full(n_grams, -1, dtype=np.int64)
    shared_g = np.flatnonzero(df0 > 1)
    shared_id[shared_g] = np.arange(shared_g.size)
    # hypothesis/reference matches on the same image (hypothesis keys are sorted: unique() sorted them)
    h_key = h_img * n_grams + h_g
    r_key = r_img * n_grams + r_g
    pos = np.searchsorted(h_key, r_key)
    pos_c = np.minimum(pos, max(h_key.size - 1, 0))
    hit = (pos < h_key.size) & (h_key[pos_c] == r_key) if h_key.size else np.zeros(r_key.size, dtype=bool)
    m_tf_h = h_tf[pos_c[hit]]
    m_tf_r = r_tf[hit]
    m_g = r_g[hit]
    m_row = r_ref[hit] * n + order_of_g[m_g]
    m_coef = np.minimum(m_tf_h, m_tf_r) * m_tf_r
    m_own = single_owner[m_g] >= 0  # a reference n-gram of one image belongs to this reference's image
    r_row = r_ref * n + order_of_g[r_g]
    r_coef = r_tf**2
    r_own = single_owner[r_g] >= 0
    h_row = h_img * n + order_of_g[h_g]
    h_coef = h_tf**2
    h_owner = single_owner[h_g]
    in_refs = df0[h_g] > 0
    h_own = h_owner == h_img
    h_other = (h_owner >= 0) & ~h_own
    h_general = in_refs & (h_owner < 0)
    # pycocoevalcap's "length" is the bigram count: max(words - 1, 0)
    blen = np.maximum(lengths - 1, 0).astype(np.float64)
    delta = blen[:n_img][ref_image] - blen[n_img:]
    penalty = np.exp(-(delta**2) / (2.0 * sigma**2))
    return CiderStats(
        n_images=n_img,
        n_refs=n_refs,
        n=n,
        sigma=sigma,
        n_grams=n_grams,
        ref_image=ref_image,
        refs_per_image=refs_per_image.astype(np.float64),
        penalty=penalty,
        n_shared=int(shared_g.size),
        presence_image=presence_image[multi],
        presence_g=shared_id[presence_g[multi]],
        shared_row=np.concatenate((m_row[~m_own], h_row[h_general] + n_refs * n, r_row[~r_own] + (n_refs + n_img) * n)),
        shared_g=shared_id[np.concatenate((m_g[~m_own], h_g[h_general], r_g[~r_own]))],
        shared_coef=np.concatenate((m_coef[~m_own], h_coef[h_general], r_coef[~r_own])),
        match_own=_sum_by(m_row[m_own], m_coef[m_own], n_refs * n),
        hyp_other_row=h_row[h_other],
        hyp_other_image=h_owner[h_other],
        hyp_other_coef=h_coef[h_other],
        hyp_own=_sum_by(h_row[h_own], h_coef[h_own], n_img * n),
        hyp_const=_sum_by(h_row[~in_refs], h_coef[~in_refs], n_img * n),
        ref_own=_sum_by(r_row[r_own], r_coef[r_own], n_refs * n),
    )


def cider_from_tokens(hyp_tokens: Sequence[str], ref_tokens: Sequence[Sequence[str]], n: int = 4,
                      sigma: float = 6.0) -> tuple[float, list[float]]:
    """pycocoevalcap's ``Cider().compute_score`` on already tokenised strings: (corpus score, per-image scores)."""
    stats = cider_stats(hyp_tokens, ref_tokens, n=n, sigma=sigma)
    value, per_image = stats.scores()
    return value, per_image.tolist()


class Cider(Metric):
    """CIDEr-D on pycocoevalcap's scale (about 0-2, not x100), with mBLIP's segmentation, NFC and PTB tokenisation.

    Args:
        n: maximum n-gram order.
        sigma: standard deviation of the length penalty.
        bootstrap_resamples: resamples for the 95% interval (0: no interval). Each resample recomputes the corpus
            score, document frequencies included.
        seed: seed of the bootstrap.
    """

    name: ClassVar[str] = "cider"

    def __init__(self, n: int = 4, sigma: float = 6.0, bootstrap_resamples: int = DEFAULT_RESAMPLES,
                 seed: int = DEFAULT_SEED) -> None:
        if not isinstance(n, int) or n < 1:
            raise MvlevalError(f"CIDEr's n-gram order must be a positive integer, got {n!r}.", fix="use n=4.")
        if not sigma > 0:
            raise MvlevalError(f"CIDEr's sigma must be positive, got {sigma!r}.", fix="use sigma=6.0.")
        check_resamples(bootstrap_resamples, seed)
        self.n = n
        self.sigma = float(sigma)
        self.bootstrap_resamples = bootstrap_resamples
        self.seed = seed

    def _signature(self, seg: str) -> str:
        from mvleval.metrics.ptb import PTB_VERSION

        return (f"cider|n={self.n}|sigma={self.sigma:g}|tok={PTB_VERSION}|seg={seg}|nfc|"
                f"{bootstrap_signature(self.bootstrap_resamples, self.seed)}|{CIDER_IMPL_VERSION}")

    def signature(self) -> str:
        """The signature naming every language-specific segmenter (a result's signature names only its own)."""
        from mvleval.metrics.segment import segmenter_name

        return self._signature(",".join(s for s in (segmenter_name(x) for x in ("ja", "th", "zh")) if s))

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]], lang: str) -> MetricResult:
        """Score one language's captions: one prediction and at least one reference per image.

        Raises:
            MvlevalError: when the lists differ in length, an image has no reference, or a caption is not a string.
        """
        from mvleval.metrics.ptb import ptb_tokenize_lines
        from mvleval.metrics.segment import normalize_captions, segmenter_name

        _check_inputs(predictions, references, lang)
        signature = self._signature(segmenter_name(lang) or "none")
        if not predictions:
            return MetricResult(value=None, per_example=[], signature=signature,
                                note=f"no examples for language '{lang}'")
        flat_refs = [r for refs in references for r in refs]
        # Tokenise as pycocoevalcap does: all references in one call (image order), all predictions in another
        ref_tok = ptb_tokenize_lines(normalize_captions(flat_refs, lang))
        hyp_tok = ptb_tokenize_lines(normalize_captions(list(predictions), lang))
        grouped: list[list[str]] = []
        i = 0
        for refs in references:
            grouped.append(ref_tok[i:i + len(refs)])
            i += len(refs)
        stats = cider_stats(hyp_tok, grouped, n=self.n, sigma=self.sigma)
        value, per_image = stats.scores()
        interval = cider_interval(stats, self.bootstrap_resamples, self.seed)
        return MetricResult(value=value, per_example=per_image.tolist(), signature=signature, interval=interval)


def cider_interval(stats: CiderStats, n_resamples: int, seed: int, confidence: float = 0.95
                   ) -> tuple[float, float] | None:
    """Percentile bootstrap interval of corpus CIDEr, resampling images (df recomputed for every resample)."""
    import numpy as np

    if stats.n_images == 0 or n_resamples == 0:
        return None
    reps = [stats.scores(row)[0] for block in resample_counts(stats.n_images, n_resamples, seed) for row in block]
    return percentile_interval(np.asarray(reps), confidence)


def _check_inputs(predictions: Sequence[str], references: Sequence[Sequence[str]], lang: str) -> None:
    if len(predictions) != len(references):
        raise MvlevalError(
            f"CIDEr got {len(predictions)} predictions but {len(references)} reference lists for language '{lang}'.",
            fix="pass one prediction and one list of references per image.",
        )
    for i, (p, refs) in enumerate(zip(predictions, references)):
        if not isinstance(p, str):
            raise MvlevalError(f"CIDEr prediction {i} for language '{lang}' is {type(p).__name__}, not a string.",
                               fix="pass the generated caption text (use '' for an empty output).")
        if isinstance(refs, str) or len(refs) == 0:
            raise MvlevalError(
                f"CIDEr example {i} for language '{lang}' has "
                + ("a bare string" if isinstance(refs, str) else "no reference") + " instead of a list of references.",
                fix="give every image a list with at least one reference caption.",
            )
        for r in refs:
            if not isinstance(r, str):
                raise MvlevalError(f"CIDEr reference of example {i} for language '{lang}' is {type(r).__name__}.",
                                   fix="references must be strings.")
