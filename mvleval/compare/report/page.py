"""The page shell of every mvleval HTML file: escaping, the JSON data island, the header tables and the SVG heatmap."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from mvleval.compare.leaderboard import format_interval, format_points


def esc(value: object) -> str:
    """Text for HTML element content or a quoted attribute value: & < > " ' escaped."""
    return html.escape(str(value), quote=True)


def script_json(data: Any) -> str:
    """JSON for a <script type="application/json"> element that no string inside it can end or comment out.

    Every '<', '>' and '&' is written as a \\u escape (valid JSON, the same string once parsed), so '</script>',
    '<!--' and '<script' never appear in the page; U+2028/U+2029 are escaped for old parsers.
    """
    text = json.dumps(_finite(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _finite(data: Any) -> Any:
    # NaN/inf are not JSON: a per-sample score that is not a number is shown as missing
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    return data


@cache
def asset(name: str) -> str:
    """A file shipped next to this module (report.css, report.js, leaderboard.js)."""
    return resources.files("mvleval.compare.report").joinpath(name).read_text(encoding="utf-8")


def document(title: str, body: str, *, data: Any | None = None, script: str | None = None) -> str:
    """A complete self-contained page: inline CSS, the static body, the data island and the inline script.

    The data island comes after the static body, so the header and score tables paint before the (possibly
    tens of MB of) sample data is parsed. The Content-Security-Policy lets nothing be fetched (the page works
    offline and cannot call out) and lets only this page's own script run (by its hash): even a string that
    got past the escaping could not execute.
    """
    script_src = "'none'"
    if script is not None:
        digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
        script_src = f"'sha256-{digest}'"
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        f"style-src 'unsafe-inline'; script-src {script_src}\">\n",
        f"<title>{esc(title)}</title>\n<style>\n{asset('report.css')}</style>\n</head>\n<body>\n",
        body,
    ]
    if data is not None:
        parts.append(f'\n<script type="application/json" id="report-data">{script_json(data)}</script>\n')
    if script is not None:
        parts.append(f"<script>{script}</script>\n")
    parts.append("</body>\n</html>\n")
    return "".join(parts)


def facts_table(
    rows: Sequence[tuple[str, Sequence[object]]], headers: Sequence[str] | None = None, mark_differences: bool = False
) -> str:
    """A two-or-more column table of labelled values; with mark_differences, rows whose values differ get a class."""
    out = ['<table class="facts">']
    if headers:
        out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>")
    out.append("<tbody>")
    for label, values in rows:
        differs = mark_differences and len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1
        cls = ' class="differs"' if differs else ""
        cells = "".join(f'<td dir="auto">{esc(_show(v))}</td>' for v in values)
        out.append(f"<tr{cls}><th>{esc(label)}</th>{cells}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _show(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        if not value:
            return "–"
        if isinstance(value, dict):
            return ", ".join(f"{k}={v}" for k, v in value.items())
        return ", ".join(str(v) for v in value)
    return str(value)


def score_cell(value: float | None, interval: Sequence[float] | None) -> str:
    """'45.3 <small>[43.1, 47.3]</small>' (x100, as every mvleval table)."""
    text = esc(format_points(value))
    if value is not None and interval is not None:
        text += f' <small class="interval">{esc(format_interval(interval))}</small>'
    return text


# -- heatmap --------------------------------------------------------------------------------------------------------
# viridis at 9 stops (matplotlib's colormap), interpolated linearly: the leaderboard's PNG heatmaps use the same map
_VIRIDIS = (
    (68, 1, 84),
    (71, 44, 122),
    (59, 81, 139),
    (44, 113, 142),
    (33, 144, 141),
    (39, 173, 129),
    (92, 200, 99),
    (170, 220, 50),
    (253, 231, 37),
)
# a diverging map for differences: red (worse) - light grey - blue (better)
_DIVERGING = ((178, 24, 43), (239, 138, 98), (247, 247, 247), (103, 169, 207), (33, 102, 172))


def _interpolate(stops: Sequence[tuple[int, int, int]], t: float) -> tuple[int, int, int]:
    t = min(max(t, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(t), len(stops) - 2)
    f = t - i
    a, b = stops[i], stops[i + 1]
    return (round(a[0] + (b[0] - a[0]) * f), round(a[1] + (b[1] - a[1]) * f), round(a[2] + (b[2] - a[2]) * f))


def heatmap_svg(
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    values: Sequence[Sequence[float | None]],
    *,
    higher_is_better: Sequence[bool],
    diverging: bool = False,
    title: str = "",
) -> str:
    """An inline SVG heatmap, values x100 printed in the cells; each row is coloured on its own scale (metrics differ
    in range), missing cells grey with '–'. `diverging`: values are differences, coloured around zero."""
    cell_w, cell_h, left, top = 46, 26, max(8 * max((len(r) for r in row_labels), default=4), 60), 40
    width = left + cell_w * len(col_labels) + 8
    height = top + cell_h * len(row_labels) + 8
    out = [
        f'<svg class="heatmap" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">'
    ]
    if title:
        out.append(f"<title>{esc(title)}</title>")
    for j, col in enumerate(col_labels):
        x = left + cell_w * j + cell_w / 2
        out.append(f'<text x="{x:g}" y="{top - 10}" text-anchor="middle" class="hm-col">{esc(col)}</text>')
    for i, (row, row_values) in enumerate(zip(row_labels, values)):
        y = top + cell_h * i
        out.append(
            f'<text x="{left - 6}" y="{y + cell_h / 2 + 4:g}" text-anchor="end" class="hm-row">{esc(row)}</text>'
        )
        finite = [v for v in row_values if v is not None]
        low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
        bound = max((abs(v) for v in finite), default=0.0) or 1.0
        for j, value in enumerate(row_values):
            x = left + cell_w * j
            if value is None:
                fill, text, ink = "#dddddd", "–", "#333"
            else:
                if diverging:
                    good = value if higher_is_better[i] else -value
                    rgb = _interpolate(_DIVERGING, 0.5 + good / (2 * bound))
                else:
                    t = 0.5 if high == low else (value - low) / (high - low)
                    rgb = _interpolate(_VIRIDIS, t if higher_is_better[i] else 1 - t)
                fill = "#{:02x}{:02x}{:02x}".format(*rgb)
                ink = "#000" if (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) > 140 else "#fff"
                text = ("+" if diverging and value > 0 else "") + format_points(value)
            out.append(f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" fill="{fill}"/>')
            out.append(
                f'<text x="{x + (cell_w - 2) / 2:g}" y="{y + cell_h / 2 + 3:g}" text-anchor="middle" '
                f'class="hm-val" fill="{ink}">{esc(text)}</text>'
            )
    out.append("</svg>")
    return "".join(out)
