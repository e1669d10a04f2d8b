"""A stand-in for the Hugging Face hub on 127.0.0.1, answering the calls huggingface_hub makes to download a dataset
repo's files at a revision (BENCHMARK-SOURCES.md, "How huggingface_hub downloads"):

  GET  /api/datasets/{org}/{name}/revision/{rev}          -> {"id", "sha"}          (a branch resolved to its commit)
  GET  /api/datasets/{org}/{name}/tree/{rev}[?recursive=] -> [{"type": "file", "path", "size", "oid", "lfs"}]
  HEAD/GET /datasets/{org}/{name}/resolve/{rev}/{path}    -> the bytes, X-Repo-Commit, ETag, Content-Length, Range

Tests add repos (`hub.add(repo, files)` makes a commit and points main at it), then read `hub.gets` (how often each
file's bytes were served), and can make the next download of a file stop half-way (`cut`) or serve other bytes than
the tree listing's LFS sha256 (`corrupt`).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


class Hub:
    def __init__(self) -> None:
        self.commits: dict[str, dict[str, dict[str, bytes]]] = {}  # repo -> commit -> path -> bytes
        self.branches: dict[str, dict[str, str]] = {}  # repo -> branch -> commit
        self.gets: Counter[str] = Counter()  # "repo/path" -> byte transfers started
        self.requests: list[str] = []
        self.cut: set[str] = set()  # "repo/path": the next GET sends half the bytes, then drops the connection
        self.corrupt: dict[str, bytes] = {}  # "repo/path": served instead of the committed bytes
        self.stall: set[str] = set()  # "repo/path": GET sends half the bytes, then hangs (the client gets killed)
        self.stalled = threading.Event()  # set once a stalled transfer is hanging
        self.raw: dict[str, bytes] = {}  # any other path (e.g. /e-bug/iglue/main/...): served as is on GET
        self._server: ThreadingHTTPServer | None = None

    def add(self, repo: str, files: dict[str, bytes], commit: str | None = None) -> str:
        """A new commit of `repo` holding `files` (sha `commit`, else one derived from the files); main points at
        it. Returns its sha."""
        sha = hashlib.sha1(repr((repo, sorted((p, hashlib.sha256(b).hexdigest()) for p, b in files.items()))).encode())
        commit = commit or sha.hexdigest()
        self.commits.setdefault(repo, {})[commit] = dict(files)
        self.branches.setdefault(repo, {})["main"] = commit
        return commit

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Hub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                hub._serve(self, head=True)

            def do_GET(self) -> None:
                hub._serve(self, head=False)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ---------------------------------------------------------------------------------------------------------
    def _commit(self, repo: str, rev: str) -> str | None:
        if rev in self.commits.get(repo, {}):
            return rev
        return self.branches.get(repo, {}).get(rev)

    def _serve(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        self.requests.append(f"{h.command} {path}")
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "datasets"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
            repo, kind, rev = f"{parts[2]}/{parts[3]}", parts[4], parts[5]
            commit = self._commit(repo, rev)
            if commit is None:
                return self._json(h, 404, {"error": f"Revision Not Found {rev}"}, head)
            if kind == "revision":
                return self._json(h, 200, {"id": repo, "sha": commit, "private": False}, head)
            prefix = "/".join(parts[6:])
            files = self.commits[repo][commit]
            listing = [
                {
                    "type": "file",
                    "path": p,
                    "size": len(b),
                    "oid": hashlib.sha1(b).hexdigest(),
                    "lfs": {"oid": hashlib.sha256(b).hexdigest(), "size": len(b), "pointerSize": 130},
                }
                for p, b in sorted(files.items())
                if p.startswith(prefix)
            ]
            return self._json(h, 200, listing, head)
        if parts[:1] == ["datasets"] and len(parts) >= 6 and parts[3] == "resolve":
            repo, rev, file = f"{parts[1]}/{parts[2]}", parts[4], "/".join(parts[5:])
            commit = self._commit(repo, rev)
            if commit is None or file not in self.commits[repo][commit]:
                return self._json(h, 404, {"error": "Entry not found"}, head, {"X-Error-Code": "EntryNotFound"})
            key = f"{repo}/{file}"
            data = self.corrupt.get(key, self.commits[repo][commit][file])
            etag = f'"{hashlib.sha256(self.commits[repo][commit][file]).hexdigest()}"'
            start = 0
            rng = h.headers.get("Range")
            if rng and rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0] or 0)
            body = data[start:]
            h.send_response(206 if start else 200)
            h.send_header("X-Repo-Commit", commit)
            h.send_header("ETag", etag)
            h.send_header("Content-Length", str(len(body)))
            if start:
                h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            h.send_header("Content-Type", "application/octet-stream")
            h.end_headers()
            if head:
                return None
            self.gets[key] += 1
            if key in self.stall:
                self.stall.discard(key)
                h.wfile.write(body[: len(body) // 2])
                h.wfile.flush()
                self.stalled.set()
                threading.Event().wait(30)
                h.close_connection = True
                return None
            if key in self.cut:
                self.cut.discard(key)
                h.wfile.write(body[: len(body) // 2])
                h.wfile.flush()
                h.close_connection = True
                import socket

                h.connection.shutdown(socket.SHUT_RDWR)
                return None
            h.wfile.write(body)
            return None
        if path in self.raw:
            self.gets[path] += 1
            h.send_response(200)
            h.send_header("Content-Length", str(len(self.raw[path])))
            h.end_headers()
            if not head:
                h.wfile.write(self.raw[path])
            return None
        return self._json(h, 404, {"error": "not found"}, head)

    @staticmethod
    def _json(
        h: BaseHTTPRequestHandler, status: int, payload: Any, head: bool, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if not head:
            h.wfile.write(data)


def hub_fixture(tmp_path: Any, monkeypatch: Any) -> Iterator[Hub]:
    """A started local hub with huggingface_hub pointed at it (endpoint, a temporary cache, online), stopped after the
    test: the body of a pytest fixture (tests/test_data_fetch.py's `hub`, tests/test_tasks_hub.py's fetches)."""
    from huggingface_hub import constants

    server = Hub().start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("MVLEVAL_UPSTREAM_BASE", server.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    try:
        yield server
    finally:
        server.stop()
