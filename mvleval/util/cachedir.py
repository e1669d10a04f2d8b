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


#: The environment variable naming the data root (the folder `mvleval data fetch` writes and `run` reads).
DATA_ENV = "MVLEVAL_DATA"


def default_data_root() -> Path:
    """Where `mvleval data fetch` puts the benchmarks when neither --data-root nor $MVLEVAL_DATA names a folder, and
    where `run` and `data check` then read them: the platform's user data folder for mvleval (on Linux
    ``$XDG_DATA_HOME/mvleval/benchmarks``, else ``~/.local/share/mvleval/benchmarks``). Not a cache: the data stays."""
    import platformdirs

    return Path(platformdirs.user_data_dir("mvleval", appauthor=False)) / "benchmarks"
