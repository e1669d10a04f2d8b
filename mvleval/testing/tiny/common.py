"""Holds what every tiny-checkpoint builder shares: sizes, the built result, normalisation constants and config arguments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mvleval.util.errors import MvlevalError, did_you_mean

if TYPE_CHECKING:
    from transformers import PreTrainedModel, ProcessorMixin


#: Every family a tiny checkpoint can be built for (transformers ``model_type`` names).
FAMILIES: tuple[str, ...] = (
    "qwen2_vl",
    "qwen2_5_vl",
    "paligemma",
    "llava",
    "llava_next",
    "idefics3",
    "smolvlm",
    "gemma3",
    "aya_vision",
    "instructblip",
    "mllama",
)


#: OpenAI CLIP normalisation (llava, llava-next, instructblip, qwen2-vl, mllama) and SigLIP's (the others).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Sizes:
    """Widths and depths shared by every builder."""

    hidden: int
    layers: int
    #: depth of the vision tower when it differs from the language model's (a real checkpoint's LM is the deeper)
    vision_layers: int | None = None

    @property
    def vit_layers(self) -> int:
        return self.vision_layers or self.layers

    @property
    def heads(self) -> int:
        # head width 8 keeps every family's rotary / multimodal-rope split integral
        return max(2, self.hidden // 8)

    @property
    def mlp(self) -> int:
        return self.hidden * 4


@dataclass
class Built:
    """What a family builder returns: the model, its processor and generation's special token ids."""

    model: PreTrainedModel
    processor: ProcessorMixin
    eos_token_ids: list[int]
    pad_token_id: int
    bos_token_id: int | None
    #: processor_config.json entries of sub-processors that cannot be constructed here (video processors)
    processor_config_extra: dict[str, Any] = field(default_factory=dict)
    #: the published processor class, when an image-only stand-in saved the processor
    processor_class: str | None = None


def check_family(family: str) -> None:
    if family not in FAMILIES:
        raise MvlevalError(
            f"unknown vision-LLM family '{family}'.{did_you_mean(family, FAMILIES)}",
            fix=f"use one of {', '.join(FAMILIES)}.",
        )


def text_kwargs(sizes: Sizes, vocab_size: int, bos: int | None, eos: int, pad: int) -> dict[str, Any]:
    """Arguments shared by the Llama-like language-model configs."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": sizes.hidden,
        "intermediate_size": sizes.mlp,
        "num_hidden_layers": sizes.layers,
        "num_attention_heads": sizes.heads,
        "num_key_value_heads": sizes.heads,
        "max_position_embeddings": 4096,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        # tied and random, a tiny model mostly repeats its last prompt token whatever the image
        "tie_word_embeddings": False,
    }


#: Sliding-window width of the Gemma 3 and Aya Vision (Cohere2) language models: shorter than every tiny prompt.
SLIDING_WINDOW = 5


def local_then_global(layers: int, every: int) -> list[str]:
    """Layer types of a model with a global-attention layer every `every` layers, the rest sliding-window; the last
    layer is global whatever the depth (a tiny model would otherwise have no global layer)."""
    types = ["full_attention" if (i + 1) % every == 0 else "sliding_attention" for i in range(layers)]
    types[-1] = "full_attention"
    return types


def vit_kwargs(sizes: Sizes, image_size: int, patch_size: int) -> dict[str, Any]:
    """Arguments shared by the CLIP / SigLIP / Idefics3 / BLIP vision-tower configs."""
    return {
        "hidden_size": sizes.hidden,
        "intermediate_size": sizes.mlp,
        "num_hidden_layers": sizes.vit_layers,
        "num_attention_heads": sizes.heads,
        "image_size": image_size,
        "patch_size": patch_size,
    }
