"""Builds the tiny Qwen2-VL and Qwen2.5-VL checkpoints: native-resolution ViT with 3-D rope + Qwen2."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mvleval.testing.tiny.common import CLIP_MEAN, CLIP_STD, Built, Sizes, text_kwargs
from mvleval.testing.tiny.image_only import image_only_processor_class
from mvleval.testing.tiny.tokenizer import TokenizerSpec, padded_vocab_size, token_ids, train_tokenizer

if TYPE_CHECKING:
    from collections.abc import Callable

    from transformers import PreTrainedConfig, PreTrainedModel

#: Qwen/Qwen2-VL-*-Instruct (Qwen2.5-VL ships the same): default system prompt, images stay where they are.
_QWEN2_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


#: Qwen2 tokenizer special tokens (no BOS; <|endoftext|> pads).
_QWEN_SPEC = TokenizerSpec(
    specials=(
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|vision_pad|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ),
    bos=None,
    eos="<|im_end|>",
    pad="<|endoftext|>",
)


def _config_and_model_class(v2_5: bool) -> tuple[Callable[..., PreTrainedConfig], Callable[..., PreTrainedModel]]:
    """Qwen2.5-VL's or Qwen2-VL's (config class, model class): one pair, each model class takes its own config."""
    import transformers

    if v2_5:
        return transformers.Qwen2_5_VLConfig, transformers.Qwen2_5_VLForConditionalGeneration
    return transformers.Qwen2VLConfig, transformers.Qwen2VLForConditionalGeneration


def _mrope_section(head_dim: int) -> list[int]:
    """Temporal/height/width split of the rotary half-dimension, in Qwen2-VL's 16/24/24 proportions."""
    half = head_dim // 2
    spatial = max(1, half * 3 // 8)
    return [half - 2 * spatial, spatial, spatial]


def build(sizes: Sizes, *, v2_5: bool) -> Built:
    """Qwen2-VL / Qwen2.5-VL: native-resolution ViT (4 px patches, 2x2 merge, 3-D rope) + Qwen2; image-only saved."""
    from transformers import Qwen2VLImageProcessorPil

    patch, merge, temporal = 4, 2, 2
    factor = patch * merge
    tokenizer = train_tokenizer(_QWEN_SPEC)
    # images are resized to multiples of 8 px holding 16x16 to 48x48 pixels: 4 to 36 image tokens each
    min_pixels, max_pixels = (2 * factor) ** 2, (6 * factor) ** 2
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
        patch_size=patch,
        temporal_patch_size=temporal,
        merge_size=merge,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    family = "qwen2_5_vl" if v2_5 else "qwen2_vl"
    processor = image_only_processor_class(family)(image_processor, tokenizer, chat_template=_QWEN2_VL_TEMPLATE)
    end_of_text, im_end, vision_start, vision_end, image, video = token_ids(
        tokenizer, "<|endoftext|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"
    )
    text = text_kwargs(sizes, padded_vocab_size(tokenizer), end_of_text, im_end, end_of_text)
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 1_000_000.0,
        "mrope_section": _mrope_section(sizes.hidden // sizes.heads),
    }
    vision: dict[str, Any] = {
        "depth": sizes.vit_layers,
        "num_heads": sizes.heads,
        "patch_size": patch,
        "spatial_merge_size": merge,
        "temporal_patch_size": temporal,
    }
    if v2_5:
        vision.update(
            hidden_size=sizes.hidden,
            intermediate_size=sizes.mlp,
            out_hidden_size=sizes.hidden,
            window_size=2 * factor,  # windows of 2x2 merged patches
            fullatt_block_indexes=[sizes.vit_layers - 1],
        )
        config_class, model_class = _config_and_model_class(v2_5=True)
        processor_class = "Qwen2_5_VLProcessor"
    else:
        vision.update(embed_dim=sizes.hidden, hidden_size=sizes.hidden, mlp_ratio=4)
        config_class, model_class = _config_and_model_class(v2_5=False)
        processor_class = "Qwen2VLProcessor"
    config = config_class(
        text_config=text,
        vision_config=vision,
        image_token_id=image,
        video_token_id=video,
        vision_start_token_id=vision_start,
        vision_end_token_id=vision_end,
        tie_word_embeddings=False,
    )
    # what Qwen2VLProcessor.save_pretrained would write for its video processor (not constructible here)
    video_config = {
        "video_processor_type": "Qwen2VLVideoProcessor",
        "processor_class": processor_class,
        "size": {"shortest_edge": min_pixels, "longest_edge": max_pixels},
        "patch_size": patch,
        "temporal_patch_size": temporal,
        "merge_size": merge,
        "image_mean": list(CLIP_MEAN),
        "image_std": list(CLIP_STD),
        "do_resize": True,
        "do_rescale": True,
        "do_normalize": True,
        "do_convert_rgb": True,
        "rescale_factor": 1 / 255,
        "resample": 3,
    }
    eos = [im_end, end_of_text]  # as Qwen2-VL-Instruct's generation_config.json
    extra = {"video_processor": video_config}
    return Built(model_class(config), processor, eos, end_of_text, None, extra, processor_class)
