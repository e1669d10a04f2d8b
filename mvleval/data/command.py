"""The text of `mvleval data fetch`: the plan before a download (sources, commits, licences, sizes, disk) and
`--list`'s table; cli.py prints what these return."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mvleval.data.fetch import (
    Source,
    State,
    TaskPlan,
    download,
    fetch_upstream,
    free_bytes,
    load_lock,
    plan_task,
    sha256_file,
)
from mvleval.data.layouts import write_language
from mvleval.util.errors import MvlevalError, did_you_mean


def human(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def select_sources(tasks: list[str]) -> list[Source]:
    """--task NAME (repeatable) or --task all -> the lock's entries, unknown names refused with a suggestion."""
    lock = load_lock()
    if not tasks:
        raise MvlevalError("no task given.", fix=f"pass --task NAME (one of: {' '.join(lock)}) or --task all.")
    if "all" in tasks:
        return list(lock.values())
    out = []
    for name in tasks:
        if name not in lock:
            raise MvlevalError(
                f"no data source for task {name!r}.{did_you_mean(name, lock)}",
                fix=f"pick from: {' '.join(lock)} (or all); `mvleval data fetch --list` shows them.",
            )
        out.append(lock[name])
    return out


def make_plans(
    sources: list[Source], langs: list[str] | None, root: Path, revision: str | None, notes: list[str]
) -> list[TaskPlan]:
    if revision is not None and len(sources) != 1:
        raise MvlevalError("--revision applies to one task.", fix="pass a single --task with --revision.")
    plans = []
    for src in sources:
        # --lang with --task all: each task takes the languages it has
        task_langs = langs
        if langs and len(sources) > 1:
            task_langs = [x for x in langs if x in src.languages] or None
            if not task_langs and src.languages:
                continue
        plans.append(plan_task(src, task_langs, root, revision, notes=notes))
    return plans


def plan_lines(plans: list[TaskPlan], root: Path) -> list[str]:
    """The plan, as shown before anything is downloaded (and all of --dry-run)."""
    lines = []
    total = disk = 0
    for plan in plans:
        src = plan.source
        pin = {
            "lock": "pinned by mvleval",
            "--revision": "--revision (NOT the pinned commit)",
            "recorded": "NOT PINNED BY MVLEVAL: the commit this data root resolved before",
            "resolved main": "NOT PINNED BY MVLEVAL: main resolved now",
        }[plan.pinned]
        lines.append(f"{src.task}: {src.repo}@{plan.revision or 'main'} ({pin})")
        lines.append(f"  licence: {src.licence}")
        if src.terms:
            lines.append(f"  terms: {src.terms}")
        for lang, files in plan.todo.items():
            size = sum(f.size for f in files)
            lines.append(f"  {lang or 'all'}: {len(files)} file(s), {human(size)}")
        for up in plan.upstream:
            lines.append(f"  + upstream {up.path} (sha256 {up.sha256[:12]}...): {up.why}")
        if plan.done:
            lines.append(f"  already in the data root from this commit: {' '.join(x or 'all' for x in plan.done)}")
        total += plan.download_bytes
        disk += plan.disk_bytes
    lines.append(
        f"download: {human(total)} (about {human(disk)} on disk: the hub cache, then the data root); "
        f"free disk at {root}: {human(free_bytes(root))}"
    )
    return lines


def list_rows() -> list[dict[str, Any]]:
    """`--list`: every task's source, commit, languages, licence, terms and the lock's sizes (where known)."""
    rows = []
    for src in load_lock().values():
        sizes = [h.get("size") for h in src.hashes.values()]
        rows.append(
            {
                "task": src.task,
                "repo": src.repo,
                "revision": src.revision,
                "layout": src.layout,
                "languages": list(src.languages),
                "size": sum(s for s in sizes if s) if sizes and all(sizes) else None,
                "licence": src.licence,
                "terms": src.terms,
                "upstream": [u.path for u in src.upstream],
            }
        )
    return rows


def accepted_terms(root: Path) -> dict[str, str]:
    return dict(State.load(root).data.get("accepted_terms", {}))


def json_document(plans: list[TaskPlan], root: Path, dry_run: bool, report: FetchReport | None) -> dict[str, Any]:
    """`data fetch --json` (schema mvleval/schemas/data-fetch.json): the plan, and what was written."""
    return {
        "data_root": str(root),
        "dry_run": dry_run,
        "download_bytes": sum(p.download_bytes for p in plans),
        "free_bytes": free_bytes(root),
        "plan": [
            {
                "task": p.source.task,
                "repo": p.source.repo,
                "revision": p.revision or None,
                "pinned": p.pinned,
                "licence": p.source.licence,
                "terms": p.source.terms,
                "files": [
                    {"language": lang or None, "path": f.path, "size": f.size, "sha256": f.sha256}
                    for lang, files in p.todo.items()
                    for f in files
                ],
                "already_there": [x or "all" for x in p.done],
            }
            for p in plans
        ],
        "written": report.tasks if report else [],
        "notes": report.notes if report else [],
    }


@dataclass
class FetchReport:
    """What a fetch did, per task: the commit, how it was pinned, languages written and skipped, notes."""

    tasks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": self.tasks, "notes": self.notes}


def run_fetch(
    plans: list[TaskPlan],
    root: Path,
    *,
    accepted: list[str],
    notes: list[str],
    file_progress: Callable[[str, int], contextlib.AbstractContextManager[Callable[[int], None]]] | None = None,
) -> FetchReport:
    """Download, verify and write every plan's languages; the record is saved after each language, so an
    interrupted fetch resumes where it stopped."""
    report = FetchReport(notes=notes)
    state = State.load(root)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for task in accepted:
        plan = next(p for p in plans if p.source.task == task)
        state.data.setdefault("accepted_terms", {})[task] = plan.source.terms
        state.data.setdefault("accepted_at", {})[task] = now
    if accepted:
        state.save()
    for plan in plans:
        src = plan.source
        entry = state.task(src.task)
        if plan.todo and entry.get("revision") not in (None, plan.revision):
            entry["languages"] = {}  # another commit: everything is rewritten from it
        written = []
        for lang, files in plan.todo.items():
            paths = []
            for f in files:
                ctx = file_progress(f.path, f.size) if file_progress else contextlib.nullcontext(None)
                with ctx as advance:
                    paths.append(download(src, plan.revision, f, advance))
            ups = [fetch_upstream(root, u) for u in plan.upstream if lang in u.languages]
            lang_notes = write_language(src, lang, paths, ups, root, [f.path for f in files])
            entry.update(
                {
                    "repo": src.repo,
                    "revision": plan.revision,
                    "pinned": plan.pinned,
                    "licence": src.licence,
                    "layout": src.layout,
                }
            )
            entry.setdefault("languages", {})[lang or "all"] = {
                "done": True,
                "files": {f.path: f.sha256 or sha256_file(p) for f, p in zip(files, paths, strict=True)},
                "upstream": {u.path: u.sha256 for u in plan.upstream if lang in u.languages},
                "notes": lang_notes,
                "fetched_at": now,
            }
            report.notes.extend(f"{src.task}/{lang or 'all'}: {n}" for n in lang_notes)
            state.save()
            written.append(lang or "all")
        report.tasks.append(
            {
                "task": src.task,
                "repo": src.repo,
                "revision": plan.revision or entry.get("revision"),
                "pinned": plan.pinned,
                "written": written,
                "already_there": [x or "all" for x in plan.done],
            }
        )
    return report
