"""Reading a YAML file for a user: the parsed values and the node tree (for each key's line), or one clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mvleval.util.errors import MvlevalError


def read_yaml(path: Path, what: str, read_fix: str) -> tuple[Any, Any]:
    """(node, values) of the YAML file at `path` (a UTF-8 BOM allowed): ``yaml.compose`` for the keys' lines and
    ``yaml.safe_load`` for the values. `what` names the file in errors ("the run config"); `read_fix` is the fix when
    it cannot be read.

    Raises:
        MvlevalError: an unreadable file, or invalid YAML (with the line of the error).
    """
    import yaml

    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise MvlevalError(f"cannot read {what} ({exc}).", fix=read_fix, where=path) from None
    try:
        return yaml.compose(text), yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise MvlevalError(
            f"{what} is not valid YAML ({getattr(exc, 'problem', exc)}).",
            fix="fix the syntax error.",
            where=f"{path}:{mark.line + 1}" if mark else path,
        ) from None
