"""Builds the tiny llava-1.5 checkpoint: CLIP ViT + MLP projector + Llama, with llava-hf's chat template."""

from __future__ import annotations

from dataclasses import replace

from mvleval.testing.tiny.common import CLIP_MEAN, CLIP_STD, Built, Sizes, text_kwargs, vit_kwargs
from mvleval.testing.tiny.tokenizer import LLAMA2_SPEC, padded_vocab_size, token_ids, train_tokenizer

#: llava-hf/llava-1.5-*-hf: every image of a turn first, then its text.
_LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{# Render all text next #}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def build(sizes: Sizes) -> Built:
    """llava-1.5: CLIP ViT (CLS dropped, second-to-last layer) + MLP projector + Llama; 16 image tokens."""
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    image_size, patch = 32, 8
    tokenizer = train_tokenizer(replace(LLAMA2_SPEC, padding_side="left"))  # llava-hf saves padding side left
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    processor = LlavaProcessor(
        image_processor,
        tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS, which the "default" strategy drops
        chat_template=_LLAVA_TEMPLATE,
    )
    bos, eos, pad, image = token_ids(tokenizer, "<s>", "</s>", "<pad>", "<image>")
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**vit_kwargs(sizes, image_size, patch), projection_dim=sizes.hidden),
        text_config=LlamaConfig(**text_kwargs(sizes, padded_vocab_size(tokenizer), bos, eos, pad)),
        image_token_index=image,
        image_seq_length=(image_size // patch) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        tie_word_embeddings=False,
    )
    return Built(LlavaForConditionalGeneration(config), processor, [eos], pad, bos)
