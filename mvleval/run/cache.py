"""The response cache: answers already generated, content-addressed, shared by runs, tasks, prompt styles and processes.

A key is the SHA-256 of what decides an answer and nothing else: for a served model, the served model id, the server's
reported version (where it reports one) and the full request body as sent (model, messages with the images' bytes as
data URLs, max_tokens, temperature, seed and any server extension fields). The API key travels in a header and the
URL's credentials in the URL, neither of which is part of the key; the URL itself is not either (several replicas of
one model, or a server that moved, answer the same request the same way). For a model run on this machine
(mvleval/backends/local_cache.py), the weights' and adapter's content fingerprint, precision, device kind, library
versions, generation settings, the prompt as rendered for the model and the images' byte digests (:func:`local_key`).

Storage is one SQLite file, ``responses.sqlite3``, in mvleval's cache folder (``$MVLEVAL_CACHE_DIR``, else the
platform's user cache folder: :func:`mvleval.util.cachedir.cache_dir`), in WAL mode with a busy timeout: several ``mvleval run`` processes read and write it at
once (each write is one short transaction of ``INSERT OR IGNORE``: two processes that computed the same answer agree).
Modes: ``read-write`` (default: look up, then store new answers), ``read`` (look up only), ``off`` (neither).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mvleval.util.cachedir import CACHE_ENV, cache_dir
from mvleval.util.errors import MvlevalError

CACHE_MODES = ("read-write", "read", "off")
DB_NAME = "responses.sqlite3"
#: A writer waits this long for another process's transaction before giving up (WAL writes take milliseconds).
BUSY_TIMEOUT_S = 60.0
#: Keys per SELECT (SQLite's default limit on bound parameters is 32766; stay far below it).
LOOKUP_CHUNK = 500
#: Bumped when the key's recipe changes, so old entries are never read under a new meaning.
KEY_VERSION = 1


def served_key(model_id: str, server_version: str | None, body: bytes) -> str:
    """The cache key of one served request: its served model id, the server's version and the body as sent."""
    head = json.dumps(
        {"v": KEY_VERSION, "kind": "served", "model": model_id, "server_version": server_version}, sort_keys=True
    ).encode()
    digest = hashlib.sha256(head)
    digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


def local_key(identity: Mapping[str, Any], rendered_prompt: str, image_digests: Sequence[str]) -> str:
    """The cache key of one example for a local model: what its answers depend on (`identity`, see
    mvleval/backends/local_cache.py), the prompt as the model sees it and the SHA-256 of each image's bytes, in order."""
    body = json.dumps(
        {
            "v": KEY_VERSION,
            "kind": "local",
            "identity": identity,
            "prompt": rendered_prompt,
            "images": list(image_digests),
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def check_mode(mode: str) -> str:
    """`mode` if it is one of CACHE_MODES; else a one-paragraph error."""
    if mode not in CACHE_MODES:
        raise MvlevalError(
            f"--cache must be one of {', '.join(CACHE_MODES)}, got {mode!r}.",
            fix="pass --cache read-write (the default), --cache read or --cache off.",
        )
    return mode


@dataclass(frozen=True)
class CacheInfo:
    """What `mvleval cache info` shows."""

    path: Path
    exists: bool
    entries: int
    bytes_on_disk: int
    answer_bytes: int
    models: dict[str, int]


class ResponseCache:
    """One process's handle on the shared cache file (thread-safe: one connection behind a lock).

    Args:
        mode: one of CACHE_MODES.
        directory: the folder of the cache file (default: :func:`cache_dir`).
    """

    def __init__(self, mode: str = "read-write", directory: Path | None = None) -> None:
        self.mode = check_mode(mode)
        self.directory = directory or cache_dir()
        self.path = self.directory / DB_NAME
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.hits = 0
        self.misses = 0
        self.stored = 0

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        if not create and not self.path.is_file():
            return None
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
                try:
                    conn.execute(
                        "PRAGMA journal_mode=WAL"
                    )  # readers never block the writer, nor the writer the readers
                    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT NOT NULL, answer TEXT NOT NULL, "
                        "created REAL NOT NULL) WITHOUT ROWID"
                    )
                    conn.execute("CREATE INDEX IF NOT EXISTS responses_model ON responses (model)")
                except BaseException:
                    conn.close()
                    raise
                break
            except sqlite3.OperationalError as exc:
                # two processes creating the file at once: switching to WAL can report "locked" without waiting
                if "locked" in str(exc) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise self._open_error(exc) from None
            except (sqlite3.Error, OSError) as exc:
                raise self._open_error(exc) from None
        self._conn = conn
        return conn

    def _open_error(self, exc: Exception) -> MvlevalError:
        return MvlevalError(
            f"cannot open the response cache ({exc}).",
            fix=f"check that the folder is writable, point ${CACHE_ENV} at another folder, or pass --cache off.",
            where=self.path,
        )

    def lookup(self, keys: Sequence[str]) -> dict[str, str]:
        """The cached answers of `keys` (those found); counts hits and misses."""
        if not self.enabled or not keys:
            return {}
        found: dict[str, str] = {}
        with self._lock:
            conn = self._connect(create=self.mode == "read-write")
            if conn is not None:
                unique = list(dict.fromkeys(keys))
                try:
                    for i in range(0, len(unique), LOOKUP_CHUNK):
                        chunk = unique[i : i + LOOKUP_CHUNK]
                        marks = ",".join("?" * len(chunk))
                        found.update(
                            conn.execute(f"SELECT key, answer FROM responses WHERE key IN ({marks})", chunk).fetchall()
                        )
                except sqlite3.Error as exc:
                    raise self._error("reading", exc) from None
            self.hits += sum(1 for k in keys if k in found)
            self.misses += sum(1 for k in keys if k not in found)
        return found

    def store(self, model: str, answers: Mapping[str, str]) -> None:
        """Keep `answers` (key -> answer) of `model`, in one transaction; a key already there keeps its answer."""
        if self.mode != "read-write" or not answers:
            return
        now = time.time()
        with self._lock:
            conn = self._connect(create=True)
            assert conn is not None
            try:
                conn.execute("BEGIN IMMEDIATE")
                before = conn.total_changes
                conn.executemany(
                    "INSERT OR IGNORE INTO responses (key, model, answer, created) VALUES (?, ?, ?, ?)",
                    [(k, model, a, now) for k, a in answers.items()],
                )
                self.stored += conn.total_changes - before
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise self._error("writing", exc) from None

    def summary(self) -> dict[str, Any]:
        """What the run record says about the cache: mode, and answers found and stored by this invocation."""
        return {
            "mode": self.mode,
            "answers_from_cache": self.hits,
            "answers_asked": self.misses,
            "answers_stored": self.stored,
        }

    def info(self) -> CacheInfo:
        """Entries, size and entries per model."""
        with self._lock:
            conn = self._connect(create=False)
            if conn is None:
                return CacheInfo(self.path, False, 0, 0, 0, {})
            try:
                models = dict(
                    conn.execute("SELECT model, COUNT(*) FROM responses GROUP BY model ORDER BY model").fetchall()
                )
                answer_bytes = conn.execute(
                    "SELECT COALESCE(SUM(LENGTH(CAST(answer AS BLOB))), 0) FROM responses"
                ).fetchone()[0]
            except sqlite3.Error as exc:
                raise self._error("reading", exc) from None
        size = sum(p.stat().st_size for p in self.directory.glob(DB_NAME + "*") if p.is_file())
        return CacheInfo(self.path, True, sum(models.values()), size, int(answer_bytes), models)

    def clear(self, model: str | None = None) -> int:
        """Remove every entry (or `model`'s); returns how many were removed. The file shrinks (VACUUM) afterwards."""
        with self._lock:
            conn = self._connect(create=False)
            if conn is None:
                return 0
            try:
                if model is None:
                    removed = conn.execute("DELETE FROM responses").rowcount
                else:
                    removed = conn.execute("DELETE FROM responses WHERE model = ?", (model,)).rowcount
                conn.execute("VACUUM")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise self._error("clearing", exc) from None
        return int(removed)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _error(self, doing: str, exc: sqlite3.Error) -> MvlevalError:
        return MvlevalError(
            f"{doing} the response cache failed ({exc}).",
            fix=f"retry; if it persists, run `mvleval cache clear`, point ${CACHE_ENV} at another folder, or pass --cache off.",
            where=self.path,
        )


__all__ = ["CACHE_MODES", "CacheInfo", "ResponseCache", "cache_dir", "check_mode", "local_key", "served_key"]
