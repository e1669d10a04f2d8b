"""Export a fine-tuning run as a standalone checkpoint: LoRA and BLIP-2 parts merged into the base, 4/8/16/32-bit.

The merge always happens on the full-precision (fp32) base: the backend's ``apply_adapter`` loads
blip_parts.safetensors and the LoRA adapter, peft's ``merge_and_unload`` folds W + (alpha/r)·BA into each layer, and
the result is saved

- 32: fp32 safetensors;
- 16: bf16 (every part, as ``from_pretrained(dtype=bfloat16)`` loads a BLIP-2 in transformers 5);
- 8 / 4: re-loaded through bitsandbytes (int8, or nf4 with double quantisation for encoder-decoder LLMs, bf16
  compute) and saved with bitsandbytes' own serialisation, so ``config.json`` carries the quantization_config.

Together with the processor (num_query_tokens and image_token_index set), the folder loads with plain
``Blip2ForConditionalGeneration.from_pretrained(DIR)`` and with ``mvleval run --model DIR`` and no other flag.
A QLoRA adapter trained against an nf4 base is merged into the fp32 base too (the usual practice); the 4-bit export
then quantises W + BA once, which differs from "nf4(W) + BA" by one quantisation step (tests state the tolerance).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Literal

from mvleval.finetune.loop import EXPORT_INFO_FILE
from mvleval.util.errors import MvlevalError

logger = logging.getLogger("mvleval.finetune.export")


def _check_train_dir(train_dir: Path) -> dict[str, Any]:
    """The saved train_config.json of a finished run, after checking the adapter files are there."""
    from mvleval.finetune.loop import TRAIN_CONFIG_FILE

    train_dir = Path(train_dir)
    fix = "pass the --out folder of a finished `mvleval train` run."
    if not train_dir.is_dir():
        raise MvlevalError("training folder not found.", fix=fix, where=train_dir)
    config_path = train_dir / TRAIN_CONFIG_FILE
    for name in (TRAIN_CONFIG_FILE, "adapter_config.json", "adapter_model.safetensors"):
        if not (train_dir / name).is_file():
            raise MvlevalError(
                f"the training folder lacks {name}; the run did not finish (or this is not a training folder).",
                fix=f"{fix} An interrupted run continues with `mvleval train ... --resume`.",
                where=train_dir,
            )
    try:
        saved = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MvlevalError(f"cannot read train_config.json ({exc}).", fix=fix, where=config_path) from None
    if not isinstance(saved, dict) or not saved.get("base_model"):
        raise MvlevalError("train_config.json names no base_model.", fix=fix, where=config_path)
    return saved


def _check_out_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MvlevalError(
            "the export folder exists and is not empty; exporting into it could mix two checkpoints.",
            fix="choose a new --out folder, or delete this one.",
            where=out,
        )


def merged_model(train_dir: Path, base_model: str | None = None) -> tuple[Any, Any]:
    """Load the fp32 base on CPU, apply the run's adapter and BLIP-2 parts, and merge LoRA into the weights.

    Returns:
        (Blip2ForConditionalGeneration with plain Linear layers, its Blip2Processor).
    """
    from mvleval.backends.mblip import apply_adapter
    from mvleval.finetune.train import load_base_model

    base = base_model or _check_train_dir(train_dir)["base_model"]
    model, processor = load_base_model(base, 32, "cpu")
    peft_model = apply_adapter(model, Path(train_dir))
    peft_model.merge_and_unload()  # in place: LoRA layers replaced by plain ones holding W + (alpha/r)·BA
    leftover = [name for name, _ in model.named_modules() if "lora_" in name]
    if leftover:
        raise RuntimeError(f"merge_and_unload left LoRA modules behind (first: {leftover[0]})")
    model.eval()
    return model, processor


def export(
    train_dir: Path,
    out: Path,
    bits: Literal[4, 8, 16, 32] = 4,
    *,
    base_model: str | None = None,
    device: str | None = None,
) -> Path:
    """Merge a training run into its base model and save a standalone checkpoint folder with its processor.

    Args:
        train_dir: the output folder of `mvleval train` (train_config.json names the base model).
        out: the new checkpoint folder (must not exist or be empty).
        bits: 4 (nf4), 8 (int8), 16 (bf16) or 32 (fp32).
        base_model: the base checkpoint, when it moved since training (default: train_config.json's base_model).
        device: where bitsandbytes quantises for 4/8 bits (None: cuda if available, else cpu). The merge runs on CPU.

    Returns:
        `out`.

    Raises:
        MvlevalError: an unfinished or foreign training folder, a non-empty output folder, unsupported bits.
    """
    import torch

    if bits not in (4, 8, 16, 32):
        raise MvlevalError(f"--bits {bits} cannot be exported.", fix="use 4, 8, 16 or 32.")
    train_dir, out = Path(train_dir), Path(out)
    saved = _check_train_dir(train_dir)
    _check_out_dir(out)
    from mvleval.util.fileperms import ensure_writable_dir

    ensure_writable_dir(out, "--out")  # before the merge, not after it
    base = base_model or saved["base_model"]
    from mvleval.finetune.base import is_blip2
    from mvleval.finetune.generic import export_generic

    if not is_blip2(base):  # any other vision-LLM: peft merge of the whole-model adapter (generic.py)
        return export_generic(train_dir, out, bits, base, saved, device)
    model, processor = merged_model(train_dir, base)
    out.mkdir(parents=True, exist_ok=True)
    if bits == 32:
        model.save_pretrained(str(out))
    elif bits == 16:
        # everything in bf16, as from_pretrained(dtype=bfloat16) loads a BLIP-2 in transformers 5 (the Q-Former too)
        model.to(torch.bfloat16)
        model.save_pretrained(str(out))
    else:
        _save_quantised(model, out, bits, device)
    processor.save_pretrained(str(out))
    from mvleval.backends.hf.adapter import adapter_fingerprint

    info = {
        "source": str(train_dir.absolute()),
        # the adapter's content: a copy of the folder is recognised as the same adapter
        "source_fingerprint": adapter_fingerprint(train_dir),
        "base_model": base,
        "bits": bits,
        "merged": "LoRA merged into the fp32 base, BLIP-2 parts from blip_parts.safetensors",
    }
    (out / EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    from mvleval.util.fileperms import follow_umask_tree

    follow_umask_tree(out)  # safetensors renames a 0600 temporary file into place
    logger.info("exported %s as a %d-bit checkpoint to %s", train_dir, bits, out)
    return out


def _save_quantised(model: Any, out: Path, bits: int, device: str | None) -> None:
    """Save the merged fp32 model to a scratch folder, reload it through bitsandbytes, and save that."""
    import torch
    from transformers import Blip2ForConditionalGeneration

    from mvleval.backends.hf.precision import disable_cpu_bf16_repack
    from mvleval.finetune.loop import quantization_config

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    encoder_decoder = not bool(model.config.use_decoder_only_language_model)
    # bf16 compute whatever the exporting machine: 4-bit checkpoints are for GPUs, and the saved config must not
    # depend on where the export ran
    qconfig = quantization_config(bits, encoder_decoder, bf16_compute=True)
    with tempfile.TemporaryDirectory(prefix=".mvleval-export-", dir=out.parent) as scratch:
        model.save_pretrained(scratch)
        del model
        quantised = Blip2ForConditionalGeneration.from_pretrained(
            scratch, quantization_config=qconfig, dtype=torch.float32, device_map={"": device}
        )
        if bits == 4 and not device.startswith("cuda"):
            # NOTES.md bug A: without this, the saved nf4 weights would be repacked by a later eval forward
            disable_cpu_bf16_repack(quantised)
        quantised.save_pretrained(str(out))
