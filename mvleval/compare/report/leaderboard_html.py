"""The leaderboard as one self-contained HTML page: sortable tables and the per-task heatmaps embedded as PNG data URIs."""

from __future__ import annotations

import base64
from collections.abc import Mapping

from mvleval.compare.leaderboard import (
    SCALE_NOTE,
    SUPERSEDED_NOTE,
    Leaderboard,
    Row,
    format_interval,
    format_points,
    heatmap_name,
    superseded_by_text,
    to_points,
)
from mvleval.compare.report.page import asset, document, esc


def _value_cell(value: float | None, interval: tuple[float, float] | None, *, best: bool = False, ref: str = "") -> str:
    sort = "" if value is None else f' data-sort="{to_points(value)}"'
    text = esc(format_points(value))
    if value is not None and interval is not None:
        text += f' <small class="interval">{esc(format_interval(interval))}</small>'
    if best:
        text = f"<strong>{text}</strong>"
    if ref:
        text += f' <small class="interval">({esc(ref)})</small>'
    return f"<td{sort}>{text}</td>"


def _model_th(row: Row) -> str:
    """The row's header cell: its short label, the full model (and adapter) path on hover."""
    path = row.key.path + (f" + {row.key.adapter}" if row.key.adapter else "")
    return f'<th data-sort="{esc(row.label)}" title="{esc(path)}">{esc(row.label)}</th>'


def render_leaderboard_html(lb: Leaderboard, heatmaps: Mapping[str, bytes]) -> str:
    """The leaderboard page: overview (models x columns), per column its heatmap and per-language table, records.

    Args:
        lb: the leaderboard.
        heatmaps: PNG bytes by heatmap file name (leaderboard.heatmap_name); a column without one shows no image.

    Returns:
        HTML; byte-identical for the same leaderboard and images.
    """
    out = [
        "<header><h1>mvleval leaderboard</h1>",
        f"<p class=\"note\">{esc(SCALE_NOTE)}. Each cell is the headline metric's mean over the column's languages "
        "with the record's 95% bootstrap interval where it has one for the mean, and the record it comes from. "
        "The best mean per column is in bold. Numbers in different columns are not comparable. "
        "Click a column header to sort.</p></header>",
    ]
    best: dict[object, object] = {}
    for column in lb.columns:
        values = [to_points(c.mean) for r in lb.rows if (c := lb.cell(r, column)) is not None and c.mean is not None]
        best[column.key] = (max(values) if column.higher_is_better else min(values)) if values else None
    head = "".join(f"<th>{esc(c.label)}{'' if c.higher_is_better else ' (lower is better)'}</th>" for c in lb.columns)
    out.append(
        f'<section id="overview"><table class="scores sortable" id="leaderboard"><thead><tr><th>model</th>{head}</tr></thead><tbody>'
    )
    for row in lb.rows:
        cells = [_model_th(row)]
        for column in lb.columns:
            cell = lb.cell(row, column)
            if cell is None:
                cells.append("<td>–</td>")
                continue
            is_best = cell.mean is not None and to_points(cell.mean) == best[column.key]
            cells.append(_value_cell(cell.mean, cell.mean_interval, best=is_best, ref=cell.ref))
        out.append(f"<tr>{''.join(cells)}</tr>")
    out.append("</tbody></table></section>")

    out.append(
        '<section id="columns"><h2>Columns</h2><table class="facts"><thead><tr><th>column</th><th>task</th>'
        "<th>version</th><th>split</th><th>metric</th><th>signature</th><th>data fingerprint</th><th>protocol</th>"
        "<th>languages</th><th>examples</th></tr></thead><tbody>"
    )
    for col in lb.columns:
        k = col.key
        out.append(
            f"<tr><th>{esc(col.label)}</th><td>{esc(k.task)}</td><td>{k.version}</td><td>{esc(k.split)}</td>"
            f"<td>{esc(k.metric)}</td><td><code>{esc(k.signature)}</code></td><td><code>{esc(k.data_fingerprint)}</code></td>"
            f"<td><code>{esc(k.protocol_hash)}</code></td><td>{esc(' '.join(col.languages))}</td>"
            f"<td>{col.n_examples}</td></tr>"
        )
    out.append("</tbody></table></section>")

    for column in lb.columns:
        out.append(f'<section class="column"><h2>{esc(column.label)}: per language</h2>')
        png = heatmaps.get(heatmap_name(column))
        if png is not None:
            uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
            out.append(f'<figure><img class="heatmap-img" src="{uri}" alt="{esc(column.label)} heatmap"></figure>')
        langs = "".join(f"<th>{esc(lang)}</th>" for lang in column.languages)
        out.append(
            f'<table class="scores sortable"><thead><tr><th>model</th>{langs}<th>mean</th><th>record</th></tr></thead><tbody>'
        )
        for row in lb.rows:
            cell = lb.cell(row, column)
            if cell is None:
                continue
            lang_cells = "".join(
                _value_cell(cell.per_lang.get(lang), cell.intervals.get(lang)) for lang in column.languages
            )
            out.append(
                f"<tr>{_model_th(row)}{lang_cells}"
                f"{_value_cell(cell.mean, cell.mean_interval)}<td>{esc(cell.ref)}</td></tr>"
            )
        out.append("</tbody></table></section>")

    out.append(
        '<section id="records"><h2>Records</h2><table class="facts"><thead><tr><th>ref</th><th>run id</th>'
        "<th>created at</th><th>record</th></tr></thead><tbody>"
    )
    for cell in lb.used_cells():
        out.append(
            f"<tr><th>{esc(cell.ref)}</th><td><code>{esc(cell.run_id)}</code></td><td>{esc(cell.created_at)}</td>"
            f"<td><code>{esc(cell.record_path)}</code></td></tr>"
        )
    out.append("</tbody></table>")
    if lb.superseded:
        out.append(
            f'<h3>Superseded records</h3><p class="note">{esc(SUPERSEDED_NOTE)}</p>'
            '<table class="facts"><thead><tr><th>run id</th><th>created at</th>'
            "<th>record</th><th>replaced by</th></tr></thead><tbody>"
        )
        for s in lb.superseded:
            out.append(
                f"<tr><td><code>{esc(s.run_id)}</code></td><td>{esc(s.created_at)}</td>"
                f"<td><code>{esc(s.record_path)}</code></td><td>{esc(superseded_by_text(s))}</td></tr>"
            )
        out.append("</tbody></table>")
    out.append("</section>")
    return document("mvleval leaderboard", "".join(out), script=asset("leaderboard.js"))
