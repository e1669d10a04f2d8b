"""The Metric protocol and MetricResult value shared by every metric."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import ClassVar

from mvleval.metrics.bootstrap import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    bootstrap_mean_interval,
    check_resamples,
)
from mvleval.util.errors import MvlevalError


@dataclass(frozen=True)
class MetricResult:
    """A metric computed on one language's corpus.

    Attributes:
        value: the corpus score (CIDEr on pycocoevalcap's scale, accuracies in [0, 1]); None when the metric
            cannot be computed for this language (then `note` says why).
        per_example: one score per example, or None when the metric has no per-example form.
        signature: how the score was made (implementation, tokeniser, version...).
        interval: 95% bootstrap interval (low, high) when computed.
        note: why `value` is None, or another caveat worth recording.
        extra: further named numbers (e.g. the detector's fidelity on the references).
        per_example_extra: per-example facts behind the scores, one dict (or None when there is nothing to say)
            per example, e.g. the language detected for a language-fidelity miss; stored in the per-sample file
            under "extra", never used for scoring.
    """

    value: float | None
    per_example: list[float] | None
    signature: str
    interval: tuple[float, float] | None = None
    note: str | None = None
    extra: dict[str, float | None] = field(default_factory=dict)
    per_example_extra: list[dict[str, str] | None] | None = None


class Metric(ABC):
    """A corpus metric computed per language: score(predictions, references, lang) -> MetricResult."""

    name: ClassVar[str]
    higher_is_better: ClassVar[bool] = True

    @classmethod
    def for_task(cls, languages: Sequence[str], answer_language: str | None) -> Metric:
        """This metric as a task with these languages uses it (the registry builds metrics by name through it).

        Args:
            languages: the task's language codes.
            answer_language: the language answers are requested in when it is fixed (None: each corpus's own).
        """
        return cls()

    @abstractmethod
    def signature(self) -> str:
        """A string naming exactly how scores are made, e.g. 'cider|n=4|sigma=6|tok=ptb-py|seg=zh:char|v=1'."""

    @abstractmethod
    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]], lang: str) -> MetricResult:
        """Score one language's corpus; `lang` is the corpus language (the dataset's code)."""


class MeanMetric(Metric):
    """A metric whose value is the mean of its per-sample scores, with a bootstrap interval over them (resampling the
    run's clusters, metrics/bootstrap.py): accuracies of every kind. Subclasses score each example."""

    def __init__(self, bootstrap_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> None:
        check_resamples(bootstrap_resamples, seed)
        self.bootstrap_resamples = bootstrap_resamples
        self.seed = seed

    def no_examples(self, lang: str) -> MetricResult:
        """The result of a language without examples: no value, and a note saying why."""
        return MetricResult(
            value=None, per_example=[], signature=self.signature(), note=f"no examples for language '{lang}'"
        )

    def mean_result(
        self,
        per_example: list[float],
        *,
        extra: dict[str, float | None] | None = None,
        per_example_extra: list[dict[str, str] | None] | None = None,
    ) -> MetricResult:
        """The mean of `per_example` with its bootstrap interval, and the facts behind it."""
        return MetricResult(
            value=sum(per_example) / len(per_example),
            per_example=per_example,
            signature=self.signature(),
            interval=bootstrap_mean_interval(per_example, self.bootstrap_resamples, self.seed),
            extra=extra or {},
            per_example_extra=per_example_extra,
        )


def check_inputs(name: str, predictions: Sequence[str], references: Sequence[Sequence[str]], lang: str) -> None:
    """Refuse malformed metric input: one prediction string and a non-empty list of reference strings per example."""
    if len(predictions) != len(references):
        raise MvlevalError(
            f"{name} got {len(predictions)} predictions but {len(references)} reference lists for language '{lang}'.",
            fix="pass one prediction and one list of references per example.",
        )
    # the common well-formed case in a few C-level passes (a metric call checks every caption of a language); the
    # loop below runs only to name what is wrong (and accepts str subclasses the quick check leaves to it)
    if (
        set(map(type, predictions)) <= {str}
        and set(map(type, references)) <= {list, tuple}
        and 0 not in set(map(len, references))
        and set(map(type, chain.from_iterable(references))) <= {str}
    ):
        return
    for i, (p, refs) in enumerate(zip(predictions, references)):
        if not isinstance(p, str):
            raise MvlevalError(
                f"{name}: prediction {i} for language '{lang}' is {type(p).__name__}, not a string.",
                fix="pass the generated text (use '' for an empty output).",
            )
        if isinstance(refs, str) or len(refs) == 0 or not all(isinstance(r, str) for r in refs):
            raise MvlevalError(
                f"{name}: example {i} for language '{lang}' needs a non-empty list of reference strings, got {refs!r}.",
                fix="give every example a list with at least one reference, e.g. ['yes'].",
            )
