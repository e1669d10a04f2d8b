"""File modes: files mvleval writes follow the umask, like any other tool's (temporary files renamed into place are
created 0600 by mkstemp and by safetensors; on a shared filesystem colleagues could not read them)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def umask_mode() -> int:
    """The mode a plain new file gets under the current umask (0o666 minus the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def follow_umask(paths: Iterable[Path]) -> None:
    """Give each regular file the mode the umask would have given a newly created file."""
    mode = umask_mode()
    for path in paths:
        if path.is_file() and not path.is_symlink():
            os.chmod(path, mode)


def follow_umask_tree(root: Path) -> None:
    """follow_umask for every regular file below `root` (a checkpoint or adapter folder just written)."""
    follow_umask(p for p in root.rglob("*") if p.is_file())


def ensure_writable_dir(path: Path, flag: str) -> None:
    """Create `path` if needed and prove it is writable, before any work is done (a read-only --out after an hour of
    training is too late).

    Raises:
        MvlevalError: the folder cannot be created or written, naming it and the flag that chose it.
    """
    from mvleval.util.errors import MvlevalError

    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".mvleval-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise MvlevalError(
            f"the output folder is not writable ({exc.strerror}).", fix=f"pass a writable {flag}.", where=path
        ) from None
