"""peft LoRA adapter folders: the check every backend runs before a (possibly minutes-long) weight load."""

from __future__ import annotations

from pathlib import Path

from mvleval.backends.hf.checkpoint import read_json
from mvleval.errors import MvlevalError

ADAPTER_FIX = "pass a LoRA adapter folder as peft's save_pretrained writes it (mvleval's fine-tuning does)."


def check_adapter_dir(adapter_dir: Path) -> None:
    """Check that a folder holds a peft LoRA adapter (adapter_config.json + adapter_model.safetensors).

    Raises:
        MvlevalError: the folder is missing or is not a LoRA adapter.
    """
    config_path = adapter_dir / "adapter_config.json"
    if not adapter_dir.is_dir():
        raise MvlevalError("adapter folder not found.", fix=ADAPTER_FIX, where=adapter_dir)
    if not config_path.is_file() or not (adapter_dir / "adapter_model.safetensors").is_file():
        raise MvlevalError(
            "not a peft adapter folder: adapter_config.json and adapter_model.safetensors are required.",
            fix=ADAPTER_FIX,
            where=adapter_dir,
        )
    peft_type = read_json(config_path).get("peft_type")
    if peft_type != "LORA":
        raise MvlevalError(f"adapter has peft_type {peft_type!r}; only LoRA adapters are supported.", fix=ADAPTER_FIX, where=config_path)
