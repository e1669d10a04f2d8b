"""Language fidelity's lingua rankings made ahead by a worker process while the model generates
(mvleval/run/rank_ahead.py): the run's own scoring then loads none of lingua's models, and writes the same bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mvleval.metrics import language_fidelity
from mvleval.run import rank_ahead
from tests.helpers import cli

# the originals, wrapped afresh by each run below (a wrapper of a wrapper would count one run's calls twice)
REAL_LOAD = language_fidelity._load_models
REAL_FINISH = rank_ahead.RankAhead.finish


def _run(
    capsys: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model: Path, name: str, start_after: float
) -> dict[str, Any]:
    """`mvleval run --task xgqa` through the console script's entry point, with an empty cache of lingua's rankings;
    what the run's own process loaded of lingua's models, and what its worker did."""
    from mvleval.demo.command import build_demo_data

    data_root, image_root = build_demo_data(tmp_path / "demo", n_train=0, n_test=6)
    monkeypatch.setenv("MVLEVAL_CACHE_DIR", str(tmp_path / f"cache-{name}"))  # nothing ranked yet
    monkeypatch.setattr(rank_ahead, "START_AFTER_S", start_after)
    monkeypatch.setattr(rank_ahead, "spare_core", lambda device: True)  # a machine of one core too (tested below)
    loads: list[str] = []  # texts whose ranking the run's own process had to make (a miss in the cache)
    monkeypatch.setattr(
        language_fidelity, "_load_models", lambda names, text: (loads.append(text), REAL_LOAD(names, text))
    )
    workers: list[rank_ahead.RankAhead] = []

    def finish(self: rank_ahead.RankAhead) -> None:
        workers.append(self)
        REAL_FINISH(self)

    monkeypatch.setattr(rank_ahead.RankAhead, "finish", finish)
    out = tmp_path / f"runs-{name}"
    code, stdout, stderr = cli(
        capsys,
        "run",
        "--task",
        "xgqa",
        "--model",
        model,
        "--data-root",
        data_root,
        "--image-root",
        image_root,
        "--lang",
        "de",
        "--lang",
        "en",
        "--out",
        out,
        "--batch-size",
        "2",
        "--cache",
        "off",
    )
    assert code == 0, stdout + stderr
    assert "Traceback" not in stderr and "lingua" not in stderr  # the worker says nothing on the terminal
    [record_path] = list(out.glob("*-*.json"))
    record = json.loads(record_path.read_text(encoding="utf-8"))
    return {
        "loads": loads,
        "workers": workers,
        "scores": record["scores"],
        "samples": (out / record["samples_file"]).read_bytes(),
    }


def test_the_worker_ranks_every_answer_during_generation_and_scores_stay_byte_identical(
    capsys: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_bloom_dir: Path
) -> None:
    ahead = _run(capsys, monkeypatch, tmp_path, tiny_bloom_dir, "ahead", start_after=0.0)
    alone = _run(capsys, monkeypatch, tmp_path, tiny_bloom_dir, "alone", start_after=float("inf"))
    # without the worker the run's own scoring ranks the answers (lingua's models loaded in the run's process) ...
    assert alone["loads"], "the tiny model's answers need no ranking: the test would prove nothing"
    [idle] = alone["workers"]
    assert not idle.worker_started and idle.texts_sent == 0
    # ... with it, every ranking scoring needs is in the cache when scoring starts: the run's process loads nothing
    [worker] = ahead["workers"]
    assert worker.worker_started and worker.worker_returncode == 0
    assert worker.texts_sent >= len(set(alone["loads"]))
    assert ahead["loads"] == []
    # and nothing written differs: per-sample rows (verdicts, detected languages) and scores, byte for byte
    assert ahead["samples"] == alone["samples"]
    assert ahead["scores"] == alone["scores"]
    assert "language_fidelity" in ahead["scores"]


def test_a_worker_only_where_generation_leaves_a_cpu_free(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU or a served model leaves the CPU to the worker; a model on this CPU only when torch runs on fewer threads
    than there are cores (otherwise the worker would take turns with torch's threads, which wait for each other)."""
    import torch

    assert rank_ahead.spare_core("cuda:0") and rank_ahead.spare_core("endpoint http://127.0.0.1:8000/v1")
    monkeypatch.setattr(rank_ahead.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        assert not rank_ahead.spare_core("cpu")
        torch.set_num_threads(3)
        assert rank_ahead.spare_core("cpu")
    finally:
        torch.set_num_threads(threads)
