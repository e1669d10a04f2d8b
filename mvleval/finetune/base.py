"""What the base checkpoint of a fine-tune is: a BLIP-2 (mBLIP's recipe, train.py) or any other vision-LLM the generic
backend runs (generic.py), and the backend's own checks of it, so that training refuses exactly what evaluation would.
Imports no other module of mvleval.finetune: the config's checks, the recipes and export all ask it."""

from __future__ import annotations

from typing import Any

from mvleval.util.errors import MvlevalError


def is_blip2(base_model: str) -> bool:
    """Whether the base checkpoint is a BLIP-2 (mBLIP's recipe) rather than a generic vision-LLM."""
    from mvleval.backends.hf.checkpoint import read_config, resolve_model_dir

    return (
        read_config(resolve_model_dir(base_model), "pass a Hugging Face vision-LLM folder.").get("model_type")
        == "blip-2"
    )


def check_generic_base(base_model: str) -> dict[str, Any]:
    """The generic backend's own checks of a base checkpoint (family, weights, no remote code); its config.json."""
    from mvleval.backends.hf.checkpoint import check_weights, read_config, resolve_model_dir
    from mvleval.backends.hf_vlm import _FIX_LAYOUT, _check_family

    model_dir = resolve_model_dir(base_model)
    config_json = read_config(model_dir, _FIX_LAYOUT)
    _check_family(str(config_json.get("model_type") or ""), False, model_dir)
    if config_json.get("auto_map"):
        raise MvlevalError(
            "the checkpoint ships its own Python code (config.json has auto_map); mvleval trains only families "
            "transformers implements.",
            fix="fine-tune a checkpoint of a family transformers ships (Qwen2.5-VL, PaliGemma 2, Gemma 3, Idefics3, ...).",
            where=model_dir / "config.json",
        )
    check_weights(model_dir, False, _FIX_LAYOUT)
    return config_json
