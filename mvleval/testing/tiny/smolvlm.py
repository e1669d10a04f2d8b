"""Builds the tiny SmolVLM checkpoint: Idefics3's architecture on SmolLM2, saved by an image-only processor."""

from __future__ import annotations

from mvleval.testing.tiny.common import HALF, Built, Sizes, text_kwargs, vit_kwargs
from mvleval.testing.tiny.idefics3 import IDEFICS3_TEMPLATE, idefics3_tokenizer
from mvleval.testing.tiny.image_only import image_only_processor_class
from mvleval.testing.tiny.tokenizer import padded_vocab_size, token_ids


def build(sizes: Sizes) -> Built:
    """SmolVLM: Idefics3's architecture on SmolLM2 (no BOS added); processor saved by its image-only stand-in."""
    from transformers import (
        LlamaConfig,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessorPil,
        SmolVLMVisionConfig,
    )

    image_size, patch, scale = 32, 8, 2
    tokenizer = idefics3_tokenizer(
        "<|im_start|>", "<end_of_utterance>", "<|im_end|>", add_bos=False, extra=("<|endoftext|>", "<video>")
    )
    image_processor = SmolVLMImageProcessorPil(
        size={"longest_edge": 2 * image_size},
        max_image_size={"longest_edge": image_size},
        do_image_splitting=True,
        image_mean=HALF,
        image_std=HALF,
    )
    processor = image_only_processor_class("smolvlm")(
        image_processor,
        tokenizer,
        image_seq_len=(image_size // patch) ** 2 // scale**2,
        chat_template=IDEFICS3_TEMPLATE.format(start="<|im_start|>"),
    )
    bos, eos, pad, image = token_ids(tokenizer, "<|im_start|>", "<end_of_utterance>", "<|im_end|>", "<image>")
    config = SmolVLMConfig(
        vision_config=SmolVLMVisionConfig(**vit_kwargs(sizes, image_size, patch)),
        text_config=LlamaConfig(**text_kwargs(sizes, padded_vocab_size(tokenizer), bos, eos, pad)),
        scale_factor=scale,
        image_token_id=image,
        tie_word_embeddings=False,
    )
    # what SmolVLMProcessor.save_pretrained would write for its video processor (not constructible here)
    video = {
        "video_processor_type": "SmolVLMVideoProcessor",
        "processor_class": "SmolVLMProcessor",
        "size": {"longest_edge": 2 * image_size},
        "max_image_size": {"longest_edge": image_size},
        "image_mean": list(HALF),
        "image_std": list(HALF),
        "do_resize": True,
        "do_rescale": True,
        "do_normalize": True,
        "do_convert_rgb": True,
        "do_pad": True,
        "rescale_factor": 1 / 255,
        "resample": 1,
        "fps": 1,
        "num_frames": 8,
        "do_sample_frames": False,
    }
    model = SmolVLMForConditionalGeneration(config)
    return Built(model, processor, [eos], pad, bos, {"video_processor": video}, "SmolVLMProcessor")
