"""A leaderboard's files: Markdown, CSV, one PNG heatmap per column and the HTML page (compare/report/leaderboard_html.py).

Kept apart from leaderboard.py (which builds the table and renders Markdown) so that the HTML page, which reads the
table's types and formatting, and this writer, which calls the page, import in one direction only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from mvleval.compare.leaderboard import (
    MISSING,
    Column,
    Leaderboard,
    csv_cell,
    heatmap_name,
    leaderboard_frame,
    render_markdown,
    to_points,
)
from mvleval.compare.report.leaderboard_html import render_leaderboard_html
from mvleval.util.errors import MvlevalError

#: Colour scales in points (x100), the same for every figure of a metric so colours compare across tasks and runs:
#: accuracies are 0-100 %; CIDEr has no upper bound, so its scale is stated (values above it get the top colour); BLEU
#: and chrF++ are 0-100 points (sacrebleu's scale), labelled x100, not %.
HEATMAP_SCALE: dict[str, tuple[float, float]] = {"cider": (0.0, 150.0), "bleu": (0.0, 100.0), "chrfpp": (0.0, 100.0)}
DEFAULT_SCALE = (0.0, 100.0)
#: Languages per panel: 36 languages wrap into 3 rows of 12 instead of one unreadable strip.
LANGUAGES_PER_PANEL = 12
#: Points of the heatmap's title (its width in characters per line follows from it).
TITLE_FONT_SIZE = 9
#: Row labels longer than this are shortened (the full label is in leaderboard.md).
MAX_LABEL_CHARS = 64


#: the folders of a path in a row label ("/data/ckpts/run-7/mblip-ft" -> "…/mblip-ft"): the model's own folder name
#: and the settings after it say more than where it is stored
_FOLDERS = re.compile(r"(?:(?<=\s)|^)/?(?:[^\s/]+/)+(?=[^\s/])")


def _middle(label: str, limit: int) -> str:
    if len(label) <= limit:
        return label
    keep = limit - 1
    return label[: keep // 2] + "…" + label[len(label) - (keep - keep // 2) :]


def _short_labels(labels: Sequence[str], limit: int = MAX_LABEL_CHARS) -> list[str]:
    """Heatmap row labels of at most `limit` characters: a long label first loses its paths' folders, then the middle
    of the model's name (its bits and settings stay whole); when that would make two rows look alike (a/ckpt and
    b/ckpt), every long label is cut in its middle instead."""

    def one(label: str) -> str:
        if len(label) <= limit:
            return label
        short = _FOLDERS.sub("…/", label)
        name, sep, rest = short.partition(" (")
        if sep and len(rest) + 2 <= limit - 16:  # keep the bits and settings whole, cut the name in its middle
            return _middle(name, limit - len(rest) - 2) + sep + rest
        return _middle(short, limit)

    out = [one(label) for label in labels]
    if len(set(out)) < len(set(labels)):
        out = [_middle(label, limit) for label in labels]
    return out


def _write_heatmap(lb: Leaderboard, column: Column, path: Path) -> None:
    # The object-oriented API with the Agg canvas: no pyplot, so no global backend switch and no display needed.
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [r for r in lb.rows if lb.cell(r, column) is not None]
    languages = [*column.languages, "mean"]
    data = np.full((len(rows), len(languages)), np.nan)
    for i, row in enumerate(rows):
        cell = lb.cell(row, column)
        assert cell is not None
        for j, lang in enumerate(column.languages):
            value = cell.per_lang.get(lang)
            if value is not None:
                data[i, j] = float(to_points(value))
        if cell.mean is not None:
            data[i, -1] = float(to_points(cell.mean))
    vmin, vmax = HEATMAP_SCALE.get(column.key.metric, DEFAULT_SCALE)
    unit = "x100" if column.key.metric in HEATMAP_SCALE else "%"
    panels = [languages[i : i + LANGUAGES_PER_PANEL] for i in range(0, len(languages), LANGUAGES_PER_PANEL)]
    # control characters (a tab in a hostile model path) have no glyph: matplotlib would warn on the terminal
    labels = [
        "".join(" " if unicodedata.category(c) == "Cc" else c for c in label)
        for label in _short_labels([r.label for r in rows])
    ]
    per_panel = max(len(panel) for panel in panels)
    width = 2.5 + 0.62 * per_panel + 0.07 * max(len(label) for label in labels)
    height = 0.9 + len(panels) * (0.75 + 0.42 * len(rows))
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    # missing values (None) are grey and labelled '–'
    cmap = colormaps["viridis" if column.higher_is_better else "viridis_r"].with_extremes(bad="#dddddd")
    middle = (vmin + vmax) / 2
    image = None
    start = 0
    for ax, panel in zip(axes, panels):
        block = data[:, start : start + len(panel)]
        start += len(panel)
        image = ax.imshow(np.ma.masked_invalid(block), cmap=cmap, aspect="auto", vmin=vmin, vmax=vmax)
        ax.set_xticks(range(len(panel)), labels=panel)
        ax.set_yticks(range(len(rows)), labels=labels)
        ax.set_xlim(-0.5, per_panel - 0.5)  # a short last panel keeps the others' cell width
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        for i in range(len(rows)):
            for j in range(len(panel)):
                value = block[i, j]
                missing = bool(np.isnan(value))
                # viridis is dark at its low end: white text there, black elsewhere.
                dark = not missing and bool(value < middle) == column.higher_is_better
                ax.text(
                    j,
                    i,
                    MISSING if missing else f"{value:.1f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                    fontweight="bold" if panel[j] == "mean" else "normal",
                )
    scale = f"colour scale {vmin:g}-{vmax:g}" + (", higher values in the top colour" if unit == "x100" else "")
    # the title spans the figure (a figure title, which the constrained layout makes room for), wrapped at spaces to
    # its width: an axes title as long as a column label with its hashes was clipped at both edges
    import textwrap

    chars_per_line = max(20, int(width * 72 / (TITLE_FONT_SIZE * 0.62)))
    fig.suptitle(
        textwrap.fill(
            f"{column.label} ({unit}; {scale})", chars_per_line, break_long_words=False, break_on_hyphens=False
        ),
        fontsize=TITLE_FONT_SIZE,
    )
    assert image is not None
    fig.colorbar(image, ax=list(axes))
    # No 'Software' chunk (it names the matplotlib version): the file changes only when the numbers do.
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})


def write_leaderboard(lb: Leaderboard, out_dir: Path) -> list[Path]:
    """Write leaderboard.md, leaderboard.csv, one heatmap PNG per column and leaderboard.html into `out_dir`.

    leaderboard.html is self-contained (sortable tables, the heatmaps embedded), so it can be sent or uploaded alone.

    Returns:
        The written paths: the Markdown, the CSV, the heatmaps in column order, then the HTML page.

    Raises:
        MvlevalError: the folder cannot be written.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        md_path = out_dir / "leaderboard.md"
        csv_path = out_dir / "leaderboard.csv"
        md_path.write_text(render_markdown(lb), encoding="utf-8")
        from pandas.api.types import is_numeric_dtype

        frame = leaderboard_frame(lb)
        for name in frame.columns:
            if not is_numeric_dtype(frame[name]):  # text (object, or pandas' string dtype)
                frame[name] = frame[name].map(csv_cell)
        frame.to_csv(csv_path, index=False, lineterminator="\n", float_format="%.1f")
        written = [md_path, csv_path]
        heatmaps: dict[str, bytes] = {}
        for column in lb.columns:
            png = out_dir / heatmap_name(column)
            _write_heatmap(lb, column, png)
            written.append(png)
            heatmaps[png.name] = png.read_bytes()
        html_path = out_dir / "leaderboard.html"
        html_path.write_text(render_leaderboard_html(lb, heatmaps), encoding="utf-8")
        written.append(html_path)
    except OSError as exc:
        raise MvlevalError(
            f"could not write the leaderboard ({exc.strerror or exc}).",
            fix="choose a writable --out folder.",
            where=out_dir,
        ) from None
    return written
