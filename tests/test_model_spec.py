"""The model spec of `mvleval run`: -M KEY=VALUE options validated by the backend that owns them (unknown and misplaced
keys refused, naming that backend's keys), the old family flags as aliases (one note line, the same run), the spec in
the record only where options were given, and `--config run.yaml` (flags override it; bad keys named with file:line).
Run in-process through `mvleval.cli.main` against a chat-completions server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ChatHandler, cli

MODEL = "spec-vlm"
SECRET = "sk-spec-never-store-me"


class _Handler(ChatHandler):
    served_model = MODEL

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = hashlib.sha256(json.dumps(body["messages"], sort_keys=True).encode()).hexdigest()[:8]
        self._send(
            200,
            {
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": key}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1},
            },
        )


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mvleval.demo.command import build_demo_data

    return build_demo_data(tmp_path_factory.mktemp("spec-demo"), n_train=0, n_test=4)[0]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def _run(capsys: Any, data: Path, out: Path, *args: object) -> tuple[int, str, str]:
    base = ["run", "--task", "xgqa", "--lang", "en", "--data-root", data, "--out", out, "--cache", "off"]
    return cli(capsys, *base, *args)


def _record(out: Path) -> tuple[Path, dict[str, Any]]:
    (path,) = [p for p in out.glob("*.json") if not p.name.endswith(".manifest.json")]
    return path, json.loads(path.read_text())


def _samples(out: Path) -> bytes:
    path, record = _record(out)
    return (path.parent / record["samples_file"]).read_bytes()


def _one_paragraph_error(code: int, err: str, out: Path) -> str:
    assert code == 2 and "Traceback" not in err and err.startswith("error:"), err
    assert not out.exists()  # refused before anything was written
    return " ".join(err.split())


# -- refusals ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "options", "needles"),
    [
        (
            f"openai:{MODEL}",
            ["-M", "max_concurency=4"],
            [
                "-M max_concurency is not an option of the openai backend",
                "its options: api_key_env, base_url, max_concurrency, max_image_side, max_retries, server_extensions, "
                "timeout",
                "did you mean max_concurrency?",
            ],
        ),
        (
            f"openai:{MODEL}",
            ["-M", "trust_remote_code=true"],
            ["trust_remote_code belongs to the hf backend", "only apply to a model loaded here"],
        ),
        (
            "some/local-checkpoint",  # decided from the names alone: no checkpoint is read for it
            ["-M", "base_url=http://127.0.0.1:9/v1"],
            ["-M base_url is not an option of the hf backend", "apply to served models only", "image_handling"],
        ),
        (f"openai:{MODEL}", ["-M", "max_retries=lots"], ["-M max_retries=lots: Input should be a valid integer"]),
        (f"openai:{MODEL}", ["-M", "timeout=1", "-M", "timeout=2"], ["-M timeout is given 2 times (1, 2)"]),
        (f"openai:{MODEL}", ["-M", "timeout"], ["-M 'timeout' is not KEY=VALUE"]),
        (f"openai:{MODEL}", ["--timeout", "3", "-M", "timeout=4"], ["--timeout and -M timeout both give timeout"]),
    ],
    ids=["unknown", "local-key-on-served", "served-key-on-local", "bad-value", "twice", "no-value", "alias-and-M"],
)
def test_bad_model_options_are_refused_in_one_paragraph(
    capsys: Any, data: Path, tmp_path: Path, model: str, options: list[str], needles: list[str]
) -> None:
    code, _, err = _run(capsys, data, tmp_path / "out", "--model", model, *options)
    text = _one_paragraph_error(code, err, tmp_path / "out")
    for needle in needles:
        assert needle in text, text


# -- -M and the old flags: one run -------------------------------------------------------------------------------------
def test_options_and_old_flags_make_the_same_run_and_the_record_keeps_the_spec(
    capsys: Any, data: Path, tmp_path: Path, url: str
) -> None:
    with_secret = url.replace("http://", "http://user:pw@") + "?key=abc"
    code, _, err = _run(capsys, data, tmp_path / "m", "--model", f"openai:{MODEL}", "-M", f"base_url={with_secret}")
    assert code == 0, err
    assert "note:" not in err  # -M is the new way: no note
    code, _, alias_err = _run(
        capsys, data, tmp_path / "a", "--model", f"openai:{MODEL}", "--base-url", url, "--max-retries", "2"
    )
    assert code == 0, alias_err
    notes = [line for line in alias_err.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: --base-url, --max-retries: old flag(s), kept for one release; use -M base_url=URL, "
        "-M max_retries=N instead."
    ]
    # the same identity (run name) and answers either way; the record keeps the options without credentials
    (m_path, m_record), (a_path, a_record) = _record(tmp_path / "m"), _record(tmp_path / "a")
    assert m_path.name == a_path.name and _samples(tmp_path / "m") == _samples(tmp_path / "a")
    assert m_record["model"]["options"] == {"base_url": [url]}
    assert a_record["model"]["options"] == {"base_url": [url], "max_retries": 2}
    assert "user" not in m_path.read_text() and "key=abc" not in m_path.read_text()
    assert SECRET not in m_path.read_text()


def test_a_run_without_options_records_no_spec(capsys: Any, data: Path, tmp_path: Path, url: str) -> None:
    """The record of a run with neither -M nor an old flag is what it was before options existed (no `options`)."""
    import os

    os.environ["OPENAI_BASE_URL"] = url  # monkeypatch in _env restores it
    code, _, err = _run(capsys, data, tmp_path / "o", "--model", f"openai:{MODEL}")
    assert code == 0, err
    path, record = _record(tmp_path / "o")
    assert "options" not in record["model"] and '"options"' not in path.read_text()
    # options that do not change answers leave the run's identity (its name, what --resume matches) as it was
    code, _, err = _run(
        capsys, data, tmp_path / "m", "--model", f"openai:{MODEL}", "-M", f"base_url={url}", "-M", "timeout=9"
    )
    assert code == 0, err
    assert _record(tmp_path / "m")[0].name == path.name


# -- --config run.yaml -------------------------------------------------------------------------------------------------
def test_config_file_reads_the_same_fields_and_flags_override_it(
    capsys: Any, data: Path, tmp_path: Path, url: str
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        f"task: xgqa\nmodel: openai:{MODEL}\nlang: [de]\ndata_root: {data}\ncache: 'off'\n"
        f"options:\n  base_url: [{url}]\n  max_retries: 2\n",
        encoding="utf-8",
    )
    code, _, err = cli(capsys, "run", "--config", config, "--lang", "en", "--out", tmp_path / "c")
    assert code == 0, err
    code, _, err = _run(
        capsys, data, tmp_path / "f", "--model", f"openai:{MODEL}", "-M", f"base_url={url}", "-M", "max_retries=2"
    )
    assert code == 0, err
    (c_path, c_record), (f_path, _) = _record(tmp_path / "c"), _record(tmp_path / "f")
    assert c_record["task"]["languages"] == ["en"]  # the flag overrode the file's [de]
    assert c_path.name == f_path.name and _samples(tmp_path / "c") == _samples(tmp_path / "f")
    assert c_record["model"]["options"] == {"base_url": [url], "max_retries": 2}


def test_config_file_problems_are_named_with_file_and_line(capsys: Any, data: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        f"task: xgqa\nmodel: openai:{MODEL}\nbatch_szie: 4\nbits: many\ndata_root: {data}\ntask: marvl\n",
        encoding="utf-8",
    )
    code, _, err = cli(capsys, "run", "--config", config, "--out", tmp_path / "out")
    text = _one_paragraph_error(code, err, tmp_path / "out")
    assert f"{config}:3" in text and "batch_szie: unknown key" in text
    assert f"{config}:4" in text and "bits: Input should be a valid integer" in text
    assert f"{config}:6" in text and "task is given twice" in text
    assert "a model's own options go under `options:`" in text


def test_config_file_options_are_validated_by_the_backend(capsys: Any, data: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("options:\n  trust_remote_code: true\n", encoding="utf-8")
    code, _, err = cli(
        capsys, "run", "--config", config, "--task", "xgqa", "--model", f"openai:{MODEL}", "--data-root", data,
        "--out", tmp_path / "out",
    )  # fmt: skip
    text = _one_paragraph_error(code, err, tmp_path / "out")
    assert f"{config}:2 is not an option of the openai backend" in text


@pytest.mark.parametrize("task", ["marvl", "xflickrco", "xgqa", "xm3600", "xvnli"])
def test_committed_baselines_read_and_write_back_byte_for_byte(task: str) -> None:
    """A record made before model options existed (the demo baselines) is written back unchanged: no `options`."""
    from mvleval.record.schema import read_record, record_json

    path = Path(__file__).resolve().parent.parent / "results" / "baselines" / task / "demo.json"
    assert record_json(read_record(path)) == path.read_text(encoding="utf-8")


def test_console_script_refuses_an_unknown_option_with_exit_2(data: Path, tmp_path: Path) -> None:
    from tests.helpers import assert_user_error, console_script

    out = tmp_path / "out"
    result = console_script(
        "run", "--task", "xgqa", "--model", f"openai:{MODEL}", "-M", "image_handling=side-by-side",
        "--data-root", data, "--out", out,
    )  # fmt: skip
    assert_user_error(result, "-M image_handling is not an option of the openai backend", "belongs to the hf backend")
    assert not out.exists()
