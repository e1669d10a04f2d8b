"""BLEU and chrF++ of captions through sacrebleu, per language, with the word segmentation CIDEr uses.

What is computed, per language (one corpus = one language's examples):

1. Preprocessing, the same as CIDEr's before its PTB step (segment.py ``normalize_captions``): zh, ja and th captions
   (predictions and references) are segmented into space-separated words (zh one token per character, ja Sudachi
   mode A, th PyThaiNLP newmm), then every caption of every language is NFC-normalised (a model writing decomposed
   Vietnamese is not penalised for its Unicode form). No lower-casing: sacrebleu's default (case:mixed).
2. BLEU: sacrebleu's corpus BLEU (4-grams, smoothing "exp", no effective order) with ``tokenize="13a"`` (sacrebleu's
   default, mteval's) for languages written with spaces, and ``tokenize="none"`` for zh, ja and th, whose words the
   segmentation has already separated. Never "13a" on unsegmented zh/ja/th: 13a leaves a Chinese sentence one token
   and BLEU 0. sacrebleu's own "zh" tokenizer is *not* used for zh: it splits Han characters but keeps runs of Latin
   letters and digits whole ("iPhone", "2023") and 13a-tokenises them, whereas CIDEr (mBLIP's spaCy "char"
   segmenter) splits every character, so "zh" would give BLEU other tokens than CIDEr's. Languages written without
   spaces for which no segmenter exists here (bo dz km lo my yue) get no BLEU/chrF++ value (None with a note) instead
   of a meaningless one.
3. chrF++: sacrebleu's CHRF with char_order 6, word_order 2, beta 2 (chrF++), on the same preprocessed text: the
   character n-grams ignore spaces, so segmentation changes only the word uni- and bigrams (which is what makes
   them words for zh/ja/th). With several references each example takes its best reference (sacrebleu's rule).
4. References of unequal count: sacrebleu takes reference *streams*; an example with fewer references is padded with
   ``None``, which sacrebleu drops. Padding with "" would add a zero-length reference to the brevity penalty (measured
   in NOTES.md: 8.72 with None, 26.86 with "" on the same data). A reference that *is* "" in the data (xFlickrCO de
   test line 1960) is kept, as CIDEr keeps it.
5. Scale: values are sacrebleu's divided by 100 (0-1), so that mvleval's tables, which print every metric x100,
   show sacrebleu's familiar numbers (BLEU 23.4 is stored 0.234).
6. Per-example scores: sentence BLEU with effective order (sacrebleu's ``sentence_score`` with
   ``effective_order=True``, its recommended sentence form) and sentence chrF++, computed from the same segment
   statistics as the corpus score. The corpus score is *not* their mean (BLEU and chrF++ sum statistics over the
   corpus); they serve the per-sample view and the gate's paired test, which compares the mean sentence scores.
7. 95% interval: percentile bootstrap over examples (mvleval's seeded ``resample_counts``, as every metric): each
   resample sums the per-example sufficient statistics with the examples' multiplicities and recomputes the corpus
   score from them, so each replicate is exactly sacrebleu's corpus score of the resampled corpus.

sacrebleu API used: ``BLEU``/``CHRF`` objects, their ``_extract_corpus_statistics`` (per-segment sufficient
statistics), ``_compute_score_from_stats`` (score from summed statistics) and ``get_signature``. The two underscored
methods are what sacrebleu's own ``corpus_score`` and its bootstrap / paired tests (sacrebleu/significance.py) call,
unchanged since sacrebleu 2.0; the version is pinned (2.6.0) and recorded in every signature, and the parity tests
compare with sacrebleu's ``corpus_score`` and its command line.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from itertools import chain
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
from mvleval.util.errors import MissingDependencyError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["SACREBLEU_VERSION", "UNSEGMENTABLE_LANGUAGES", "Bleu", "ChrF", "bleu_tokenizer", "reference_streams"]

#: The sacrebleu release CI installs (NOTES.md); signatures record the installed one.
SACREBLEU_VERSION = "2.6.0"
#: Languages written without spaces between words for which mvleval has no segmenter: BLEU and chrF++ are not
#: computed for them (value None with a note) rather than computed on one-token sentences.
UNSEGMENTABLE_LANGUAGES = frozenset({"bo", "dz", "km", "lo", "my", "yue"})
_IMPL = "mvleval-sacrebleu-1"


def _sacrebleu() -> Any:
    try:
        import sacrebleu
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "sacrebleu", "BLEU and chrF++", f"pip install sacrebleu=={SACREBLEU_VERSION}"
        ) from exc
    return sacrebleu


def bleu_tokenizer(lang: str) -> str:
    """sacrebleu's tokenizer for a language's (already segmented and NFC-normalised) captions: "none" for zh/ja/th,
    whose words segment.py has separated, "13a" for every other language."""
    from mvleval.metrics.segment import SEGMENTED_LANGUAGES

    return "none" if lang in SEGMENTED_LANGUAGES else "13a"


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Per-example reference lists -> sacrebleu's reference streams, shorter lists padded with None (never "").

    >>> reference_streams([["a", "b"], ["c"]])
    [['a', 'c'], ['b', None]]
    """
    width = max(map(len, references), default=0)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


class _SacrebleuMetric(Metric):
    """Shared pipeline: preprocessing, sacrebleu statistics, corpus and sentence scores, bootstrap interval."""

    _label: ClassVar[str]

    def __init__(self, bootstrap_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> None:
        check_resamples(bootstrap_resamples, seed)
        self.bootstrap_resamples = bootstrap_resamples
        self.seed = seed

    # -- per metric ------------------------------------------------------------------------------------------------
    @abstractmethod
    def _corpus_metric(self, lang: str) -> Any:
        """The sacrebleu metric object scoring `lang`'s corpus."""

    @abstractmethod
    def _sentence_metric(self, lang: str) -> Any:
        """The sacrebleu metric object turning one example's statistics into its sentence score."""

    def _tok_part(self, lang: str | None) -> str:
        """The tokenisation fragment of the signature (BLEU names its tokenizer; chrF++ has none)."""
        return ""

    # -- shared ------------------------------------------------------------------------------------------------------
    def _sacrebleu_signature(self, lang: str, num_refs: int) -> str:
        metric = self._corpus_metric(lang)
        metric.num_refs = num_refs
        return str(metric.get_signature().format())

    def _signature(self, seg: str, sacre: str, tok: str) -> str:
        return (
            f"{self.name}|{tok}seg={seg}|nfc|refs=None-padded|sacrebleu[{sacre}]|sentence={self._label}|x0.01|"
            f"{bootstrap_signature(self.bootstrap_resamples, self.seed)}|{_IMPL}"
        )

    def signature(self) -> str:
        """Every language's rule: the segmenters (with versions), the tokenizers, and sacrebleu's signature for a
        corpus with a variable number of references (a result's signature names its own language and count)."""
        from mvleval.metrics.segment import segmenter_name

        segs = ",".join(s for s in (segmenter_name(x) for x in ("ja", "th", "zh")) if s)
        sacre = self._sacrebleu_signature("en", -1)
        return self._signature(segs, sacre, self._tok_part(None))

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]], lang: str) -> MetricResult:
        """Score one language's captions: one prediction and at least one reference per example.

        Raises:
            MvlevalError: when the lists differ in length, an example has no reference, or a caption is not a string.
        """
        from mvleval.metrics.segment import normalize_captions, segmenter_name

        check_inputs(self.name, predictions, references, lang)
        seg = segmenter_name(lang) or "none"
        if not predictions:
            return MetricResult(
                value=None,
                per_example=[],
                signature=self._signature(seg, "", self._tok_part(lang)),
                note=f"no examples for language '{lang}'",
            )
        if lang in UNSEGMENTABLE_LANGUAGES:
            return MetricResult(
                value=None,
                per_example=None,
                signature=self._signature("none", "", self._tok_part(lang)),
                note=f"'{lang}' is written without spaces between words and mvleval has no word segmenter for it: "
                f"{self.name} on unsegmented text would count whole sentences as words",
            )
        hyps = normalize_captions(list(predictions), lang)
        flat = normalize_captions(list(chain.from_iterable(references)), lang)
        refs: list[list[str]] = []
        start = 0
        for r in references:
            refs.append(flat[start : start + len(r)])
            start += len(r)
        metric = self._corpus_metric(lang)
        stats = metric._extract_corpus_statistics(hyps, reference_streams(refs))
        value = metric._compute_score_from_stats(_sum(stats)).score / 100.0
        sentence = self._sentence_metric(lang)
        per_example = [sentence._compute_score_from_stats(list(s)).score / 100.0 for s in stats]
        signature = self._signature(seg, str(metric.get_signature().format()), self._tok_part(lang))
        interval = self._interval(metric, stats) if self.bootstrap_resamples else None
        return MetricResult(value=value, per_example=per_example, signature=signature, interval=interval)

    def _interval(self, metric: Any, stats: list[list[int]]) -> tuple[float, float] | None:
        import numpy as np

        matrix: np.ndarray = np.asarray(stats, dtype=np.int64)
        reps = [
            metric._compute_score_from_stats(row).score / 100.0
            for counts in resample_counts(len(stats), self.bootstrap_resamples, self.seed)
            for row in (counts @ matrix).tolist()
        ]
        return percentile_interval(np.asarray(reps), 0.95)


def _sum(stats: list[list[int]]) -> list[int]:
    return [sum(column) for column in zip(*stats)]


class Bleu(_SacrebleuMetric):
    """Corpus BLEU (sacrebleu: 4-grams, exp smoothing, case-sensitive) per language, 13a tokenisation, or the CIDEr
    segmentation + no tokenisation for zh/ja/th; stored /100 (see the module docstring).

    Args:
        bootstrap_resamples: resamples for the 95% interval (0: no interval).
        seed: seed of the bootstrap.
    """

    name: ClassVar[str] = "bleu"
    _label: ClassVar[str] = "bleu[eff:yes]"

    def _corpus_metric(self, lang: str) -> Any:
        # force=True only silences sacrebleu's "looks tokenized" warning (lines ending in " ."): segmented text is
        # tokenized on purpose; it changes no number and is not part of sacrebleu's signature
        return _sacrebleu().BLEU(tokenize=bleu_tokenizer(lang), force=True)

    def _sentence_metric(self, lang: str) -> Any:
        return _sacrebleu().BLEU(tokenize=bleu_tokenizer(lang), force=True, effective_order=True)

    def _tok_part(self, lang: str | None) -> str:
        if lang is None:
            return "tok=13a,ja+th+zh:none|"
        return f"tok={bleu_tokenizer(lang)}|"


class ChrF(_SacrebleuMetric):
    """chrF++ (sacrebleu CHRF: character 6-grams + word 1-2-grams, beta 2, case-sensitive) per language, on the CIDEr
    segmentation for zh/ja/th; stored /100 (see the module docstring).

    Args:
        bootstrap_resamples: resamples for the 95% interval (0: no interval).
        seed: seed of the bootstrap.
    """

    name: ClassVar[str] = "chrfpp"
    _label: ClassVar[str] = "chrf++"

    def _corpus_metric(self, lang: str) -> Any:
        return _sacrebleu().CHRF(word_order=2)

    def _sentence_metric(self, lang: str) -> Any:
        return _sacrebleu().CHRF(word_order=2)
