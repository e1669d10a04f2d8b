"""User-fixable errors (MvlevalError) and the "did you mean" helper; bugs are never wrapped here."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


class MvlevalError(Exception):
    """Anything a user can fix: bad input, missing files, wrong flags.

    The CLI prints it as one paragraph and exits with code 2, without a traceback.

    Args:
        what: what failed, in one sentence.
        fix: what the user should do about it.
        where: the offending file (and line), or value, if there is one.
    """

    def __init__(self, what: str, fix: str | None = None, where: str | Path | None = None) -> None:
        self.what = what
        self.fix = fix
        self.where = str(where) if where is not None else None
        super().__init__(self.render())

    def render(self) -> str:
        """The one-paragraph message shown to the user."""
        parts = []
        if self.where:
            parts.append(f"{self.where}: {self.what}")
        else:
            parts.append(self.what)
        if self.fix:
            parts.append(f"Fix: {self.fix}")
        return " ".join(parts)


class MissingDependencyError(MvlevalError):
    """An optional dependency is not installed; the message names the install command."""

    def __init__(self, package: str, purpose: str, install: str | None = None) -> None:
        super().__init__(
            f"{purpose} needs the Python package '{package}', which is not installed.",
            fix=f"run `{install or 'pip install ' + package}`.",
        )


@dataclass(frozen=True)
class Problem:
    """One problem found at one place, for a report that names each kind of problem once.

    Args:
        what: the problem, worded the same wherever it occurs (problems with equal ``what`` are one kind).
        where: the place, usually 'file:line'.
        detail: what differs between places (the value found), shown in brackets after the place.
        fix: what to do about this kind, when it has its own fix.
        unit: what a place is, for the count ("18 rows").
    """

    what: str
    where: str | None = None
    detail: str | None = None
    fix: str | None = None
    unit: str = "row"


def plural(n: int, unit: str) -> str:
    """'1 row', '18 rows', '1,000 images'."""
    return f"{n:,} {unit}" + ("" if n == 1 else "s")


#: places named per kind of problem; the rest are counted
PLACES_SHOWN = 3
#: a detail longer than this is cut (the message must fit a terminal)
DETAIL_CHARS = 60


def _cut(text: str, limit: int = DETAIL_CHARS) -> str:
    text = " ".join(text.split())
    # the middle goes: a path keeps its file name, a value its start and end
    return text if len(text) <= limit else text[: limit // 3] + "..." + text[-(limit - limit // 3 - 3) :]


def _place(where: str | None, base: Path | None) -> str:
    if where is None:
        return ""
    if base is not None:
        prefix = str(base).rstrip(os.sep) + os.sep
        if where.startswith(prefix):
            return where[len(prefix) :]
    return where


class Problems:
    """Problems collected one by one (a benchmark's rows, a data check, a training file) and reported grouped:
    each kind once, with how many places have it, the first three places and one fix.

        3 rows: image path escapes the image root, e.g. data.jsonl:1 ('../a.jpg'), data.jsonl:2 ('/b.jpg'), ...
    """

    def __init__(self, items: Iterable[Problem] = ()) -> None:
        self.items: list[Problem] = list(items)

    def add(
        self,
        what: str,
        where: str | Path | None = None,
        detail: str | None = None,
        *,
        fix: str | None = None,
        unit: str = "row",
    ) -> None:
        self.items.append(Problem(what, str(where) if where is not None else None, detail, fix, unit))

    def extend(self, problems: Iterable[Problem]) -> None:
        self.items.extend(problems)

    def add_error(self, exc: MvlevalError) -> None:
        """Take over an error's problems (a ProblemsError's, grouped again with these) or the error itself as one."""
        if isinstance(exc, ProblemsError):
            self.extend(exc.problems)
        else:
            self.add(exc.what, exc.where, fix=exc.fix)

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.items)

    def groups(self) -> list[list[Problem]]:
        """The problems by kind (their ``what``), kinds in order of first appearance, places in order found."""
        kinds: dict[str, list[Problem]] = {}
        for p in self.items:
            kinds.setdefault(p.what, []).append(p)
        return list(kinds.values())

    def lines(self, base: Path | None = None, common_fix: str | None = None) -> list[str]:
        """One line per kind (places shown relative to ``base``), each followed by its own fix where it has one
        other than ``common_fix``."""
        out = []
        for group in self.groups():
            first = group[0]
            what = first.what.rstrip().rstrip(".")

            def shown(p: Problem) -> str:
                place = _place(p.where, base)
                detail = f"({_cut(p.detail)})" if p.detail else ""
                return " ".join(x for x in (place, detail) if x)

            if len(group) == 1:
                place = _place(first.where, base)
                line = (
                    (f"{place}: " if place else "") + what + (f" ({_cut(first.detail)})" if first.detail else "") + "."
                )
            else:
                examples = ", ".join(s for s in (shown(p) for p in group[:PLACES_SHOWN]) if s)
                more = f" (+{len(group) - PLACES_SHOWN:,} more)" if len(group) > PLACES_SHOWN else ""
                line = (
                    f"{plural(len(group), first.unit)}: {what}" + (f", e.g. {examples}{more}" if examples else "") + "."
                )
            out.append(line)
            if first.fix and first.fix != common_fix:
                out.append(f"  Fix: {first.fix}")
        return out

    def error(self, heading: str, fix: str | None = None, base: Path | None = None) -> ProblemsError:
        return ProblemsError(heading, self, fix=fix, base=base)

    def raise_if_any(self, heading: str, fix: str | None = None, base: Path | None = None) -> None:
        if self.items:
            raise self.error(heading, fix=fix, base=base)


class ProblemsError(MvlevalError):
    """Several problems as one error: a heading line, then one line per kind of problem, then the common fix.

    ``problems`` keeps them, so a caller collecting problems of its own (the runner, over every language) groups
    them again with the rest rather than nesting one error's summary in another's.
    """

    def __init__(
        self, heading: str, problems: Iterable[Problem], fix: str | None = None, base: Path | None = None
    ) -> None:
        self.problems = list(problems)
        self.heading = heading
        self.base = base
        lines = Problems(self.problems).lines(base=base, common_fix=fix)
        super().__init__("\n".join([heading, *(f"  {line}" for line in lines)]), fix=fix)

    def render(self) -> str:
        return self.what + (f"\nFix: {self.fix}" if self.fix else "")


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' for the closest choice, or '' when nothing is close."""
    matches = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{matches[0]}'?" if matches else ""
