"""Builds the tiny InstructBLIP (Vicuna) checkpoint: ViT + instruction-aware Q-Former + Llama."""

from __future__ import annotations

from dataclasses import replace

from mvleval.testing.factory import TOKENIZER_CORPUS
from mvleval.testing.tiny.common import CLIP_MEAN, CLIP_STD, Built, Sizes, text_kwargs, vit_kwargs
from mvleval.testing.tiny.tokenizer import (
    LLAMA2_SPEC,
    padded_vocab_size,
    token_ids,
    train_bert_wordpiece,
    train_tokenizer,
)


def build(sizes: Sizes) -> Built:
    """InstructBLIP (Vicuna), laid out like the published checkpoints: ViT + instruction-aware Q-Former (4 queries,
    a BERT WordPiece ``qformer_tokenizer`` saved with padding side right) + Llama whose tokenizer adds BOS and saves
    its padding side; the processor expands ``<image>`` into one token per query; no template.

    Both saved padding sides matter: InstructBlipProcessor hands the language tokenizer's text kwargs, padding side
    included, to the Q-Former tokenizer too, and puts the ``<image>`` tokens in front of the padded text.
    """
    from transformers import (
        BlipImageProcessorPil,
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
        LlamaConfig,
    )

    image_size, patch, queries = 28, 14, 4
    tokenizer = train_tokenizer(replace(LLAMA2_SPEC, padding_side="right"))
    qformer_tokenizer = train_bert_wordpiece(TOKENIZER_CORPUS)
    image_processor = BlipImageProcessorPil(
        size={"height": image_size, "width": image_size}, image_mean=CLIP_MEAN, image_std=CLIP_STD
    )
    # without num_query_tokens the processor inserts no <image> tokens and the image is silently ignored (NOTES.md)
    processor = InstructBlipProcessor(image_processor, tokenizer, qformer_tokenizer, num_query_tokens=queries)
    bos, eos, pad, image = token_ids(tokenizer, "<s>", "</s>", "<pad>", "<image>")
    config = InstructBlipConfig(
        vision_config=vit_kwargs(sizes, image_size, patch),
        qformer_config={
            "vocab_size": len(qformer_tokenizer),
            "hidden_size": sizes.hidden,
            "intermediate_size": sizes.mlp,
            "num_hidden_layers": sizes.layers,
            "num_attention_heads": sizes.heads,
            "encoder_hidden_size": sizes.hidden,
            "cross_attention_frequency": 1,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
        },
        text_config=LlamaConfig(**text_kwargs(sizes, padded_vocab_size(tokenizer), bos, eos, pad)).to_dict(),
        num_query_tokens=queries,
        image_token_index=image,  # None would crash generate (NOTES.md)
    )
    return Built(InstructBlipForConditionalGeneration(config), processor, [eos], pad, bos)
