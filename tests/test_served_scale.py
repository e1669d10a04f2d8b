"""Served models at scale (issue 27), tested as the user runs them, through ``mvleval.cli.main()`` and the installed
console script, against real HTTP servers on 127.0.0.1 (stdlib ThreadingHTTPServer, one per replica):

- several replicas (repeated --base-url): every replica answers, the answers equal one server's, the record lists the
  replicas without credentials and how many answers each gave; a replica serving another model is refused (exit 2,
  naming it); a replica that dies mid-run is taken out and its requests answered by the others, every example once;
- adaptive concurrency (no --concurrency) against a server that refuses more than K requests at once (429, with and
  without Retry-After): the run finishes with the right answers and the record says "adaptive";
- the response cache: a second run asks the server nothing and marks its rows; the key covers the served model id,
  the server's version and the body as sent (never the API key or the URL's password); --cache read / off;
  `mvleval cache info` and `mvleval cache clear [--model]`; two processes writing at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ChatHandler, cli

REPO = Path(__file__).resolve().parents[1]
SECRET = "sk-scale-Wq7-never-store-me"
PASSWORD = "pw-in-the-url-93x"
MODEL = "fake-vlm"
XGQA = ["--task", "xgqa", "--split", "test", "--lang", "de", "--lang", "zh", "--limit", "6"]  # 12 requests
MARVL = ["--task", "marvl", "--split", "test", "--lang", "id", "--lang", "zh", "--limit", "6"]


class Replica:
    """One chat-completions server: answers derived from the request body (so every replica answers alike), a fixed
    latency, at most `capacity` requests at once (429 beyond, with an optional Retry-After), and `die_after`: after
    that many answers it resets every connection and stops listening (a replica that crashed)."""

    def __init__(
        self,
        served_model: str = MODEL,
        latency_s: float = 0.0,
        capacity: int | None = None,
        retry_after: str | None = None,
        die_after: int | None = None,
        version: str | None = None,
    ) -> None:
        self.lock = threading.Lock()
        self.latency_s, self.capacity, self.retry_after, self.die_after = latency_s, capacity, retry_after, die_after
        self.in_flight = 0
        self.answered = 0
        self.refused = 0
        self.bodies: list[bytes] = []
        self.refusal_times: list[float] = []
        self.arrival_times: list[float] = []
        self.dead = False
        server = self

        class Handler(ChatHandler):
            def do_GET(self) -> None:
                if version is not None and self.path == "/version":
                    return self._send(200, {"version": version})
                super().do_GET()

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                if server.dead:
                    return self._reset()
                body = json.loads(raw)
                if body.get("model") != served_model:
                    return self._send(404, {"error": "no such model"})
                with server.lock:
                    server.arrival_times.append(time.monotonic())
                    if server.capacity is not None and server.in_flight >= server.capacity:
                        server.refused += 1
                        server.refusal_times.append(time.monotonic())
                        refuse = True
                    else:
                        server.in_flight += 1
                        refuse = False
                if refuse:
                    return self._send(
                        429,
                        {"error": "too many requests"},
                        {"Retry-After": server.retry_after} if server.retry_after else None,
                    )
                try:
                    time.sleep(server.latency_s)
                    content = body["messages"][0]["content"]
                    key = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
                    answer = f"ans-{key[:8]} {content[-1]['text'][:10]} max{body.get('max_tokens')}"
                    with server.lock:
                        if server.dead:
                            return self._reset()
                        server.answered += 1
                        server.bodies.append(raw)
                        die = server.die_after is not None and server.answered >= server.die_after
                    self._send(
                        200,
                        {
                            "choices": [
                                {
                                    "index": 0,
                                    "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": answer},
                                }
                            ],
                            "usage": {"prompt_tokens": 5, "completion_tokens": 2},
                        },
                    )
                    if die:
                        server.kill()
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _reset(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True

        Handler.served_model = served_model
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda *a: None  # type: ignore[method-assign]
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def secret_url(self) -> str:
        return f"http://user:{PASSWORD}@127.0.0.1:{self.port}/v1"

    def kill(self) -> None:
        """Stop listening (new connections are refused) and reset the open ones on their next request."""
        self.dead = True
        threading.Thread(target=lambda: (self.httpd.shutdown(), self.httpd.server_close()), daemon=True).start()

    def close(self) -> None:
        if not self.dead:
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    made: list[Replica] = []
    yield made
    for replica in made:
        replica.close()


def start(made: list[Replica], **kwargs: Any) -> Replica:
    replica = Replica(**kwargs)
    made.append(replica)
    return replica


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from mvleval.demo.command import build_demo_data

    return build_demo_data(tmp_path_factory.mktemp("demo"), n_train=0, n_test=6)


def run(
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
    data: tuple[Path, Path],
    out: Path,
    urls: list[str],
    *extra: str,
    task: list[str] = XGQA,
) -> tuple[int, str, str]:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    args = [
        "run",
        *task,
        "--model",
        f"openai:{MODEL}",
        "--data-root",
        str(data[0]),
        "--out",
        str(out),
        "--timeout",
        "5",
        "--max-retries",
        "3",
    ]
    for url in urls:
        args += ["--base-url", url]
    return cli(capsys, *args, *extra)


def record_of(out: Path) -> dict[str, Any]:
    records = [p for p in out.glob("*.json") if not p.name.endswith(".manifest.json")]
    assert len(records) == 1, records
    return json.loads(records[0].read_text())


def rows_of(out: Path) -> list[dict[str, Any]]:
    record = record_of(out)
    return [json.loads(line) for line in (out / record["samples_file"]).read_text().splitlines()]


def predictions(out: Path) -> dict[tuple[str, str], str]:
    return {(r["lang"], r["id"]): r["prediction"] for r in rows_of(out)}


# -- several replicas -------------------------------------------------------------------------------------------------------
def test_replicas_share_the_work_and_answer_as_one_server(
    capsys: Any, monkeypatch: pytest.MonkeyPatch, demo_data: tuple[Path, Path], tmp_path: Path, replicas: list[Replica]
) -> None:
    one = start(replicas, latency_s=0.02)
    code, _, err = run(
        capsys, monkeypatch, demo_data, tmp_path / "one", [one.url], "--cache", "off", "--concurrency", "2"
    )
    assert code == 0, err
    three = [start(replicas, latency_s=0.05) for _ in range(3)]
    code, _, err = run(
        capsys,
        monkeypatch,
        demo_data,
        tmp_path / "three",
        [r.secret_url for r in three],
        "--cache",
        "off",
        "--concurrency",
        "16",
    )
    assert code == 0, err
    assert predictions(tmp_path / "three") == predictions(tmp_path / "one")
    # least-outstanding: each language's 6 requests start at once, 2 per replica (the first replica's window, 16,
    # would hold them all)
    assert all(r.answered >= 2 for r in three), [r.answered for r in three]
    assert sum(r.answered for r in three) == 12
    details = record_of(tmp_path / "three")["model"]["details"]
    assert [(d["url"], d["answers"]) for d in details["replicas"]] == [(r.url, r.answered) for r in three]
    assert details["endpoint"] == three[0].url  # the one-replica field keeps its name and meaning
    for path in (tmp_path / "three").rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes() and SECRET.encode() not in path.read_bytes(), path


def test_a_replica_serving_another_model_is_refused_by_name(
    capsys: Any, monkeypatch: pytest.MonkeyPatch, demo_data: tuple[Path, Path], tmp_path: Path, replicas: list[Replica]
) -> None:
    good, odd = start(replicas), start(replicas, served_model="another-vlm")
    code, _, err = run(capsys, monkeypatch, demo_data, tmp_path / "out", [good.url, odd.secret_url])
    assert code == 2
    message = " ".join(err.split())
    assert "Traceback" not in err and "do not serve the same model" in message
    assert odd.url in message and "another-vlm" in message and PASSWORD not in message
    assert not (tmp_path / "out").exists()
    assert good.answered == odd.answered == 0


def test_a_replica_dying_mid_run_is_taken_out_and_every_example_answered_once(
    capsys: Any, monkeypatch: pytest.MonkeyPatch, demo_data: tuple[Path, Path], tmp_path: Path, replicas: list[Replica]
) -> None:
    code, _, err = run(capsys, monkeypatch, demo_data, tmp_path / "ref", [start(replicas).url], "--cache", "off")
    assert code == 0, err
    dying, healthy = start(replicas, latency_s=0.05, die_after=3), start(replicas, latency_s=0.05)
    code, _, err = run(
        capsys,
        monkeypatch,
        demo_data,
        tmp_path / "out",
        [dying.url, healthy.url],
        "--cache",
        "off",
        "--concurrency",
        "3",
        "--max-retries",
        "0",
    )  # failover, not a retry, saves its requests
    assert code == 0, err
    assert dying.dead
    rows = rows_of(tmp_path / "out")
    assert Counter((r["lang"], r["id"]) for r in rows).most_common(1)[0][1] == 1 and len(rows) == 12
    assert predictions(tmp_path / "out") == predictions(tmp_path / "ref")
    report = {d["url"]: d for d in record_of(tmp_path / "out")["model"]["details"]["replicas"]}
    assert report[dying.url]["failed_attempts"] >= 1
    assert report[dying.url]["answers"] + report[healthy.url]["answers"] == 12
    assert report[healthy.url]["answers"] >= 12 - 3


def test_no_replica_left_stops_unscored_and_resume_asks_only_what_is_missing(
    capsys: Any, monkeypatch: pytest.MonkeyPatch, demo_data: tuple[Path, Path], tmp_path: Path, replicas: list[Replica]
) -> None:
    a, b = start(replicas, die_after=2), start(replicas, die_after=2)  # 4 of the first language's 6 are answered
    code, _, err = run(
        capsys,
        monkeypatch,
        demo_data,
        tmp_path,
        [a.url, b.url],
        "--cache",
        "off",
        "--concurrency",
        "1",
        "--max-retries",
        "1",
    )
    assert code == 2, err
    message = " ".join(err.split())
    assert "every replica" in message and "--resume" in message and "Traceback" not in err
    kept = len([line for line in next(tmp_path.glob("*.partial.jsonl")).read_text().splitlines() if line.strip()])
    assert kept == 4  # what arrived in the failed batch is kept
    fresh = start(replicas)
    code, _, err = run(capsys, monkeypatch, demo_data, tmp_path, [fresh.url], "--cache", "off", "--resume")
    assert code == 0, err
    assert fresh.answered == 12 - kept
    assert len(rows_of(tmp_path)) == 12


# -- adaptive concurrency -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("retry_after", [None, "1"])
def test_adaptive_window_backs_off_on_429_and_finishes_right(
    retry_after: str | None,
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
    demo_data: tuple[Path, Path],
    tmp_path: Path,
    replicas: list[Replica],
) -> None:
    code, _, err = run(capsys, monkeypatch, demo_data, tmp_path / "ref", [start(replicas).url], "--cache", "off")
    assert code == 0, err
    busy = start(replicas, latency_s=0.1, capacity=2, retry_after=retry_after)
    code, _, err = run(
        capsys, monkeypatch, demo_data, tmp_path / "out", [busy.url], "--cache", "off", "--max-retries", "0"
    )
    assert code == 0, err  # 429s shrink the window instead of using up --max-retries 0
    assert busy.refused > 0, "the window never went past the server's capacity: the test would prove nothing"
    assert predictions(tmp_path / "out") == predictions(tmp_path / "ref")
    details = record_of(tmp_path / "out")["model"]["details"]
    assert details["request"]["concurrency"] == "adaptive"
    assert details["retries"].get("HTTP 429") == busy.refused
    if retry_after:  # after a 429 saying Retry-After: 1, nothing is sent to that replica for a second
        first = busy.refusal_times[0]
        # (requests already on their way when the 429 left the server may still arrive within a few milliseconds)
        assert not [t for t in busy.arrival_times if first + 0.1 < t < first + 0.9], "Retry-After was not honoured"


# -- the response cache -------------------------------------------------------------------------------------------------------
def cache_file() -> Path:
    return Path(os.environ["MVLEVAL_CACHE_DIR"]) / "responses.sqlite3"


def test_second_run_is_answered_from_the_cache_and_marked(
    capsys: Any, monkeypatch: pytest.MonkeyPatch, demo_data: tuple[Path, Path], tmp_path: Path, replicas: list[Replica]
) -> None:
    server = start(replicas)
    code, _, err = run(capsys, monkeypatch, demo_data, tmp_path / "first", [server.secret_url])
    assert code == 0, err
    assert server.answered == 12
    first = record_of(tmp_path / "first")
    assert first["model"]["details"]["cache"] == {
        "mode": "read-write",
        "answers_from_cache": 0,
        "answers_asked": 12,
        "answers_stored": 12,
    }
    assert not any("cached" in r for r in rows_of(tmp_path / "first"))
    # another URL (no password) and another key: the same model and request bodies, so every answer comes from the cache
    monkeypatch.setenv("OPENAI_API_KEY", "sk-another-key")
    code, _, err = run(capsys, monkeypatch, demo_data, tmp_path / "second", [server.url])
    assert code == 0, err
    assert server.answered == 12  # nothing asked again
    rows = rows_of(tmp_path / "second")
    assert all(r["cached"] is True for r in rows) and len(rows) == 12
    assert predictions(tmp_path / "second") == predictions(tmp_path / "first")
    assert record_of(tmp_path / "second")["scores"] == first["scores"]
    assert record_of(tmp_path / "second")["model"]["details"]["cache"]["answers_from_cache"] == 12
    # `mvleval score` keeps the marks (and the record's samples hash)
    record_path = next(p for p in (tmp_path / "second").glob("*.json") if not p.name.endswith(".manifest.json"))
    code, _, err = cli(capsys, "score", record_path)
    assert code == 0, err
    assert all(r["cached"] is True for r in rows_of(tmp_path / "second"))
    # the key is sha256(model id, server version, the body as sent): recomputed here from what the server received
    from mvleval.run.cache import served_key

    keys = {row[0] for row in sqlite3.connect(cache_file()).execute("SELECT key FROM responses")}
    assert keys == {served_key(MODEL, None, body) for body in server.bodies}
    stored = b"".join(p.read_bytes() for p in cache_file().parent.iterdir() if p.is_file())
    assert SECRET.encode() not in stored and PASSWORD.encode() not in stored and b"127.0.0.1" not in stored


def test_cache_key_changes_with_generation_settings_and_server_version(
    capsys: Any, monkeypatch: pytest.MonkeyPatch, demo_data: tuple[Path, Path], tmp_path: Path, replicas: list[Replica]
) -> None:
    v1 = start(replicas, version="1.0")
    assert run(capsys, monkeypatch, demo_data, tmp_path / "a", [v1.url])[0] == 0
    assert run(capsys, monkeypatch, demo_data, tmp_path / "b", [v1.url], "--max-new-tokens", "3")[0] == 0
    assert v1.answered == 24  # another max_tokens: another request, asked
    assert record_of(tmp_path / "a")["model"]["details"]["server_version"] == "1.0"
    v2 = start(replicas, version="2.0")
    assert run(capsys, monkeypatch, demo_data, tmp_path / "c", [v2.url])[0] == 0
    assert v2.answered == 12  # another server version: asked again
    v1_again = start(replicas, version="1.0")
    assert run(capsys, monkeypatch, demo_data, tmp_path / "d", [v1_again.url])[0] == 0
    assert v1_again.answered == 0


def test_cache_modes_read_and_off(
    capsys: Any, monkeypatch: pytest.MonkeyPatch, demo_data: tuple[Path, Path], tmp_path: Path, replicas: list[Replica]
) -> None:
    server = start(replicas)
    assert run(capsys, monkeypatch, demo_data, tmp_path / "read-empty", [server.url], "--cache", "read")[0] == 0
    assert server.answered == 12
    assert not cache_file().exists()  # read: nothing stored
    assert run(capsys, monkeypatch, demo_data, tmp_path / "fill", [server.url])[0] == 0
    assert server.answered == 24
    assert run(capsys, monkeypatch, demo_data, tmp_path / "read", [server.url], "--cache", "read")[0] == 0
    assert server.answered == 24
    assert record_of(tmp_path / "read")["model"]["details"]["cache"]["answers_stored"] == 0
    assert run(capsys, monkeypatch, demo_data, tmp_path / "off", [server.url], "--cache", "off")[0] == 0
    assert server.answered == 36
    off = tmp_path / "off"
    assert (off / record_of(off)["samples_file"]).read_bytes() == (
        tmp_path / "fill" / record_of(tmp_path / "fill")["samples_file"]
    ).read_bytes()
    code, _, err = run(capsys, monkeypatch, demo_data, tmp_path / "bad", [server.url], "--cache", "sometimes")
    assert code == 2 and "--cache must be one of read-write, read, off" in " ".join(err.split())


def test_cache_info_and_clear(
    capsys: Any, monkeypatch: pytest.MonkeyPatch, demo_data: tuple[Path, Path], tmp_path: Path, replicas: list[Replica]
) -> None:
    code, out, _ = cli(capsys, "cache", "info")
    assert code == 0 and "entries: 0" in out and str(cache_file()) in out
    server = start(replicas)
    assert run(capsys, monkeypatch, demo_data, tmp_path / "a", [server.url])[0] == 0
    code, out, _ = cli(capsys, "cache", "info")
    assert code == 0 and "entries: 12" in out and f"{MODEL}: 12" in out
    code, _, err = cli(capsys, "cache", "clear", "--model", "fake-vlx")
    assert code == 2 and "Did you mean 'fake-vlm'?" in err
    code, out, _ = cli(capsys, "cache", "clear", "--model", MODEL)
    assert code == 0 and "removed 12" in out
    code, out, _ = cli(capsys, "cache", "info")
    assert "entries: 0" in out
    assert run(capsys, monkeypatch, demo_data, tmp_path / "b", [server.url])[0] == 0
    assert server.answered == 24  # cleared: asked again


WRITER = """
import sys, time
from mvleval.run.cache import ResponseCache
cache = ResponseCache("read-write")
cache.lookup(["warm"])  # open (and create) the file before the start signal
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
for i in range(1500):
    cache.store("m" + sys.argv[1], {f"{sys.argv[1]}-{i}": "answer"})
"""


@pytest.mark.slow  # ~25 s on 2 shared cores: two writer processes, then two `mvleval run` processes
def test_two_processes_write_at_once(
    capsys: Any, monkeypatch: pytest.MonkeyPatch, demo_data: tuple[Path, Path], tmp_path: Path, replicas: list[Replica]
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    go = str(time.time() + 4)  # both start writing at the same moment, 1500 transactions each
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(n), go], env=env, stderr=subprocess.PIPE, text=True)
        for n in (1, 2)
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    info = dict(
        sqlite3.connect(cache_file()).execute("SELECT model, COUNT(*) FROM responses GROUP BY model").fetchall()
    )
    assert info == {"m1": 1500, "m2": 1500}
    # two `mvleval run` processes (the console script) on one server and one cache, at once
    exe = shutil.which("mvleval")
    assert exe, "the mvleval console script is not installed"
    server = start(replicas, latency_s=0.02)
    env.update(OPENAI_API_KEY=SECRET, OMP_NUM_THREADS="1")
    runs = [
        subprocess.Popen(
            [
                exe,
                "run",
                *task,
                "--model",
                f"openai:{MODEL}",
                "--base-url",
                server.url,
                "--data-root",
                str(demo_data[0]),
                "--out",
                str(tmp_path / name),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, task in (("x", XGQA), ("m", MARVL))
    ]
    for proc in runs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    assert (
        dict(sqlite3.connect(cache_file()).execute("SELECT model, COUNT(*) FROM responses GROUP BY model").fetchall())[
            MODEL
        ]
        == 24
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # --cache applies to local models too (tests/test_local_cache.py), and is checked for them as well
        (["--model", "some/local-checkpoint", "--cache", "sometimes"], "--cache must be one of read-write, read, off"),
        (["--model", "some/local-checkpoint", "--concurrency", "4"], "apply to served models only"),
        (
            [
                "--model",
                f"openai:{MODEL}",
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--base-url",
                "http://u:p@127.0.0.1:9/v1",
            ],
            "--base-url gives the same replica twice (http://127.0.0.1:9/v1)",
        ),
        (
            ["--model", f"openai:{MODEL}", "--base-url", "http://127.0.0.1:9/v1", "--concurrency", "0"],
            "--concurrency must be at least 1",
        ),
    ],
)
def test_refusals_of_the_new_flags(
    args: list[str],
    message: str,
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
    demo_data: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    code, _, err = cli(capsys, "run", *XGQA, *args, "--data-root", demo_data[0], "--out", tmp_path / "out")
    assert code == 2 and "Traceback" not in err
    assert message in " ".join(err.split())
    assert not (tmp_path / "out").exists()


def test_cache_commands_through_the_installed_script(tmp_path: Path) -> None:
    """`mvleval cache info` and `mvleval cache clear` as the console script runs them: exit codes and streams."""
    exe = shutil.which("mvleval")
    assert exe, "the mvleval console script is not installed"
    env = {**os.environ, "MVLEVAL_CACHE_DIR": str(tmp_path / "cache")}
    info = subprocess.run([exe, "cache", "info"], env=env, capture_output=True, text=True, timeout=120)
    assert info.returncode == 0 and "entries: 0" in info.stdout and str(tmp_path / "cache") in info.stdout, info
    assert info.stderr == ""
    cleared = subprocess.run(
        [exe, "cache", "clear", "--model", "nothing-here"], env=env, capture_output=True, text=True, timeout=120
    )
    assert cleared.returncode == 2 and "Traceback" not in cleared.stderr and cleared.stdout == "", cleared
