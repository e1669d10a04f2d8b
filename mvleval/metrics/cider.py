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
is a sparse matrix product over per-n-gram and per-image weights (done for a block of resamples at once), not a new
CIDEr computation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, count
from typing import TYPE_CHECKING, Any, ClassVar

from mvleval.metrics.base import Metric, MetricResult, check_inputs
from mvleval.metrics.bootstrap import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    bootstrap_signature,
    check_resamples,
    percentile_interval,
    resample_counts,
)
from mvleval.util.errors import MvlevalError

if TYPE_CHECKING:
    import numpy as np

    from mvleval.metrics.ptb import TokenizedCorpus

__all__ = ["Cider", "CiderStats", "cider_from_tokens", "cider_stats"]

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

        if self.n_images == 0:
            return float("nan"), np.zeros(0)
        w = np.ones((1, self.n_images)) if weights is None else np.asarray(weights, dtype=np.float64)[None, :]
        value, per_image = self._block(w)
        return float(value[0]), per_image[:, 0]

    def resample_scores(self, weights: np.ndarray) -> np.ndarray:
        """Corpus CIDEr for many image multiplicities at once: row b of `weights` gives image i weights[b, i] copies
        (the bootstrap's resamples; equal to ``scores(weights[b])[0]`` for every row)."""
        import numpy as np

        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 2 or w.shape[1] != self.n_images:
            raise ValueError(f"weights must have shape (rows, {self.n_images}), got {w.shape}")
        if self.n_images == 0:
            return np.full(w.shape[0], np.nan)
        return self._block(w)[0]

    def _block(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(corpus CIDEr per row of `w`, per-image scores (images, rows)) for image multiplicities `w` (rows, images).

        Every statistic row is a sum of coefficient x weight, where a weight is an n-gram's idf^2 (shared n-grams),
        an image's own idf^2 (n-grams of one image) or log(N)^2 (n-grams in no reference), so a block of rows is one
        sparse matrix product over the stacked weights: the statistics are read once per block instead of once per
        resample.
        """
        import numpy as np

        m = self._matrices()
        n_img, n_refs, n = self.n_images, self.n_refs, self.n
        wt = np.ascontiguousarray(w.T)  # (images, B)
        total = wt.sum(axis=0)
        log_n = np.log(total)
        weight = np.empty((self.n_shared + n_img + 1, wt.shape[1]))
        df = m.presence @ wt  # (shared n-grams, B)
        u = weight[: self.n_shared]
        np.log(np.maximum(df, 1.0, out=df), out=u)
        np.subtract(log_n, u, out=u)
        own = weight[self.n_shared : self.n_shared + n_img]
        np.log(np.maximum(wt, 1.0), out=own)
        np.subtract(log_n, own, out=own)
        weight[-1] = log_n
        weight *= weight  # idf -> idf^2
        sums = m.rows @ weight  # (statistic rows, B)
        num = sums[: n_refs * n].reshape(n_refs, n, -1)
        hyp2 = sums[n_refs * n : (n_refs + n_img) * n].reshape(n_img, n, -1)
        ref2 = sums[(n_refs + n_img) * n :].reshape(n_refs, n, -1)
        # pycocoevalcap divides by norm_h * norm_r only when both are non-zero; otherwise the (zero) sum stays
        den = np.sqrt(hyp2, out=hyp2)[self.ref_image]
        den *= np.sqrt(ref2, out=ref2)
        val = np.divide(num, den, out=num, where=den != 0)
        per_ref = val.sum(axis=1)
        per_ref *= self.penalty[:, None]
        per_image = m.image_of_ref @ per_ref  # (images, B)
        per_image *= (10.0 / n) / self.refs_per_image[:, None]
        return (wt * per_image).sum(axis=0) / total, per_image

    def _matrices(self) -> _SparseStats:
        """The sparse matrices of the block computation, built on first use (a plain score never needs them)."""
        got = self.__dict__.get("_sparse")
        if got is None:
            import numpy as np
            from scipy import sparse

            n_img, n_refs, n, n_shared = self.n_images, self.n_refs, self.n, self.n_shared
            hyp0, ref0 = n_refs * n, (n_refs + n_img) * n  # first hypothesis / reference-norm row
            own0, const = n_shared, n_shared + n_img  # column of image 0's own weight; the log(N)^2 column
            ref_row_image = np.repeat(self.ref_image, n)  # image of each reference row
            hyp_row_image = np.repeat(np.arange(n_img), n)
            rows = np.concatenate(
                (
                    self.shared_row,
                    np.arange(n_refs * n),
                    self.hyp_other_row + hyp0,
                    np.arange(hyp0, ref0),
                    np.arange(hyp0, ref0),
                    np.arange(ref0, ref0 + n_refs * n),
                )
            )
            cols = np.concatenate(
                (
                    self.shared_g,
                    own0 + ref_row_image,
                    own0 + self.hyp_other_image,
                    own0 + hyp_row_image,
                    np.full(n_img * n, const),
                    own0 + ref_row_image,
                )
            )
            coef = np.concatenate(
                (self.shared_coef, self.match_own, self.hyp_other_coef, self.hyp_own, self.hyp_const, self.ref_own)
            )
            keep = coef != 0
            got = _SparseStats(
                presence=sparse.csr_matrix(
                    (np.ones(self.presence_g.size), (self.presence_g, self.presence_image)), shape=(n_shared, n_img)
                ),
                rows=sparse.csr_matrix(
                    (coef[keep], (rows[keep], cols[keep])), shape=((2 * n_refs + n_img) * n, const + 1)
                ),
                image_of_ref=sparse.csr_matrix(
                    (np.ones(n_refs), (self.ref_image, np.arange(n_refs))), shape=(n_img, n_refs)
                ),
            )
            object.__setattr__(self, "_sparse", got)  # a cache on a frozen dataclass
        return got


@dataclass(frozen=True)
class _SparseStats:
    """CiderStats' sparse index arrays as CSR matrices (rows x columns: what each product sums over)."""

    presence: Any  # shared n-gram x image: 1 where the n-gram is in the image's references
    rows: Any  # statistic row x weight (shared n-grams' idf^2, images' own idf^2, log(N)^2): the row's coefficients
    image_of_ref: Any  # image x reference: 1 for the image's references


def _sum_by(rows: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """Sum `weights` per row index into a float64 array of length `size` (a sparse matrix-vector product)."""
    import numpy as np

    return np.bincount(rows, weights=weights, minlength=size).astype(np.float64, copy=False)


def _gram_runs(skey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boundaries of equal values in a sorted array: (is first of its run, run number of every element)."""
    import numpy as np

    first = np.empty(skey.size, dtype=bool)
    if skey.size:
        first[0] = True
        np.not_equal(skey[1:], skey[:-1], out=first[1:])
    # cumsum of an int64 copy: numpy's cumsum casts a bool array element by element (~20x slower)
    run = first.astype(np.int64)
    np.cumsum(run, out=run)
    run -= 1
    return first, run


def _order_entries(
    ids: np.ndarray,
    valid: np.ndarray,
    k: int,
    prefix: np.ndarray | None,
    vocab: int,
    n_tokens: int,
    cap_of_token: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
    """The k-grams starting at token positions `valid`, grouped: one entry per (k-gram, caption).

    A k-gram's exact code is (dense id of its (k-1)-gram prefix) * vocab + last word. Sorting code * n_tokens + position
    (one plain sort, cheaper than an argsort) groups equal k-grams with their occurrences in caption order; when that
    key could overflow int64 a stable argsort of the code does the same.

    Returns:
        (dense k-gram id per token position (the prefix of order k+1); entry caption; entry gram id (0-based
        within this order); entry term frequency; number of distinct k-grams; positions of the k-grams that occur
        exactly once in the corpus, which get no entry).
    """
    import numpy as np

    last = np.take(ids, valid + (k - 1))
    bound = vocab if prefix is None else (int(prefix.max(initial=0)) + 1) * vocab
    code = last if prefix is None else np.take(prefix, valid) * vocab + last
    if bound * n_tokens < 2**62:
        skey = np.sort(code * n_tokens + valid)
        code_s = skey // n_tokens
        pos_s = skey - code_s * n_tokens
    else:  # pragma: no cover - needs a corpus of billions of distinct n-gram x position pairs
        order = np.argsort(code, kind="stable")
        code_s, pos_s = code[order], valid[order]
    first, gid_s = _gram_runs(code_s)
    dense = np.zeros(n_tokens, dtype=np.int64)
    np.put(dense, pos_s, gid_s)
    n_k = int(gid_s[-1]) + 1 if gid_s.size else 0
    cap_s = np.take(cap_of_token, pos_s)
    # n-grams occurring once in the whole corpus (most 3- and 4-grams) need no matching: split them off early
    once = first.copy()
    if once.size:
        once[:-1] &= first[1:]
    single_pos = np.take(pos_s, np.flatnonzero(once))
    keep = np.flatnonzero(~once)
    cap_s, gid_s, first = np.take(cap_s, keep), np.take(gid_s, keep), np.take(first, keep)
    new_entry = first
    if cap_s.size:
        new_entry[1:] |= cap_s[1:] != cap_s[:-1]
    e_idx = np.flatnonzero(new_entry)
    tf = np.diff(e_idx, append=cap_s.size)
    return dense, np.take(cap_s, e_idx), np.take(gid_s, e_idx), tf, n_k, single_pos


def _word_ids(captions: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """Words of every caption as dense integer ids (``str.split()`` as pycocoevalcap's precook), with lengths.

    One join and one split over the whole corpus, with a separator word between captions, instead of a split per
    caption: the per-caption Python calls cost more than the rest of the n-gram counting.

    Returns:
        (ids of all words in caption order, number of words per caption, an upper bound of the ids).
    """
    import numpy as np

    if not captions:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 0
    sep = "\x00"  # not whitespace, so str.split() keeps it as a word of its own
    joined = f" {sep} ".join(captions)
    if joined.count(sep) != len(captions) - 1:  # a caption holds the separator itself: split caption by caption
        split = list(map(str.split, captions))
        lengths = np.fromiter(map(len, split), dtype=np.int64, count=len(captions))
        words = list(chain.from_iterable(split))
        vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
        return np.fromiter(map(vocab.__getitem__, words), dtype=np.int64, count=len(words)), lengths, len(vocab)
    words = joined.split()
    words.append(sep)
    # ids in first-seen order, 0 for the separator that ends every caption (not dense: a word's id is the position
    # of its first occurrence, which bounds them by the word count and needs one dict operation per word)
    vocab = {sep: 0}
    ids = np.fromiter(map(vocab.setdefault, words, count(1)), dtype=np.int64, count=len(words))
    ends = np.flatnonzero(ids == 0)
    lengths = np.diff(ends, prepend=-1) - 1
    return ids[ids != 0] - 1, lengths, len(words)


def _image_major(hyp_tokens: Sequence[str], ref_tokens: Sequence[Sequence[str]], n: int, sigma: float) -> _Matched:
    """Group the n-grams of tokenised strings (one hypothesis and its references per image)."""
    import numpy as np

    n_img = len(hyp_tokens)
    refs_per_image = np.fromiter((len(r) for r in ref_tokens), dtype=np.int64, count=n_img)
    captions: list[str] = []
    for h, rs in zip(hyp_tokens, ref_tokens):
        captions.append(h)
        captions.extend(rs)
    ids, lengths, n_vocab = _word_ids(captions)
    return _match(ids, lengths, refs_per_image, n_vocab, n, sigma)


def cider_stats(
    hyp_tokens: Sequence[str], ref_tokens: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0
) -> CiderStats:
    """Build CiderStats from PTB-tokenised strings (one hypothesis and >= 1 references per image).

    Args:
        hyp_tokens: tokenised hypothesis per image (tokens separated by whitespace).
        ref_tokens: tokenised references per image.
        n: maximum n-gram order (4 for CIDEr-D).
        sigma: standard deviation of the length penalty (6 for CIDEr-D).
    """
    return _image_major(hyp_tokens, ref_tokens, n, sigma).stats()


def _match_corpus(corpus: TokenizedCorpus, refs_per_image: Sequence[int], n: int, sigma: float) -> _Matched:
    """Group the n-grams of word ids: `corpus` holds every reference (image by image), then one hypothesis per image,
    as ``ptb_tokenize_corpus([references, hypotheses])`` returns them."""
    import numpy as np

    rpi = np.asarray(refs_per_image, dtype=np.int64)
    n_img = rpi.size
    n_refs = int(rpi.sum())
    if corpus.lengths.size != n_refs + n_img:
        raise ValueError(
            f"corpus has {corpus.lengths.size} captions, expected {n_refs} references + {n_img} hypotheses"
        )
    # image-major caption order (hypothesis of image i, then its references) by one gather of token positions
    cap_start = np.cumsum(corpus.lengths) - corpus.lengths
    hyp_slot = np.cumsum(rpi + 1) - (rpi + 1)
    order = np.empty(n_refs + n_img, dtype=np.int64)
    order[hyp_slot] = np.arange(n_refs, n_refs + n_img)
    is_ref_slot = np.ones(n_refs + n_img, dtype=bool)
    is_ref_slot[hyp_slot] = False
    order[is_ref_slot] = np.arange(n_refs)
    lengths = corpus.lengths[order]
    new_start = np.cumsum(lengths) - lengths
    pos = np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(cap_start[order] - new_start, lengths)
    return _match(corpus.ids[pos], lengths, rpi, len(corpus.vocab), n, sigma)


@dataclass(frozen=True)
class _Order:
    """The n-grams of one order that occur more than once in the corpus (numbered g = 0..n_grams-1 within the order):
    their document frequencies and their term frequencies in hypotheses, references and matches."""

    n_grams: int
    df: np.ndarray  # number of images whose references contain g
    presence_image: np.ndarray  # the (image, g) pairs behind df
    presence_g: np.ndarray
    m_ref: np.ndarray  # matches: reference, n-gram, min(tf_h, tf_r) * tf_r
    m_g: np.ndarray
    m_coef: np.ndarray
    h_img: np.ndarray  # hypothesis n-grams: image, n-gram, tf_h^2
    h_g: np.ndarray
    h_coef: np.ndarray
    r_ref: np.ndarray  # reference n-grams: reference, n-gram, tf_r^2
    r_g: np.ndarray
    r_coef: np.ndarray


@dataclass(frozen=True)
class _Matched:
    """A corpus's n-gram term frequencies, grouped, with each reference's matches against its image's hypothesis:
    everything CIDEr needs except the document frequencies' weights. The plain score (`scores`) and the bootstrap
    structure (`stats`) are both computed from it.
    """

    n_img: int
    n_refs: int
    n: int
    sigma: float
    ref_image: np.ndarray
    refs_per_image: np.ndarray
    penalty: np.ndarray
    orders: tuple[_Order, ...]
    hyp_single: np.ndarray  # (images, n): n-grams of the hypothesis occurring once in the corpus (in no reference)
    ref_single: np.ndarray  # (refs, n): n-grams of the reference occurring once in the corpus (df 1)

    def scores(self) -> tuple[float, np.ndarray]:
        """pycocoevalcap's corpus CIDEr and per-image scores."""
        import numpy as np

        n_img, n_refs = self.n_img, self.n_refs
        if n_img == 0:
            return float("nan"), np.zeros(0)
        log_n = math.log(float(n_img))
        # n-grams occurring once weigh idf^2 = log(N)^2 (df 0 for a hypothesis n-gram counts as 1, as in pycocoevalcap)
        hyp2 = self.hyp_single * (log_n * log_n)
        ref2 = self.ref_single * (log_n * log_n)
        num = np.zeros_like(ref2)
        for k, o in enumerate(self.orders):
            u = (log_n - np.log(np.maximum(o.df, 1.0))) ** 2
            num[:, k] = np.bincount(o.m_ref, weights=o.m_coef * np.take(u, o.m_g), minlength=n_refs)
            hyp2[:, k] += np.bincount(o.h_img, weights=o.h_coef * np.take(u, o.h_g), minlength=n_img)
            ref2[:, k] += np.bincount(o.r_ref, weights=o.r_coef * np.take(u, o.r_g), minlength=n_refs)
        per_image = _combine(num, hyp2, ref2, self.ref_image, self.penalty, self.refs_per_image)
        return float(per_image.mean()), per_image

    def stats(self) -> CiderStats:
        """The statistics a bootstrap resample needs, split by how each n-gram's weight depends on the resample."""
        import numpy as np

        n_img, n_refs, n = self.n_img, self.n_refs, self.n
        # one numbering of the n-grams of all orders, and rows ref*n + (order-1) / image*n + (order-1)
        offsets = np.cumsum([0] + [o.n_grams for o in self.orders])
        n_grams = int(offsets[-1])

        def cat(field: str, shift: bool = False) -> np.ndarray:
            parts = [getattr(o, field) + (int(offsets[k]) if shift else 0) for k, o in enumerate(self.orders)]
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

        def rows(field: str) -> np.ndarray:
            parts = [getattr(o, field) * n + k for k, o in enumerate(self.orders)]
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

        df0, presence_g, presence_image = cat("df"), cat("presence_g", True), cat("presence_image")
        m_row, m_g, m_coef = rows("m_ref"), cat("m_g", True), cat("m_coef").astype(np.float64)
        h_row, h_g, h_coef, h_img = rows("h_img"), cat("h_g", True), cat("h_coef").astype(np.float64), cat("h_img")
        r_row, r_g, r_coef = rows("r_ref"), cat("r_g", True), cat("r_coef").astype(np.float64)
        single_owner = np.full(n_grams, -1, dtype=np.int64)
        single = df0[presence_g] == 1
        single_owner[np.compress(single, presence_g)] = np.compress(single, presence_image)
        multi = ~single
        shared_id = np.full(n_grams, -1, dtype=np.int64)
        shared_g = np.flatnonzero(df0 > 1)
        shared_id[shared_g] = np.arange(shared_g.size)
        pick = np.compress  # selection by a mask (several times faster than boolean indexing)
        m_own = single_owner[m_g] >= 0  # a reference n-gram of one image belongs to this reference's image
        r_own = single_owner[r_g] >= 0
        h_owner = single_owner[h_g]
        in_refs = df0[h_g] > 0
        h_own = h_owner == h_img
        h_other = (h_owner >= 0) & ~h_own
        h_general = in_refs & (h_owner < 0)
        return CiderStats(
            n_images=n_img,
            n_refs=n_refs,
            n=n,
            sigma=self.sigma,
            n_grams=n_grams,
            ref_image=self.ref_image,
            refs_per_image=self.refs_per_image,
            penalty=self.penalty,
            n_shared=int(shared_g.size),
            presence_image=np.compress(multi, presence_image),
            presence_g=np.take(shared_id, np.compress(multi, presence_g)),
            shared_row=np.concatenate(
                (pick(~m_own, m_row), pick(h_general, h_row) + n_refs * n, pick(~r_own, r_row) + (n_refs + n_img) * n)
            ),
            shared_g=np.take(shared_id, np.concatenate((pick(~m_own, m_g), pick(h_general, h_g), pick(~r_own, r_g)))),
            shared_coef=np.concatenate((pick(~m_own, m_coef), pick(h_general, h_coef), pick(~r_own, r_coef))),
            match_own=_sum_by(pick(m_own, m_row), pick(m_own, m_coef), n_refs * n),
            hyp_other_row=pick(h_other, h_row),
            hyp_other_image=pick(h_other, h_owner),
            hyp_other_coef=pick(h_other, h_coef),
            hyp_own=_sum_by(pick(h_own, h_row), pick(h_own, h_coef), n_img * n),
            hyp_const=_sum_by(pick(~in_refs, h_row), pick(~in_refs, h_coef), n_img * n) + self.hyp_single.ravel(),
            ref_own=_sum_by(pick(r_own, r_row), pick(r_own, r_coef), n_refs * n) + self.ref_single.ravel(),
        )


def _combine(
    num: np.ndarray,
    hyp2: np.ndarray,
    ref2: np.ndarray,
    ref_image: np.ndarray,
    penalty: np.ndarray,
    refs_per_image: np.ndarray,
) -> np.ndarray:
    """Per-image CIDEr from the per-order clipped dot products (refs x n) and squared norms (images x n, refs x n)."""
    import numpy as np

    n = num.shape[1]
    # pycocoevalcap divides by norm_h * norm_r only when both are non-zero; otherwise the (zero) sum stays
    den = np.take(np.sqrt(hyp2), ref_image, axis=0)
    den *= np.sqrt(ref2)
    val = np.divide(num, den, out=num, where=den != 0)
    per_ref = val @ np.ones(n)
    per_ref *= penalty
    per_image: np.ndarray = np.bincount(ref_image, weights=per_ref, minlength=refs_per_image.size)
    scores: np.ndarray = per_image * (10.0 / n) / refs_per_image
    return scores


def _match(
    ids: np.ndarray, lengths: np.ndarray, refs_per_image: np.ndarray, n_vocab: int, n: int, sigma: float
) -> _Matched:
    """Group the n-grams of captions in image-major order (hypothesis of image i, then its references), given as
    word ids.

    Image-major order matters: after sorting the occurrences of an n-gram by caption, the hypothesis entry of an
    image directly precedes that image's reference entries, so matches and document frequencies come from
    comparisons of neighbours instead of searches. Each order is grouped on its own (CIDEr never mixes orders).
    """
    import numpy as np

    n_img = refs_per_image.size
    n_caps = lengths.size
    n_refs = n_caps - n_img
    n_tokens = ids.size
    image_of_cap = np.repeat(np.arange(n_img, dtype=np.int64), refs_per_image + 1)
    hyp_cap = np.cumsum(refs_per_image + 1) - (refs_per_image + 1)
    is_hyp = np.zeros(n_caps, dtype=bool)
    is_hyp[hyp_cap] = True
    ref_image = np.repeat(np.arange(n_img, dtype=np.int64), refs_per_image)
    cap_of_token = np.repeat(np.arange(n_caps, dtype=np.int64), lengths)
    cap_end = np.cumsum(lengths)[cap_of_token]  # one past the caption's last token, per token
    hyp_single = np.zeros((n_img, n))
    ref_single = np.zeros((n_refs, n))
    orders: list[_Order] = []
    starts = np.arange(n_tokens, dtype=np.int64)
    prefix = None
    lone_prev = None
    for k in range(1, n + 1):
        # every k-gram's start (np.compress, not boolean indexing: several times faster for such masks)
        starts = np.compress(starts + k <= np.take(cap_end, starts), starts)
        valid, skipped = starts, starts[:0]
        if lone_prev is not None:
            # a k-gram whose first or last (k-1)-gram occurs once in the corpus occurs once too: it needs no sorting
            # (most 3- and 4-grams)
            lone = np.take(lone_prev, starts) | np.take(lone_prev, starts + 1)
            skipped, valid = np.compress(lone, starts), np.compress(~lone, starts)
        prefix, e_cap, e_g, tf, n_k, single_pos = _order_entries(
            ids, valid, k, prefix, max(n_vocab, 1), n_tokens, cap_of_token
        )
        lone_prev = np.zeros(n_tokens, dtype=bool)
        lone_prev[single_pos] = True
        lone_prev[skipped] = True
        # n-grams occurring once in the corpus, tf 1: in a hypothesis they are in no reference (weight log(N)^2), in
        # a reference they belong to that reference's image alone (weight idf^2 of its multiplicity)
        s_cap = np.take(cap_of_token, np.concatenate((single_pos, skipped)))
        s_hyp = np.take(is_hyp, s_cap)
        s_img = np.take(image_of_cap, s_cap)
        hyp_single[:, k - 1] = np.bincount(np.compress(s_hyp, s_img), minlength=n_img)
        s_ref = ~s_hyp
        ref_single[:, k - 1] = np.bincount(np.compress(s_ref, s_cap) - np.compress(s_ref, s_img) - 1, minlength=n_refs)
        orders.append(_group_order(e_cap, e_g, tf, n_k, image_of_cap, is_hyp))
    # pycocoevalcap's "length" is the bigram count: max(words - 1, 0)
    blen = np.maximum(lengths - 1, 0).astype(np.float64)
    delta = blen[hyp_cap][ref_image] - blen[~is_hyp]
    return _Matched(
        n_img=n_img,
        n_refs=n_refs,
        n=n,
        sigma=sigma,
        ref_image=ref_image,
        refs_per_image=refs_per_image.astype(np.float64),
        penalty=np.exp(-(delta**2) / (2.0 * sigma**2)),
        orders=tuple(orders),
        hyp_single=hyp_single,
        ref_single=ref_single,
    )


def _group_order(
    e_cap: np.ndarray, e_g: np.ndarray, tf: np.ndarray, n_grams: int, image_of_cap: np.ndarray, is_hyp: np.ndarray
) -> _Order:
    """One order's entries (one per n-gram and caption, sorted by n-gram then caption) grouped by image."""
    import numpy as np

    e_img = np.take(image_of_cap, e_cap)
    e_hyp = np.take(is_hyp, e_cap)
    # groups of entries with the same n-gram and image: [hypothesis entry?] + reference entries, in that order
    size = e_g.size
    g_first = np.ones(size, dtype=bool)
    if size:
        np.not_equal(e_g[1:], e_g[:-1], out=g_first[1:])
        g_first[1:] |= e_img[1:] != e_img[:-1]
    g_last = np.ones(size, dtype=bool)
    g_last[:-1] = g_first[1:]
    # document frequency support: a group holds a reference iff its last entry is one
    pres = g_last & ~e_hyp
    pres_idx = np.flatnonzero(pres)
    presence_image, presence_g = np.take(e_img, pres_idx), np.take(e_g, pres_idx)
    h_sel = np.flatnonzero(e_hyp)
    r_sel = np.flatnonzero(~e_hyp)
    r_img = np.take(e_img, r_sel)
    r_ref = np.take(e_cap, r_sel) - r_img - 1  # references numbered in image order
    r_g, r_tf = np.take(e_g, r_sel), np.take(tf, r_sel)
    # a reference entry matches the hypothesis when its group starts with the hypothesis entry of the same image
    group_start = np.maximum.accumulate(np.where(g_first, np.arange(size), 0)) if size else e_g
    r_start = np.take(group_start, r_sel)
    hit = np.take(e_hyp, r_start)
    hit_idx = np.flatnonzero(hit)
    m_tf_h = np.take(tf, np.take(r_start, hit_idx))
    m_tf_r = np.take(r_tf, hit_idx)
    h_tf = np.take(tf, h_sel)
    return _Order(
        n_grams=n_grams,
        df=np.bincount(presence_g, minlength=n_grams),
        presence_image=presence_image,
        presence_g=presence_g,
        m_ref=np.take(r_ref, hit_idx),
        m_g=np.take(r_g, hit_idx),
        m_coef=np.minimum(m_tf_h, m_tf_r) * m_tf_r,
        h_img=np.take(e_img, h_sel),
        h_g=np.take(e_g, h_sel),
        h_coef=h_tf * h_tf,
        r_ref=r_ref,
        r_g=r_g,
        r_coef=r_tf * r_tf,
    )


def cider_from_tokens(
    hyp_tokens: Sequence[str], ref_tokens: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0
) -> tuple[float, list[float]]:
    """pycocoevalcap's ``Cider().compute_score`` on already tokenised strings: (corpus score, per-image scores)."""
    value, per_image = _image_major(hyp_tokens, ref_tokens, n, sigma).scores()
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

    def __init__(
        self, n: int = 4, sigma: float = 6.0, bootstrap_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
    ) -> None:
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

        return (
            f"cider|n={self.n}|sigma={self.sigma:g}|tok={PTB_VERSION}|seg={seg}|nfc|"
            f"{bootstrap_signature(self.bootstrap_resamples, self.seed)}|{CIDER_IMPL_VERSION}"
        )

    def signature(self) -> str:
        """The signature naming every language-specific segmenter (a result's signature names only its own)."""
        from mvleval.metrics.segment import segmenter_name

        return self._signature(",".join(s for s in (segmenter_name(x) for x in ("ja", "th", "zh")) if s))

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]], lang: str) -> MetricResult:
        """Score one language's captions: one prediction and at least one reference per image.

        Raises:
            MvlevalError: when the lists differ in length, an image has no reference, or a caption is not a string.
        """
        from mvleval.metrics.ptb import ptb_tokenize_corpus
        from mvleval.metrics.segment import normalize_captions, segmenter_name

        check_inputs("CIDEr", predictions, references, lang)
        signature = self._signature(segmenter_name(lang) or "none")
        if not predictions:
            return MetricResult(
                value=None, per_example=[], signature=signature, note=f"no examples for language '{lang}'"
            )
        flat_refs = list(chain.from_iterable(references))
        # Tokenise as pycocoevalcap does: all references in one tokenizer run (image order), all predictions in
        # another
        corpus = ptb_tokenize_corpus([normalize_captions(flat_refs, lang), normalize_captions(list(predictions), lang)])
        matched = _match_corpus(corpus, list(map(len, references)), self.n, self.sigma)
        value, per_image = matched.scores()
        # the bootstrap's statistics are built only when an interval is asked for
        interval = (
            cider_interval(matched.stats(), self.bootstrap_resamples, self.seed) if self.bootstrap_resamples else None
        )
        return MetricResult(value=value, per_example=per_image.tolist(), signature=signature, interval=interval)


def cider_interval(
    stats: CiderStats, n_resamples: int, seed: int, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of corpus CIDEr, resampling images (df recomputed for every resample)."""
    import numpy as np

    if stats.n_images == 0 or n_resamples == 0:
        return None
    reps = [
        stats.resample_scores(block[i : i + _SUB_BLOCK])
        for block in resample_counts(stats.n_images, n_resamples, seed)
        for i in range(0, block.shape[0], _SUB_BLOCK)
    ]
    return percentile_interval(np.concatenate(reps), confidence)


# Resamples scored per sparse product: large enough to amortise reading the statistics, small enough that the
# (rows x block) intermediates stay in cache (measured on 3600 images: 10-25 all within a few percent).
_SUB_BLOCK = 20
