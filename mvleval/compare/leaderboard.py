"""Run records -> leaderboard (one row per model, one column per comparable task x headline metric) -> Markdown/CSV/PNG/HTML.

Pure and deterministic: the same records give byte-identical files. Only numbers that are comparable share a column:
same task, task version, protocol hash, split, example set (provenance.data_fingerprint), headline metric and metric
signature. Records that differ in any of these get their own column whose label shows what differs; they are never
merged. Among records of the same model and the same column, the newest (created_at) wins and the older ones are listed
as superseded. Every cell names the record it comes from.

Numbers are shown x100 with one decimal, rounded half-up on the value as stored in the record (accuracies as %, CIDEr
on the x100 scale papers use). Intervals are the records' 95% bootstrap intervals. The column mean's interval is shown
only when the record carries one under the key "mean" of MetricScores.intervals: per-language intervals come from
separate bootstraps and are not combined here, since any combination would be an approximation presented as a
measurement.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from mvleval.record.schema import RunRecord, read_record
from mvleval.util.errors import MvlevalError, Problems, plural

#: Shown in the Markdown header and used by every table mvleval prints.
SCALE_NOTE = "Scores x100, 1 decimal (accuracies as %, CIDEr x100)"
MISSING = "–"
MEAN = "mean"


# -- values --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class ColumnKey:
    """What makes two records' headline numbers comparable."""

    task: str
    version: int
    split: str
    metric: str
    signature: str
    data_fingerprint: str
    protocol_hash: str
    prompt_style: str = "mblip"  # part of the protocol (hashed into protocol_hash); kept to name it in labels


@dataclass(frozen=True, order=True)
class ModelKey:
    """One leaderboard row: a checkpoint, its adapter, its bit width and its decoding settings.

    Rows are told apart by ``identity``: the weights' (and adapter's) content fingerprint when the record has one, so
    the same checkpoint typed two ways (``ckpt``, ``w1/ckpt``) is one row and two checkpoints typed alike from
    different folders are two; the typed path only labels the row. Served models (no fingerprint) are told apart by
    what was typed."""

    identity: str
    bits: int
    generation: str  # canonical JSON of the record's generation settings that differ from the task's protocol
    fingerprint: str = ""  # the weights' (and adapter's) fingerprint: a model's identity whatever the working directory
    family: str = ""  # the model family (config model_type) when not mBLIP's BLIP-2, shown in the label
    path: str = field(default="", compare=False)  # as the user typed it, shown (from the newest record of the row)
    # a token budget other than the task's protocol (--max-new-tokens for a reasoning model): always labelled
    budget_override: bool = field(default=False, compare=False)
    adapter: str = field(default="", compare=False)


@dataclass(frozen=True)
class Column:
    """A column of the leaderboard: one task x headline metric x comparability key."""

    key: ColumnKey
    label: str
    slug: str
    languages: tuple[str, ...]
    n_examples: int
    higher_is_better: bool


@dataclass(frozen=True)
class Row:
    """A row of the leaderboard (one model)."""

    key: ModelKey
    label: str


@dataclass(frozen=True)
class Cell:
    """The headline metric of one record, as placed in one (row, column)."""

    mean: float | None
    mean_interval: tuple[float, float] | None
    per_lang: Mapping[str, float | None]
    intervals: Mapping[str, tuple[float, float] | None]
    ref: str
    run_id: str
    created_at: str
    record_path: str


@dataclass(frozen=True)
class Superseded:
    """An older record of the same model and column, replaced by a newer one."""

    run_id: str
    created_at: str
    record_path: str
    replaced_by: str  # ref of the record that replaced it
    simultaneous: bool = False  # made at the same moment as the record kept: neither is older (kept by a stable order)


@dataclass(frozen=True)
class Leaderboard:
    """Everything the writers need; built by build_leaderboard."""

    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    cells: Mapping[tuple[ModelKey, ColumnKey], Cell]
    superseded: tuple[Superseded, ...]

    def cell(self, row: Row, column: Column) -> Cell | None:
        """The cell of (row, column), or None when that model has no record for that column."""
        return self.cells.get((row.key, column.key))

    def used_cells(self) -> list[Cell]:
        """Cells in reference order (r1, r2, ...)."""
        return sorted(self.cells.values(), key=lambda c: int(c.ref[1:]))


# -- formatting shared with the gate --------------------------------------------------------------------------------
def to_points(value: float) -> Decimal:
    """A stored score on the x100 scale, rounded half-up to 1 decimal (exact on the stored decimal value)."""
    # repr() gives the shortest string that round-trips, i.e. the number as written in the record's JSON;
    # rounding that decimal avoids binary artefacts such as 0.4525 * 100 -> 45.249999...
    points = Decimal(repr(float(value))).scaleb(2).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return points + 0  # normalises -0.0 to 0.0


def format_points(value: float | None) -> str:
    """'45.3' for 0.4525; '–' for None."""
    return MISSING if value is None else f"{to_points(value)}"


def format_interval(interval: Sequence[float] | None) -> str:
    """'[43.1, 47.3]' or '' when there is no interval."""
    if interval is None:
        return ""
    return f"[{format_points(interval[0])}, {format_points(interval[1])}]"


# -- building -------------------------------------------------------------------------------------------------------
def _parse_created_at(record: RunRecord, path: Path) -> datetime:
    try:
        stamp = datetime.fromisoformat(record.created_at)
    except ValueError:
        raise MvlevalError(
            f"created_at '{record.created_at}' is not an ISO-8601 timestamp.",
            fix="pass records written by `mvleval run`.",
            where=path,
        ) from None
    # Naive stamps are taken as UTC so that they can be ordered against aware ones.
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


def _column_key(record: RunRecord, path: Path) -> ColumnKey:
    if not record.scores:
        raise MvlevalError("run record has no scores.", fix="pass records written by `mvleval run`.", where=path)
    metric = record.headline()
    return ColumnKey(
        task=record.task.name,
        version=record.task.version,
        split=record.task.split,
        metric=metric,
        signature=record.scores[metric].signature,
        data_fingerprint=record.provenance.data_fingerprint,
        protocol_hash=record.task.protocol_hash,
        prompt_style=record.task.prompt_style,
    )


def _generation_overrides(record: RunRecord) -> tuple[dict[str, Any], bool]:
    """The decoding settings that differ from the task's own protocol (each task has its own defaults: a model run
    on captioning and VQA tasks with their protocol settings is one row, not two), and whether the protocol was known.
    When the installed task is not the record's version, all settings are kept, so nothing is merged on a guess."""
    from mvleval.benchmarks.registry import load_task_of_record

    try:
        task = load_task_of_record(record.task.name, record.task.prompt_style, record.task.source)
    except MvlevalError:
        return dict(record.model.generation), False
    if task.version != record.task.version or task.protocol_hash() != record.task.protocol_hash:
        return dict(record.model.generation), False
    defaults = task.generation.to_dict()
    return {k: v for k, v in record.model.generation.items() if defaults.get(k) != v}, True


def _model_key(record: RunRecord) -> ModelKey:
    fingerprint = record.model.fingerprint or ""
    overrides, protocol_known = _generation_overrides(record)
    return ModelKey(
        identity=f"weights:{fingerprint}"
        if fingerprint
        else f"typed:{record.model.path}\0{record.model.adapter or ''}",
        path=record.model.path,
        adapter=record.model.adapter or "",
        bits=record.model.bits,
        generation=json.dumps(overrides, sort_keys=True),
        budget_override=protocol_known and "max_new_tokens" in overrides,
        fingerprint=record.model.fingerprint or "",
        family=record.model.family if record.model.backend == "hf" and record.model.family else "",
    )


def _short(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


#: prompt styles as a column label names them
PROMPT_STYLE_WORDS = {"mblip": "mBLIP prompts", "chat": "chat prompts"}


def _column_labels(keys: Sequence[ColumnKey], n_examples: Mapping[ColumnKey, int]) -> dict[ColumnKey, str]:
    """Labels that always show task, version, split and metric, plus whatever else tells apart same-named columns:
    in words where there are words for it (the prompt style), else a short hash of what differs."""
    labels: dict[ColumnKey, str] = {}
    for key in keys:
        base = f"{key.task} v{key.version} [{key.split}] {key.metric}"
        siblings = [
            k for k in keys if (k.task, k.version, k.split, k.metric) == (key.task, key.version, key.split, key.metric)
        ]
        extra: list[str] = []
        if len({k.prompt_style for k in siblings}) > 1:
            extra.append(PROMPT_STYLE_WORDS.get(key.prompt_style, f"{key.prompt_style} prompts"))
        if len({k.signature for k in siblings}) > 1:
            extra.append(f"sig:{_short(key.signature)}")
        if len({k.data_fingerprint for k in siblings}) > 1:
            extra.append(f"data:{key.data_fingerprint[:8]} n={n_examples[key]}")
        if len({k.protocol_hash for k in siblings if k.prompt_style == key.prompt_style}) > 1:
            extra.append(f"protocol:{key.protocol_hash[:8]}")
        labels[key] = base + (f" ({', '.join(extra)})" if extra else "")
    return labels


#: Overrides of the task's protocol that change the search itself: a row run greedily where the protocol says beam
#: search (a served model without beam search), or sampling, always shows it, so it is never read as a beam-search run.
SEARCH_OVERRIDES = (("num_beams", 1), ("do_sample", True))


def short_paths(paths: Sequence[str]) -> dict[str, str]:
    """Short names for absolute model (and adapter) paths: the folder's own name, with as many parent folders as it
    takes to tell apart paths that end alike (/a/x/ckpt, /b/x/ckpt -> a/x/ckpt, b/x/ckpt). Hub ids and relative paths
    are shown as typed. The full path stays in the records, the CSV and the HTML page's hover text."""
    full = sorted(set(p for p in paths if p))
    depth = {p: 1 for p in full}

    def name(p: str) -> str:
        if not (p.startswith("/") or p.startswith("~") or re.match(r"^[A-Za-z]:[\\/]", p)):
            return p
        parts = [x for x in re.split(r"[\\/]+", p) if x]
        return "/".join(parts[-depth[p] :]) if depth[p] < len(parts) else p

    while True:
        shown: dict[str, list[str]] = {}
        for p in full:
            shown.setdefault(name(p), []).append(p)
        clashes = [p for group in shown.values() if len(group) > 1 for p in group if name(p) != p]
        if not clashes:
            return {p: name(p) for p in full}
        for p in clashes:
            depth[p] += 1


def _row_labels(
    keys: Sequence[ModelKey], settings: dict[ModelKey, dict[str, Any]] | None = None
) -> dict[ModelKey, str]:
    """'path + adapter (4-bit)' ('(served)' for a served model, whose precision the server chose), plus what tells rows
    of the same checkpoint path apart: the weights' fingerprint when the same path names different weights, and the
    decoding settings that differ (with their actual values: a row on the task's protocol shows the protocol's value,
    e.g. num_beams=5, never None); greedy search or sampling where the protocol says otherwise is always shown."""
    settings = settings or {}
    short = short_paths([p for k in keys for p in (k.path, k.adapter)])
    labels: dict[ModelKey, str] = {}
    for key in keys:
        label = (
            short[key.path]
            + (f" + {short[key.adapter]}" if key.adapter else "")
            + (f" ({key.bits}-bit)" if key.bits else " (served)")
        )
        if key.family:
            label += f" [{key.family}]"
        siblings = [k for k in keys if (k.path, k.adapter, k.bits) == (key.path, key.adapter, key.bits)]
        if len({k.fingerprint for k in siblings}) > 1:
            label += f" weights {key.fingerprint[:8] or '?'}"
        same_weights = [k for k in siblings if k.fingerprint == key.fingerprint]
        mine = json.loads(key.generation)
        names = {n for n, value in SEARCH_OVERRIDES if n in mine and mine[n] == value}
        if key.budget_override:
            # a token budget other than the protocol's (--max-new-tokens for a reasoning model) is never a protocol row
            names.add("max_new_tokens")
        if len(same_weights) > 1:
            others = [json.loads(k.generation) for k in same_weights if k != key]
            names |= {n for o in others for n in set(o) | set(mine) if o.get(n) != mine.get(n)}
        if names:
            full = settings.get(key, {})
            label += " {" + ", ".join(f"{n}={mine.get(n, full.get(n))}" for n in sorted(names)) + "}"
        labels[key] = label
    return labels


def build_leaderboard(records: Sequence[tuple[Path, RunRecord]]) -> Leaderboard:
    """Place run records into a leaderboard: comparable numbers share a column, the newest record per cell wins.

    Args:
        records: (record path, record) pairs; the path is only shown (in the record list), never read.

    Returns:
        The leaderboard, with rows and columns in a stable order (sorted by their keys/labels).

    Raises:
        MvlevalError: no records, or a record without scores or with an unparsable created_at.
    """
    if not records:
        raise MvlevalError(
            "no run records to build a leaderboard from.", fix="run `mvleval run` first or pass record paths."
        )
    chosen: dict[tuple[ModelKey, ColumnKey], tuple[tuple[datetime, str, str], Path, RunRecord]] = {}
    losers: dict[tuple[ModelKey, ColumnKey], list[tuple[Path, RunRecord]]] = {}
    for path, record in records:
        slot = (_model_key(record), _column_key(record, path))
        # Ties on created_at are broken by run_id and path so that the result never depends on input order.
        rank = (_parse_created_at(record, path), record.run_id, path.as_posix())
        current = chosen.get(slot)
        if current is None or rank > current[0]:
            if current is not None:
                losers.setdefault(slot, []).append((current[1], current[2]))
            chosen[slot] = (rank, path, record)
        else:
            losers.setdefault(slot, []).append((path, record))

    column_keys = sorted({slot[1] for slot in chosen})
    n_examples: dict[ColumnKey, int] = {}
    first_record: dict[ColumnKey, RunRecord] = {}
    for slot in sorted(chosen):
        first_record.setdefault(slot[1], chosen[slot][2])
    for key, record in first_record.items():
        n_examples[key] = sum(record.task.n_examples.values())
    col_labels = _column_labels(column_keys, n_examples)
    columns = [
        Column(
            key=key,
            label=col_labels[key],
            slug=_slug(col_labels[key]),
            languages=tuple(first_record[key].task.languages),
            n_examples=n_examples[key],
            higher_is_better=first_record[key].scores[key.metric].higher_is_better,
        )
        for key in column_keys
    ]
    columns.sort(key=lambda c: (c.label, c.key))
    # one key per row, labelled with what the user typed in the row's newest record
    newest: dict[ModelKey, tuple[tuple[datetime, str, str], ModelKey]] = {}
    for slot, (rank, _, record) in chosen.items():
        if slot[0] not in newest or rank > newest[slot[0]][0]:
            newest[slot[0]] = (rank, replace(slot[0], path=record.model.path, adapter=record.model.adapter or ""))
    row_keys = sorted(k for _, k in newest.values())
    full_settings = {slot[0]: dict(chosen[slot][2].model.generation) for slot in sorted(chosen)}
    row_labels = _row_labels(row_keys, full_settings)
    rows = sorted((Row(key=k, label=row_labels[k]) for k in row_keys), key=lambda r: (r.label, r.key))

    cells: dict[tuple[ModelKey, ColumnKey], Cell] = {}
    superseded: list[Superseded] = []
    counter = 0
    for column in columns:
        for row in rows:
            slot = (row.key, column.key)
            if slot not in chosen:
                continue
            counter += 1
            _, path, record = chosen[slot]
            scores = record.scores[column.key.metric]
            cells[slot] = Cell(
                mean=scores.mean,
                mean_interval=scores.intervals.get(MEAN),
                per_lang=dict(scores.per_lang),
                intervals={lang: scores.intervals.get(lang) for lang in scores.per_lang},
                ref=f"r{counter}",
                run_id=record.run_id,
                created_at=record.created_at,
                record_path=path.as_posix(),
            )
            old = sorted(losers.get(slot, []), key=lambda pr: (pr[1].created_at, pr[1].run_id, pr[0].as_posix()))
            kept_at = chosen[slot][0][0]
            superseded.extend(
                Superseded(
                    run_id=r.run_id,
                    created_at=r.created_at,
                    record_path=p.as_posix(),
                    replaced_by=f"r{counter}",
                    simultaneous=_parse_created_at(r, p) == kept_at,
                )
                for p, r in old
            )
    return Leaderboard(columns=tuple(columns), rows=tuple(rows), cells=cells, superseded=tuple(superseded))


def find_records(roots: Sequence[Path], *, bad: Problems | None = None) -> list[tuple[Path, RunRecord]]:
    """Every run record (*.json, recursively, except interrupted runs' *.manifest.json) under the given folders or files.

    Returns:
        (path, record) pairs in sorted path order per root.

    Args:
        roots: folders or record files.
        bad: where to collect unreadable files, which are then skipped (`--skip-bad`); None: refuse them.

    Raises:
        MvlevalError: a root does not exist, or JSON files under it are not valid run records (every one named with
            its path and problem at once, not one per attempt).
    """
    found: list[tuple[Path, RunRecord]] = []
    problems = Problems() if bad is None else bad
    for root in roots:
        if root.is_file():
            paths = [root]
        elif root.is_dir():
            # Hidden files are the atomic writer's temp files; *.manifest.json belong to interrupted runs (runner.py).
            paths = sorted(
                p for p in root.rglob("*.json") if not p.name.startswith(".") and not p.name.endswith(".manifest.json")
            )
        else:
            raise MvlevalError(
                "no such file or folder of run records.", fix="pass a folder such as results/runs.", where=root
            )
        for p in paths:
            try:
                found.append((p, read_record(p)))
            except MvlevalError as exc:
                problems.add(exc.what.rstrip("."), p, fix=exc.fix, unit="file")
    if bad is None:
        problems.raise_if_any(
            f"{plural(len(problems), 'file')} under {', '.join(str(r) for r in roots)} "
            f"{'is not a readable run record' if len(problems) == 1 else 'are not readable run records'}:",
            fix="fix or remove them, or pass --skip-bad to rank the readable records and list the others.",
        )
    return found


# -- writing --------------------------------------------------------------------------------------------------------
def _md(text: str) -> str:
    """A Markdown table cell from shared records' text: one line, '|' escaped, and HTML (<script>, &) as text."""
    text = " ".join(str(text).split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def _code(text: str) -> str:
    """A code span in a table cell: no backtick can end it early, '|' escaped (GFM splits cells first)."""
    return "`" + " ".join(str(text).split()).replace("`", "'").replace("|", "\\|") + "`"


#: a CSV cell starting with one of these is a formula to a spreadsheet (OWASP: CSV injection)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A text cell neutralised as OWASP advises for CSV files opened in spreadsheets: one starting with = + - @ tab or
    CR gets a leading single quote (shown as text, never evaluated); numbers are left alone."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _cell_text(value: float | None, interval: Sequence[float] | None) -> str:
    text = format_points(value)
    if value is not None and interval is not None:
        text += f" {format_interval(interval)}"
    return text


def _best(lb: Leaderboard, column: Column) -> Decimal | None:
    values = [to_points(c.mean) for r in lb.rows if (c := lb.cell(r, column)) is not None and c.mean is not None]
    if not values:
        return None
    return max(values) if column.higher_is_better else min(values)


#: what the Superseded records section says (Markdown and HTML)
SUPERSEDED_NOTE = (
    "Records of the same model and column that another record replaced: an older one, or one made at the "
    "same moment as the record kept (neither is older; the later run id, then path, is kept: a stable "
    "order, not a judgement)."
)


def superseded_by_text(s: Superseded) -> str:
    """'r3' for an older record, 'r3 (same time: neither is older)' for a simultaneous one."""
    return s.replaced_by + (" (same time: neither is older)" if s.simultaneous else "")


def heatmap_name(column: Column) -> str:
    """File name of a column's heatmap, next to leaderboard.md: from what the column is (task, version, split, metric
    and a hash of its signature, data and protocol), so it stays the same whatever other records are present."""
    key = column.key
    digest = _short(f"{key.signature}\0{key.data_fingerprint}\0{key.protocol_hash}")
    return f"heatmap-{_slug(f'{key.task}-v{key.version}-{key.split}-{key.metric}')}-{digest}.png"


def render_markdown(lb: Leaderboard) -> str:
    """The leaderboard as Markdown: overview, column definitions, per-language tables (with heatmaps), record list."""
    out: list[str] = ["# mvleval leaderboard", ""]
    out.append(
        f"{SCALE_NOTE}. Each cell is the headline metric's mean over the column's languages, with the record's 95% "
        "bootstrap interval where the record has one for the mean, and the reference (rN) of the record it comes from "
        "(see Records). The best mean per column is in bold. Columns differ in task version, split, example set, "
        "metric signature or protocol; numbers in different columns are not comparable."
    )
    out.append("")
    header = ["model"] + [_md(c.label) + ("" if c.higher_is_better else " (lower is better)") for c in lb.columns]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "---|" + "---:|" * len(lb.columns))
    best = {c.key: _best(lb, c) for c in lb.columns}
    for row in lb.rows:
        cells = [_md(row.label)]
        for column in lb.columns:
            cell = lb.cell(row, column)
            if cell is None:
                cells.append(MISSING)
                continue
            text = _cell_text(cell.mean, cell.mean_interval)
            if cell.mean is not None and to_points(cell.mean) == best[column.key]:
                text = f"**{text}**"
            cells.append(f"{text} ({cell.ref})")
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "## Columns", ""]
    out.append(
        "| column | task | version | split | metric | signature | data fingerprint | protocol | languages | examples |"
    )
    out.append("|---|---|---:|---|---|---|---|---|---|---:|")
    for c in lb.columns:
        k = c.key
        out.append(
            f"| {_md(c.label)} | {_md(k.task)} | {k.version} | {_md(k.split)} | {_md(k.metric)} | {_code(k.signature)} | "
            f"{_code(k.data_fingerprint)} | {_code(k.protocol_hash)} | {_md(' '.join(c.languages))} | {c.n_examples} |"
        )
    for column in lb.columns:
        out += ["", f"## {_md(column.label)}: per language", ""]
        out += [f"![{_md(column.label)}]({heatmap_name(column)})", ""]
        out.append("| model | " + " | ".join(_md(lang) for lang in column.languages) + " | mean | record |")
        out.append("|---|" + "---:|" * (len(column.languages) + 1) + "---|")
        for row in lb.rows:
            cell = lb.cell(row, column)
            if cell is None:
                continue
            values = [_cell_text(cell.per_lang.get(lang), cell.intervals.get(lang)) for lang in column.languages]
            values.append(_cell_text(cell.mean, cell.mean_interval))
            out.append(f"| {_md(row.label)} | " + " | ".join(values) + f" | {cell.ref} |")
    out += ["", "## Records", ""]
    out.append("| ref | run id | created at | record |")
    out.append("|---|---|---|---|")
    for cell in lb.used_cells():
        out.append(f"| {cell.ref} | {_code(cell.run_id)} | {_md(cell.created_at)} | {_code(cell.record_path)} |")
    if lb.superseded:
        out += ["", "## Superseded records", "", f"{SUPERSEDED_NOTE}", ""]
        out.append("| run id | created at | record | replaced by |")
        out.append("|---|---|---|---|")
        for s in lb.superseded:
            out.append(
                f"| {_code(s.run_id)} | {_md(s.created_at)} | {_code(s.record_path)} | {superseded_by_text(s)} |"
            )
    return "\n".join(out) + "\n"


def leaderboard_frame(lb: Leaderboard) -> Any:
    """The leaderboard as a tidy pandas DataFrame: one row per (model, column, language or 'mean').

    Values, low and high are on the x100 scale rounded to 1 decimal, as in the Markdown.
    """
    import pandas as pd

    def num(value: float | None) -> float | None:
        return None if value is None else float(to_points(value))

    rows: list[dict[str, Any]] = []
    for column in lb.columns:
        for row in lb.rows:
            cell = lb.cell(row, column)
            if cell is None:
                continue
            langs = [*column.languages, MEAN]
            for lang in langs:
                if lang == MEAN:
                    value, interval = cell.mean, cell.mean_interval
                else:
                    value, interval = cell.per_lang.get(lang), cell.intervals.get(lang)
                rows.append(
                    {
                        "model": row.key.path,
                        "adapter": row.key.adapter,
                        "bits": row.key.bits,
                        "row": row.label,
                        "column": column.label,
                        "task": column.key.task,
                        "task_version": column.key.version,
                        "split": column.key.split,
                        "metric": column.key.metric,
                        "signature": column.key.signature,
                        "data_fingerprint": column.key.data_fingerprint,
                        "protocol_hash": column.key.protocol_hash,
                        "lang": lang,
                        "value": num(value),
                        "low": num(interval[0]) if interval is not None and value is not None else None,
                        "high": num(interval[1]) if interval is not None and value is not None else None,
                        "ref": cell.ref,
                        "run_id": cell.run_id,
                        "record": cell.record_path,
                    }
                )
    frame = pd.DataFrame(rows)
    for name in ("value", "low", "high"):
        frame[name] = frame[name].astype("float64")
    return frame


def leaderboard_dict(lb: Leaderboard) -> dict[str, Any]:
    """The leaderboard, JSON-ready (`mvleval leaderboard --json`; mvleval/schemas/leaderboard.json): columns (what is
    comparable), rows (models), and one cell per (row, column) with scores on the records' native scale (0-1; CIDEr
    may exceed 1), not the x100 points of the tables."""
    columns = [
        {
            "id": c.slug,
            "label": c.label,
            "task": c.key.task,
            "task_version": c.key.version,
            "split": c.key.split,
            "metric": c.key.metric,
            "signature": c.key.signature,
            "data_fingerprint": c.key.data_fingerprint,
            "protocol_hash": c.key.protocol_hash,
            "prompt_style": c.key.prompt_style,
            "languages": list(c.languages),
            "n_examples": c.n_examples,
            "higher_is_better": c.higher_is_better,
        }
        for c in lb.columns
    ]
    row_ids = {r.key: f"m{i}" for i, r in enumerate(lb.rows, start=1)}
    rows = [
        {
            "id": row_ids[r.key],
            "label": r.label,
            "model": r.key.path,
            "adapter": r.key.adapter or None,
            "bits": r.key.bits,
            "family": r.key.family or None,
            "fingerprint": r.key.fingerprint or None,
            "generation_overrides": json.loads(r.key.generation),
        }
        for r in lb.rows
    ]
    cells = []
    for column in lb.columns:
        for row in lb.rows:
            cell = lb.cell(row, column)
            if cell is None:
                continue
            cells.append(
                {
                    "row": row_ids[row.key],
                    "column": column.slug,
                    "ref": cell.ref,
                    "mean": cell.mean,
                    "mean_interval": list(cell.mean_interval) if cell.mean_interval else None,
                    "per_lang": dict(cell.per_lang),
                    "intervals": {k: list(v) if v else None for k, v in cell.intervals.items()},
                    "run_id": cell.run_id,
                    "created_at": cell.created_at,
                    "record": cell.record_path,
                }
            )
    superseded = [
        {
            "run_id": s.run_id,
            "created_at": s.created_at,
            "record": s.record_path,
            "replaced_by": s.replaced_by,
            "simultaneous": s.simultaneous,
        }
        for s in lb.superseded
    ]
    return {"columns": columns, "rows": rows, "cells": cells, "superseded": superseded}


__all__ = [
    "Cell",
    "Column",
    "ColumnKey",
    "Leaderboard",
    "ModelKey",
    "Row",
    "Superseded",
    "build_leaderboard",
    "find_records",
    "format_interval",
    "format_points",
    "heatmap_name",
    "leaderboard_dict",
    "leaderboard_frame",
    "render_markdown",
    "short_paths",
    "to_points",
]
