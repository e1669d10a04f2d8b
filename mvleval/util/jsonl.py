"""JSON Lines, read and written in one place: every JSONL file mvleval reads (benchmark annotations, benchmark folder
rows, training data, per-sample files, training logs) goes through `parse_lines`, which numbers the lines, skips blank
ones and decodes each; what a bad line means (stop naming it, collect it with the others, or accept a run's torn last
line) is the caller's policy. Every JSONL file mvleval writes goes through `jsonl_text`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BadLine:
    """A line that is not JSON: where it is and why (json's message and column)."""

    lineno: int
    reason: str  # "Expecting value at column 1"
    last: bool  # the file's last line, with no newline after it (a writer killed mid-line)


def parse_lines(text: str) -> Iterator[tuple[int, Any | BadLine]]:
    """(line number, decoded value or BadLine) for every non-blank line of `text` (read in text mode, so lines end in
    a newline), numbered from 1. Lines are split at newlines only, never at the other characters `str.splitlines`
    breaks on: U+2028 and U+2029 stand unescaped inside JSON strings written with ensure_ascii=False."""
    lines = text.split("\n")
    torn = lines[-1] != ""  # the last line has no newline after it
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            reason = (
                f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            )
            yield lineno, BadLine(lineno, reason, torn and lineno == len(lines))


def jsonl_text(rows: Iterable[Any], *, sort_keys: bool = False) -> str:
    """Rows as JSON Lines: one compact JSON document a line, UTF-8 kept as written, each line ended."""
    return "".join(json.dumps(row, ensure_ascii=False, sort_keys=sort_keys) + "\n" for row in rows)
