"""`mvleval run` through the console script with non-BLIP families (the generic backend): every task with one model load,
batch-size-invariant per-sample files, prompt styles kept apart by the gate, clear errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("torch")

from mvleval.benchmarks.registry import load_task, task_names
from tests.helpers import run_cli

DEMO_LANGS = ("en", "id", "zh")  # each demo task has data for the ones it knows of these


def _mvleval(*args: object) -> subprocess.CompletedProcess[str]:
    # in-process, answered as the console script answers (tests/test_cli_inprocess.py)
    return run_cli(*args)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from mvleval.demo.command import build_demo_data

    return build_demo_data(tmp_path_factory.mktemp("hf-demo"), n_train=0, n_test=6)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mvleval.testing.tiny_vlm import build_tiny_vlm

    root = tmp_path_factory.mktemp("hf-models")
    for family in ("llava", "paligemma", "instructblip", "qwen2_5_vl"):
        build_tiny_vlm(family, root / family)
    return root


def _records(out: Path) -> dict[str, dict]:
    found = {}
    for path in out.glob("*.json"):
        if not path.name.endswith(".manifest.json"):
            record = json.loads(path.read_text())
            found[record["task"]["name"]] = record
    return found


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llava", "paligemma"])
def test_every_task_in_one_invocation(family: str, demo: tuple[Path, Path], models: Path, tmp_path: Path) -> None:
    data_root, image_root = demo
    out = tmp_path / "runs"
    langs = [x for lang in DEMO_LANGS for x in ("--lang", lang)]
    r = _mvleval(
        "run",
        "--task",
        "all",
        "--model",
        models / family,
        "--data-root",
        data_root,
        "--image-root",
        image_root,
        *langs,
        "--out",
        out,
        "--batch-size",
        "auto",
        "--max-new-tokens",
        "4",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "Warning" not in r.stdout + r.stderr
    records = _records(out)
    # every task that has one of the languages (CVQA's codes name country-language pairs: "id-ID", not "id")
    assert set(records) == {t for t in task_names() if set(DEMO_LANGS) & set(load_task(t).languages)}
    for record in records.values():
        model = record["model"]
        assert record["schema_version"] == 2
        assert (model["backend"], model["family"]) == ("hf", family)
        task_beams = load_task(record["task"]["name"]).generation.num_beams  # 5 for mBLIP's six, greedy for the rest
        assert model["generation"]["max_new_tokens"] == 4 and model["generation"]["num_beams"] == task_beams
        assert (model["chat_template_sha"] is None) == (family == "paligemma")
        assert record["task"]["prompt_style"] == "mblip"
        rows = [json.loads(line) for line in (out / record["samples_file"]).read_text().splitlines()]
        assert len(rows) == sum(record["task"]["n_examples"].values()) > 0
        assert all(isinstance(row["prediction"], str) for row in rows)
        for metric in record["scores"].values():
            assert set(metric["per_lang"]) == set(record["task"]["languages"])
    assert set(records["marvl"]["task"]["languages"]) == {"id", "zh"}  # each task takes the given languages it has


@pytest.mark.slow
def test_batch_size_does_not_change_predictions(demo: tuple[Path, Path], models: Path, tmp_path: Path) -> None:
    data_root, image_root = demo
    samples = []
    for size in ("1", "7"):
        out = tmp_path / f"b{size}"
        r = _mvleval(
            "run",
            "--task",
            "xgqa",
            "--task",
            "marvl",
            "--model",
            models / "llava",
            "--data-root",
            data_root,
            "--image-root",
            image_root,
            "--lang",
            "zh",
            "--lang",
            "id",
            "--out",
            out,
            "--batch-size",
            size,
            "--cache",
            "off",
        )  # every batch size generates (the cache would answer the second from the first)
        assert r.returncode == 0, r.stdout + r.stderr
        records = _records(out)
        samples.append({t: (out / rec["samples_file"]).read_bytes() for t, rec in records.items()})
    assert samples[0] == samples[1]
    assert len({json.loads(line)["prediction"] for line in samples[0]["xgqa"].decode().splitlines()}) >= 3


@pytest.mark.slow
def test_prompt_styles_are_recorded_and_not_comparable(demo: tuple[Path, Path], models: Path, tmp_path: Path) -> None:
    data_root, image_root = demo
    paths = {}
    for style in ("mblip", "chat"):
        out = tmp_path / style
        r = _mvleval(
            "run",
            "--task",
            "xvnli",
            "--model",
            models / "llava",
            "--data-root",
            data_root,
            "--image-root",
            image_root,
            "--lang",
            "en",
            "--out",
            out,
            "--num-beams",
            "1",
            "--prompt-style",
            style,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        [paths[style]] = [p for p in out.glob("*.json")]
    chat = json.loads(paths["chat"].read_text())
    assert chat["task"]["prompt_style"] == "chat"
    rows = [json.loads(line) for line in (paths["chat"].parent / chat["samples_file"]).read_text().splitlines()]
    assert all(row["prompt"].endswith("Answer in English with a single word: yes, no, or maybe.") for row in rows)
    gated = _mvleval("gate", paths["chat"], "--baseline", paths["mblip"])
    assert gated.returncode == 2 and "protocol hash" in gated.stdout + gated.stderr


@pytest.mark.slow
def test_one_image_family_and_two_image_task(demo: tuple[Path, Path], models: Path, tmp_path: Path) -> None:
    data_root, image_root = demo
    args = [
        "run",
        "--task",
        "marvl",
        "--model",
        models / "instructblip",
        "--data-root",
        data_root,
        "--image-root",
        image_root,
        "--lang",
        "id",
        "--num-beams",
        "1",
    ]
    refused = _mvleval(*args, "--out", tmp_path / "a")
    assert refused.returncode == 2 and "--image-handling side-by-side" in " ".join(refused.stderr.split())
    assert not list((tmp_path / "a").glob("*")), "a refused run leaves nothing behind"
    pasted = _mvleval(*args, "--out", tmp_path / "b", "--image-handling", "side-by-side")
    assert pasted.returncode == 0, pasted.stdout + pasted.stderr
    record = _records(tmp_path / "b")["marvl"]
    assert record["model"]["image_handling"] == "side-by-side"


def test_family_needing_torchvision_names_the_install(demo: tuple[Path, Path], models: Path, tmp_path: Path) -> None:
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        pytest.skip("torchvision is installed here")
    data_root, image_root = demo
    r = _mvleval(
        "run",
        "--task",
        "xgqa",
        "--model",
        models / "qwen2_5_vl",
        "--data-root",
        data_root,
        "--image-root",
        image_root,
        "--lang",
        "en",
        "--out",
        tmp_path / "runs",
    )
    text = " ".join(r.stderr.split())
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "torchvision" in text and "pip install torchvision" in text


def test_unknown_backend_and_prompt_style(demo: tuple[Path, Path], models: Path, tmp_path: Path) -> None:
    data_root, image_root = demo
    base = [
        "run",
        "--task",
        "xgqa",
        "--model",
        models / "llava",
        "--data-root",
        data_root,
        "--lang",
        "en",
        "--out",
        tmp_path,
    ]
    r = _mvleval(*base, "--backend", "hff")
    assert r.returncode == 2 and "Did you mean 'hf'" in r.stderr
    r = _mvleval(*base, "--prompt-style", "chatt")
    assert r.returncode == 2 and "Did you mean 'chat'" in r.stderr
    r = _mvleval(*base, "--backend", "mblip")
    assert r.returncode == 2 and "BLIP-2" in " ".join(r.stderr.split())
