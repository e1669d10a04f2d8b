"""peft LoRA adapter folders: the check every backend runs before a (possibly minutes-long) weight load."""

from __future__ import annotations

from pathlib import Path

from mvleval.backends.hf.checkpoint import fingerprint_files, read_json
from mvleval.util.errors import MvlevalError

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
        raise MvlevalError(
            f"adapter has peft_type {peft_type!r}; only LoRA adapters are supported.",
            fix=ADAPTER_FIX,
            where=config_path,
        )


#: the files whose content is an adapter's identity (LoRA weights, and the BLIP-2 parts `mvleval train` also trains)
ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "blip_parts.safetensors")


def adapter_fingerprint(adapter_dir: Path) -> str | None:
    """The content fingerprint of an adapter's weight files (the same for a copy of the folder), or None when it has
    none of them."""
    files = [adapter_dir / name for name in ADAPTER_WEIGHT_FILES if (adapter_dir / name).is_file()]
    return fingerprint_files(files) if files else None
