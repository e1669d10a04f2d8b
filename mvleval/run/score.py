"""Scoring: each row's answer taken from its prediction, each language's corpus scored with each of the task's
metrics (intervals resampling the task's clusters), per-sample scores filled into the rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mvleval.benchmarks.task import Example, Task
from mvleval.record.schema import GroupScore, MetricScores
from mvleval.run.files import SampleRow

if TYPE_CHECKING:
    from mvleval.metrics.base import Metric


def _chat_clean(task: Task) -> bool:
    """Chat-style prompts of open-answer tasks (scored by exact match) get rule chat-clean-1 (metrics/answer.py)."""
    return task.prompt_style == "chat" and any(m.name in ("exact_match", "relaxed_accuracy") for m in task.metrics())


def task_signature(task: Task, metric: Metric) -> str:
    """A metric's signature as the task's records carry it: with the task's resampling unit (unit=image, ...) and the
    rule that took the answer from the output (answer=think-1, ...)."""
    from mvleval.metrics.answer import answer_rule
    from mvleval.metrics.bootstrap import clustered

    with clustered(None, task.cluster_unit()):
        return f"{metric.signature()}|{answer_rule(_chat_clean(task))}"


def score_rows(
    task: Task,
    languages: Sequence[str],
    rows_by_lang: dict[str, list[SampleRow]],
    examples_by_lang: Mapping[str, Sequence[Example]] | None = None,
    thinking_tags: Sequence[Sequence[str]] = (),
) -> dict[str, MetricScores]:
    """Score each language's corpus with each of the task's metrics; fills each row's per-sample scores in place.

    Every interval resamples the task's clusters (`Task.cluster_keys` of each language's examples, in row order: the
    image, or a benchmark's group field); a row whose example names a cluster of its own keeps it under "cluster",
    so the gate's paired test draws the same clusters. Multiple-choice metrics get each example's choice texts.
    Metrics score each row's answer (metrics/answer.py: thinking removed with the default tags and `thinking_tags`,
    the model's chat template's; chat-style open answers cleaned); a row whose answer differs from its raw prediction
    keeps it under "answer".
    """
    answers = _answers(task, languages, rows_by_lang, thinking_tags)
    clusters: dict[str, list[str] | None] = {}
    choices: dict[str, list[tuple[str, ...] | None] | None] = {}
    for lang in languages:
        examples = examples_by_lang.get(lang) if examples_by_lang is not None else None
        if examples is None:
            clusters[lang], choices[lang] = None, None
            continue
        if [e.id for e in examples] != [r.id for r in rows_by_lang[lang]]:
            raise RuntimeError(f"score_rows: rows and examples of {lang} are not in the same order")
        clusters[lang] = task.cluster_keys(examples)
        choices[lang] = [e.choices for e in examples]
        for row, example in zip(rows_by_lang[lang], examples, strict=True):
            if example.cluster is not None:
                row.cluster = example.cluster
            row.group = example.group
    by_cluster = examples_by_lang is not None
    return {
        metric.name: _score_metric(task, metric, languages, rows_by_lang, answers, clusters, choices, by_cluster)
        for metric in task.metrics()
    }


def _answers(
    task: Task,
    languages: Sequence[str],
    rows_by_lang: dict[str, list[SampleRow]],
    thinking_tags: Sequence[Sequence[str]],
) -> dict[str, list[str]]:
    """Each row's scored answer (set on the row where it differs from the prediction), by language."""
    answer_of = answer_rule_of(task, thinking_tags)
    answers: dict[str, list[str]] = {}
    for lang in languages:
        answers[lang] = []
        for row in rows_by_lang[lang]:
            answer = answer_of(row.prediction)
            row.answer = answer if answer != row.prediction else None
            answers[lang].append(answer)
    return answers


def answer_rule_of(task: Task, thinking_tags: Sequence[Sequence[str]] = ()) -> Callable[[str], str]:
    """The task's answer of one raw output, as `score_rows` scores it (thinking removed with the default tags and
    `thinking_tags`; chat-style open answers cleaned)."""
    from mvleval.metrics.answer import DEFAULT_THINKING_TAGS, scored_answer

    tags = list(DEFAULT_THINKING_TAGS) + [
        (str(t[0]), str(t[1])) for t in thinking_tags if tuple(t) not in DEFAULT_THINKING_TAGS
    ]
    chat = _chat_clean(task)
    return lambda prediction: scored_answer(prediction, tags, chat)


def _score_metric(
    task: Task,
    metric: Metric,
    languages: Sequence[str],
    rows_by_lang: dict[str, list[SampleRow]],
    answers: dict[str, list[str]],
    clusters: dict[str, list[str] | None],
    choices: dict[str, list[tuple[str, ...] | None] | None],
    by_cluster: bool,
) -> MetricScores:
    from mvleval.metrics.bootstrap import clustered

    unit = task.cluster_unit()
    per_lang: dict[str, float | None] = {}
    intervals: dict[str, tuple[float, float] | None] = {}
    notes: dict[str, str] = {}
    extra: dict[str, dict[str, float | None]] = {}
    with clustered(None, unit if by_cluster else "example"):
        signature = task_signature(task, metric) if by_cluster else metric.signature()
    for lang in languages:
        rows = rows_by_lang[lang]
        kwargs: dict[str, Any] = {}
        if getattr(metric, "needs_choices", False) and choices[lang] is not None:
            kwargs["choices"] = choices[lang]
        with clustered(clusters[lang], unit if clusters[lang] is not None else "example"):
            result = metric.score(answers[lang], [r.references for r in rows], lang, **kwargs)
        per_lang[lang] = result.value
        intervals[lang] = result.interval
        if result.note:
            notes[lang] = result.note
        if result.extra:
            extra[lang] = dict(result.extra)
        if result.per_example is not None:
            for row, value in zip(rows, result.per_example, strict=True):
                row.scores[metric.name] = value
        if result.per_example_extra is not None:
            # per-sample facts behind a score (e.g. the language detected for a language-fidelity miss)
            for row, facts in zip(rows, result.per_example_extra, strict=True):
                if facts:
                    row.extra[metric.name] = facts
    values = [v for v in per_lang.values() if v is not None]
    by_group = {lang: g for lang in languages if (g := group_scores(rows_by_lang[lang], metric.name))}
    return MetricScores(
        signature=signature,
        per_lang=per_lang,
        mean=sum(values) / len(values) if values else None,
        intervals=intervals,
        notes=notes,
        extra=extra,
        higher_is_better=metric.higher_is_better,
        by_group=by_group,
    )


def group_scores(rows: Sequence[SampleRow], metric: str) -> dict[str, GroupScore]:
    """One language's metric per group of its examples (those whose task names a group): the mean of the group's
    per-sample scores (a metric without per-sample scores, such as CIDEr over a corpus, has no per-group value)."""
    grouped: dict[str, list[float | None]] = {}
    for row in rows:
        if row.group is not None:
            grouped.setdefault(row.group, []).append(row.scores.get(metric))
    out: dict[str, GroupScore] = {}
    for group, values in sorted(grouped.items()):
        if all(v is None for v in values):
            continue
        scored = [float(v) for v in values if v is not None]
        out[group] = GroupScore(n=len(scored), value=sum(scored) / len(scored))
    return out
