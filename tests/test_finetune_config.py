"""Fine-tuning config: TOML/YAML + flags + --set, validated in one pass that reports every problem at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mvleval.finetune.config import TrainConfig, load_config, total_steps, warmup_steps
from mvleval.util.errors import MvlevalError

DATA = Path(__file__).parent / "data" / "finetune"


@pytest.fixture()
def base_dir(tmp_path: Path) -> Path:
    """A folder that passes the backend's checkpoint-folder checks (config validation never loads weights)."""
    folder = tmp_path / "base"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "blip-2"}), encoding="utf-8")
    for name in ("tokenizer.json", "processor_config.json"):
        (folder / name).write_text("{}", encoding="utf-8")
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(1, dtype=np.float32)}, str(folder / "model.safetensors"))  # a readable header
    return folder


def _mix_values(base_dir: Path, tmp_path: Path) -> dict[str, object]:
    return {
        "base_model": str(base_dir),
        "output_dir": tmp_path / "run",
        "train_file": DATA / "task_mix.json",
        "image_roots": [tmp_path],
    }


def test_defaults_are_mblips_recipe(base_dir: Path, tmp_path: Path) -> None:
    config = load_config(None, (), **_mix_values(base_dir, tmp_path))
    # gregor-ge/mBLIP configs + NOTES.md: r=8, alpha=16, dropout 0.05, lr 2e-4 LoRA / 1e-5 rest, wd 0.1, clip 1.0
    assert (config.lora_r, config.lora_alpha, config.lora_dropout) == (8, 16, 0.05)
    assert (config.lr_lora, config.lr_blip, config.weight_decay, config.max_grad_norm) == (2e-4, 1e-5, 0.1, 1.0)
    assert config.lora_targets == "all"
    assert config.train_qformer and config.train_query_tokens and config.train_projection
    assert config.output_dir.is_absolute() and config.train_file is not None and config.train_file.is_absolute()


def test_every_problem_is_reported_at_once(base_dir: Path, tmp_path: Path) -> None:
    values = _mix_values(base_dir, tmp_path)
    values["image_roots"] = [tmp_path, tmp_path / "missing_root"]
    overrides = [
        "lr_lora=-1",  # out of range
        "lora_rr=4",  # unknown key (typo)
        "bits=5",  # not a choice
        "batch_size=abc",  # wrong type
        "lora_targets=[q, 3]",  # wrong item type
        "adam_betas=[0.9, 1.5]",  # cross-check: range of each beta
        "warmup_steps=10",
        "max_steps=10",  # cross-check: warm-up eats the whole run
        "device=tpu",
    ]
    with pytest.raises(MvlevalError) as info:
        load_config(None, overrides, **values)
    message = info.value.render()
    expected = [
        "lr_lora (from --set lr_lora=...): Input should be greater than 0",
        "lora_rr (from --set lora_rr=...): unknown key. Did you mean 'lora_r'?",
        "bits (from --set bits=...): must be 4, 8, 16 or 32 (got 5)",
        "batch_size (from --set batch_size=...): Input should be a valid integer",
        "lora_targets (from --set lora_targets=...): must be 'all' or a list of module names",
        "adam_betas (from --set adam_betas=...): both betas must lie in [0, 1)",
        "warmup_steps (from --set warmup_steps=...): 10 warm-up steps leave no training in 10 steps",
        "device (from --set device=...): unknown device 'tpu'",
        "image_roots[1] (from --image-root): folder",
    ]
    for line in expected:
        assert line in message, (line, message)
    assert message.startswith(f"the training config has {len(expected)} problems:")
    assert message.count("\n  - ") == len(expected)  # each problem once (union errors collapsed to one line)


def test_data_source_problems(base_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(MvlevalError) as info:
        load_config(None, (), base_model=str(base_dir), output_dir=tmp_path / "run")
    assert "no training data" in info.value.render()
    with pytest.raises(MvlevalError) as info:
        load_config(None, ["split=train_1"], **_mix_values(base_dir, tmp_path), task="xgqa")
    message = info.value.render()
    assert "give either a task-mix file (--train-file) or a task (--task), not both" in message
    assert "split (from --set split=...): only applies with --task" in message
    with pytest.raises(MvlevalError) as info:
        load_config(
            None,
            (),
            base_model=str(tmp_path / "nope"),
            output_dir=tmp_path / "run",
            train_file=tmp_path / "absent.json",
        )
    message = info.value.render()
    assert "base_model (from --model): model folder not found." in message
    assert "train_file (from --train-file): file" in message
    assert "image_roots: a task-mix file needs at least one image folder" in message


def test_task_mode_refuses_the_evaluation_split_and_unknown_languages(base_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(MvlevalError) as info:
        load_config(
            None,
            (),
            base_model=str(base_dir),
            output_dir=tmp_path / "run",
            task="xgqa",
            split="test",
            languages=["de", "klingon"],
            data_root=tmp_path,
        )
    message = info.value.render()
    # xGQA is evaluated on its few-shot test split (tasks/xgqa.py default_split): training on it would leak
    assert "'test' is the split 'xgqa' is evaluated on" in message
    assert "task 'xgqa' has no language 'klingon'" in message
    with pytest.raises(MvlevalError) as info:
        load_config(None, (), base_model=str(base_dir), output_dir=tmp_path / "run", task="xgqa")
    message = info.value.render()
    assert "training on a task needs a split" in message and "needs --data-root" in message
    with pytest.raises(MvlevalError, match="unknown task 'xgq'. Did you mean 'xgqa'"):
        load_config(
            None,
            ["split=train_1"],
            base_model=str(base_dir),
            output_dir=tmp_path / "run",
            task="xgq",
            data_root=tmp_path,
        )
    ok = load_config(
        None,
        ["split=train_5", "languages=[de, en]"],
        base_model=str(base_dir),
        output_dir=tmp_path / "run",
        task="xgqa",
        data_root=tmp_path,
    )
    assert ok.languages == ["de", "en"] and ok.split == "train_5"


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_file_then_flags_then_set(base_dir: Path, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"train{suffix}"
    if suffix == ".toml":
        path.write_text(
            'lora_r = 16\nlr_lora = 1e-4\nbatch_size = 4\nlora_targets = ["q", "v"]\nseed = 3\n', encoding="utf-8"
        )
    else:
        path.write_text("lora_r: 16\nlr_lora: 1.0e-4\nbatch_size: 4\nlora_targets: [q, v]\nseed: 3\n", encoding="utf-8")
    config = load_config(path, ["seed=7"], **_mix_values(base_dir, tmp_path), batch_size=2)
    assert config.lora_r == 16 and config.lr_lora == 1e-4 and config.lora_targets == ["q", "v"]
    assert config.batch_size == 2  # a flag beats the file
    assert config.seed == 7  # --set beats both
    # the file is named as the source of its bad values
    path.write_text(
        path.read_text(encoding="utf-8") + ("lora_dropout = 2\n" if suffix == ".toml" else "lora_dropout: 2\n"),
        encoding="utf-8",
    )
    with pytest.raises(MvlevalError, match=f"lora_dropout \\(from {path}\\)"):
        load_config(path, (), **_mix_values(base_dir, tmp_path))


def test_unreadable_config_files(tmp_path: Path) -> None:
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("lora_r = = 3\n", encoding="utf-8")
    with pytest.raises(MvlevalError, match="not valid TOML"):
        load_config(bad_toml)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("lora_r: 3\n  bad: [\n", encoding="utf-8")
    with pytest.raises(MvlevalError) as info:
        load_config(bad_yaml)
    assert "not valid YAML" in info.value.render() and f"{bad_yaml}:" in info.value.render()
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(MvlevalError, match="must hold a mapping"):
        load_config(listed)
    with pytest.raises(MvlevalError, match="unsupported config file type '.ini'"):
        (tmp_path / "x.ini").write_text("", encoding="utf-8")
        load_config(tmp_path / "x.ini")
    with pytest.raises(MvlevalError, match="--set expects key=value"):
        load_config(None, ["lora_r"])


def test_saved_config_round_trips(base_dir: Path, tmp_path: Path) -> None:
    config = load_config(None, ["lora_targets=[q, v]", "bits=4"], **_mix_values(base_dir, tmp_path))
    again = TrainConfig.model_validate_json(config.to_json())
    assert again == config


@pytest.mark.parametrize(
    ("n_examples", "batch", "accum", "epochs", "max_steps", "steps", "warm"),
    [
        # hand-computed: ceil(epochs * n / (batch * accum)); warm-up round(0.05 * steps)
        (28, 8, 1, 1.0, None, 4, 0),
        (28, 4, 2, 3.0, None, 11, 1),
        (1000, 8, 4, 2.0, None, 63, 3),
        (28, 8, 1, 1.0, 40, 40, 2),
    ],
)
def test_step_counts(
    base_dir: Path,
    tmp_path: Path,
    n_examples: int,
    batch: int,
    accum: int,
    epochs: float,
    max_steps: int | None,
    steps: int,
    warm: int,
) -> None:
    config = load_config(
        None,
        (),
        **_mix_values(base_dir, tmp_path),
        batch_size=batch,
        epochs=epochs,
        max_steps=max_steps,
        grad_accum_steps=accum,
    )
    assert total_steps(config, n_examples) == steps
    assert warmup_steps(config, steps) == warm
