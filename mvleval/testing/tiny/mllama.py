"""Builds the tiny Llama 3.2 Vision (Mllama) checkpoint: tiled ViT + a cross-attending last text layer."""

from __future__ import annotations

from typing import Any

from mvleval.testing.tiny.common import CLIP_MEAN, CLIP_STD, Built, Sizes, text_kwargs
from mvleval.testing.tiny.tokenizer import TokenizerSpec, padded_vocab_size, token_ids, train_tokenizer

#: meta-llama/Llama-3.2-*-Vision-Instruct without its date/tool preamble: header turns, images stay in place.
_MLLAMA_TEMPLATE = (
    "{% for message in messages %}{% if loop.index0 == 0 %}{{ bos_token }}{% endif %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<|image|>' }}{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def build(sizes: Sizes) -> Built:
    """Llama 3.2 Vision: tiled ViT with gated global layers; the last text layer cross-attends to it."""
    from transformers import (
        MllamaConfig,
        MllamaForConditionalGeneration,
        MllamaImageProcessorPil,
        MllamaProcessor,
        MllamaTextConfig,
        MllamaVisionConfig,
    )

    image_size, patch, tiles = 32, 8, 2
    spec = TokenizerSpec(
        specials=(
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|finetune_right_pad_id|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|python_tag|>",  # MllamaProcessor looks it up
            "<|image|>",
        ),
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        pad="<|finetune_right_pad_id|>",
        add_bos=True,
    )
    tokenizer = train_tokenizer(spec)
    image_processor = MllamaImageProcessorPil(
        size={"height": image_size, "width": image_size},
        max_image_tiles=tiles,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    processor = MllamaProcessor(image_processor, tokenizer, chat_template=_MLLAMA_TEMPLATE)
    bos, end_of_text, eot, pad, image = token_ids(
        tokenizer, "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>", "<|image|>"
    )
    intermediate = [0]
    vision = MllamaVisionConfig(
        hidden_size=sizes.hidden,
        intermediate_size=sizes.mlp,
        num_hidden_layers=sizes.layers,
        num_global_layers=1,
        attention_heads=sizes.heads,
        image_size=image_size,
        patch_size=patch,
        max_num_tiles=tiles,
        # the image processor's order for 2 tiles (aspect-ratio ids index this list); the default needs 4 tiles
        supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]],
        intermediate_layers_indices=intermediate,
        # the final hidden state and each listed intermediate one are concatenated
        vision_output_dim=sizes.hidden * (len(intermediate) + 1),
    )
    text_args = text_kwargs(sizes, padded_vocab_size(tokenizer), bos, eot, pad)
    # like every 5th layer of the 11B model, the last decoder layer cross-attends to the image
    text = MllamaTextConfig(**text_args, cross_attention_layers=[sizes.layers - 1])
    # tie_word_embeddings is no declared MllamaConfig field (5.23): transformers keeps it as an attribute
    untied: dict[str, Any] = {"tie_word_embeddings": False}
    config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=image, **untied)
    return Built(MllamaForConditionalGeneration(config), processor, [end_of_text, eot], pad, bos)
