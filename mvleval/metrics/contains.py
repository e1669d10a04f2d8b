"""Containment accuracy: the reference, stripped and lower-cased, occurs inside the prediction with its periods removed
(MTVQA's metric, bytedance/MTVQA ``scripts/acc.py``).

The authors' rule, exactly: an example is correct when, for any reference ``ann``,
``ann.strip().lower() in pred.strip().lower().replace(".", "")``. Only the prediction loses its periods: a reference
that holds a period ("3.5", "St.") can never match, as in the authors' script. VLMEvalKit (``MultiLingual/mtvqa``)
and lmms-eval also remove periods from the reference, and VLMEvalKit asks an LLM judge about the misses; both give
other numbers, so the signature names the rule (``rule=bytedance-acc``). No Unicode normalisation is applied: the
authors apply none, and a model writing full-width digits where the reference has ASCII ones is wrong under it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from mvleval.metrics.base import MeanMetric, MetricResult, check_inputs
from mvleval.metrics.bootstrap import (
    bootstrap_signature,
)


def contains_answer(prediction: str, reference: str) -> bool:
    """True when `reference` is contained in `prediction` by the MTVQA authors' rule (see the module docstring)."""
    return reference.strip().lower() in prediction.strip().lower().replace(".", "")


class ContainsAccuracy(MeanMetric):
    """Share of examples whose prediction contains a reference answer, by MTVQA's rule."""

    name: ClassVar[str] = "contains_accuracy"

    def signature(self) -> str:
        return (
            "contains_accuracy|rule=bytedance-acc|ref=strip+lower|pred=strip+lower+no-periods|any-ref|"
            f"{bootstrap_signature(self.bootstrap_resamples, self.seed)}|mvleval-1"
        )

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]], lang: str) -> MetricResult:
        check_inputs(self.name, predictions, references, lang)
        if not predictions:
            return self.no_examples(lang)
        per_example = [
            1.0 if any(contains_answer(p, r) for r in refs) else 0.0 for p, refs in zip(predictions, references)
        ]
        return self.mean_result(per_example)
