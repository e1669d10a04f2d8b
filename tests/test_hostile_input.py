"""Hostile input through the real CLI: each case gives one clear error (exit 2), no traceback and no record.

(Annotation-format cases per task — truncated lines, missing fields, empty files, path escapes — are covered for every task
in test_task_contract.py; model-folder cases in test_backend.py. This file drives the whole command.)
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mvleval.util.errors import MvlevalError
from tests.helpers import assert_user_error, invoke, run_cli, run_records


@pytest.fixture()
def demo(tmp_path: Path) -> tuple[Path, Path]:
    from mvleval.demo.command import build_demo_data

    return build_demo_data(tmp_path / "demo", n_train=0, n_test=3)


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    # in-process, answered as the console script answers (tests/test_cli_inprocess.py)
    return run_cli(*args, env={"COLUMNS": "250"})


def _run(model: Path, demo: tuple[Path, Path], out: Path, *extra: object) -> subprocess.CompletedProcess[str]:
    data_root, image_root = demo
    return _cli(
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
        "en",
        "--out",
        out,
        *extra,
    )


def _no_record(out: Path) -> bool:
    return not run_records(out) and not list(out.glob("*.samples.jsonl"))


def _first_image(demo: tuple[Path, Path]) -> Path:
    data_root, image_root = demo
    questions = json.loads((data_root / "xgqa/data/few_shot/en/test.json").read_text())
    image_id = sorted(questions.values(), key=lambda q: q["imageId"])[0]["imageId"]
    return image_root / "gqa" / f"{image_id}.jpg"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(b""), "empty (0 bytes)"),
        (lambda p: p.write_bytes(p.read_bytes()[:200]), "corrupt or truncated"),
        (lambda p: p.write_bytes(b"this is not a jpeg at all"), "not an image"),
    ],
    ids=["zero-byte", "truncated-jpeg", "not-an-image"],
)
def test_bad_images_stop_the_run_with_their_path(
    damage, message: str, tmp_path: Path, demo: tuple[Path, Path], tiny_mt5_dir: Path
) -> None:
    image = _first_image(demo)
    damage(image)
    out = tmp_path / "runs"
    result = _run(tiny_mt5_dir, demo, out)
    assert_user_error(result, str(image), message)
    assert _no_record(out)


def test_decompression_bomb_is_refused(tmp_path: Path, demo: tuple[Path, Path], tiny_mt5_dir: Path) -> None:
    from PIL import Image

    image = _first_image(demo)
    # 12000 x 12000 = 144 Mpx, past Pillow's 89 Mpx limit: a tiny PNG that would decode to ~430 MB
    Image.new("1", (12000, 12000)).save(image, format="PNG")
    out = tmp_path / "runs"
    result = _run(tiny_mt5_dir, demo, out)
    assert_user_error(result, str(image), "too large to decode safely")
    assert _no_record(out)


def test_pickle_weights_need_the_opt_in(tmp_path: Path, demo: tuple[Path, Path], tiny_mt5_dir: Path) -> None:
    import torch
    from safetensors.torch import load_file

    model = tmp_path / "pickled"
    shutil.copytree(tiny_mt5_dir, model)
    for st in model.glob("*.safetensors"):
        torch.save(load_file(st), model / "pytorch_model.bin")
        st.unlink()
    out = tmp_path / "runs"
    assert_user_error(_run(model, demo, out), "--allow-pickle")
    assert _no_record(out)


def test_not_a_vision_llm_checkpoint(tmp_path: Path, demo: tuple[Path, Path]) -> None:
    model = tmp_path / "bert"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    out = tmp_path / "runs"
    assert_user_error(_run(model, demo, out), str(model), "model_type 'bert'", "vision-LLM")
    assert _no_record(out)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_unwritable_output_folder_non_root(tmp_path: Path, demo: tuple[Path, Path], tiny_mt5_dir: Path) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    assert_user_error(_run(tiny_mt5_dir, demo, out / "runs"), "not writable")


def test_output_path_that_is_a_file(tmp_path: Path, demo: tuple[Path, Path], tiny_mt5_dir: Path) -> None:
    # works as root too: a regular file where the output folder should be
    blocker = tmp_path / "out-is-a-file"
    blocker.write_text("")
    assert_user_error(_run(tiny_mt5_dir, demo, blocker), "not writable", str(blocker))


def test_disk_full_while_writing_the_record_leaves_no_half_result(
    tmp_path: Path, demo: tuple[Path, Path], tiny_mt5_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC on the record's write: a clear error, no record, no samples file; the partial file survives for --resume."""
    import mvleval.record.schema as record_module

    real_fsync = os.fsync
    calls = {"n": 0}

    def full_disk_on_record(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        # the run record in --out only (not the weight-digest cache, also written atomically as JSON)
        in_out = name.startswith(str(out.resolve()))
        if (
            in_out
            and ".json." in name
            and name.endswith(".tmp")
            and ".samples.jsonl" not in name
            and ".manifest.json" not in name
        ):
            calls["n"] += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    out = tmp_path / "runs"
    monkeypatch.setattr(record_module.os, "fsync", full_disk_on_record)
    data_root, image_root = demo
    with pytest.raises(MvlevalError, match="No space left on device"):
        invoke(
            "run",
            "--task",
            "xgqa",
            "--model",
            tiny_mt5_dir,
            "--data-root",
            data_root,
            "--image-root",
            image_root,
            "--lang",
            "en",
            "--out",
            out,
        )
    assert calls["n"] == 1
    assert _no_record(out)
    assert not list(out.glob(".*.tmp"))  # the temp file is cleaned up
    assert list(out.glob("*.partial.jsonl"))  # nothing generated is lost: --resume can finish the run
    monkeypatch.setattr(record_module.os, "fsync", real_fsync)
    resumed = invoke(
        "run",
        "--task",
        "xgqa",
        "--model",
        tiny_mt5_dir,
        "--data-root",
        data_root,
        "--image-root",
        image_root,
        "--lang",
        "en",
        "--out",
        out,
        "--resume",
    )
    assert resumed.exit_code == 0
    assert not _no_record(out)


def test_resume_against_a_different_model_is_refused(
    tmp_path: Path, demo: tuple[Path, Path], tiny_mt5_dir: Path, tiny_bloom_dir: Path
) -> None:
    out = tmp_path / "runs"
    data_root, image_root = demo
    # leave an interrupted mt5 run behind: a partial file + manifest, as a kill would
    from mvleval.run.files import RunPaths
    from mvleval.run.plan import RunOptions, prepare, run_identity, run_name

    options = RunOptions(
        task="xgqa", model=str(tiny_mt5_dir), data_root=data_root, image_root=image_root, languages=("en",), out_dir=out
    )
    identity = run_identity(options, prepare(options))
    paths = RunPaths.for_name(out, run_name(options, identity))
    out.mkdir()
    paths.manifest.write_text(json.dumps({"identity": identity, "name": "x"}))
    paths.partial.write_text("")
    result = _run(tiny_bloom_dir, demo, out, "--resume")
    assert_user_error(result, "cannot resume", "model:", str(tiny_mt5_dir.resolve()), str(tiny_bloom_dir.resolve()))
