"""The served-model backend (``--model openai:NAME``), tested as a user runs it: the installed console script in a
subprocess, against real servers on 127.0.0.1.

- A fault-injecting chat-completions server of the tests' own (below): 429 with and without Retry-After, 500, a
  connection reset, a timeout, malformed bodies. Every case either finishes with every answer right (samples file equal
  to an undisturbed run's) or stops with exit 2, one paragraph, no record, and ``--resume`` finishes to the undisturbed
  result without asking again for what was answered. A secret in the key variable is looked for in every file written
  and every line printed.
- ``transformers serve`` (slow: ~25 s start-up) serving a tiny llava built from config: predictions equal the same
  checkpoint's through mvleval's in-process Hugging Face backend (which applies the checkpoint's chat template to the
  same [images..., text] user turn and runs transformers' generate with the same greedy / beam settings; the server
  does the same in its process, so the comparison is exact, token for token).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
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

from tests.helpers import ChatHandler, TransformersServe, run_cli

REPO = Path(__file__).resolve().parents[1]
SECRET = "sk-test-Zq81VhK3-never-print-me"
MODEL = "fake-vlm"
#: xgqa, two languages, 6 examples each: 12 one-image requests; marvl: 12 two-image requests
XGQA = ["--task", "xgqa", "--split", "test", "--lang", "de", "--lang", "zh", "--limit", "6"]
MARVL = ["--task", "marvl", "--split", "test", "--lang", "id", "--lang", "zh", "--limit", "6"]


# -- the fault-injecting server -----------------------------------------------------------------------------------------
class FakeChatServer:
    """Chat completions answered deterministically from the request's content, with faults on chosen requests.

    A request is faulty when the hash of its content is 0 mod `every`; a faulty request gets `times` faults of `kind`
    before it is answered. ``answered`` counts good answers per content key, ``attempts`` the arrival times.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kind: str | None = None
        self.times = 0
        self.every = 3
        self.remaining: dict[str, int] = {}
        self.answered: Counter[str] = Counter()
        self.attempts: dict[str, list[float]] = {}
        self.images_seen: dict[str, list[str]] = {}
        self.sleep_s = 3.0
        server = self

        class Handler(ChatHandler):
            served_model = MODEL

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path.split("?")[0] != "/v1/chat/completions":
                    return self._send(404, {"error": "not found"})
                auth = self.headers.get("Authorization", "")
                if auth != f"Bearer {SECRET}":
                    return self._send(401, {"error": f"invalid key in {auth!r}"})
                if body.get("model") != MODEL:
                    return self._send(404, {"error": f"model {body.get('model')!r} not served"})
                content = body["messages"][0]["content"]
                key = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
                fault = server._next_fault(key, content)
                if fault is None:
                    prompt = content[-1]["text"]
                    answer = f"ans-{key[:8]} ({len(content) - 1} image(s)) {prompt[:12]}"
                    with server.lock:
                        server.answered[key] += 1
                    return self._send(
                        200,
                        {
                            "id": "x",
                            "object": "chat.completion",
                            "model": MODEL,
                            "choices": [
                                {
                                    "index": 0,
                                    "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": answer},
                                }
                            ],
                            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
                        },
                    )
                n = len(server.attempts[key])
                if fault == "429":
                    self._send(429, {"error": "rate limited"})
                elif fault == "429-retry-after":
                    self._send(429, {"error": "rate limited"}, {"Retry-After": "2"})
                elif (
                    fault == "500"
                ):  # servers have been seen echoing the key in error bodies: it must not reach the user
                    self._send(500, {"error": f"internal error for {auth}"})
                elif fault == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                elif fault == "timeout":
                    time.sleep(server.sleep_s)
                    self._send(200, {"choices": [{"index": 0, "message": {"content": "too late"}}]})
                elif fault == "malformed":
                    bodies = [
                        b"{not json",
                        b'{"choices": []}',
                        b'{"choices": [{"index": 0, "message": {"content": null}}]}',
                        b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": ""}}]}',
                    ]
                    self._send_raw(200, bodies[(n - 1) % len(bodies)])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda *a: None  # type: ignore[method-assign]
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _next_fault(self, key: str, content: list[dict[str, Any]]) -> str | None:
        with self.lock:
            self.attempts.setdefault(key, []).append(time.monotonic())
            self.images_seen[key] = [c["image_url"]["url"] for c in content if c["type"] == "image_url"]
            if key not in self.remaining:
                self.remaining[key] = self.times if self.kind and int(key, 16) % self.every == 0 else 0
            if self.remaining[key] > 0:
                self.remaining[key] -= 1
                return self.kind
            return None

    def plan(self, kind: str | None, times: int = 0) -> None:
        """From now on, faulty requests get `times` faults of `kind` (None: a healthy server); counters restart."""
        with self.lock:
            self.kind, self.times = kind, times
            self.remaining.clear()
            self.answered.clear()
            self.attempts.clear()
            self.images_seen.clear()

    def heal(self) -> None:
        """Faults stop; what was counted stays."""
        with self.lock:
            self.kind = None
            self.remaining = dict.fromkeys(self.remaining, 0)

    def faulty_keys(self) -> list[str]:
        return [k for k in self.attempts if int(k, 16) % self.every == 0]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeChatServer]:
    srv = FakeChatServer()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from mvleval.demo.command import build_demo_data

    return build_demo_data(tmp_path_factory.mktemp("demo"), n_train=0, n_test=6)


def mvleval(
    *args: str, env_extra: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`mvleval ARGS` with the secret key set, answered as the console script answers (in-process, `run_cli`;
    tests/test_cli_inprocess.py holds it to the installed script, tests/test_core_install.py runs a served model
    through the installed script itself)."""
    return run_cli(*args, env={"OPENAI_API_KEY": SECRET, **(env_extra or {})}, drop_env=("OPENAI_BASE_URL",))


def run_served(
    server: FakeChatServer,
    data: tuple[Path, Path],
    out: Path,
    *extra: str,
    task: list[str] = XGQA,
    env_extra: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return mvleval(
        "-v",
        "run",
        *task,
        "--model",
        f"openai:{MODEL}",
        "--base-url",
        server.url,
        "--data-root",
        str(data[0]),
        "--out",
        str(out),
        "--concurrency",
        "4",
        "--timeout",
        "1",
        "--max-retries",
        "3",
        *extra,
        env_extra=env_extra,
    )


def the_record(out: Path) -> Path | None:
    records = [p for p in out.glob("*.json") if not p.name.endswith(".manifest.json")]
    assert len(records) <= 1
    return records[0] if records else None


def assert_no_secret(out: Path, *procs: subprocess.CompletedProcess[str]) -> None:
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"the API key was written to {path}"
    for proc in procs:
        for line in (proc.stdout + proc.stderr).splitlines():
            assert SECRET not in line, f"the API key was printed: {line!r}"


@pytest.fixture(scope="module")
def reference(
    server: FakeChatServer, demo_data: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, bytes]:
    """Samples files of undisturbed runs (xgqa, marvl): what every disturbed run must end with."""
    out = tmp_path_factory.mktemp("reference")
    found = {}
    for name, task in (("xgqa", XGQA), ("marvl", MARVL)):
        server.plan(None)
        proc = run_served(server, demo_data, out / name, task=task)
        assert proc.returncode == 0, proc.stderr
        found[name] = (out / name / json.loads(the_record(out / name).read_text())["samples_file"]).read_bytes()  # type: ignore[union-attr]
        assert sum(server.answered.values()) == 12 and max(server.answered.values()) == 1
    return found


# -- fault injection ----------------------------------------------------------------------------------------------------
#: (fault, its retry cause in the record); every row is run transiently (fewer faults than retries: the run succeeds)
#: and persistently (more faults than retries: the run stops, then resumes on a healed server).
FAULTS = [
    ("429", "HTTP 429"),
    ("429-retry-after", "HTTP 429"),
    ("500", "HTTP 500"),
    ("reset", "connection error"),
    ("timeout", "timeout"),
    ("malformed", "malformed response"),
]


@pytest.mark.parametrize(("fault", "cause"), FAULTS, ids=[f for f, _ in FAULTS])
def test_transient_fault_is_retried_and_every_answer_is_right(
    fault: str,
    cause: str,
    server: FakeChatServer,
    demo_data: tuple[Path, Path],
    reference: dict[str, bytes],
    tmp_path: Path,
) -> None:
    # malformed: each faulty request gets all four bodies (not JSON, no choices, null content, empty content)
    times = {"timeout": 1, "429-retry-after": 1, "malformed": 4}.get(fault, 2)
    server.plan(fault, times=times)
    proc = run_served(server, demo_data, tmp_path, "--max-retries", str(max(3, times)))
    assert proc.returncode == 0, proc.stderr
    record = json.loads(the_record(tmp_path).read_text())  # type: ignore[union-attr]
    assert (tmp_path / record["samples_file"]).read_bytes() == reference["xgqa"]
    faulty = server.faulty_keys()
    assert faulty, "the fault plan hit no request: the test would prove nothing"
    details = record["model"]["details"]
    retried = sum(n for c, n in details["retries"].items() if c.startswith(cause))
    assert retried == times * len(faulty), details["retries"]
    assert (
        details["requests_answered"] == 12
        and details["prompt_tokens"] == 12 * 7
        and details["completion_tokens"] == 12 * 3
    )
    gaps = [b - a for k in faulty for a, b in zip(server.attempts[k], server.attempts[k][1:])]
    if fault == "429-retry-after":
        assert min(gaps) >= 1.9, gaps  # Retry-After: 2 is honoured (the back-off alone would wait 0.25-0.5 s)
    else:
        assert min(gaps) >= 0.2, gaps  # exponential back-off: at least half of 0.5 s
    assert_no_secret(tmp_path, proc)


@pytest.mark.parametrize(
    ("fault", "cause"),
    [f for f in FAULTS if f[0] != "429-retry-after"],
    ids=[f for f, _ in FAULTS if f != "429-retry-after"],
)
def test_persistent_fault_stops_unscored_and_resume_finishes_without_asking_again(
    fault: str,
    cause: str,
    server: FakeChatServer,
    demo_data: tuple[Path, Path],
    reference: dict[str, bytes],
    tmp_path: Path,
) -> None:
    server.plan(fault, times=10**6)
    stopped = run_served(server, demo_data, tmp_path, "--max-retries", "1")
    assert stopped.returncode == 2, stopped.stderr
    assert "Traceback" not in stopped.stderr
    error = stopped.stderr[stopped.stderr.index("error:") :]
    assert "failed" in error and "The run stopped without scoring" in error and "--resume" in error, error
    assert "examples are done" in error
    assert the_record(tmp_path) is None and not list(tmp_path.glob("*.samples.jsonl")), "nothing may be scored"
    answered_before = sum(server.answered.values())
    assert 0 < answered_before < 12
    partial = next(tmp_path.glob("*.partial.jsonl"))
    assert len(partial.read_text().splitlines()) == answered_before, "every answer that arrived is kept"

    server.heal()
    resumed = run_served(server, demo_data, tmp_path, "--max-retries", "1", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads(the_record(tmp_path).read_text())  # type: ignore[union-attr]
    assert (tmp_path / record["samples_file"]).read_bytes() == reference["xgqa"]
    assert sum(server.answered.values()) == 12 and max(server.answered.values()) == 1, (
        "a finished request was sent again"
    )
    assert record["model"]["details"]["requests_answered"] == 12 - answered_before
    assert_no_secret(tmp_path, stopped, resumed)


def test_two_images_go_in_task_order_and_survive_a_fault(
    server: FakeChatServer, demo_data: tuple[Path, Path], reference: dict[str, bytes], tmp_path: Path
) -> None:
    from mvleval.backends.openai_api import encode_image
    from mvleval.benchmarks.registry import load_task

    server.plan("500", times=1)
    proc = run_served(server, demo_data, tmp_path, task=MARVL)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(the_record(tmp_path).read_text())  # type: ignore[union-attr]
    assert (tmp_path / record["samples_file"]).read_bytes() == reference["marvl"]
    examples = load_task("marvl").examples(demo_data[0], demo_data[1], "id", "test")[:6]
    expected = {tuple(encode_image(p, None) for p in e.images) for e in examples}
    assert all(len(e.images) == 2 for e in examples)
    assert expected <= {tuple(v) for v in server.images_seen.values()}, "the two images must go in the task's order"
    assert_no_secret(tmp_path, proc)


# -- what the record says -----------------------------------------------------------------------------------------------
def test_record_says_greedy_endpoint_without_credentials_and_leaderboard_labels_it(
    server: FakeChatServer, demo_data: tuple[Path, Path], tmp_path: Path
) -> None:
    server.plan(None)
    url = server.url.replace("127.0.0.1", "user:pw-Secret2@127.0.0.1") + "?key=query-Secret3"
    proc = mvleval(
        "run",
        *XGQA,
        "--model",
        f"openai:{MODEL}",
        "--base-url",
        url,
        "--data-root",
        str(demo_data[0]),
        "--out",
        str(tmp_path),
        "--max-image-side",
        "24",
    )
    # userinfo goes as basic auth, which the fake server refuses (it wants the bearer key): the run stops, unscored,
    # and neither the password nor the query may appear anywhere
    assert proc.returncode == 2 and "HTTP 401" in proc.stderr, proc.stderr
    for secret in ("pw-Secret2", "query-Secret3"):
        assert secret not in proc.stdout + proc.stderr
        assert all(secret.encode() not in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())

    out = tmp_path / "ok"
    proc = mvleval(
        "run",
        *XGQA,
        "--model",
        f"openai:{MODEL}",
        "--base-url",
        server.url,
        "--data-root",
        str(demo_data[0]),
        "--out",
        str(out),
        "--max-image-side",
        "24",
    )
    assert proc.returncode == 0, proc.stderr
    path = the_record(out)
    record = json.loads(path.read_text())  # type: ignore[union-attr]
    model = record["model"]
    assert model["backend"] == "openai" and model["path"] == f"openai:{MODEL}" and model["bits"] == 0
    assert model["generation"]["num_beams"] == 1, "a plain API is greedy, and the record must say so"
    details = model["details"]
    assert details["endpoint"] == server.url and details["served_model"] == MODEL
    assert details["models_endpoint"] == {
        "status": "listed",
        "id": MODEL,
        "object": "model",
        "owned_by": "tests",
        "max_model_len": 4096,
    }
    assert details["request"]["max_image_side"] == 24 and details["request"]["temperature"] == 0.0
    assert details["request"]["max_tokens"] == 10 and details["auth"] == "bearer token from $OPENAI_API_KEY"
    assert all(max(_png_size(u)) <= 24 for urls in server.images_seen.values() for u in urls)
    lb = mvleval("leaderboard", str(out), "--out", str(tmp_path / "lb"))
    assert lb.returncode == 0, lb.stderr
    assert f"openai:{MODEL} (served) {{num_beams=1}}" in (tmp_path / "lb" / "leaderboard.md").read_text()
    assert_no_secret(out, proc, lb)


def _png_size(data_url: str) -> tuple[int, int]:
    import base64
    import io

    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))) as im:
        return im.size


def test_image_encoding_is_deterministic_and_downsizes(demo_data: tuple[Path, Path], tmp_path: Path) -> None:
    from PIL import Image

    from mvleval.backends.openai_api import encode_image

    path = next(demo_data[1].rglob("*.jpg"))
    assert encode_image(path, None) == encode_image(path, None)
    assert encode_image(path, None).startswith("data:image/jpeg;base64,")  # the file's own bytes: no re-encoding
    small = encode_image(path, 16)
    assert (
        small == encode_image(path, 16) and small.startswith("data:image/png;base64,") and max(_png_size(small)) == 16
    )
    rotated = tmp_path / "rotated.jpg"  # EXIF orientation: servers rotate, mvleval does not; the pixels go as PNG
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(path).save(rotated, exif=exif)
    assert encode_image(rotated, None).startswith("data:image/png;base64,")


# -- exit codes and refusals --------------------------------------------------------------------------------------------
REFUSALS = [
    # (what, extra flags, env, exit code, text in the error)
    ("wrong key", [], {"OPENAI_API_KEY": "sk-wrong"}, 2, "HTTP 401"),
    ("beam search on a plain API", ["--num-beams", "5"], {}, 2, "beam search (num_beams=5) cannot be asked"),
    ("a local-model flag", ["--bits", "4"], {}, 2, "--bits only apply to a model loaded here"),
    (
        "a named key variable that is unset",
        ["--api-key-env", "MVLEVAL_TEST_NO_SUCH_KEY"],
        {},
        2,
        "MVLEVAL_TEST_NO_SUCH_KEY, which is not set",
    ),
    ("an unknown extension", ["--server-extensions", "tgi"], {}, 2, "--server-extensions must be one of"),
    ("a model the server does not serve", ["--model", "openai:other"], {}, 2, "HTTP 404"),
    ("nobody listening", ["--base-url", "http://127.0.0.1:9/v1"], {}, 2, "cannot reach the endpoint"),
]


@pytest.mark.parametrize(("what", "flags", "env", "code", "text"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_exit_2_with_one_paragraph_and_write_no_record(
    what: str,
    flags: list[str],
    env: dict[str, str],
    code: int,
    text: str,
    server: FakeChatServer,
    demo_data: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    server.plan(None)
    proc = run_served(server, demo_data, tmp_path, "--max-retries", "0", *flags, env_extra=env)
    assert proc.returncode == code, proc.stderr
    assert text in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert the_record(tmp_path) is None if tmp_path.exists() else True
    assert_no_secret(tmp_path, proc)


def test_served_run_never_imports_torch(server: FakeChatServer, demo_data: tuple[Path, Path], tmp_path: Path) -> None:
    """An API-only machine needs no torch, transformers, peft or bitsandbytes: imports of them fail here, the run passes."""
    server.plan(None)
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers', 'peft', 'bitsandbytes', 'accelerate'):\n"
        "            raise ImportError(f'{name} is blocked by the test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from mvleval.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit as exc:\n"
        "    print('EXIT', exc.code, sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))\n"
    )
    args = [
        "run",
        *XGQA,
        "--model",
        f"openai:{MODEL}",
        "--base-url",
        server.url,
        "--data-root",
        str(demo_data[0]),
        "--out",
        str(tmp_path),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": SECRET, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert "EXIT 0 []" in proc.stdout, proc.stdout + proc.stderr
    assert the_record(tmp_path) is not None


def test_public_url_and_recorded_command_drop_credentials() -> None:
    from mvleval.backends.openai_api import public_url
    from mvleval.cli import _public_args

    assert public_url("https://u:p@api.example.com:8443/v1/?key=s#f") == "https://api.example.com:8443/v1"
    assert public_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"
    assert _public_args(["run", "--base-url", "http://u:p@h/v1?k=s", "--base-url=http://u:p@h/v1"]) == [
        "run",
        "--base-url",
        "http://h/v1",
        "--base-url=http://h/v1",
    ]


def test_registry_routes_openai_prefix_without_reading_files() -> None:
    from mvleval.backends.base import BackendOptions
    from mvleval.backends.registry import choose_backend, is_served

    assert choose_backend(BackendOptions(model="openai:Qwen/Qwen2.5-VL-7B-Instruct")) == "openai"
    assert choose_backend(BackendOptions(model="Qwen/Qwen2.5-VL-7B-Instruct", backend="openai")) == "openai"
    assert is_served("openai:x", None) and is_served("x", "openai") and not is_served("./ckpt", None)


# -- a real server: transformers serve ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served_llava(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """`transformers serve` on 127.0.0.1 serving a tiny llava built from config (module-scoped: ~25 s start-up)."""
    from mvleval.testing.tiny_vlm import build_tiny_vlm

    root = tmp_path_factory.mktemp("serve")
    model_dir = build_tiny_vlm("llava", root / "llava")
    server = TransformersServe(model_dir, root)
    try:
        yield model_dir, server.wait().url
    finally:
        server.stop()


SERVE_CASES = [
    # (task flags, served-run flags, local-run flags)
    (XGQA, [], ["--num-beams", "1"]),  # one image, greedy (a plain API)
    (MARVL, [], ["--num-beams", "1"]),  # two images
    (XGQA, ["--server-extensions", "transformers"], []),  # the task's own 5-beam search through generation_config
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "served_flags", "local_flags"), SERVE_CASES, ids=["xgqa-greedy", "marvl-greedy", "xgqa-5-beams"]
)
def test_transformers_serve_answers_equal_in_process_generate(
    task: list[str],
    served_flags: list[str],
    local_flags: list[str],
    served_llava: tuple[Path, str],
    demo_data: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    model_dir, url = served_llava
    served = mvleval(
        "run",
        *task,
        "--model",
        f"openai:{model_dir}",
        "--base-url",
        url,
        "--data-root",
        str(demo_data[0]),
        "--out",
        str(tmp_path / "served"),
        "--concurrency",
        "4",
        *served_flags,
        timeout=600,
    )
    assert served.returncode == 0, served.stderr
    local = mvleval(
        "run",
        *task,
        "--model",
        str(model_dir),
        "--data-root",
        str(demo_data[0]),
        "--out",
        str(tmp_path / "local"),
        *local_flags,
        timeout=600,
    )
    assert local.returncode == 0, local.stderr

    def rows(out: Path) -> list[dict[str, Any]]:
        record = json.loads(the_record(out).read_text())  # type: ignore[union-attr]
        return [json.loads(line) for line in (out / record["samples_file"]).read_text().splitlines()]

    got, want = rows(tmp_path / "served"), rows(tmp_path / "local")
    assert [(r["id"], r["prompt"]) for r in got] == [(r["id"], r["prompt"]) for r in want]
    assert [r["prediction"] for r in got] == [r["prediction"] for r in want]
    assert len({r["prediction"] for r in got}) > 1, "a model that answers everything alike would prove nothing"
    served_record = json.loads(the_record(tmp_path / "served").read_text())  # type: ignore[union-attr]
    local_record = json.loads(the_record(tmp_path / "local").read_text())  # type: ignore[union-attr]
    assert served_record["model"]["generation"] == local_record["model"]["generation"]
    assert served_record["model"]["details"]["completion_tokens"] > 0
