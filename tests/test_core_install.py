"""The core install (`pip install mvleval`, no extra): a served model is evaluated, scored, reported, ranked, blessed
and gated with no torch, transformers, peft or bitsandbytes on the machine, and every command that runs a model here
(`run --model ./ckpt`, `train`, `export`, `demo`) says in one line which extra to install, exit 2.

`.ci/run` runs this file in a fresh virtual environment that holds only `pip install .` (and pytest): there torch is
really absent and the installed `mvleval` console script is the one tested. In the full suite (the dev install, torch
present) every command runs in a subprocess whose imports of the hf extra's packages fail exactly as on a core
install (a sitecustomize module on PYTHONPATH refuses them), so the same checks hold, and fail, in both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ChatHandler, perfect_copy

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-core-install-test"
MODEL = "core-vlm"
#: the import names the hf extra installs and the core must do without (mvleval/util/extras.py HF_PACKAGES, minus the two
#: that other packages of a core machine may well bring along: huggingface_hub, psutil)
HF_ONLY = ("torch", "transformers", "accelerate", "peft", "bitsandbytes", "safetensors", "sentencepiece", "tokenizers")


def _torch_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


#: True in the core virtual environment of .ci/run: nothing is simulated there
REAL_CORE = not _torch_installed()

BLOCKER = f'''
"""Makes this interpreter a core install: the hf extra's packages cannot be imported (tests/test_core_install.py)."""
import sys

class _HfExtraAbsent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HF_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _HfExtraAbsent())
'''


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """How to run Python and the `mvleval` console script as on a core install: {"python", "mvleval", "env"}."""
    env = {**os.environ, "OPENAI_API_KEY": KEY, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("OPENAI_BASE_URL", None)
    bindir = Path(sys.executable).parent
    script = bindir / "mvleval" if (bindir / "mvleval").exists() else shutil.which("mvleval")
    assert script, "the mvleval console script is not installed (pip install .)"
    if REAL_CORE:
        env.pop("PYTHONPATH", None)  # the installed package, as a user has it, not this checkout
    else:
        blocker = tmp_path_factory.mktemp("core-site")
        (blocker / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
        env["PYTHONPATH"] = os.pathsep.join([str(blocker), str(REPO)])
    return {"python": sys.executable, "mvleval": str(script), "env": env}


def mvleval(core: dict[str, Any], cwd: Path, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [core["mvleval"], *map(str, args)],
        capture_output=True,
        text=True,
        env=core["env"],
        cwd=cwd,
        timeout=300,
        check=False,
    )


class _Server:
    """A local OpenAI-compatible chat-completions server (stdlib http.server on 127.0.0.1): captions for "Caption in"
    prompts, "yes" for questions; it counts the requests it answered."""

    def __init__(self) -> None:
        self.answered = 0
        self.lock = threading.Lock()
        server = self

        class Handler(ChatHandler):
            served_model = MODEL

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path.split("?")[0] != "/v1/chat/completions" or body.get("model") != MODEL:
                    return self._send(404, {"error": "not found"})
                if self.headers.get("Authorization") != f"Bearer {KEY}":
                    return self._send(401, {"error": "invalid key"})
                content = body["messages"][0]["content"]
                images = [part for part in content if part["type"] == "image_url"]
                assert images and all(part["image_url"]["url"].startswith("data:image/") for part in images)
                prompt = content[-1]["text"]
                answer = "a red square on a white background" if prompt.startswith("Caption in") else "yes"
                with server.lock:
                    server.answered += 1
                self._send(
                    200,
                    {
                        "id": "c",
                        "object": "chat.completion",
                        "model": MODEL,
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}
                        ],
                    },
                )

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's synthetic benchmark in the tasks' native formats (drawn with PIL: no model, no torch)."""
    from mvleval.demo.command import build_demo_data

    return build_demo_data(tmp_path_factory.mktemp("core-data"), n_train=0, n_test=6)[0]


def test_the_hf_extras_packages_cannot_be_imported(core: dict[str, Any], tmp_path: Path) -> None:
    for name in ("torch", "transformers", "peft", "bitsandbytes"):
        proc = subprocess.run(
            [core["python"], "-c", f"import {name}"],
            capture_output=True,
            text=True,
            env=core["env"],
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        assert proc.returncode != 0 and f"No module named '{name}'" in proc.stderr, (name, proc.stderr)


def test_help_tasks_and_data_check(core: dict[str, Any], data: Path, tmp_path: Path) -> None:
    proc = mvleval(core, tmp_path, "--help")
    assert proc.returncode == 0 and "leaderboard" in proc.stdout, proc.stderr
    proc = mvleval(core, tmp_path, "tasks")
    assert proc.returncode == 0 and "xgqa" in proc.stdout and "xflickrco" in proc.stdout, proc.stderr
    proc = mvleval(
        core, tmp_path, "data", "check", "--task", "xflickrco", "--data-root", data, "--lang", "de", "--lang", "zh"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # a problem in the data is still found and named (the check is a real one here, not a no-op)
    (data / "images" / "flickr30k").rename(data / "images" / "moved")
    try:
        proc = mvleval(core, tmp_path, "data", "check", "--task", "xflickrco", "--data-root", data, "--lang", "de")
    finally:
        (data / "images" / "moved").rename(data / "images" / "flickr30k")
    assert proc.returncode == 1 and "flickr30k" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_served_model_run_score_report_leaderboard_gate(
    core: dict[str, Any], server: _Server, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    proc = mvleval(
        core,
        tmp_path,
        "run",
        "--task",
        "xgqa",
        "--task",
        "xflickrco",
        "--lang",
        "de",
        "--lang",
        "zh",
        "--limit",
        "6",
        "--model",
        f"openai:{MODEL}",
        "-M",
        f"base_url={server.url}",
        "--data-root",
        data,
        "--out",
        out,
        "-M",
        "max_concurrency=4",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert server.answered == 2 * 2 * 6  # two tasks, two languages, six examples: every answer came from the server
    records = {
        json.loads(p.read_text())["task"]["name"]: p
        for p in out.glob("*.json")
        if not p.name.endswith(".manifest.json")
    }
    assert sorted(records) == ["xflickrco", "xgqa"]
    captions = json.loads(records["xflickrco"].read_text())
    assert {"cider", "bleu", "chrfpp", "language_fidelity"} <= set(captions["scores"])
    assert captions["provenance"]["device"].startswith("endpoint ")
    if REAL_CORE:
        assert captions["provenance"]["packages"].get("torch") is None  # the record says what this machine had

    for record in records.values():
        proc = mvleval(core, tmp_path, "score", record, "--data-root", data)
        assert proc.returncode == 0 and "Scores unchanged." in proc.stdout, proc.stdout + proc.stderr
        page = tmp_path / f"{record.stem}.html"
        proc = mvleval(core, tmp_path, "report", record, "--out", page)
        assert proc.returncode == 0 and page.stat().st_size > 10_000, proc.stdout + proc.stderr
        samples = record.parent / json.loads(record.read_text())["samples_file"]
        first = json.loads(samples.read_text(encoding="utf-8").splitlines()[0])
        assert first["prediction"] in ("yes", "a red square on a white background")
        assert json.dumps(first["id"]) in page.read_text(encoding="utf-8")  # the page holds the samples

    proc = mvleval(core, tmp_path, "leaderboard", out, "--out", tmp_path / "board")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    board = (tmp_path / "board" / "leaderboard.md").read_text(encoding="utf-8")
    assert MODEL in board and "xgqa" in board and "xflickrco" in board
    assert list((tmp_path / "board").glob("*.png")), "the leaderboard's heatmaps (matplotlib, a core dependency)"

    # the gate: the run passes against itself, and fails (exit 1) against a perfect baseline rescored here
    proc = mvleval(
        core,
        tmp_path,
        "baseline",
        "bless",
        records["xflickrco"],
        "--note",
        "core install",
        "--dir",
        tmp_path / "blessed",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [blessed] = (tmp_path / "blessed" / "xflickrco").glob("main.json")
    proc = mvleval(core, tmp_path, "gate", records["xflickrco"], "--baseline", blessed)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    perfect = perfect_copy(records["xflickrco"], tmp_path / "baseline")
    proc = mvleval(core, tmp_path, "score", perfect, "--data-root", data)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = mvleval(
        core, tmp_path, "gate", records["xflickrco"], "--baseline", perfect, "--report", tmp_path / "gate.md"
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "cider" in (tmp_path / "gate.md").read_text(encoding="utf-8")


LOCAL_MODEL_COMMANDS = {
    "run --model ./ckpt": ["run", "--task", "xgqa", "--model", "{ckpt}", "--data-root", "{data}", "--out", "{out}"],
    "train": [
        "train",
        "--model",
        "{ckpt}",
        "--task",
        "xgqa",
        "--split",
        "test",
        "--data-root",
        "{data}",
        "--out",
        "{out}",
    ],
    "export": ["export", "{ckpt}", "--out", "{out}"],
    "demo": ["demo", "--out", "{out}"],
}


@pytest.mark.parametrize("command", list(LOCAL_MODEL_COMMANDS))
def test_a_model_run_here_names_the_hf_extra_in_one_line(
    core: dict[str, Any], data: Path, tmp_path: Path, command: str
) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"model_type": "blip-2"}', encoding="utf-8")
    out = tmp_path / "out"
    args = [a.format(ckpt=ckpt, data=data, out=out) for a in LOCAL_MODEL_COMMANDS[command]]
    proc = mvleval(core, tmp_path, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert line.startswith("error: ") and 'pip install "mvleval[hf]"' in line and "torch" in line, line
    assert not out.exists(), "nothing is written"


def test_an_unforeseen_import_of_the_extra_is_the_same_one_line(core: dict[str, Any], tmp_path: Path) -> None:
    """The CLI's safety net: with the commands' own check switched off, the demo's first import of torch still ends
    in the one line naming the extra, exit 2, not a traceback."""
    code = (
        "import sys, mvleval.util.extras\n"
        "mvleval.util.extras.require_hf = lambda *args, **kwargs: None\n"
        "from mvleval.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    proc = subprocess.run(
        [core["python"], "-c", code, "demo", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        env=core["env"],
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith("error: mvleval demo needs") and 'pip install "mvleval[hf]"' in line, line
