"""The response cache for models run on this machine (mvleval/backends/local_cache.py), through `mvleval.cli.main()`:
a second run of a finished task generates nothing and gives the same predictions and record apart from the cache marks
and counts; the key covers the weights' content (not their folder), the adapter, the precision and the generation
settings; --cache off generates; --cache read stores nothing; `mvleval cache info/clear` see local models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from tests.helpers import cli, tiny_model

XGQA = ["--task", "xgqa", "--split", "test", "--lang", "de", "--lang", "zh", "--limit", "4"]  # 8 examples
GENERATE = ["--num-beams", "1", "--max-new-tokens", "3"]
N = 8


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from mvleval.demo.command import build_demo_data

    return build_demo_data(tmp_path_factory.mktemp("demo"), n_train=0, n_test=6)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model("vlm", "llava")  # built once per test session (tests/helpers.py); copied before a change


def run(capsys: Any, data: tuple[Path, Path], model: Path, out: Path, *extra: object) -> tuple[int, str, str]:
    return cli(capsys, "run", *XGQA, "--model", model, "--data-root", data[0], "--out", out, *GENERATE, *extra)


def record_of(out: Path) -> dict[str, Any]:
    records = [p for p in out.glob("*.json") if not p.name.endswith(".manifest.json")]
    assert len(records) == 1, records
    return json.loads(records[0].read_text())


def rows_of(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / record_of(out)["samples_file"]).read_text().splitlines()]


def cache_counts(out: Path) -> dict[str, Any]:
    return record_of(out)["model"]["details"]["cache"]


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A record without what may differ between two runs of the same settings: when and how long, the batch size, the
    cache counts and the digest of the per-sample file (its rows carry the cache marks)."""
    record = json.loads(json.dumps(record))
    for key in ("created_at", "duration_s", "samples_sha256"):
        record.pop(key)
    record["provenance"].pop("batch_size")
    record["model"]["details"].pop("cache", None)
    return record


def test_second_run_generates_nothing_and_gives_the_same_record(
    capsys: Any, demo_data: tuple[Path, Path], model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, demo_data, model, tmp_path / "first", "--batch-size", "4")
    assert code == 0, err
    assert cache_counts(tmp_path / "first") == {
        "mode": "read-write",
        "answers_from_cache": 0,
        "answers_generated": N,
        "answers_stored": N,
    }
    assert not any("cached" in row for row in rows_of(tmp_path / "first"))

    from mvleval.backends.hf_vlm import HfVlmBackend

    def no_generation(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the second run generated")

    monkeypatch.setattr(HfVlmBackend, "generate_ids", no_generation)
    # another batch size: answers do not depend on the batch, so they are cached per example
    code, _, err = run(capsys, demo_data, model, tmp_path / "second", "--batch-size", "3")
    assert code == 0, err
    assert cache_counts(tmp_path / "second") == {
        "mode": "read-write",
        "answers_from_cache": N,
        "answers_generated": 0,
        "answers_stored": 0,
    }
    first, second = rows_of(tmp_path / "first"), rows_of(tmp_path / "second")
    assert all(row.pop("cached") is True for row in second) and len(second) == N
    assert second == first
    assert comparable(record_of(tmp_path / "second")) == comparable(record_of(tmp_path / "first"))

    # the same weights in another folder: content-addressed, still answered from the cache
    copy = tmp_path / "copy"
    shutil.copytree(model, copy)
    assert run(capsys, demo_data, copy, tmp_path / "copied")[0] == 0
    assert cache_counts(tmp_path / "copied")["answers_from_cache"] == N

    # `mvleval cache info` lists the model by the name it was run under; `clear --model` removes its answers
    code, out, _ = cli(capsys, "cache", "info")
    assert code == 0 and str(model) in out.replace("\n", "")
    code, out, _ = cli(capsys, "cache", "clear", "--model", str(model))
    assert code == 0 and f"removed {N} cached answer(s)" in out


def test_what_changes_an_answer_misses(capsys: Any, demo_data: tuple[Path, Path], model: Path, tmp_path: Path) -> None:
    assert run(capsys, demo_data, model, tmp_path / "base")[0] == 0
    assert cache_counts(tmp_path / "base")["answers_stored"] == N

    # another generation setting, another precision
    assert run(capsys, demo_data, model, tmp_path / "tokens", "--max-new-tokens", "4")[0] == 0
    assert cache_counts(tmp_path / "tokens")["answers_from_cache"] == 0
    assert run(capsys, demo_data, model, tmp_path / "bits", "--bits", "16")[0] == 0
    assert cache_counts(tmp_path / "bits")["answers_from_cache"] == 0

    # an adapter
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)", init_lora_weights=False
    )
    adapter = tmp_path / "lora"
    get_peft_model(AutoModelForImageTextToText.from_pretrained(model), config).save_pretrained(adapter)
    assert run(capsys, demo_data, model, tmp_path / "adapter", "--adapter", adapter)[0] == 0
    assert cache_counts(tmp_path / "adapter")["answers_from_cache"] == 0

    # a copy of the checkpoint with one weight changed: the content, not the path, is the key
    changed = tmp_path / "changed"
    shutil.copytree(model, changed)
    from safetensors.torch import load_file, save_file

    weights = changed / "model.safetensors"
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1e-3
    save_file(tensors, weights, metadata={"format": "pt"})
    assert run(capsys, demo_data, changed, tmp_path / "weights")[0] == 0
    assert cache_counts(tmp_path / "weights")["answers_from_cache"] == 0

    # and the unchanged model still finds every answer of its first run
    assert run(capsys, demo_data, model, tmp_path / "again")[0] == 0
    assert cache_counts(tmp_path / "again")["answers_from_cache"] == N


def test_cache_off_generates_and_read_stores_nothing(
    capsys: Any, demo_data: tuple[Path, Path], model: Path, tmp_path: Path
) -> None:
    from mvleval.run.cache import ResponseCache

    # read on an empty cache: generates, stores nothing (not even the file)
    assert run(capsys, demo_data, model, tmp_path / "read-empty", "--cache", "read")[0] == 0
    assert cache_counts(tmp_path / "read-empty") == {
        "mode": "read",
        "answers_from_cache": 0,
        "answers_generated": N,
        "answers_stored": 0,
    }
    assert ResponseCache("read").info().entries == 0
    assert run(capsys, demo_data, model, tmp_path / "rw")[0] == 0
    assert ResponseCache("read").info().entries == N
    # read after a read-write run: everything from the cache
    assert run(capsys, demo_data, model, tmp_path / "read", "--cache", "read")[0] == 0
    assert cache_counts(tmp_path / "read")["answers_from_cache"] == N
    # off: generates, and its record is a record without any cache (no counts, no marks)
    assert run(capsys, demo_data, model, tmp_path / "off", "--cache", "off")[0] == 0
    off = record_of(tmp_path / "off")
    assert "cache" not in off["model"]["details"]
    assert not any("cached" in row for row in rows_of(tmp_path / "off"))
    assert comparable(off) == comparable(record_of(tmp_path / "rw"))


def test_mblip_backend_answers_a_second_run_from_the_cache(
    capsys: Any, demo_data: tuple[Path, Path], tiny_mt5_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(capsys, demo_data, tiny_mt5_dir, tmp_path / "first")[0] == 0
    assert cache_counts(tmp_path / "first")["answers_generated"] == N
    from mvleval.backends.mblip import MBlipBackend

    def no_generation(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the second run generated")

    monkeypatch.setattr(MBlipBackend, "generate_ids", no_generation)
    assert run(capsys, demo_data, tiny_mt5_dir, tmp_path / "second")[0] == 0
    assert cache_counts(tmp_path / "second")["answers_from_cache"] == N
    second = rows_of(tmp_path / "second")
    assert all(row.pop("cached") is True for row in second) and second == rows_of(tmp_path / "first")
    assert comparable(record_of(tmp_path / "second")) == comparable(record_of(tmp_path / "first"))
