"""Run records + per-sample files -> self-contained HTML pages (one run, a run vs its baseline, the leaderboard).

Pure: records and samples in, one HTML file out; no task code, no network. Every page inlines its CSS, script and
data (samples as one JSON island, images as downsized JPEG data URIs, each distinct image once), so it opens from
disk anywhere. Model and dataset text reaches the page only as escaped JSON and is rendered with textContent.
"""

from __future__ import annotations

from mvleval.compare.report.build import (
    ReportSummary,
    count_flips,
    load_rows,
    render_compare_report,
    render_run_report,
    write_compare_report,
    write_run_report,
)
from mvleval.compare.report.images import ImageStore
from mvleval.compare.report.page import script_json

__all__ = [
    "ImageStore",
    "ReportSummary",
    "count_flips",
    "load_rows",
    "render_compare_report",
    "render_run_report",
    "script_json",
    "write_compare_report",
    "write_run_report",
]
