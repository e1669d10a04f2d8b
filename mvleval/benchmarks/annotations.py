"""Reading benchmark annotation files with file:line errors, and resolving image paths safely under a root."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mvleval.util.errors import MvlevalError
from mvleval.util.jsonl import BadLine, parse_lines


def _require_file(path: Path, what: str, fix: str) -> None:
    if not path.is_file():
        raise MvlevalError(f"{what} not found.", fix=fix, where=path)


def read_jsonl(
    path: Path,
    required: Sequence[str] = (),
    *,
    what: str = "annotation file",
    fix: str = "check --data-root and that the benchmark's files are laid out as in tasks/README.md.",
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for every non-blank line of a JSON Lines file.

    Raises MvlevalError naming file:line for a line that is not a JSON object or lacks a required field,
    and for a file with no records at all.
    """
    _require_file(path, f"the {what}", fix)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MvlevalError(f"file is not UTF-8 text ({exc.reason}).", fix="re-download it.", where=path) from None
    n = 0
    for lineno, obj in parse_lines(text):
        if isinstance(obj, BadLine):
            raise MvlevalError(
                f"line is not valid JSON ({obj.reason}); the file may be truncated or corrupt.",
                fix="re-download the annotation file, or delete the damaged line.",
                where=f"{path}:{lineno}",
            )
        if not isinstance(obj, dict):
            raise MvlevalError(
                f"expected a JSON object on each line, found {type(obj).__name__}.",
                fix="this does not look like the benchmark's published JSON Lines file.",
                where=f"{path}:{lineno}",
            )
        missing = [k for k in required if k not in obj]
        if missing:
            raise MvlevalError(
                f"record lacks the field(s) {', '.join(repr(m) for m in missing)}"
                f" (it has {', '.join(repr(k) for k in list(obj)[:8])}).",
                fix="use the benchmark's published annotation file; see tasks/README.md for the expected format.",
                where=f"{path}:{lineno}",
            )
        n += 1
        yield lineno, obj
    if n == 0:
        raise MvlevalError(
            f"the {what} holds no records.", fix="re-download it; an empty file cannot be evaluated.", where=path
        )


def read_json(path: Path, *, what: str = "annotation file", fix: str = "check --data-root.") -> Any:
    """Load one JSON document, with a clear error (file:line:column) when it is missing or malformed."""
    _require_file(path, f"the {what}", fix)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MvlevalError(f"file is not UTF-8 text ({exc.reason}).", fix="re-download it.", where=path) from None
    if not text.strip():
        raise MvlevalError(f"the {what} is empty.", fix="re-download it.", where=path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MvlevalError(
            f"not valid JSON ({exc.msg}, column {exc.colno}); the file may be truncated.",
            fix="re-download the annotation file.",
            where=f"{path}:{exc.lineno}",
        ) from None


def image_path_escapes(relative: str) -> bool:
    """Whether an annotation's image path text leaves the image root: absolute, a drive letter, or a '..' part."""
    rel = Path(relative)
    return (
        rel.is_absolute()
        or relative.startswith(("/", "\\"))
        or ".." in rel.parts
        or (len(relative) > 1 and relative[1] == ":")
    )


def safe_image_path(image_root: Path, relative: str, *, where: str) -> Path:
    """Join an annotation's image path onto the image root, refusing path text that escapes it.

    The one place where every task (built-in or a benchmark folder) and the training data turn an annotation's image
    path into a file. Absolute paths and '..' parts are refused: an annotation file must not name arbitrary files.
    Symbolic links are followed wherever they lead: a link is something the user made (or accepted) on their own
    disk, e.g. ``images/x.jpg -> /data/coco/x.jpg`` or ``images -> /data/coco``. What keeps a hostile downloaded
    folder from leaking a private file through a link is that every image must decode as an image before it is
    used (mvleval.benchmarks.images.load_image; a text file is refused as "not an image"), and only decoded images are sent
    to a model or an endpoint. The data fingerprint hashes the file a link resolves to, so relinking changes it.
    """
    if image_path_escapes(relative):
        raise MvlevalError(
            f"image path {relative!r} escapes the image root.",
            fix="image paths in annotation files must be relative and stay inside --image-root (no '..', no absolute "
            "paths); to use images kept elsewhere, link them into the image root.",
            where=where,
        )
    return image_root / relative


def check_data_root(data_root: Path) -> None:
    """Refuse a data root that does not exist, saying how to set it (run and data check alike)."""
    if not data_root.is_dir():
        raise MvlevalError(
            "data root not found.",
            fix="pass --data-root DIR (or set MVLEVAL_DATA) to the folder holding the benchmarks' annotation files; "
            "see tasks/README.md for the layout.",
            where=data_root,
        )
