"""Run records + per-sample rows -> the HTML report of one run, or the comparison of a run with a baseline."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mvleval.compare.leaderboard import SCALE_NOTE, format_points
from mvleval.compare.report.images import ImageStore
from mvleval.compare.report.page import asset, document, esc, facts_table, heatmap_svg, score_cell
from mvleval.record.schema import (
    RunRecord,
    check_sample_counts,
    check_sample_row,
    check_samples_hash,
    check_scores_follow_samples,
    read_record,
    read_samples,
    samples_path,
    write_json_atomic,
)
from mvleval.util.errors import MvlevalError

if TYPE_CHECKING:
    from mvleval.compare.gate import GateReport

#: Bumped when the JSON the page's script reads changes shape.
DATA_VERSION = 1


@dataclass(frozen=True)
class ReportSummary:
    """What a written report holds, for the CLI to print."""

    path: Path
    n_samples: int
    n_images: int
    missing_images: tuple[str, ...]
    image_root: Path | None
    size_bytes: int
    n_flipped: int | None = None  # comparisons only: samples whose verdict flipped on the headline metric
    image_root_recorded: bool = False  # True: no image root was given; the run's own (from its record) was used


def _image_root(given: Path | None, record: RunRecord) -> tuple[Path | None, bool]:
    """The images' folder: the one given, else the one the run read its images from (kept in its record) when it is
    still there. (root, whether it came from the record)."""
    if given is not None:
        return given, False
    recorded = record.recorded_image_root()
    return (recorded, True) if recorded is not None and recorded.is_dir() else (None, False)


# -- inputs ---------------------------------------------------------------------------------------------------------
def load_rows(record: RunRecord, record_path: Path) -> list[dict[str, Any]]:
    """The per-sample rows of a record, checked against its example counts (a report of the wrong file misleads)."""
    path = samples_path(record, record_path.parent)
    check_samples_hash(record, record_path.parent, "the record")  # shown numbers follow from the samples they show
    rows = list(read_samples(path))
    for i, row in enumerate(rows, start=1):
        check_sample_row(row, f"{path} (row {i})", ("lang", "id", "prediction"))
    check_sample_counts(
        (str(row["lang"]) for row in rows),
        record,
        path,
        "its record",
        fix="keep each record next to its own per-sample file.",
    )
    check_scores_follow_samples(record, ((str(row["lang"]), row.get("scores")) for row in rows), path, "the record")
    return rows


def _binary(values: Iterable[Any]) -> bool:
    """True when every per-sample value is 0 or 1 (right/wrong), and there is at least one."""
    seen = False
    for v in values:
        if v is None:
            continue
        if v not in (0, 1):
            return False
        seen = True
    return seen


def _metric_specs(
    records: Sequence[RunRecord], row_sets: Sequence[Sequence[Mapping[str, Any]]]
) -> list[dict[str, Any]]:
    names = [m for m in records[0].scores if all(m in r.scores for r in records)]
    specs = []
    for name in names:
        per_sample = [row.get("scores", {}).get(name) for rows in row_sets for row in rows]
        if all(v is None for v in per_sample):
            continue  # corpus-only metric: nothing to show per sample
        specs.append(
            {
                "name": name,
                "hib": records[0].scores[name].higher_is_better,
                "binary": _binary(per_sample),
            }
        )
    return specs


class _Tables:
    """Interned strings (languages, prompts) so that 129,600 rows do not repeat them."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self._index: dict[str, int] = {}

    def add(self, value: str) -> int:
        found = self._index.get(value)
        if found is None:
            found = self._index[value] = len(self.values)
            self.values.append(value)
        return found


def _row_data(
    row: Mapping[str, Any], metrics: Sequence[dict[str, Any]], langs: _Tables, prompts: _Tables, images: ImageStore
) -> dict[str, Any]:
    scores = row.get("scores") or {}
    out: dict[str, Any] = {
        "l": langs.add(str(row["lang"])),
        "id": str(row["id"]),
        "p": prompts.add(str(row.get("prompt", ""))),
        "y": str(row["prediction"]),
        "r": [str(r) for r in row.get("references") or []],
        "s": [scores.get(m["name"]) for m in metrics],
        "im": [images.add(str(p)) for p in row.get("images") or []],
    }
    if row.get("extra"):
        out["x"] = row["extra"]
    return out


def _record_facts(record: RunRecord) -> list[tuple[str, object]]:
    t, m, p = record.task, record.model, record.provenance
    commit = None if p.git_commit is None else p.git_commit + (" (dirty)" if p.git_dirty else "")
    return [
        ("run id", record.run_id),
        ("created", record.created_at),
        ("rescored", record.rescored_at),
        ("task", f"{t.name} v{t.version}"),
        ("split", t.split),
        ("prompt style", t.prompt_style),
        ("languages", ", ".join(f"{lang} ({t.n_examples.get(lang, 0)})" for lang in t.languages)),
        ("limit per language", t.limit),
        ("model", m.path),
        ("adapter", m.adapter),
        ("backend / family", " / ".join(x for x in (m.backend, m.family, m.model_class) if x) or None),
        ("bits / dtype", f"{m.bits} / {m.dtype}"),
        ("quantization", m.quantization),
        ("generation", m.generation),
        ("generation path", m.generation_path),
        ("commit", commit),
        ("mvleval", p.mvleval_version),
        ("device", p.device),
        ("data fingerprint", p.data_fingerprint),
        ("protocol hash", t.protocol_hash),
        ("seed", p.seed),
    ]


def _format_errors_section(record: RunRecord, rows: Sequence[Mapping[str, Any]]) -> str:
    """Format errors first: per language, the share of answers from which no label could be extracted (scored wrong,
    never guessed), and every such answer as the model gave it."""
    metrics = [m for m, s in record.scores.items() if any("format_error_rate" in e for e in s.extra.values())]
    if not metrics:
        return ""
    out = [
        '<section id="format-errors"><h2>Format errors</h2><p class="note">answers naming no choice: scored wrong, '
        "never guessed (choice_accuracy's extraction cascade)</p>"
    ]
    for m in metrics:
        rates = "".join(
            f"<tr><th>{esc(lang)}</th><td>{format_points(e.get('format_error_rate'))}</td></tr>"
            for lang, e in record.scores[m].extra.items()
        )
        out.append(
            f'<table class="scores"><thead><tr><th>language</th><th>{esc(m)} format errors %</th></tr></thead>'
            f"<tbody>{rates}</tbody></table>"
        )
        bad = [r for r in rows if (r.get("extra") or {}).get(m, {}).get("rule") == "format-error"]
        if bad:
            items = "".join(
                f"<li>{esc(str(r.get('lang')))} {esc(str(r.get('id')))}: <code>{esc(str(r.get('prediction'))[:300])}</code></li>"
                for r in bad[:200]
            )
            more = f"<li>... {len(bad) - 200} more</li>" if len(bad) > 200 else ""
            out.append(f"<details><summary>{len(bad)} answers</summary><ul>{items}{more}</ul></details>")
    out.append("</section>")
    return "".join(out)


def _scores_table(record: RunRecord) -> str:
    metrics = list(record.scores)
    head = "".join(f"<th>{esc(name)}{'' if record.scores[name].higher_is_better else ' ↓'}</th>" for name in metrics)
    out = [f'<table class="scores"><thead><tr><th>language</th><th>n</th>{head}</tr></thead><tbody>']
    for lang in record.task.languages:
        cells = "".join(
            f"<td>{score_cell(record.scores[m].per_lang.get(lang), record.scores[m].intervals.get(lang))}</td>"
            for m in metrics
        )
        out.append(f"<tr><th>{esc(lang)}</th><td>{record.task.n_examples.get(lang, 0)}</td>{cells}</tr>")
    means = "".join(
        f"<td>{score_cell(record.scores[m].mean, record.scores[m].intervals.get('mean'))}</td>" for m in metrics
    )
    out.append(f'<tr class="mean"><th>mean</th><td>{sum(record.task.n_examples.values())}</td>{means}</tr>')
    out.append("</tbody></table>")
    notes = [f"{m}/{lang}: {note}" for m in metrics for lang, note in record.scores[m].notes.items()]
    if notes:
        out.append('<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    return "".join(out)


def _heatmap(record: RunRecord) -> str:
    metrics = list(record.scores)
    return heatmap_svg(
        metrics,
        record.task.languages,
        [[record.scores[m].per_lang.get(lang) for lang in record.task.languages] for m in metrics],
        higher_is_better=[record.scores[m].higher_is_better for m in metrics],
        title=f"{record.task.name}: score per language (x100)",
    )


def _groups_section(record: RunRecord) -> str:
    """The headline metric per group (subject, category) and language, where the task names groups: a table with each
    cell's number of examples."""
    metric = record.headline()
    by_group = record.scores[metric].by_group if metric in record.scores else {}
    if not by_group:
        return ""
    langs = [lang for lang in record.task.languages if lang in by_group]
    groups = sorted({g for per_lang in by_group.values() for g in per_lang})
    head = "".join(f"<th>{esc(lang)}</th>" for lang in langs)
    out = [
        f'<section id="groups"><h2>{esc(metric)} per group</h2><p class="note">the task\'s subjects or categories; '
        'each cell: the score (x100) and its number of examples</p><div class="side">'
        f'<table class="scores"><thead><tr><th>group</th>{head}</tr></thead><tbody>'
    ]
    for group in groups:
        cells = []
        for lang in langs:
            cell = by_group[lang].get(group)
            cells.append(
                "<td>–</td>" if cell is None else f"<td>{score_cell(cell.value, None)} <small>n={cell.n}</small></td>"
            )
        out.append(f"<tr><th>{esc(group)}</th>{''.join(cells)}</tr>")
    out.append("</tbody></table></div></section>")
    return "".join(out)


def _image_note(images: ImageStore) -> str:
    if images.root is None:
        return (
            '<p class="note">Images: not embedded (the report was made without <code>--image-root</code>); '
            "each sample names its image files.</p>"
        )
    text = f"Images: {sum(t is not None for t in images.thumbs)} thumbnails embedded from {images.root}"
    if images.missing:
        shown = ", ".join(images.missing[:3])
        text += f"; {len(images.missing)} not found or unreadable under it (e.g. {shown})"
    return f'<p class="note">{esc(text)}.</p>'


def _controls(compare: bool) -> str:
    views = ""
    if compare:
        views = (
            '<label>view <select id="view"><option value="flipped">flipped verdicts</option>'
            '<option value="drops">largest drops</option><option value="all">all samples</option></select></label>'
        )
    return (
        '<form id="controls" class="controls">'
        f"{views}"
        '<label>language <select id="lang"><option value="">all</option></select></label>'
        '<label>metric <select id="metric"></select></label>'
        '<label>verdict <select id="verdict"><option value="">all</option><option value="right">right</option>'
        '<option value="wrong">wrong</option></select></label>'
        '<label>score from <input id="min" type="number" step="any" size="6"> to '
        '<input id="max" type="number" step="any" size="6"></label>'
        '<label>search <input id="search" type="search" placeholder="prediction or reference" size="24"></label>'
        '<label>sort <select id="sort"><option value="">file order</option><option value="asc">score ascending</option>'
        '<option value="desc">score descending</option></select></label>'
        '<label>per page <select id="page-size"><option value="25">25</option><option value="50" selected>50</option>'
        '<option value="100">100</option><option value="250">250</option></select></label>'
        "</form>"
    )


def _pager() -> str:
    return (
        '<nav class="pager"><button type="button" class="prev">‹ previous</button>'
        '<span class="page-info"></span><button type="button" class="next">next ›</button></nav>'
    )


def _samples_section(compare: bool) -> str:
    summary = '<div id="flip-summary"></div>' if compare else ""
    return (
        f'<section id="samples"><h2>Samples</h2>{_controls(compare)}{summary}'
        '<p id="match-count" class="count" aria-live="polite"></p>'
        f'{_pager()}<div id="rows"></div>{_pager()}'
        "<noscript><p>The sample browser needs JavaScript; the header above is complete without it.</p></noscript>"
        "</section>"
    )


# -- one run --------------------------------------------------------------------------------------------------------
def render_run_report(record: RunRecord, rows: Sequence[Mapping[str, Any]], images: ImageStore) -> str:
    """The HTML report of one run.

    Args:
        record: the run record.
        rows: its per-sample rows (as read_samples gives them).
        images: where thumbnails come from; rows' image paths are added to it.

    Returns:
        One self-contained HTML document (inline CSS, script and data; no network access).
    """
    metrics = _metric_specs([record], [rows])
    langs, prompts = _Tables(), _Tables()
    for lang in record.task.languages:
        langs.add(lang)
    data_rows = [_row_data(row, metrics, langs, prompts, images) for row in rows]
    title = f"{record.task.name} v{record.task.version} [{record.task.split}] — {record.model.path}"
    body = (
        f"<header><h1>mvleval report: {esc(title)}</h1>"
        f'<p class="note">{esc(SCALE_NOTE)}; intervals are 95% bootstrap intervals.</p></header>'
        f"{_format_errors_section(record, rows)}"
        f'<section id="run"><h2>What ran</h2>{facts_table([(k, [v]) for k, v in _record_facts(record)])}</section>'
        f'<section id="scores"><h2>Scores per language</h2><div class="side">{_scores_table(record)}'
        f"{_heatmap(record)}</div></section>{_groups_section(record)}"
        f"{_image_note(images)}{_samples_section(False)}"
    )
    data = {
        "version": DATA_VERSION,
        "kind": "run",
        "metrics": metrics,
        "headline": record.headline(),
        "langs": langs.values,
        "prompts": prompts.values,
        "images": {"names": images.names, "thumbs": images.thumbs, "links": images.links},
        "rows": data_rows,
    }
    return document(f"mvleval: {title}", body, data=data, script=asset("report.js"))


# -- run vs baseline ------------------------------------------------------------------------------------------------
def render_compare_report(
    run: RunRecord,
    run_rows: Sequence[Mapping[str, Any]],
    baseline: RunRecord,
    baseline_rows: Sequence[Mapping[str, Any]],
    images: ImageStore,
    *,
    metrics: Sequence[str] | None = None,
    gate_report: GateReport | None = None,
) -> str:
    """The comparison page: flipped verdicts per language first, then the largest per-sample drops, then all samples.

    Args:
        run, run_rows: the new run and its per-sample rows.
        baseline, baseline_rows: the baseline and its rows.
        images: where thumbnails come from.
        metrics: the metrics to compare (None: all of the baseline's), as the gate selects them.
        gate_report: the gate's verdict, shown in the header when the page is written by `mvleval gate`.

    Raises:
        MvlevalError: the records are not comparable (the gate's message), or the per-sample files do not hold the
            same examples.
    """
    from mvleval.compare.gate import check_comparable

    selected = check_comparable(run, baseline, metrics)
    base_by_key = {(str(r["lang"]), str(r["id"])): r for r in baseline_rows}
    run_keys = [(str(r["lang"]), str(r["id"])) for r in run_rows]
    if set(run_keys) != set(base_by_key) or len(run_keys) != len(base_by_key):
        only_run = sorted(set(run_keys) - set(base_by_key))
        only_base = sorted(set(base_by_key) - set(run_keys))
        raise MvlevalError(
            f"the two per-sample files hold different examples ({len(only_run)} only in the run, e.g. {only_run[:3]}; "
            f"{len(only_base)} only in the baseline, e.g. {only_base[:3]}).",
            fix="compare runs of the same examples (same --split, --lang and --limit), each next to its own per-sample file.",
        )
    records = [run, baseline]
    specs = [m for m in _metric_specs(records, [run_rows, baseline_rows]) if m["name"] in selected]
    langs, prompts = _Tables(), _Tables()
    for lang in run.task.languages:
        langs.add(lang)
    data_rows = []
    for row, key in zip(run_rows, run_keys):
        item = _row_data(row, specs, langs, prompts, images)
        base = base_by_key[key]
        base_scores = base.get("scores") or {}
        item["by"] = str(base["prediction"])
        item["bs"] = [base_scores.get(m["name"]) for m in specs]
        if base.get("extra"):
            item["bx"] = base["extra"]
        data_rows.append(item)
    headline = baseline.headline() if baseline.headline() in selected else selected[0]
    title = (
        f"{run.task.name} v{run.task.version} [{run.task.split}] — {run.model.path} vs baseline {baseline.model.path}"
    )
    run_facts, base_facts = _record_facts(run), _record_facts(baseline)
    facts = facts_table(
        [(k, [v, b]) for (k, v), (_, b) in zip(run_facts, base_facts)],
        headers=["", "run", "baseline"],
        mark_differences=True,
    )
    body = (
        f"<header><h1>mvleval comparison: {esc(title)}</h1>"
        f'<p class="note">{esc(SCALE_NOTE)}; delta = run − baseline. Rows that differ between the runs are marked.</p>'
        f"</header>{_gate_section(gate_report)}"
        f'<section id="run"><h2>What ran</h2>{facts}</section>'
        f'<section id="scores"><h2>Scores per language</h2><div class="side">{_compare_table(run, baseline, selected)}'
        f"{_delta_heatmap(run, baseline, selected)}</div></section>"
        f"{_image_note(images)}{_samples_section(True)}"
    )
    data = {
        "version": DATA_VERSION,
        "kind": "compare",
        "metrics": specs,
        "headline": headline,
        "langs": langs.values,
        "prompts": prompts.values,
        "images": {"names": images.names, "thumbs": images.thumbs, "links": images.links},
        "rows": data_rows,
    }
    return document(f"mvleval: {title}", body, data=data, script=asset("report.js"))


def _compare_table(run: RunRecord, baseline: RunRecord, metrics: Sequence[str]) -> str:
    head = "".join(f'<th colspan="3">{esc(m)}</th>' for m in metrics)
    sub = "<th>baseline</th><th>run</th><th>delta</th>" * len(metrics)
    out = [f'<table class="scores"><thead><tr><th rowspan="2">language</th>{head}</tr><tr>{sub}</tr></thead><tbody>']
    langs = [*baseline.task.languages, "mean"]
    for lang in langs:
        cells = []
        for m in metrics:
            b_scores, r_scores = baseline.scores[m], run.scores[m]
            b = b_scores.mean if lang == "mean" else b_scores.per_lang.get(lang)
            r = r_scores.mean if lang == "mean" else r_scores.per_lang.get(lang)
            bi = b_scores.intervals.get(lang)
            ri = r_scores.intervals.get(lang)
            delta, cls = "–", ""
            if b is not None and r is not None:
                d = r - b
                worse = d < 0 if b_scores.higher_is_better else d > 0
                cls = ' class="worse"' if worse and format_points(abs(d)) != "0.0" else ""
                delta = ("+" if d > 0 else "") + format_points(d)
            cells.append(f"<td>{score_cell(b, bi)}</td><td>{score_cell(r, ri)}</td><td{cls}>{esc(delta)}</td>")
        row_cls = ' class="mean"' if lang == "mean" else ""
        out.append(f"<tr{row_cls}><th>{esc(lang)}</th>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _delta_heatmap(run: RunRecord, baseline: RunRecord, metrics: Sequence[str]) -> str:
    values = []
    for m in metrics:
        row: list[float | None] = []
        for lang in baseline.task.languages:
            b, r = baseline.scores[m].per_lang.get(lang), run.scores[m].per_lang.get(lang)
            row.append(None if b is None or r is None else r - b)
        values.append(row)
    return heatmap_svg(
        metrics,
        baseline.task.languages,
        values,
        diverging=True,
        higher_is_better=[baseline.scores[m].higher_is_better for m in metrics],
        title="run − baseline per language (x100; red: worse)",
    )


def _gate_section(report: GateReport | None) -> str:
    if report is None:
        return ""
    status = (
        "PASSED"
        if report.passed
        else f"FAILED ({len(report.failures)} regression{'s' if len(report.failures) != 1 else ''})"
    )
    cls = "pass" if report.passed else "fail"
    head = "<tr><th>metric</th><th>language</th><th>baseline</th><th>run</th><th>delta</th><th>tolerance</th><th>verdict</th></tr>"
    rows = []
    for c in report.cells:
        delta = "–" if c.delta is None else ("+" if c.delta > 0 else "") + format_points(c.delta)
        verdict = c.verdict + (f": {c.reason}" if c.reason else "")
        rows.append(
            f'<tr class="{esc(c.verdict)}"><td>{esc(c.metric)}</td><td>{esc(c.lang)}</td><td>{esc(format_points(c.baseline))}</td>'
            f"<td>{esc(format_points(c.run))}</td><td>{esc(delta)}</td><td>{c.tolerance:g}</td><td>{esc(verdict)}</td></tr>"
        )
    warnings = "".join(f'<p class="warning">Warning: {esc(w)}</p>' for w in report.warnings)
    return (
        f'<section id="gate"><h2 class="{cls}">Gate: {esc(status)}</h2>{warnings}<details{"" if report.passed else " open"}>'
        f'<summary>{len(report.cells)} cells</summary><table class="scores gate">{head}{"".join(rows)}</table></details></section>'
    )


# -- files ----------------------------------------------------------------------------------------------------------
def _write(path: Path, text: str) -> int:
    # lone surrogates (possible in JSON-escaped model output) cannot be encoded as UTF-8: written as backslash-u
    # escapes, which inside the JSON island are the escapes JSON itself uses
    payload = text.encode("utf-8", "backslashreplace").decode("utf-8")
    try:
        write_json_atomic(path, payload)
    except OSError as exc:
        raise MvlevalError(
            f"could not write the report ({exc.strerror or exc}).", fix="choose a writable --out path.", where=path
        ) from None
    return path.stat().st_size


def count_flips(
    run_rows: Sequence[Mapping[str, Any]], baseline_rows: Sequence[Mapping[str, Any]], metric: str
) -> int | None:
    """Samples whose verdict on `metric` flipped between the runs, or None when the metric is not right/wrong."""
    base = {(str(r["lang"]), str(r["id"])): (r.get("scores") or {}).get(metric) for r in baseline_rows}
    pairs = [((r.get("scores") or {}).get(metric), base.get((str(r["lang"]), str(r["id"])))) for r in run_rows]
    if not _binary(v for pair in pairs for v in pair):
        return None
    return sum(1 for a, b in pairs if a is not None and b is not None and a != b)


def write_run_report(record_path: Path, out: Path, *, image_root: Path | None = None) -> ReportSummary:
    """Read a run record and its per-sample file and write its HTML report to `out`."""
    record = read_record(record_path)
    rows = load_rows(record, record_path)
    image_root, recorded = _image_root(image_root, record)
    images = ImageStore(image_root)
    size = _write(out, render_run_report(record, rows, images))
    return ReportSummary(
        out, len(rows), len(images.names), tuple(images.missing), image_root, size, image_root_recorded=recorded
    )


def write_compare_report(
    record_path: Path,
    baseline_path: Path,
    out: Path,
    *,
    image_root: Path | None = None,
    metrics: Sequence[str] | None = None,
    gate_report: GateReport | None = None,
    run: RunRecord | None = None,
    baseline: RunRecord | None = None,
) -> ReportSummary:
    """Read two comparable records and their per-sample files and write the comparison page to `out`."""
    run = run or read_record(record_path)
    baseline = baseline or read_record(baseline_path)
    from mvleval.compare.gate import check_comparable

    check_comparable(run, baseline, metrics)  # before reading two per-sample files: the gate's message, fast
    run_rows = load_rows(run, record_path)
    base_rows = load_rows(baseline, baseline_path)
    image_root, recorded = _image_root(image_root, run)
    images = ImageStore(image_root)
    text = render_compare_report(run, run_rows, baseline, base_rows, images, metrics=metrics, gate_report=gate_report)
    size = _write(out, text)
    flips = count_flips(run_rows, base_rows, baseline.headline())
    return ReportSummary(
        out,
        len(run_rows),
        len(images.names),
        tuple(images.missing),
        image_root,
        size,
        flips,
        image_root_recorded=recorded,
    )
