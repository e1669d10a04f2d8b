"""Regression gate: a run record vs a baseline record -> GateReport (comparability first, then tolerances), and its renderings.

Rules:
- The two records must measure the same thing: task name, task version, protocol hash, split, example set
  (provenance.data_fingerprint), languages and examples per language, and each gated metric's signature and direction.
  Anything else raises MvlevalError naming every difference (the CLI exits 2): a gate never prints a misleading number.
- Tolerances are absolute and in points, the scale of every mvleval table (x100: accuracy 0.62 is 62.0 points, CIDEr
  0.45 is 45.0). A cell (metric, language) fails when the run is worse than the baseline by more than its tolerance;
  a drop exactly equal to the tolerance passes. Differences are computed in exact decimal arithmetic on the numbers as
  stored in the records, so the edge is exact rather than subject to float rounding.
- With `paired`, a cell fails only when the drop exceeds its tolerance *and* a one-sided paired bootstrap over the
  two runs' per-sample scores (aligned by (lang, id)) says the drop is significant: p < 1 - confidence. Use a
  tolerance of 0 for a pure significance test. This keeps small --limit subsets from failing CI on noise.
- A cell is skipped when the baseline has no value (e.g. language fidelity is null for quz); it fails when only the
  run lacks a value the baseline has. The report passes when no cell fails.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from mvleval.compare.leaderboard import SCALE_NOTE, format_points
from mvleval.record.schema import (
    RunRecord,
    TaskInfo,
    check_sample_counts,
    check_sample_row,
    check_samples_hash,
    check_scores_follow_samples,
    read_samples,
    samples_path,
)
from mvleval.util.errors import MvlevalError, did_you_mean, plural

if TYPE_CHECKING:
    from rich.table import Table

Verdict = Literal["pass", "fail", "skipped"]
#: Wildcard key of a `max_drop` dict: the tolerance of every metric not named.
ANY_METRIC = "*"


@dataclass(frozen=True)
class GateCell:
    """The verdict for one metric in one language.

    Attributes:
        metric, lang: what was compared.
        baseline, run: the records' scores (native scale; None when the record has no value).
        delta: run - baseline (native scale), None when either value is missing.
        tolerance: the allowed drop in points (x100).
        higher_is_better: the metric's direction; a drop is a decrease when True.
        verdict: pass, fail or skipped.
        reason: why (always set for fail and skipped).
        p_value, interval: paired mode only: the bootstrap's share of resamples in which the run is not worse
            (never below 1/(resamples+1)), and its interval for run - baseline (native scale); p_value is None when
            too few examples differ for any test to establish significance.
        n_paired, n_differing: paired mode only: examples in both records, and how many of them scored differently.
        significance: paired mode only, for a drop: 'significant', 'not significant' or 'too few examples'.
    """

    metric: str
    lang: str
    baseline: float | None
    run: float | None
    delta: float | None
    tolerance: float
    higher_is_better: bool
    verdict: Verdict
    reason: str = ""
    p_value: float | None = None
    interval: tuple[float, float] | None = None
    n_paired: int | None = None
    n_differing: int | None = None
    significance: str | None = None


class _CellCommon(TypedDict):
    """The GateCell fields every verdict of one metric in one language shares."""

    metric: str
    lang: str
    baseline: float | None
    run: float | None
    tolerance: float
    higher_is_better: bool


class _CellPairing(TypedDict, total=False):
    """The GateCell fields only paired mode sets."""

    n_paired: int
    n_differing: int
    significance: str | None


def differing_needed(confidence: float) -> int:
    """The fewest examples that must score differently before any paired test can call a drop significant at
    `confidence`: with n differing examples, even when every one got worse, an exact sign test's p is 1/2^n, so n
    must satisfy 1/2^n < 1 - confidence (5 at 0.95, 7 at 0.99). The bootstrap, resampling so few values, would
    otherwise report p near 0 for three examples."""
    alpha = Decimal(1) - Decimal(repr(confidence))
    n = 1
    while Decimal(1) / (2**n) >= alpha:
        n += 1
    return n


@dataclass(frozen=True)
class GateReport:
    """The outcome of gating one run against one baseline."""

    task: str
    version: int
    split: str
    run_id: str
    baseline_id: str
    paired: bool
    confidence: float
    n_resamples: int
    cells: tuple[GateCell, ...]
    warnings: tuple[str, ...] = ()
    unit: str = "example"

    @property
    def passed(self) -> bool:
        """True when no cell failed (the CLI exits 0), False otherwise (exit 1)."""
        return all(c.verdict != "fail" for c in self.cells)

    @property
    def exit_code(self) -> int:
        """0 on pass, 1 on regression (comparability errors never get this far: they raise, exit 2)."""
        return 0 if self.passed else 1

    @property
    def failures(self) -> list[GateCell]:
        return [c for c in self.cells if c.verdict == "fail"]


# -- comparability --------------------------------------------------------------------------------------------------
def _selected_metrics(run: RunRecord, baseline: RunRecord, metrics: Sequence[str] | None) -> list[str]:
    if metrics is None:
        return list(baseline.scores)
    known = list(dict.fromkeys([*baseline.scores, *run.scores]))
    for name in metrics:
        if name not in known:
            raise MvlevalError(
                f"unknown metric '{name}'.{did_you_mean(name, known)} The records have: {', '.join(known)}.",
                fix="pass metric names as they appear in the run record (--metric).",
            )
    if not metrics:
        raise MvlevalError("no metrics to gate.", fix="pass at least one --metric or leave it out to gate them all.")
    return list(dict.fromkeys(metrics))


def _hashes_image_names_only(mvleval_version: str) -> bool:
    """Whether a record made by this mvleval version has a data fingerprint that predates image-content hashing (< 0.2)."""
    from mvleval import IMAGE_CONTENT_FINGERPRINT_SINCE

    try:
        version = tuple(int(part) for part in mvleval_version.split(".")[:2])
    except ValueError:
        return False
    return version < IMAGE_CONTENT_FINGERPRINT_SINCE


@dataclass(frozen=True)
class Comparable:
    """What decides whether two runs' scores may be compared: everything but the scores themselves.

    A finished record gives it (`Comparable.of`); so does a run that has not started (`mvleval run --gate` checks it
    against the baseline before the model loads: runner.planned_comparable).
    """

    run_id: str
    task: TaskInfo
    data_fingerprint: str
    mvleval_version: str
    metrics: Mapping[str, tuple[str, bool]]  # name -> (signature, higher_is_better)
    # the new-token budget: a run given more tokens than the protocol's (--max-new-tokens N, a reasoning model
    # thinking) is a class of its own, never gated against a protocol baseline (None: unknown)
    max_new_tokens: int | None = None

    @classmethod
    def of(cls, record: RunRecord) -> Comparable:
        budget = record.model.generation.get("max_new_tokens")
        return cls(
            run_id=record.run_id,
            task=record.task,
            data_fingerprint=record.provenance.data_fingerprint,
            mvleval_version=record.provenance.mvleval_version,
            metrics={name: (s.signature, s.higher_is_better) for name, s in record.scores.items()},
            max_new_tokens=budget if isinstance(budget, int) else None,
        )


def comparability_problems(run: RunRecord, baseline: RunRecord, metrics: Sequence[str]) -> list[str]:
    """Every reason the two records' scores are not comparable (empty when they are)."""
    return _problems(Comparable.of(run), Comparable.of(baseline), metrics)


def _problems(run: Comparable, baseline: Comparable, metrics: Sequence[str]) -> list[str]:
    problems: list[str] = []
    r, b = run.task, baseline.task

    def differs(what: str, run_value: Any, base_value: Any) -> None:
        if run_value != base_value:
            problems.append(f"{what}: run {run_value!r}, baseline {base_value!r}")

    differs("task", r.name, b.name)
    differs("task version", r.version, b.version)
    differs("task protocol hash", r.protocol_hash, b.protocol_hash)
    differs("split", r.split, b.split)
    differs("example set (data fingerprint)", run.data_fingerprint, baseline.data_fingerprint)
    stale = [
        (name, c) for name, c in (("run", run), ("baseline", baseline)) if _hashes_image_names_only(c.mvleval_version)
    ]
    if run.data_fingerprint != baseline.data_fingerprint and len(stale) == 1:
        name, c = stale[0]
        problems[-1] += (
            f" (the {name} was made by mvleval {c.mvleval_version}, whose fingerprint hashed "
            "image names only; since 0.2 it hashes the images' content too, so the same data differs here: "
            f"re-run the {name} with this mvleval)"
        )
    if set(r.languages) != set(b.languages):
        only_run = sorted(set(r.languages) - set(b.languages))
        only_base = sorted(set(b.languages) - set(r.languages))
        problems.append(f"languages: only in run {only_run}, only in baseline {only_base}")
    else:
        counts = {lang: (r.n_examples.get(lang), b.n_examples.get(lang)) for lang in b.languages}
        for lang, (nr, nb) in counts.items():
            if nr != nb:
                problems.append(f"examples in {lang}: run {nr}, baseline {nb}")
    if (
        run.max_new_tokens is not None
        and baseline.max_new_tokens is not None
        and run.max_new_tokens != baseline.max_new_tokens
    ):
        problems.append(
            f"max_new_tokens: run {run.max_new_tokens}, baseline {baseline.max_new_tokens} (a different "
            "new-token budget, e.g. --max-new-tokens for a reasoning model, is kept apart from protocol runs)"
        )
    for name in metrics:
        if name not in baseline.metrics or name not in run.metrics:
            where = "baseline" if name not in baseline.metrics else "run"
            problems.append(f"metric {name}: missing from the {where}")
            continue
        differs(f"metric {name} signature", run.metrics[name][0], baseline.metrics[name][0])
        differs(f"metric {name} direction (higher_is_better)", run.metrics[name][1], baseline.metrics[name][1])
    return problems


def _refuse(run_id: str, baseline_id: str, problems: list[str], *, before: bool = False) -> None:
    if problems:
        when = " (checked before the model loads: nothing was run or written)" if before else ""
        raise MvlevalError(
            f"run {run_id} cannot be gated against baseline {baseline_id}{when}: " + "; ".join(problems) + ".",
            fix="gate against a baseline of the same task version, split, example set and metric signatures "
            "(re-run with the baseline's settings, or bless a new baseline if the change is intended).",
        )


def check_comparable(run: RunRecord, baseline: RunRecord, metrics: Sequence[str] | None = None) -> list[str]:
    """The metrics to compare (all of the baseline's when None), after checking that the records are comparable.

    Shared by the gate and `mvleval report --compare`, so both refuse with the same message.

    Raises:
        MvlevalError: a metric name is unknown, or the records differ in anything comparability_problems checks
            (every difference listed).
    """
    selected = _selected_metrics(run, baseline, metrics)
    _refuse(run.run_id, baseline.run_id, comparability_problems(run, baseline, selected))
    return selected


def check_planned(run: Comparable, baseline: RunRecord) -> None:
    """Refuse, before anything runs, a run that could not be gated against `baseline` once finished (`run --gate`):
    the same checks and message as the gate's, on every metric of the baseline.

    Raises:
        MvlevalError: the run and the baseline differ in anything comparability_problems checks.
    """
    _refuse(run.run_id, baseline.run_id, _problems(run, Comparable.of(baseline), list(baseline.scores)), before=True)


# -- tolerances -----------------------------------------------------------------------------------------------------
def _check_points(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise MvlevalError(
            f"{what} must be a number >= 0 (points, x100), got {value!r}.", fix="e.g. 1.0 for one point."
        )
    return float(value)


def _tolerances(
    metrics: Sequence[str],
    languages: Sequence[str],
    max_drop: Mapping[str, float] | float,
    per_lang_tolerance: Mapping[str, float | Mapping[str, float]] | None,
) -> dict[tuple[str, str], float]:
    """(metric, lang) -> allowed drop in points; every key of the user's dicts must name something gated."""
    base: dict[str, float] = {}
    if isinstance(max_drop, Mapping):
        for name in max_drop:
            if name != ANY_METRIC and name not in metrics:
                raise MvlevalError(
                    f"max_drop names metric '{name}', which is not gated.{did_you_mean(name, metrics)}",
                    fix=f"use one of: {', '.join(metrics)} (or '{ANY_METRIC}' for all others).",
                )
        for name in metrics:
            if name in max_drop:
                base[name] = _check_points(max_drop[name], f"max_drop for {name}")
            elif ANY_METRIC in max_drop:
                base[name] = _check_points(max_drop[ANY_METRIC], f"max_drop '{ANY_METRIC}'")
            else:
                raise MvlevalError(
                    f"no tolerance for metric '{name}'.",
                    fix=f"add it to max_drop, or add a '{ANY_METRIC}' entry for all metrics not named.",
                )
    else:
        value = _check_points(max_drop, "max_drop")
        base = {name: value for name in metrics}
    out = {(m, lang): base[m] for m in metrics for lang in languages}
    for lang, spec in (per_lang_tolerance or {}).items():
        if lang not in languages:
            raise MvlevalError(
                f"per-language tolerance for '{lang}', which the task has not got.{did_you_mean(lang, languages)}",
                fix=f"use one of: {' '.join(languages)}.",
            )
        if isinstance(spec, Mapping):
            for name, value in spec.items():
                if name not in metrics:
                    raise MvlevalError(
                        f"per-language tolerance for {lang} names metric '{name}', which is not gated.{did_you_mean(name, metrics)}",
                        fix=f"use one of: {', '.join(metrics)}.",
                    )
                out[(name, lang)] = _check_points(value, f"tolerance for {name} in {lang}")
        else:
            value = _check_points(spec, f"tolerance for {lang}")
            for name in metrics:
                out[(name, lang)] = value
    return out


def _parse_number(text: str, flag: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise MvlevalError(
            f"{flag} {spec!r}: {text!r} is not a number.", fix=f"e.g. {flag} 1.0 (points, x100)."
        ) from None
    return _check_points(value, f"{flag} {spec!r}")


def parse_max_drop(specs: Sequence[str]) -> float | dict[str, float]:
    """CLI values of --max-drop -> gate()'s max_drop: ['1.0'] -> 1.0; ['0.5', 'cider=2'] -> {'*': 0.5, 'cider': 2.0}.

    A bare number is the tolerance of every metric not named; NAME=POINTS sets one metric's.
    """
    if not specs:
        raise MvlevalError("--max-drop needs a value.", fix="e.g. --max-drop 1.0 or --max-drop exact_match=1.0.")
    out: dict[str, float] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        key = name.strip() if sep else ANY_METRIC
        if key in out:
            raise MvlevalError(f"--max-drop gives '{key}' twice.", fix="give each metric one tolerance.")
        out[key] = _parse_number(value if sep else name, "--max-drop", spec)
    return out[ANY_METRIC] if list(out) == [ANY_METRIC] else out


def parse_lang_tolerances(specs: Sequence[str]) -> dict[str, float | dict[str, float]]:
    """CLI values of --lang-tolerance -> gate()'s per_lang_tolerance: 'zh=3' (all metrics) or 'zh:cider=3' (one)."""
    out: dict[str, float | dict[str, float]] = {}
    for spec in specs:
        target, sep, value = spec.partition("=")
        if not sep or not target.strip():
            raise MvlevalError(
                f"--lang-tolerance {spec!r} is not LANG=POINTS or LANG:METRIC=POINTS.",
                fix="e.g. --lang-tolerance zh=3.",
            )
        lang, colon, metric = target.strip().partition(":")
        points = _parse_number(value, "--lang-tolerance", spec)
        current = out.get(lang)
        if colon:
            if isinstance(current, float):
                raise MvlevalError(
                    f"--lang-tolerance sets {lang} for all metrics and for {metric}.", fix="give one or the other."
                )
            per_metric = current if isinstance(current, dict) else {}
            per_metric[metric] = points
            out[lang] = per_metric
        else:
            if current is not None:
                raise MvlevalError(f"--lang-tolerance gives {lang} twice.", fix="give each language one tolerance.")
            out[lang] = points
    return out


# -- per-sample scores ----------------------------------------------------------------------------------------------
def _load_samples(
    record: RunRecord, folder: Path | None, who: str, groups: dict[tuple[str, str], tuple[str, ...]] | None = None
) -> dict[tuple[str, str], dict[str, Any]]:
    """(lang, id) -> per-sample scores, checked against the record's example counts; `groups` (when given) receives
    each row's cluster field, else its image names, for the clustered paired test."""
    if folder is None:
        raise MvlevalError(
            f"paired gating needs the {who} record's folder to find its per-sample file.", fix="pass the record's path."
        )
    path = samples_path(record, folder)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for i, row in enumerate(read_samples(path), start=1):
        check_sample_row(row, f"{path} (row {i})", ("lang", "id", "scores"))
        key = (str(row["lang"]), str(row["id"]))
        scores = row["scores"]
        if key in rows:
            raise MvlevalError(
                f"example {key[1]} of {key[0]} appears twice in the per-sample file.",
                fix="rescore from a clean run (a resumed run must not repeat examples).",
                where=f"{path} (row {i})",
            )
        rows[key] = scores
        if groups is not None:
            cluster, images = row.get("cluster"), row.get("images")
            groups[key] = ("cluster", cluster) if isinstance(cluster, str) else tuple(images) if images else ()
    check_sample_counts(
        (lang for lang, _ in rows),
        record,
        path,
        f"the {who} record",
        fix="keep each record next to its own per-sample file (`mvleval baseline bless` copies both).",
    )
    check_scores_follow_samples(
        record, ((lang, scores) for (lang, _), scores in rows.items()), path, f"the {who} record"
    )
    return rows


def _aligned(
    metric: str,
    lang: str,
    run_rows: Mapping[tuple[str, str], Mapping[str, Any]],
    base_rows: Mapping[tuple[str, str], Mapping[str, Any]],
) -> tuple[list[float], list[float]]:
    keys = sorted(k for k in base_rows if k[0] == lang)
    a: list[float] = []
    b: list[float] = []
    for key in keys:
        base_value = base_rows[key].get(metric)
        run_value = run_rows[key].get(metric)
        if base_value is None or run_value is None:
            raise MvlevalError(
                f"example {key[1]} of {lang} has no per-sample '{metric}' score, so the paired test cannot run.",
                fix="gate without --paired, or rescore the runs with `mvleval score`.",
            )
        a.append(float(base_value))
        b.append(float(run_value))
    return a, b


def record_unit(record: RunRecord, metric: str) -> str:
    """The resampling unit a record's intervals used for `metric` ('example' for records made before clustering)."""
    match = re.search(r"unit=([^|,]+)", record.scores[metric].signature)
    return match.group(1) if match else "example"


def _clusters(unit: str, lang: str, groups: Mapping[tuple[str, str], tuple[str, ...]]) -> list[str] | None:
    """Cluster keys of one language's examples, in `_aligned`'s order (None: each example its own cluster)."""
    from mvleval.benchmarks.task import shared_image_clusters

    keys = sorted(k for k in groups if k[0] == lang)
    if unit == "example":
        return None
    if unit == "image":
        return shared_image_clusters([list(groups[k]) or [f"example:{k[1]}"] for k in keys])
    return [groups[k][1] if groups[k][:1] == ("cluster",) else f"example:{k[1]}" for k in keys]


# -- the gate -------------------------------------------------------------------------------------------------------
def _exact(value: float) -> Decimal:
    # The shortest round-tripping decimal, i.e. the number as stored in the record's JSON.
    return Decimal(repr(float(value)))


def gate(
    run: RunRecord,
    baseline: RunRecord,
    *,
    run_dir: Path | None = None,
    baseline_dir: Path | None = None,
    max_drop: Mapping[str, float] | float = 1.0,
    metrics: Sequence[str] | None = None,
    per_lang_tolerance: Mapping[str, float | Mapping[str, float]] | None = None,
    paired: bool = False,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> GateReport:
    """Compare a run with a baseline, per metric and language.

    Args:
        run: the new run's record.
        baseline: the committed baseline's record.
        run_dir: folder of the run record (its samples_file is relative to it); needed only with `paired`.
        baseline_dir: folder of the baseline record; needed only with `paired`.
        max_drop: allowed drop in points (x100), for all metrics, or per metric name ('*' = all others).
        metrics: metric names to gate; None gates every metric of the baseline.
        per_lang_tolerance: overrides by language: {lang: points} for all metrics, or {lang: {metric: points}}.
        paired: also require the drop to be significant under a paired bootstrap of the per-sample scores.
        confidence: level of the paired test: a drop is significant when p < 1 - confidence.
        n_resamples, seed: bootstrap settings (paired only).

    Returns:
        The report; `report.passed` / `report.exit_code` give the verdict.

    Raises:
        MvlevalError: the records are not comparable (every difference listed), a tolerance or metric name is
            invalid, the per-sample files do not match or cover different examples (paired), or nothing could be gated.
    """
    if not 0.0 < confidence < 1.0:
        raise MvlevalError(f"confidence must lie strictly between 0 and 1, got {confidence}.", fix="e.g. 0.95.")
    selected = check_comparable(run, baseline, metrics)
    # numbers only count with the samples they came from: a per-sample file edited after scoring is refused
    # (without --paired the per-sample files are not read, so one that is absent is not needed; one present must match)
    if baseline_dir is not None:
        check_samples_hash(baseline, baseline_dir, "the baseline", missing_ok=not paired)
    if run_dir is not None:
        check_samples_hash(run, run_dir, "the run", missing_ok=not paired)
    languages = list(baseline.task.languages)
    tolerance = _tolerances(selected, languages, max_drop, per_lang_tolerance)

    run_rows: dict[tuple[str, str], dict[str, Any]] = {}
    base_rows: dict[tuple[str, str], dict[str, Any]] = {}
    # the paired test resamples what the baseline's intervals resampled (its signatures name the unit; the run's are
    # the same, or check_comparable refused them): images, a benchmark's cluster field, or examples (old records)
    groups: dict[tuple[str, str], tuple[str, ...]] = {}
    units = {record_unit(baseline, name) for name in selected}
    unit = units.pop() if len(units) == 1 else "example"
    if paired:
        run_rows = _load_samples(run, run_dir, "run")
        base_rows = _load_samples(baseline, baseline_dir, "baseline", groups)
        if set(run_rows) != set(base_rows):
            only_run = sorted(set(run_rows) - set(base_rows))
            only_base = sorted(set(base_rows) - set(run_rows))
            raise MvlevalError(
                f"the two runs scored different examples ({len(only_run)} only in the run, e.g. {only_run[:3]}; "
                f"{len(only_base)} only in the baseline, e.g. {only_base[:3]}), so they cannot be paired.",
                fix="evaluate the run on the baseline's exact examples (same --split, --lang and --limit).",
            )
        from mvleval.metrics.bootstrap import paired_bootstrap  # lazy: numpy-based, only needed here

    cells: list[GateCell] = []
    for name in selected:
        b_scores, r_scores = baseline.scores[name], run.scores[name]
        hib = b_scores.higher_is_better
        for lang in languages:
            b_value, r_value = b_scores.per_lang.get(lang), r_scores.per_lang.get(lang)
            tol = tolerance[(name, lang)]
            common = _CellCommon(
                metric=name, lang=lang, baseline=b_value, run=r_value, tolerance=tol, higher_is_better=hib
            )
            if b_value is None:
                note = b_scores.notes.get(lang)
                cells.append(
                    GateCell(
                        **common,
                        delta=None,
                        verdict="skipped",
                        reason="no baseline value" + (f" ({note})" if note else ""),
                    )
                )
                continue
            if r_value is None:
                note = r_scores.notes.get(lang)
                cells.append(
                    GateCell(
                        **common, delta=None, verdict="fail", reason="run has no value" + (f" ({note})" if note else "")
                    )
                )
                continue
            delta = _exact(r_value) - _exact(b_value)
            drop = -delta if hib else delta
            exceeds = drop > Decimal(repr(tol)) / 100
            drop_text = f"drop {_points(drop)} {'>' if exceeds else '<='} {tol:g}"
            verdict: Verdict = "fail" if exceeds else "pass"
            p_value: float | None = None
            interval: tuple[float, float] | None = None
            reason = drop_text if drop > 0 else ""
            pairing: _CellPairing = {}
            if paired:
                a, b = _aligned(name, lang, run_rows, base_rows)
                if not hib:  # the bootstrap's "worse" is a lower mean: flip lower-is-better metrics
                    a, b = [-x for x in a], [-x for x in b]
                result = paired_bootstrap(
                    a,
                    b,
                    n_resamples=n_resamples,
                    seed=seed,
                    confidence=confidence,
                    clusters=_clusters(unit, lang, groups),
                )
                low, high = float(result.low), float(result.high)
                interval = (low, high) if hib else (-high, -low)
                n_differing = sum(1 for x, y in zip(a, b) if x != y)
                needed = differing_needed(confidence)
                if drop > 0 and n_differing < needed:
                    # no test can call this drop significant: say so instead of the bootstrap's p (0.001 for 3 examples)
                    significant, significance = False, "too few examples"
                    reason = (
                        f"{drop_text}, but {plural(n_differing, 'example')} of {len(a)} scored differently: too few "
                        f"to establish significance (at confidence {confidence:g} at least {needed} must differ)"
                    )
                else:
                    p_value = float(result.p_value)
                    # alpha in exact decimal: 1 - 0.95 in floats is 0.05000000000000004, which would count p = 0.05 as significant
                    significant = p_value < float(Decimal(1) - Decimal(repr(confidence)))
                    significance = "significant" if significant else "not significant"
                    reason = f"{drop_text}, p={p_value:.3f} ({significance})" if drop > 0 else ""
                verdict = "fail" if exceeds and significant else "pass"
                pairing = _CellPairing(
                    n_paired=len(a), n_differing=n_differing, significance=significance if drop > 0 else None
                )
            cells.append(
                GateCell(
                    **common,
                    delta=float(delta),
                    verdict=verdict,
                    reason=reason,
                    p_value=p_value,
                    interval=interval,
                    **pairing,
                )
            )

    if all(c.verdict == "skipped" for c in cells):
        raise MvlevalError(
            "nothing to gate: the baseline has no value for any gated metric and language.",
            fix="gate other metrics (--metric) or bless a baseline that has scores.",
        )
    warnings: list[str] = []
    if baseline_dir is not None and baseline.samples_sha256 is None:
        warnings.append(
            "the baseline records no samples_sha256 (blessed before baselines recorded one), so its per-sample file "
            "could not be checked against its scores; bless it again to record one"
        )
    if run.model.generation != baseline.model.generation:
        diff = sorted(
            k
            for k in set(run.model.generation) | set(baseline.model.generation)
            if run.model.generation.get(k) != baseline.model.generation.get(k)
        )
        warnings.append(
            "generation settings differ: "
            + ", ".join(
                f"{k} run {run.model.generation.get(k)!r} vs baseline {baseline.model.generation.get(k)!r}"
                for k in diff
            )
        )
    return GateReport(
        task=baseline.task.name,
        version=baseline.task.version,
        split=baseline.task.split,
        run_id=run.run_id,
        baseline_id=baseline.run_id,
        paired=paired,
        confidence=confidence,
        n_resamples=n_resamples,
        cells=tuple(cells),
        warnings=tuple(warnings),
        unit=unit if paired else "example",
    )


# -- rendering ------------------------------------------------------------------------------------------------------
def _points(value: Decimal | float) -> str:
    """A native-scale difference as signed points with 2 decimals (finer than the tables, so edges stay visible)."""
    dec = value if isinstance(value, Decimal) else _exact(value)
    text = f"{(dec.scaleb(2) + 0).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)}"
    return "0.00" if text == "-0.00" else text


def _delta_text(cell: GateCell) -> str:
    if cell.run is None or cell.baseline is None:
        return "–"
    text = _points(_exact(cell.run) - _exact(cell.baseline))
    return text if text.startswith("-") or text == "0.00" else "+" + text


def _of_unit(unit: str) -> str:
    """' of images' / ' of clusters by image_id' for the rule text; nothing for per-example resampling."""
    return "" if unit == "example" else " of images" if unit == "image" else f" of clusters by {unit}"


def _rule(report: GateReport) -> str:
    rule = "a cell fails when the run is worse than the baseline by more than its tolerance (points, x100)"
    if report.paired:
        rule += (
            f" and a one-sided paired bootstrap ({report.n_resamples} resamples{_of_unit(report.unit)}) finds the drop significant "
            f"(p < {1 - report.confidence:.3g})"
        )
    return rule


def _verdict_text(cell: GateCell) -> str:
    label = {"pass": "pass", "fail": "FAIL", "skipped": "skipped"}[cell.verdict]
    return f"{label}: {cell.reason}" if cell.reason else label


def render_markdown(report: GateReport) -> str:
    """The report as Markdown: a headline verdict, the rule, and a table (metric, language, baseline, run, delta, ...)."""
    status = (
        "PASSED"
        if report.passed
        else f"FAILED ({len(report.failures)} regression{'s' if len(report.failures) != 1 else ''})"
    )
    out = [
        f"## mvleval gate: {status}",
        "",
        f"Task `{report.task}` v{report.version} [{report.split}]: run `{report.run_id}` vs baseline `{report.baseline_id}`. "
        f"{SCALE_NOTE}; delta = run - baseline. Rule: {_rule(report)}.",
        "",
    ]
    for warning in report.warnings:
        out += [f"> Warning: {warning}", ""]
    header = (
        ["metric", "language", "baseline", "run", "delta", "tolerance"] + (["p"] if report.paired else []) + ["verdict"]
    )
    out.append("| " + " | ".join(header) + " |")
    out.append("|---|---|" + "---:|" * (len(header) - 3) + "---|")
    for c in report.cells:
        values = [c.metric, c.lang, format_points(c.baseline), format_points(c.run), _delta_text(c), f"{c.tolerance:g}"]
        if report.paired:
            values.append("–" if c.p_value is None else f"{c.p_value:.3f}")
        verdict = _verdict_text(c)
        values.append(f"**{verdict}**" if c.verdict == "fail" else verdict)
        out.append("| " + " | ".join(v.replace("|", "\\|") for v in values) + " |")
    return "\n".join(out) + "\n"


def render_rich(report: GateReport) -> Table:
    """The report as a rich Table (title says PASSED/FAILED; failing rows in red) for the terminal."""
    from rich.markup import escape
    from rich.table import Table

    # Record-derived text is escaped: '[test]' would otherwise be read as rich markup and vanish.
    status = "[bold green]PASSED[/]" if report.passed else f"[bold red]FAILED ({len(report.failures)})[/]"
    what = escape(
        f"{report.task} v{report.version} [{report.split}], run {report.run_id} vs baseline {report.baseline_id}"
    )
    caption = escape(f"{SCALE_NOTE}. Rule: {_rule(report)}." + "".join(f"\nWarning: {w}" for w in report.warnings))
    table = Table(title=f"mvleval gate {status}: {what}", caption=caption)
    for name in ("metric", "language"):
        table.add_column(name)
    for name in ("baseline", "run", "delta", "tolerance") + (("p",) if report.paired else ()):
        table.add_column(name, justify="right")
    table.add_column("verdict")
    style = {"pass": "green", "fail": "bold red", "skipped": "dim"}
    for c in report.cells:
        values = [c.metric, c.lang, format_points(c.baseline), format_points(c.run), _delta_text(c), f"{c.tolerance:g}"]
        if report.paired:
            values.append("–" if c.p_value is None else f"{c.p_value:.3f}")
        values.append(_verdict_text(c))
        table.add_row(*(escape(v) for v in values), style=style[c.verdict])
    return table


def write_summary(report: GateReport, path: Path | None) -> list[Path]:
    """Write the Markdown report to `path` (when given) and append it to $GITHUB_STEP_SUMMARY (when set).

    Returns:
        The files written to, in that order.

    Raises:
        MvlevalError: a file cannot be written.
    """
    text = render_markdown(report)
    written: list[Path] = []
    targets: list[tuple[Path, str]] = []
    if path is not None:
        targets.append((path, "w"))
    summary = os.environ.get("GITHUB_STEP_SUMMARY", "").strip()
    if summary:
        # Appending: other steps of the same job write to the same summary file.
        targets.append((Path(summary), "a"))
    for target, mode in targets:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open(mode, encoding="utf-8") as fh:
                fh.write(text if mode == "w" else "\n" + text)
        except OSError as exc:
            raise MvlevalError(
                f"could not write the gate report ({exc.strerror or exc}).", fix="choose a writable path.", where=target
            ) from None
        written.append(target)
    return written


def report_json(report: GateReport) -> str:
    """The report as JSON (for tools), verdicts per cell plus the overall `passed`."""
    return json.dumps(report_dict(report), indent=2, ensure_ascii=False) + "\n"


def report_dict(report: GateReport) -> dict[str, Any]:
    """The report, JSON-ready (`mvleval gate --json`; mvleval/schemas/gate.json)."""
    cells = [
        {
            "metric": c.metric,
            "lang": c.lang,
            "baseline": c.baseline,
            "run": c.run,
            "delta": c.delta,
            "tolerance_points": c.tolerance,
            "higher_is_better": c.higher_is_better,
            "verdict": c.verdict,
            "reason": c.reason,
            "p_value": c.p_value,
            "interval": list(c.interval) if c.interval else None,
            "n_paired": c.n_paired,
            "n_differing": c.n_differing,
            "significance": c.significance,
        }
        for c in report.cells
    ]
    payload = {
        "task": report.task,
        "version": report.version,
        "split": report.split,
        "run_id": report.run_id,
        "baseline_id": report.baseline_id,
        "paired": report.paired,
        "confidence": report.confidence,
        "n_resamples": report.n_resamples,
        "unit": report.unit,
        "passed": report.passed,
        "warnings": list(report.warnings),
        "cells": cells,
    }
    return payload
