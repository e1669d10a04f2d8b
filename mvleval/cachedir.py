"""Where mvleval keeps its caches: ``$MVLEVAL_CACHE_DIR``, else ``$XDG_CACHE_HOME/mvleval``, else ``~/.cache/mvleval``.

Every cache there is an optimisation only (weight-file digests, lingua's rankings of texts): deleting the folder
costs time, never a result.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache folder (not created here)."""
    if os.environ.get("MVLEVAL_CACHE_DIR"):
        return Path(os.environ["MVLEVAL_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "mvleval"
    return Path.home() / ".cache" / "mvleval"
