"""A model fine-tuned and exported by mvleval, served by a real `transformers serve` on two replicas and evaluated through
them (issues #27 and #28): `mvleval train` -> `mvleval export` -> two `transformers serve` processes of the merged
folder -> `mvleval run -M base_url=... -M base_url=...` answers as `mvleval run --model MERGED` does in-process, every
replica answers, and the record counts each replica's answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from mvleval.testing.squares import write_squares_benchmark
from mvleval.testing.tiny_vlm import build_tiny_vlm
from tests.helpers import TransformersServe, cli, read_jsonl, run_records


def _answers(out: Path) -> tuple[dict[str, object], dict[tuple[str, str], str]]:
    [path] = run_records(out)
    record = json.loads(path.read_text())
    return record, {(r["lang"], r["id"]): r["prediction"] for r in read_jsonl(out / record["samples_file"])}


@pytest.mark.slow
def test_an_exported_fine_tune_served_on_two_replicas_answers_as_in_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    squares = write_squares_benchmark(tmp_path / "squares", n_train=8, n_test=6)
    base = build_tiny_vlm("llava_next", tmp_path / "llava_next")
    code, out, err = cli(
        capsys, "train", "--model", base, "--task", squares, "--split", "train", "--out", tmp_path / "ft",
        "--max-steps", "3", "--batch-size", "4", "--set", "lr_lora=1e-2",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = cli(capsys, "export", tmp_path / "ft", "--out", tmp_path / "merged", "--bits", "32")
    assert code == 0, err
    servers = [TransformersServe(tmp_path / "merged", tmp_path / f"serve{i}") for i in range(2)]
    try:
        for server in servers:
            server.wait()
        monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
        code, out, err = cli(
            capsys, "run", "--task", squares, "--model", f"openai:{tmp_path / 'merged'}",
            "-M", f"base_url={servers[0].url}", "-M", f"base_url={servers[1].url}", "-M", "max_concurrency=2",
            "--out", tmp_path / "served", "--cache", "off", "--num-beams", "1",
        )  # fmt: skip
        assert code == 0, err
    finally:
        for server in servers:
            server.stop()
    code, out, err = cli(
        capsys, "run", "--task", squares, "--model", tmp_path / "merged", "--out", tmp_path / "local",
        "--cache", "off", "--num-beams", "1",
    )  # fmt: skip
    assert code == 0, err
    served_record, served = _answers(tmp_path / "served")
    _, local = _answers(tmp_path / "local")
    assert served == local and len(served) == 18  # 6 held-apart squares in each of 3 languages
    replicas = served_record["model"]["details"]["replicas"]  # type: ignore[index]
    assert [r["url"] for r in replicas] == [s.url for s in servers]
    assert all(r["answers"] > 0 for r in replicas) and sum(r["answers"] for r in replicas) == len(served), replicas
