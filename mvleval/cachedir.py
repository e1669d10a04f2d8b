"""Where mvleval keeps its caches: ``$MVLEVAL_CACHE_DIR``, else the platform's user cache folder for mvleval.

On Linux that is ``$XDG_CACHE_HOME/mvleval``, else ``~/.cache/mvleval`` (platformdirs). Every cache there is an
optimisation only (served answers, weight-file digests, lingua's rankings of texts): deleting the folder costs time,
never a result.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The environment variable that moves every cache of mvleval (tests point it at a temporary folder).
CACHE_ENV = "MVLEVAL_CACHE_DIR"


def cache_dir() -> Path:
    """The cache folder (not created here)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("mvleval", appauthor=False))
