"""lingua's rankings of texts, kept on disk so that a text is ranked once per machine, not once per command.

Language fidelity asks lingua to rank each distinct text twice at most (the detector restricted to the task's
languages, and for long texts the unrestricted one). Ranking is cheap; loading the models a ranking needs is not:
lingua keeps them for the process only, and the unrestricted ranking of one short Latin-script caption loads the
1- to 5-gram models of every Latin-script language (~45 of them, 7-14 s on a shared 2-core machine), which every
``mvleval run``, ``score`` and ``data check`` paid again. A ranking is a pure function of lingua's version, the
detector's languages and the text, so it is kept here, keyed by exactly these, and a text ranked before loads no
model at all: ``mvleval score`` of a run re-ranks nothing its ``mvleval run`` ranked, and the references of a task
(whose fidelity every run and ``data check`` reports) are ranked once per machine.

The verdicts cannot change: a cached ranking is the one lingua returned for the same (version, languages, text),
kept to its first ``RANKS_KEPT`` entries (the rules read the top 3). What it does not make cheaper is a text never
ranked on this machine: its models load as before. (Ranking with fewer languages or fewer n-gram models cannot give
the same verdicts: lingua's score of a language is a sum over the text's 1- to 5-grams that only that language's
models can bound, and lingua reports only relative confidences, so a language whose models are not loaded could
always be the one that pushes the requested language out of the top 3.)

The file is ``$MVLEVAL_CACHE_DIR/lingua-rankings-v1.sqlite3`` (see ``mvleval.util.cachedir``): SQLite, so that parallel
runs share it; ~200 bytes a ranking (36,235 rankings of the 21,010 real texts of ../shared: 7.2 MB); started
afresh past ``MAX_BYTES``; safe to delete at any time. A cache that cannot
be used (read-only folder, damaged file) is said once, as a warning naming the file, and scoring goes on without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("mvleval.metrics.language_fidelity")

#: entries of a ranking that are kept (the decision rules read the top 3; FULL_TOP <= this is checked at import)
RANKS_KEPT = 5
#: bump when what is stored, or how lingua is asked, changes: the file name changes with it
SCHEMA = 1
FILE_NAME = f"lingua-rankings-v{SCHEMA}.sqlite3"
#: a cache file larger than this is started afresh (about 2.5 million rankings)
MAX_BYTES = 512 << 20

Ranking = list[tuple[str, float]]


def ranking_key(lingua_version: str, names: Sequence[str], text: str) -> bytes:
    """The cache key of a ranking: lingua's version, the detector's languages (() for all of lingua's) and the text."""
    material = "\0".join((str(SCHEMA), lingua_version, ",".join(names) if names else "*all*", text))
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).digest()[:16]


class RankingCache:
    """One cache file: look-ups go to SQLite, new rankings wait in memory until `flush` writes them in one go."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._pending: dict[bytes, str] = {}
        self.broken: str | None = None  # why the file cannot be used (then nothing is read or written)

    def _connection(self) -> sqlite3.Connection | None:
        if self.broken is not None:
            return None
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.is_file() and self.path.stat().st_size > MAX_BYTES:
                log.info("%s is over %d MB: starting it afresh", self.path, MAX_BYTES >> 20)
                self.path.unlink()
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS rankings (key BLOB PRIMARY KEY, ranking TEXT NOT NULL) WITHOUT ROWID"
            )
        except (OSError, sqlite3.Error) as exc:
            self._fail(exc)
            return None
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _fail(self, exc: BaseException) -> None:
        self.broken = f"{type(exc).__name__}: {exc}"
        self._pending.clear()
        log.warning(
            "lingua's rankings cannot be cached in %s (%s): language fidelity goes on without the cache "
            "(same scores, slower); set MVLEVAL_CACHE_DIR to a writable folder, or delete the file if it is damaged",
            self.path,
            self.broken,
        )

    def get(self, key: bytes) -> Ranking | None:
        """The ranking stored under `key`, or None."""
        stored = self._pending.get(key)
        if stored is None:
            conn = self._connection()
            if conn is None:
                return None
            try:
                row = conn.execute("SELECT ranking FROM rankings WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error as exc:
                self._fail(exc)
                return None
            if row is None:
                return None
            stored = row[0]
        try:
            return [(str(name), float(value)) for name, value in json.loads(stored)]
        except (ValueError, TypeError):
            return None  # a damaged row: ranked again and overwritten

    def put(self, key: bytes, ranking: Ranking) -> None:
        """Keep `ranking` (its first RANKS_KEPT entries) under `key`; written by the next `flush`."""
        if self.broken is None:
            self._pending[key] = json.dumps([[name, value] for name, value in ranking[:RANKS_KEPT]])

    def flush(self) -> None:
        """Write the rankings kept since the last flush (one transaction)."""
        if not self._pending:
            return
        conn = self._connection()
        if conn is None:
            return
        rows, self._pending = list(self._pending.items()), {}
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT OR REPLACE INTO rankings (key, ranking) VALUES (?, ?)", rows)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._fail(exc)


_CACHES: dict[Path, RankingCache] = {}


def current() -> RankingCache:
    """The cache of the current cache folder (``MVLEVAL_CACHE_DIR`` is read on every call)."""
    from mvleval.util.cachedir import cache_dir

    path = cache_dir() / FILE_NAME
    cache = _CACHES.get(path)
    if cache is None:
        cache = _CACHES[path] = RankingCache(path)
    return cache


def flush_all() -> None:
    """Write every cache's pending rankings."""
    for cache in _CACHES.values():
        cache.flush()
