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
from itertools import chain, count
from typing import TYPE_CHECKING, ClassVar

from mvleval.errors import MvlevalError
from mvleval.metrics.base import Metric, MetricResult, check_inputs
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
        n_refs = self.n_refs
        log_n = math.log(float(w.sum()))
        # u = idf^2 for n-grams of one image: df is that image's multiplicity
        own = (log_n - np.log(np.maximum(w, 1.0))) ** 2
        df = _sum_by(self.presence_g, np.take(w, self.presence_image), self.n_shared)
        u = (log_n - np.log(np.maximum(df, 1.0))) ** 2
        own_ref = np.take(own, self.ref_image)[:, None]
        # one gather + one bincount for the three sparse products (clipped dot products, both squared norms);
        # the per-row arrays are (rows, n) matrices, so the per-image factors broadcast instead of being repeated
        # (np.take: faster than fancy indexing for these 1-D gathers, which dominate a bootstrap resample)
        coef = np.take(u, self.shared_g)
        coef *= self.shared_coef
        sums = _sum_by(self.shared_row, coef, (2 * n_refs + n_img) * n)
        num = sums[: n_refs * n].reshape(n_refs, n) + self.match_own.reshape(n_refs, n) * own_ref
        hyp2 = sums[n_refs * n: (n_refs + n_img) * n] + self.hyp_const * (log_n * log_n)
        hyp2 += _sum_by(self.hyp_other_row, self.hyp_other_coef * own[self.hyp_other_image], n_img * n)
        hyp2 = hyp2.reshape(n_img, n) + self.hyp_own.reshape(n_img, n) * own[:, None]
        ref2 = sums[(n_refs + n_img) * n:].reshape(n_refs, n) + self.ref_own.reshape(n_refs, n) * own_ref
        # pycocoevalcap divides by norm_h * norm_r only when both are non-zero; otherwise the (zero) sum stays
        den = np.take(np.sqrt(hyp2), self.ref_image, axis=0)
        den *= np.sqrt(ref2)
        val = np.divide(num, den, out=num, where=den != 0)
        per_ref = val @ np.ones(n)
        per_ref *= self.penalty
        per_image = np.bincount(self.ref_image, weights=per_ref, minlength=n_img) * (10.0 / n) / self.refs_per_image
        return float(np.dot(w, per_image) / w.sum()), per_image


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
    return first, np.cumsum(first) - 1


def _order_entries(ids: np.ndarray, valid: np.ndarray, k: int, prefix: np.ndarray | None, vocab: int,
                   n_tokens: int, cap_of_token: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
    """The k-grams starting at token positions `valid`, grouped: one entry per (k-gram, caption).

    A k-gram's exact code is (dense id of its (k-1)-gram prefix) * vocab + last word. Sorting code * n_tokens + position
    (one plain sort, cheaper than an argsort) groups equal k-grams with their occurrences in caption order; when that
    key could overflow int64 a stable argsort of the code does the same.

    Returns:
        (dense k-gram id per token position (the prefix of order k+1); entry caption; entry gram id (0-based
        within this order); entry term frequency; number of distinct k-grams; captions of the k-grams that occur
        exactly once in the corpus, which get no entry).
    """
    import numpy as np

    last = ids[valid + (k - 1)]
    bound = vocab if prefix is None else (int(prefix.max(initial=0)) + 1) * vocab
    code = last if prefix is None else prefix[valid] * vocab + last
    if bound * n_tokens < 2**62:
        skey = np.sort(code * n_tokens + valid)
        code_s = skey // n_tokens
        pos_s = skey - code_s * n_tokens
    else:  # pragma: no cover - needs a corpus of billions of distinct n-gram x position pairs
        order = np.argsort(code, kind="stable")
        code_s, pos_s = code[order], valid[order]
    first, gid_s = _gram_runs(code_s)
    dense = np.zeros(n_tokens, dtype=np.int64)
    dense[pos_s] = gid_s
    n_k = int(gid_s[-1]) + 1 if gid_s.size else 0
    cap_s = cap_of_token[pos_s]
    # n-grams occurring once in the whole corpus (most 3- and 4-grams) need no matching: split them off early
    once = first.copy()
    if once.size:
        once[:-1] &= first[1:]
    single_caps = cap_s[once]
    keep = np.flatnonzero(~once)
    cap_s, gid_s, first = cap_s[keep], gid_s[keep], first[keep]
    new_entry = first
    if cap_s.size:
        new_entry[1:] |= cap_s[1:] != cap_s[:-1]
    e_idx = np.flatnonzero(new_entry)
    tf = np.diff(np.append(e_idx, cap_s.size))
    return dense, cap_s[e_idx], gid_s[e_idx], tf, n_k, single_caps


def _spread(m: int) -> np.ndarray:
    """A fixed permutation of range(m) that sends neighbours far apart: i -> (i * p) mod m for a prime p."""
    import numpy as np

    p = 10007 if m % 10007 else 10009
    return (np.arange(m, dtype=np.int64) * p) % max(m, 1)


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
    # Captions image-major (hypothesis of image i, then its references): after sorting the occurrences of an n-gram
    # by caption, the hypothesis entry of an image directly precedes that image's reference entries, so matches and
    # document frequencies come from comparisons of neighbours instead of searches.
    captions: list[str] = []
    for h, rs in zip(hyp_tokens, ref_tokens):
        captions.append(h)
        captions.extend(rs)
    n_caps = len(captions)
    n_refs = n_caps - n_img
    ids, lengths, n_vocab = _word_ids(captions)
    n_tokens = ids.size
    image_of_cap = np.repeat(np.arange(n_img, dtype=np.int64), refs_per_image + 1)
    hyp_cap = np.cumsum(refs_per_image + 1) - (refs_per_image + 1)
    is_hyp = np.zeros(n_caps, dtype=bool)
    is_hyp[hyp_cap] = True
    ref_image = np.repeat(np.arange(n_img, dtype=np.int64), refs_per_image)
    cap_of_token = np.repeat(np.arange(n_caps, dtype=np.int64), lengths)
    cap_end = np.cumsum(lengths)[cap_of_token]  # one past the caption's last token, per token

    e_caps, e_gs, e_tfs, e_orders, single_rows = [], [], [], [], []
    n_grams = 0
    valid = np.arange(n_tokens, dtype=np.int64)
    prefix = None
    for k in range(1, n + 1):
        valid = valid[valid + k <= cap_end[valid]]
        prefix, e_cap_k, e_g_k, tf_k, n_k, single_k = _order_entries(ids, valid, k, prefix, max(n_vocab, 1), n_tokens,
                                                           cap_of_token)
        e_caps.append(e_cap_k)
        e_gs.append(e_g_k + n_grams)
        e_tfs.append(tf_k)
        e_orders.append(np.full(e_cap_k.size, k - 1, dtype=np.int64))
        single_rows.append(single_k * n + (k - 1))
        n_grams += n_k
    e_cap = np.concatenate(e_caps)
    e_g = np.concatenate(e_gs)
    tf = np.concatenate(e_tfs).astype(np.float64)
    e_order = np.concatenate(e_orders)
    e_img = image_of_cap[e_cap]
    e_hyp = is_hyp[e_cap]
    # groups of entries with the same n-gram and image: [hypothesis entry?] + reference entries, in that order
    g_first = np.empty(e_g.size, dtype=bool)
    if e_g.size:
        g_first[0] = True
        g_first[1:] = (e_g[1:] != e_g[:-1]) | (e_img[1:] != e_img[:-1])
    g_last = np.empty_like(g_first)
    if e_g.size:
        g_last[-1] = True
        g_last[:-1] = g_first[1:]
    group_start = np.maximum.accumulate(np.where(g_first, np.arange(e_g.size), 0)) if e_g.size else e_g
    # document frequency support: a group holds a reference iff its last entry is one
    pres = g_last & ~e_hyp
    presence_image, presence_g = e_img[pres], e_g[pres]
    df0 = np.bincount(presence_g, minlength=n_grams)
    single_owner = np.full(n_grams, -1, dtype=np.int64)
    single = df0[presence_g] == 1
    single_owner[presence_g[single]] = presence_image[single]
    multi = ~single
    shared_id = np.full(n_grams, -1, dtype=np.int64)
    shared_g = np.flatnonzero(df0 > 1)
    shared_id[shared_g] = np.arange(shared_g.size)
    h_sel = np.flatnonzero(e_hyp)
    h_img, h_g, h_tf, h_order = e_img[h_sel], e_g[h_sel], tf[h_sel], e_order[h_sel]
    r_sel = np.flatnonzero(~e_hyp)
    r_ref = e_cap[r_sel] - e_img[r_sel] - 1  # references numbered in image order
    r_g, r_tf, r_order = e_g[r_sel], tf[r_sel], e_order[r_sel]
    # a reference entry matches the hypothesis when its group starts with the hypothesis entry of the same image
    r_start = group_start[r_sel]
    hit = e_hyp[r_start]
    m_tf_h = tf[r_start[hit]]
    m_tf_r = r_tf[hit]
    m_g = r_g[hit]
    m_row = r_ref[hit] * n + r_order[hit]
    m_coef = np.minimum(m_tf_h, m_tf_r) * m_tf_r
    m_own = single_owner[m_g] >= 0  # a reference n-gram of one image belongs to this reference's image
    r_row = r_ref * n + r_order
    r_coef = r_tf**2
    r_own = single_owner[r_g] >= 0
    h_row = h_img * n + h_order
    h_coef = h_tf**2
    h_owner = single_owner[h_g]
    in_refs = df0[h_g] > 0
    h_own = h_owner == h_img
    h_other = (h_owner >= 0) & ~h_own
    h_general = in_refs & (h_owner < 0)
    # n-grams occurring once in the corpus, tf 1: in a hypothesis they are in no reference (weight log(N)^2), in a
    # reference they belong to that reference's image alone (weight idf^2 of its multiplicity)
    single_row = np.concatenate(single_rows)
    single_cap = single_row // n
    single_hyp = is_hyp[single_cap]
    single_order = single_row - single_cap * n
    s_img = image_of_cap[single_cap]
    hyp_single = np.bincount(s_img[single_hyp] * n + single_order[single_hyp], minlength=n_img * n)
    s_ref = ~single_hyp
    ref_single = np.bincount((single_cap[s_ref] - s_img[s_ref] - 1) * n + single_order[s_ref], minlength=n_refs * n)
    # The presence pairs come grouped by n-gram: a bootstrap resample's bincount would then add into one slot many
    # times in a row (a dependency chain: "a" is in every image). Spread them out (any order gives the same integer
    # document frequencies); measured about 1.6x faster per resample.
    spread = _spread(int(multi.sum()))
    # pycocoevalcap's "length" is the bigram count: max(words - 1, 0)
    blen = np.maximum(lengths - 1, 0).astype(np.float64)
    delta = blen[hyp_cap][ref_image] - blen[~is_hyp]
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
        presence_image=presence_image[multi][spread],
        presence_g=shared_id[presence_g[multi]][spread],
        shared_row=np.concatenate((m_row[~m_own], h_row[h_general] + n_refs * n, r_row[~r_own] + (n_refs + n_img) * n)),
        shared_g=shared_id[np.concatenate((m_g[~m_own], h_g[h_general], r_g[~r_own]))],
        shared_coef=np.concatenate((m_coef[~m_own], h_coef[h_general], r_coef[~r_own])),
        match_own=_sum_by(m_row[m_own], m_coef[m_own], n_refs * n),
        hyp_other_row=h_row[h_other],
        hyp_other_image=h_owner[h_other],
        hyp_other_coef=h_coef[h_other],
        hyp_own=_sum_by(h_row[h_own], h_coef[h_own], n_img * n),
        hyp_const=_sum_by(h_row[~in_refs], h_coef[~in_refs], n_img * n) + hyp_single,
        ref_own=_sum_by(r_row[r_own], r_coef[r_own], n_refs * n) + ref_single,
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

        check_inputs("CIDEr", predictions, references, lang)
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
