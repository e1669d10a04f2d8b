"""Builds the tiny PaliGemma checkpoint: SigLIP + linear projector + Gemma, prefix-LM, no chat template."""

from __future__ import annotations

from mvleval.testing.tiny.common import HALF, Built, Sizes, text_kwargs, vit_kwargs
from mvleval.testing.tiny.tokenizer import GEMMA_SPECIALS, TokenizerSpec, padded_vocab_size, token_ids, train_tokenizer


def build(sizes: Sizes) -> Built:
    """PaliGemma: SigLIP + linear projector + Gemma, prefix-LM; no chat template; 16 image tokens."""
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessorPil,
        SiglipVisionConfig,
    )

    image_size, patch = 32, 8
    spec = TokenizerSpec(
        specials=(*GEMMA_SPECIALS, "<image>"),
        bos="<bos>",
        eos="<eos>",
        pad="<pad>",
        unk="<unk>",
        add_bos=True,
        named={"image_token": "<image>"},
    )
    tokenizer = train_tokenizer(spec)
    image_processor = SiglipImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_mean=HALF,
        image_std=HALF,
        image_seq_length=(image_size // patch) ** 2,  # PaliGemmaProcessor reads it from the image processor
    )
    # the processor adds PaliGemma's 1024 <locNNNN> and 128 <segNNN> tokens, as the published tokenizer has them
    processor = PaliGemmaProcessor(image_processor, tokenizer)
    bos, eos, pad, image = token_ids(tokenizer, "<bos>", "<eos>", "<pad>", "<image>")
    vocab = padded_vocab_size(tokenizer)
    config = PaliGemmaConfig(
        # projection_dim is no declared SiglipVisionConfig field: transformers keeps it as an attribute
        vision_config=SiglipVisionConfig(**{**vit_kwargs(sizes, image_size, patch), "projection_dim": sizes.hidden}),
        text_config=GemmaConfig(**text_kwargs(sizes, vocab, bos, eos, pad), head_dim=sizes.hidden // sizes.heads),
        image_token_index=image,
        vocab_size=vocab,
        projection_dim=sizes.hidden,
        hidden_size=sizes.hidden,
        tie_word_embeddings=False,
    )
    return Built(PaliGemmaForConditionalGeneration(config), processor, [eos], pad, bos)
