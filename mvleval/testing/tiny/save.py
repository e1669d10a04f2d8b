"""Finishes a built tiny checkpoint: re-draws its weights variance-preserving and saves it like a published one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from mvleval.testing.tiny.common import Built

if TYPE_CHECKING:
    import torch


def reinitialise_variance_preserving(model: torch.nn.Module) -> None:
    """Re-draw weights so an untrained tiny model's answer depends on its image and prompt.

    With transformers' default initialisation (std 0.02, zero gates, zero projections) tiny random models generate
    the same tokens whatever the input. Every Linear and convolution gets std 1/sqrt(fan_in) (activations keep their
    scale through the layers); embeddings, learned queries, class embeddings and image-newline vectors std 1;
    Gemma 3's projection matrix (a bare zero Parameter, which would blank every image) std 1/sqrt(fan_in); Mllama's
    scalar tanh gates (zero, which would switch cross-attention to the image off) 1.
    """
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Conv3d)):
                module.weight.normal_(mean=0.0, std=module.weight[0].numel() ** -0.5)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, torch.nn.Embedding):
                module.weight.normal_(mean=0.0, std=1.0)
        for name, param in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("query_tokens", "image_newline", "class_embedding"):
                param.normal_(mean=0.0, std=1.0)
            elif leaf == "mm_input_projection_weight":  # used as features @ weight: fan_in is the first dimension
                param.normal_(mean=0.0, std=param.shape[0] ** -0.5)
            elif "gate" in leaf and param.numel() == 1:
                param.fill_(1.0)


def save_checkpoint(built: Built, out_dir: Path) -> None:
    """save_pretrained model, generation config and processor; complete processor_config.json where needed."""
    from transformers import GenerationConfig
    from transformers.utils import logging as hf_logging

    model = built.model.eval()
    eos = built.eos_token_ids
    model.generation_config = GenerationConfig(
        bos_token_id=built.bos_token_id, eos_token_id=eos if len(eos) > 1 else eos[0], pad_token_id=built.pad_token_id
    )
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Writing model shards" bar per tiny checkpoint clutters test output
    try:
        model.save_pretrained(out_dir)  # safetensors
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    built.processor.save_pretrained(out_dir)
    if not (built.processor_config_extra or built.processor_class):
        return
    # an image-only stand-in saved the processor: name the published class and its video processor, as the
    # published checkpoint's processor_config.json does, so AutoProcessor builds the real one where torchvision is
    path = out_dir / "processor_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(built.processor_config_extra)
    if built.processor_class:
        config["processor_class"] = built.processor_class
        tokenizer_path = out_dir / "tokenizer_config.json"
        tokenizer_config = json.loads(tokenizer_path.read_text(encoding="utf-8"))
        tokenizer_config["processor_class"] = built.processor_class
        tokenizer_path.write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
