"""M3Exam accuracy: the prediction read as the M3Exam authors' eval.py reads it (DAMO-NLP-SG/M3Exam
``compute_acc_score``), re-implemented here from reading it.

The prediction is stripped; when longer than one character it becomes its first character, or its second when it
starts with "(" ("(2) xxx" -> "2", "B) xxx" -> "B"); it is correct when it equals the stripped gold label, which is
the exam's own (a letter or a digit). Anything else is wrong: the authors count longer answers as "ill-formatted"
(reported here as ``format_error_rate``: the share of predictions longer than one character) but still score their
first character.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from mvleval.metrics.base import MeanMetric, MetricResult, check_inputs
from mvleval.metrics.bootstrap import (
    bootstrap_signature,
)


def read_label(prediction: str) -> str:
    """The label the authors' eval.py reads from a prediction."""
    pred = prediction.strip()
    if len(pred) > 1:
        pred = pred[1] if pred[0] == "(" else pred[0]
    return pred


class M3ExamAccuracy(MeanMetric):
    name: ClassVar[str] = "m3exam_accuracy"

    def signature(self) -> str:
        return (
            f"m3exam_accuracy|read=m3exam-eval.py|{bootstrap_signature(self.bootstrap_resamples, self.seed)}|mvleval-1"
        )

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]], lang: str) -> MetricResult:
        check_inputs(self.name, predictions, references, lang)
        if not predictions:
            return self.no_examples(lang)
        per_example = [
            1.0 if any(read_label(p) == r.strip() for r in refs) else 0.0 for p, refs in zip(predictions, references)
        ]
        long = sum(len(p.strip()) > 1 for p in predictions)
        return self.mean_result(
            per_example,
            extra={"format_error_rate": long / len(per_example)},
            per_example_extra=[{"label": read_label(p)} for p in predictions],
        )
