"""Check that a task's annotation and image files are all present and valid: check_data(...) -> DataReport (pure).

`mvleval data check --task NAME` prints `render_report(check_data(...))`. Every language is checked even when an
earlier one fails, so one run lists every problem: a missing or malformed annotation file (the MvlevalError message,
naming file:line), an image path that escapes the image root (refused by `safe_image_path` while reading, reported
the same way), duplicate example ids, and image files that do not exist. Languages whose own references fail the
task's language fidelity check (captions not in the language they are filed under) get a warning, which does not
fail the check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mvleval.benchmarks.annotations import check_data_root
from mvleval.benchmarks.images import image_problem
from mvleval.benchmarks.task import Task
from mvleval.util.errors import MvlevalError, Problems, plural

#: how many missing image paths a report keeps per language (the count is always complete)
MAX_MISSING_SHOWN = 5
#: references per language the language-fidelity warning looks at (enough to tell a share below 0.5)
FIDELITY_SAMPLE = 200


@dataclass(frozen=True)
class LanguageReport:
    """What was found for one language of one split.

    Attributes:
        lang: the dataset's language code.
        annotation_file: the file the task reads for this language and split.
        annotation_found: whether that file exists (False: the benchmark, or this language of it, is not downloaded).
        n_examples: examples read (0 when the file could not be read).
        n_images_referenced: distinct image files the examples reference.
        n_missing_images: how many of those are not files under the image root.
        missing_images: the first few missing image paths, in file order.
        error: why the annotation file could not be used (MvlevalError message with file:line), or None.
        warnings: doubts that do not make the data unusable (references not in their language).
    """

    lang: str
    annotation_file: Path
    annotation_found: bool = True
    n_examples: int = 0
    n_images_referenced: int = 0
    n_missing_images: int = 0
    missing_images: tuple[Path, ...] = ()
    n_unreadable_images: int = 0
    unreadable_images: tuple[tuple[Path, str], ...] = ()  # the first few (path, why)
    error: str | None = None
    warnings: tuple[str, ...] = ()
    other_splits: tuple[str, ...] = ()  # with no annotation file: the task's splits whose file for lang is there

    @property
    def ok(self) -> bool:
        return (
            self.error is None and self.n_missing_images == 0 and self.n_unreadable_images == 0 and self.n_examples > 0
        )


@dataclass(frozen=True)
class DataReport:
    """The result of checking one task's data for one split over some of its languages."""

    task: str
    task_version: int
    split: str
    data_root: Path
    image_root: Path
    source_url: str
    languages: tuple[LanguageReport, ...] = field(default_factory=tuple)
    data_task: str = (
        ""  # the task whose data `mvleval data fetch` gets for this one (itself, or the task it is a regime of)
    )

    @property
    def ok(self) -> bool:
        """True when every checked language has readable annotations and all of its images."""
        return bool(self.languages) and all(r.ok for r in self.languages)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings, `ok` included)."""
        return {
            "task": self.task,
            "task_version": self.task_version,
            "split": self.split,
            "data_root": str(self.data_root),
            "image_root": str(self.image_root),
            "source_url": self.source_url,
            "ok": self.ok,
            "languages": [
                {
                    "lang": r.lang,
                    "annotation_file": str(r.annotation_file),
                    "annotation_found": r.annotation_found,
                    "n_examples": r.n_examples,
                    "n_images_referenced": r.n_images_referenced,
                    "n_missing_images": r.n_missing_images,
                    "missing_images": [str(p) for p in r.missing_images],
                    "n_unreadable_images": r.n_unreadable_images,
                    "unreadable_images": [[str(p), why] for p, why in r.unreadable_images],
                    "error": r.error,
                    "warnings": list(r.warnings),
                    "ok": r.ok,
                }
                for r in self.languages
            ],
        }


def check_data(
    task: Task,
    data_root: Path,
    image_root: Path,
    languages: Sequence[str] | None = None,
    split: str | None = None,
) -> DataReport:
    """Read every requested language's annotations and check that each referenced image exists.

    Args:
        task: the task whose files to check.
        data_root: folder holding the benchmarks' annotation files.
        image_root: folder holding the images.
        languages: language codes to check (default: all of the task's).
        split: the split to check (default: the task's default split).

    Returns:
        A DataReport with one LanguageReport per language, in the order given.

    Raises:
        MvlevalError: an unknown language or split (a wrong request, not a data problem).
    """
    split = split or task.default_split
    task.check_split(split)
    check_data_root(data_root)
    langs = tuple(languages) if languages else task.split_languages(split)
    for lang in langs:
        task.check_language(lang)
    checked: dict[Path, str | None] = {}
    return DataReport(
        task=task.name,
        task_version=task.version,
        split=split,
        data_root=data_root,
        image_root=image_root,
        source_url=task.source_url,
        data_task=task.data_task(),
        languages=tuple(
            _check_language(task, data_root, image_root, lang, split, checked) for lang in dict.fromkeys(langs)
        ),
    )


#: what was found at an image path: "missing", or why an existing file is unusable, or None (a usable image)
_MISSING = "missing"


def _check_language(
    task: Task, data_root: Path, image_root: Path, lang: str, split: str, checked: dict[Path, str | None]
) -> LanguageReport:
    """One language's report; `checked` holds what earlier languages found at each image path (XM3600 captions the
    same 3,600 images in 36 languages: each is opened once, not 36 times)."""
    annotation_file = task.annotation_path(data_root, lang, split)
    try:
        examples = task.examples(data_root, image_root, lang, split)
    except MvlevalError as exc:
        found = annotation_file.is_file()
        return LanguageReport(
            lang=lang,
            annotation_file=annotation_file,
            annotation_found=found,
            error=exc.render(),
            other_splits=() if found else tuple(task.splits_present(data_root, lang)),
        )
    seen: dict[str, str] = {}
    for ex in examples:
        if ex.id in seen:
            return LanguageReport(
                lang=lang,
                annotation_file=annotation_file,
                n_examples=len(examples),
                error=f"{ex.source}: example id {ex.id!r} already used at {seen[ex.id]}; ids must be unique per language.",
            )
        seen[ex.id] = ex.source
    # Each image is checked once although many examples may share it (xGQA: ~32 questions per image).
    images = list(dict.fromkeys(p for ex in examples for p in ex.images))
    for p in images:
        if p not in checked:
            checked[p] = image_problem(p) if p.is_file() else _MISSING
    missing = [p for p in images if checked[p] == _MISSING]
    unreadable = [(p, why) for p in images if (why := checked[p]) is not None and why != _MISSING]
    return LanguageReport(
        lang=lang,
        annotation_file=annotation_file,
        n_examples=len(examples),
        n_images_referenced=len(images),
        n_missing_images=len(missing),
        missing_images=tuple(missing[:MAX_MISSING_SHOWN]),
        n_unreadable_images=len(unreadable),
        unreadable_images=tuple(unreadable[:MAX_MISSING_SHOWN]),
        warnings=_reference_warnings(task, lang, [ex.references for ex in examples[:FIDELITY_SAMPLE]]),
    )


def _reference_warnings(task: Task, lang: str, references: list[tuple[str, ...]]) -> tuple[str, ...]:
    from mvleval.metrics.language_fidelity import LanguageFidelity

    out = []
    for metric in task.metrics():
        if isinstance(metric, LanguageFidelity) and references:
            warning = metric.check_references(references, lang)
            if warning:
                out.append(f"{warning} (first {len(references)} examples).")
    return tuple(out)


def _status(r: LanguageReport) -> str:
    if r.ok:
        return "ok"
    if not r.annotation_found:
        return "no annotation file"
    if r.error:
        return "bad annotations"
    if r.n_missing_images:
        return "missing images"
    return "unreadable images" if r.n_unreadable_images else "no examples"


def render_report(report: DataReport) -> str:
    """A plain-text table of the report, one row per language, followed by the problems found.

    Plain text: print it with console markup off (rich: `console.print(text, markup=False, highlight=False)`),
    since file paths may contain square brackets that rich would read as markup.
    """
    header = ("lang", "examples", "images", "missing", "status")
    rows = [
        (
            r.lang,
            str(r.n_examples),
            str(r.n_images_referenced),
            str(r.n_missing_images),
            _status(r),
        )
        for r in report.languages
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        # text columns left-aligned, counts right-aligned
        padded = (c.ljust(w) if i in (0, len(cells) - 1) else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return "  ".join(padded).rstrip()

    out = [
        f"{report.task} v{report.task_version}, split {report.split}",
        f"data root:  {report.data_root}",
        f"image root: {report.image_root}" + ("" if report.image_root.is_dir() else "  (not found)"),
        "",
        line(header),
        line(["-" * w for w in widths]),
        *(line(r) for r in rows),
    ]
    problems: list[str] = []
    if not report.image_root.is_dir() and any(r.n_missing_images for r in report.languages):
        problems.append(
            f"image root not found: {report.image_root}, so every image is missing; pass --image-root DIR "
            "(default: <data-root>/images)"
        )
    for r in report.languages:
        if r.error:
            problems.append(f"{r.lang}: {r.error}")
        if r.n_missing_images:
            more = r.n_missing_images - len(r.missing_images)
            shown = ", ".join(str(p) for p in r.missing_images)
            tail = f" (+{more:,} more)" if more > 0 else ""
            problems.append(f"{r.lang}: {plural(r.n_missing_images, 'image')} missing, e.g. {shown}{tail}")
        if r.n_unreadable_images:
            # grouped by what is wrong (not an image, truncated, too large), each kind once with its first files
            unreadable = Problems()
            for p, why in r.unreadable_images:
                unreadable.add(
                    why if not why.startswith("cannot be decoded") else "cannot be decoded",
                    str(p),
                    None if not why.startswith("cannot be decoded") else why[len("cannot be decoded ") :].strip("()"),
                    unit="image",
                )
            more = r.n_unreadable_images - len(r.unreadable_images)
            tail = f" (+{more:,} more not shown)" if more > 0 else ""
            problems.append(
                f"{r.lang}: {plural(r.n_unreadable_images, 'unreadable image')}{tail}; replace "
                f"{'it' if r.n_unreadable_images == 1 else 'them'} with "
                "the benchmark's original files:"
            )
            problems += [f"  {line}" for line in unreadable.lines(base=report.image_root)]
    if problems:
        hint = (
            f"Download the benchmark from {report.source_url}; tasks/README.md shows the layout."
            if report.source_url
            else "Correct the benchmark's rows or put its images under the image root (docs/custom-benchmark.md)."
        )
        absent = [r for r in report.languages if not r.annotation_found]
        if absent and report.source_url:
            from mvleval.data.fetch import fetch_command

            command = fetch_command(report.data_task or report.task, None, report.data_root)
            if command:
                langs = "".join(f" --lang {r.lang}" for r in absent)
                hint = f"Fetch it (pinned and verified): {command}{langs}; or download it from {report.source_url}."
        if absent and all(r.other_splits for r in absent) and len(absent) == len(problems):
            # the benchmark is there, of another split: downloading it again would not help
            present = list(dict.fromkeys(s for r in absent for s in r.other_splits))
            hint = (
                f"The data root holds the {' and '.join(present)} split of {report.task}, not {report.split}: "
                f"check it with --split {present[0]} (and run with --split {present[0]}), or download the "
                f"{report.split} split" + (f" from {report.source_url}." if report.source_url else ".")
            )
        out += ["", "Problems:", *problems, "", hint]
    else:
        out += ["", "All annotation and image files are present."]
    warnings = [f"{r.lang}: {w}" for r in report.languages for w in r.warnings]
    if warnings:
        out += ["", "Warnings:", *warnings]
    return "\n".join(out)
