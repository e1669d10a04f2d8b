"""Metrics by name: the registry a benchmark file's `metrics:` list is read against (lazy imports, did-you-mean).

A metric file adds one line to `METRICS` (name -> "module:Class"); the class is imported only when a task asks for it.
A metric whose constructor needs the task's context (language fidelity needs the task's languages and the language
answers are requested in) overrides `Metric.for_task`; any other metric is built with its defaults.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mvleval.util.errors import MvlevalError, did_you_mean

if TYPE_CHECKING:
    from mvleval.metrics.base import Metric

#: metric name (as recorded in run records) -> "module:Class"
METRICS: dict[str, str] = {
    "bleu": "mvleval.metrics.sacrebleu_metrics:Bleu",
    "chrfpp": "mvleval.metrics.sacrebleu_metrics:ChrF",
    "choice_accuracy": "mvleval.metrics.choice:ChoiceAccuracy",
    "cider": "mvleval.metrics.cider:Cider",
    "contains_accuracy": "mvleval.metrics.contains:ContainsAccuracy",
    "exact_match": "mvleval.metrics.exact_match:ExactMatch",
    "relaxed_accuracy": "mvleval.metrics.exact_match:RelaxedAccuracy",
    "language_fidelity": "mvleval.metrics.language_fidelity:LanguageFidelity",
    "m3exam_accuracy": "mvleval.metrics.m3exam:M3ExamAccuracy",
    "mmmu_accuracy": "mvleval.metrics.mmmu:MmmuAccuracy",
}


def metric_names() -> list[str]:
    """The names a task (or a benchmark file) may list, sorted."""
    return sorted(METRICS)


def check_metric_name(name: str) -> str | None:
    """None when `name` is a registered metric, else the problem in one sentence (with a suggestion)."""
    if name in METRICS:
        return None
    hint = did_you_mean(name, metric_names())
    if not hint and name.lower().replace("-", "_") in METRICS:
        hint = f" Did you mean '{name.lower().replace('-', '_')}'?"
    return f"unknown metric '{name}'.{hint} Known metrics: {', '.join(metric_names())}."


def build_metric(name: str, languages: Sequence[str], answer_language: str | None) -> Metric:
    """The metric registered as `name`, built for a task with these languages.

    Raises:
        MvlevalError: the name is not registered.
    """
    problem = check_metric_name(name)
    if problem is not None:
        raise MvlevalError(problem, fix="list metrics by these names.")
    module, _, cls = METRICS[name].partition(":")
    metric_class: type[Metric] = getattr(importlib.import_module(module), cls)
    return metric_class.for_task(languages, answer_language)
