"""User-fixable errors (MvlevalError) and the "did you mean" helper; bugs are never wrapped here."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
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


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' for the closest choice, or '' when nothing is close."""
    matches = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{matches[0]}'?" if matches else ""
