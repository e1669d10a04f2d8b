"""Choice accuracy: multiple choice answered with a letter label ("B", "(B)", "B. pears"), compared with the gold label.

exact_match cannot score letter labels: mBLIP's VQA cleaning deletes the article "a", so a correct "A" becomes "".
Here the label is the first character of the prediction after leading spaces and opening brackets/quotes, when a
letter followed by nothing, a space or punctuation ("B", "B.", "(B)", "B) pears"; not "Blue"); compared with the
gold label case-insensitively. With several references an example is correct if any matches.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar

from mvleval.metrics.base import Metric, MetricResult, check_inputs
from mvleval.metrics.bootstrap import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    bootstrap_mean_interval,
    bootstrap_signature,
    check_resamples,
)

_LABEL = re.compile(r"^[\s(\[\"'“‘]*([A-Za-z])(?![A-Za-z0-9])")


def predicted_label(prediction: str) -> str | None:
    """The letter label a prediction starts with, upper-cased; None when it does not start with one."""
    match = _LABEL.match(prediction)
    return match.group(1).upper() if match else None


class ChoiceAccuracy(Metric):
    """Share of examples whose predicted letter label equals a gold label (see the module docstring)."""

    name: ClassVar[str] = "choice_accuracy"

    def __init__(self, bootstrap_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> None:
        check_resamples(bootstrap_resamples, seed)
        self.bootstrap_resamples = bootstrap_resamples
        self.seed = seed

    def signature(self) -> str:
        return f"choice_accuracy|label=first-letter|case-insensitive|any-ref|{bootstrap_signature(self.bootstrap_resamples, self.seed)}|mvleval-1"

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]], lang: str) -> MetricResult:
        check_inputs(self.name, predictions, references, lang)
        if not predictions:
            return MetricResult(value=None, per_example=[], signature=self.signature(), note=f"no examples for language '{lang}'")
        per_example = []
        for pred, refs in zip(predictions, references):
            label = predicted_label(pred)
            per_example.append(1.0 if label is not None and label in {r.strip().upper() for r in refs} else 0.0)
        value = sum(per_example) / len(per_example)
        interval = bootstrap_mean_interval(per_example, self.bootstrap_resamples, self.seed)
        return MetricResult(value=value, per_example=per_example, signature=self.signature(), interval=interval)
