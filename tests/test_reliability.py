"""Nothing lost, same answer every time: kill -9 + --resume, resume refusals, data-parallel runs, rescoring."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mvleval.record.schema import read_record
from tests.helpers import invoke


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from mvleval.demo.command import build_demo_data

    return build_demo_data(tmp_path_factory.mktemp("demo"), n_train=0, n_test=24)


def _comparable(record_path: Path) -> tuple[dict, bytes]:
    record = json.loads(record_path.read_text())
    samples = (record_path.parent / record["samples_file"]).read_bytes()
    for key in ("created_at", "duration_s"):
        record.pop(key)
    record["provenance"].pop("command")
    return record, samples


def _run_args(model: Path, data: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    data_root, image_root = data
    return [
        "run",
        "--task",
        "xgqa",
        "--model",
        str(model),
        "--data-root",
        str(data_root),
        "--image-root",
        str(image_root),
        "--lang",
        "en",
        "--lang",
        "zh",
        "--out",
        str(out),
        "--cache",
        "off",
        *extra,
    ]  # each run generates (a
    # reference run would otherwise answer the killed, resumed or data-parallel one from the response cache)


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_result(
    tmp_path: Path, tiny_mt5_dir: Path, demo_data: tuple[Path, Path]
) -> None:
    reference = tmp_path / "reference"
    assert invoke(*_run_args(tiny_mt5_dir, demo_data, reference, "--batch-size", "3")).exit_code == 0
    [ref_record] = list(reference.glob("*-*.json"))
    total = sum(read_record(ref_record).task.n_examples.values())

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "mvleval", *_run_args(tiny_mt5_dir, demo_data, out, "--batch-size", "1")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    done_before_kill = 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        partials = list(out.glob("*.partial.jsonl"))
        if partials:
            done_before_kill = partials[0].read_bytes().count(b"\n")
            if done_before_kill >= total // 3:
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < done_before_kill < total, "the run must be killed mid-way for this test to mean anything"
    assert not [p for p in out.glob("*-*.json") if not p.name.endswith("manifest.json")], (
        "a killed run must not leave a record"
    )

    resumed = invoke(*_run_args(tiny_mt5_dir, demo_data, out, "--batch-size", "3", "--resume"))
    assert resumed.exit_code == 0, resumed.output
    [record] = [p for p in out.glob("*-*.json")]
    assert _comparable(record) == _comparable(ref_record)


def test_rerun_without_resume_is_refused_and_resume_with_other_settings_is_refused(
    tmp_path: Path, tiny_mt5_dir: Path, demo_data: tuple[Path, Path]
) -> None:
    from mvleval.util.errors import MvlevalError

    out = tmp_path / "runs"
    result = invoke(*_run_args(tiny_mt5_dir, demo_data, out, "--limit", "4"))
    assert result.exit_code == 0
    [record_path] = list(out.glob("*-*.json"))
    name = record_path.name[: -len(".json")]
    # simulate an interrupted run of the same configuration: partial + manifest present
    identity_manifest = {"identity": {"task": "xgqa", "generation": {"num_beams": 5}}, "name": name}
    (out / f"{name}.manifest.json").write_text(json.dumps(identity_manifest))
    (out / f"{name}.partial.jsonl").write_text("")
    with pytest.raises(MvlevalError, match="pass --resume"):
        invoke(*_run_args(tiny_mt5_dir, demo_data, out, "--limit", "4"))
    (out / f"{name}.partial.jsonl").unlink()
    (out / f"{name}.manifest.json").unlink()
    # an interrupted run with 5 beams cannot be resumed with 3 beams: the message says what differs
    other = tmp_path / "other"
    other.mkdir()
    (other / "xgqa-test-x-0000000000.manifest.json").write_text(
        json.dumps(
            {
                "identity": {
                    "task": "xgqa",
                    "generation": {
                        "num_beams": 5,
                        "max_new_tokens": 10,
                        "min_new_tokens": 1,
                        "length_penalty": -1.0,
                        "do_sample": False,
                    },
                },
                "name": "x",
            }
        )
    )
    with pytest.raises(MvlevalError, match="generation"):
        invoke(*_run_args(tiny_mt5_dir, demo_data, other, "--limit", "4", "--num-beams", "3", "--resume"))


def test_score_recomputes_from_the_samples_file(
    tmp_path: Path, tiny_mt5_dir: Path, demo_data: tuple[Path, Path]
) -> None:
    out = tmp_path / "runs"
    assert invoke(*_run_args(tiny_mt5_dir, demo_data, out, "--limit", "6")).exit_code == 0
    [record_path] = list(out.glob("*-*.json"))
    before = read_record(record_path)
    samples = record_path.parent / before.samples_file
    # pretend the model had answered correctly everywhere: rescoring must see it without loading a model
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    for row in rows:
        row["prediction"] = row["references"][0].capitalize() + "."
    samples.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    result = invoke("score", str(record_path), "--data-root", str(demo_data[0]), "--image-root", str(demo_data[1]))
    assert result.exit_code == 0, result.output
    after = read_record(record_path)
    assert after.rescored_at is not None
    assert after.scores["exact_match"].per_lang == {"en": 1.0, "zh": 1.0}
    assert after.provenance == before.provenance


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_process_data_parallel_run_equals_single_process(
    tmp_path: Path, tiny_bloom_dir: Path, demo_data: tuple[Path, Path]
) -> None:
    single = tmp_path / "single"
    assert invoke(*_run_args(tiny_bloom_dir, demo_data, single, "--limit", "10", "--batch-size", "4")).exit_code == 0
    multi = tmp_path / "multi"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(_free_port()),  # not a fixed one: another pytest-xdist worker or session may run at the same time
        "-m",
        "mvleval",
        *_run_args(tiny_bloom_dir, demo_data, multi, "--limit", "10", "--batch-size", "4"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [single_record] = list(single.glob("*-*.json"))
    [multi_record] = list(multi.glob("*-*.json"))
    a, b = _comparable(single_record), _comparable(multi_record)
    assert a[1] == b[1]
    a[0]["provenance"].pop("hostname"), b[0]["provenance"].pop("hostname")
    assert a[0] == b[0]
    assert not list(multi.glob("*partial*"))
