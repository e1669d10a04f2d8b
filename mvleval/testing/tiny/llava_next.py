"""Builds the tiny llava-1.6 (Mistral) checkpoint: CLIP ViT on an "anyres" tile grid + Mistral."""

from __future__ import annotations

from dataclasses import replace

from mvleval.testing.tiny.common import CLIP_MEAN, CLIP_STD, Built, Sizes, text_kwargs, vit_kwargs
from mvleval.testing.tiny.tokenizer import LLAMA2_SPEC, padded_vocab_size, token_ids, train_tokenizer

#: llava-hf/llava-v1.6-mistral-7b-hf: [INST] with images first; no generation prompt beyond " [/INST]".
_LLAVA_NEXT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ '<<SYS>>\n' + message['content'][0]['text'] + '\n<</SYS>>\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' }}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{# Render all text next #}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}{% endfor %}{{' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'][0]['text'] + '</s> '}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)


def build(sizes: Sizes) -> Built:
    """llava-1.6 (Mistral): CLIP ViT on an "anyres" grid of 32 px tiles plus a base image; image-newline rows."""
    from transformers import (
        CLIPVisionConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
        MistralConfig,
    )

    image_size, patch = 32, 8
    pinpoints = [[image_size, 2 * image_size], [2 * image_size, image_size], [2 * image_size, 2 * image_size]]
    tokenizer = train_tokenizer(replace(LLAMA2_SPEC, padding_side="left"))  # llava-hf saves padding side left
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_grid_pinpoints=pinpoints,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    processor = LlavaNextProcessor(
        image_processor,
        tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=_LLAVA_NEXT_TEMPLATE,
    )
    bos, eos, pad, image = token_ids(tokenizer, "<s>", "</s>", "<pad>", "<image>")
    text = MistralConfig(**text_kwargs(sizes, padded_vocab_size(tokenizer), bos, eos, pad), sliding_window=None)
    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(**vit_kwargs(sizes, image_size, patch), projection_dim=sizes.hidden),
        text_config=text,
        image_token_index=image,
        image_grid_pinpoints=pinpoints,
        image_seq_length=(image_size // patch) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        tie_word_embeddings=False,
    )
    return Built(LlavaNextForConditionalGeneration(config), processor, [eos], pad, bos)
