"""Builds the tiny Aya Vision checkpoint: tiled SigLIP, pixel shuffle, SwiGLU adapter + Cohere2."""

from __future__ import annotations

from mvleval.testing.tiny.common import HALF, SLIDING_WINDOW, Built, Sizes, local_then_global, text_kwargs, vit_kwargs
from mvleval.testing.tiny.tokenizer import TokenizerSpec, padded_vocab_size, token_ids, train_tokenizer

#: CohereLabs/aya-vision-*: Command-R turn tokens, images stay in place (no documents, tools or preamble).
_AYA_VISION_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|START_OF_TURN_TOKEN|>' }}"
    "{% if message['role'] == 'user' %}{{ '<|USER_TOKEN|>' }}{% elif message['role'] == 'assistant' %}"
    "{{ '<|CHATBOT_TOKEN|>' }}{% else %}{{ '<|SYSTEM_TOKEN|>' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<image>' }}{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}{{ '<|END_OF_TURN_TOKEN|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' }}{% endif %}"
)


def build(sizes: Sizes) -> Built:
    """Aya Vision: SigLIP on up to 2 tiles + a thumbnail, 2x2 pixel shuffle, SwiGLU adapter; Cohere2."""
    from transformers import (
        AyaVisionConfig,
        AyaVisionForConditionalGeneration,
        AyaVisionProcessor,
        Cohere2Config,
        GotOcr2ImageProcessorPil,
        SiglipVisionConfig,
    )

    image_size, patch, downsample = 32, 8, 2
    spec = TokenizerSpec(
        specials=(
            "<PAD>",
            "<UNK>",
            "<BOS_TOKEN>",
            "<EOS_TOKEN>",
            "<|START_OF_TURN_TOKEN|>",
            "<|END_OF_TURN_TOKEN|>",
            "<|USER_TOKEN|>",
            "<|CHATBOT_TOKEN|>",
            "<|SYSTEM_TOKEN|>",
            "<image>",
            "<|START_OF_IMG|>",
            "<|END_OF_IMG|>",
            "<|IMG_PATCH|>",
            "<|IMG_LINE_BREAK|>",
        ),
        bos="<BOS_TOKEN>",
        eos="<|END_OF_TURN_TOKEN|>",
        pad="<PAD>",
        unk="<UNK>",
        add_bos=True,
    )
    tokenizer = train_tokenizer(spec)
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": image_size, "width": image_size},
        crop_to_patches=True,
        min_patches=1,
        max_patches=2,
        image_mean=HALF,
        image_std=HALF,
    )
    processor = AyaVisionProcessor(
        image_processor,
        tokenizer,
        patch_size=patch,
        img_size=image_size,
        downsample_factor=downsample,
        chat_template=_AYA_VISION_TEMPLATE,
    )
    bos, eos, pad, img_patch = token_ids(tokenizer, "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>", "<PAD>", "<|IMG_PATCH|>")
    config = AyaVisionConfig(
        vision_config=SiglipVisionConfig(**vit_kwargs(sizes, image_size, patch)),
        # Command R7B: 3 sliding-window layers, then a global one (here 1 + 1), the window shorter than a prompt
        text_config=Cohere2Config(
            **text_kwargs(sizes, padded_vocab_size(tokenizer), bos, eos, pad),
            sliding_window=SLIDING_WINDOW,
            layer_types=local_then_global(sizes.layers, every=4),
        ),
        downsample_factor=downsample,
        # the model fills the <|IMG_PATCH|> positions the processor expands "<image>" into, not "<image>" itself
        image_token_index=img_patch,
        vision_feature_layer=-1,
        tie_word_embeddings=False,
    )
    return Built(AyaVisionForConditionalGeneration(config), processor, [eos], pad, bos)
