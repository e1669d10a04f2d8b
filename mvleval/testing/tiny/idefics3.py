"""Builds the tiny Idefics3 checkpoint (and the tokenizer and template SmolVLM shares with it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mvleval.testing.tiny.common import HALF, Built, Sizes, text_kwargs, vit_kwargs
from mvleval.testing.tiny.tokenizer import TokenizerSpec, padded_vocab_size, token_ids, train_tokenizer

if TYPE_CHECKING:
    from transformers import TokenizersBackend


#: HuggingFaceM4/Idefics3-8B-Llama3 and SmolVLM (which start with <|im_start|>): ``{start}`` is filled per family.
IDEFICS3_TEMPLATE = (
    "{start}{{% for message in messages %}}{{{{message['role'] | capitalize}}}}"
    "{{% if message['content'][0]['type'] == 'image' %}}{{{{':'}}}}{{% else %}}{{{{': '}}}}{{% endif %}}"
    "{{% for line in message['content'] %}}{{% if line['type'] == 'text' %}}{{{{line['text']}}}}"
    "{{% elif line['type'] == 'image' %}}{{{{ '<image>' }}}}{{% endif %}}{{% endfor %}}<end_of_utterance>\n"
    "{{% endfor %}}{{% if add_generation_prompt %}}{{{{ 'Assistant:' }}}}{{% endif %}}"
)


def idefics3_tokenizer(
    bos: str, eos: str, pad: str, *, add_bos: bool, extra: tuple[str, ...] = ()
) -> TokenizersBackend:
    """Idefics3 / SmolVLM tokenizer: image tokens are special; <global-img> and <row_i_col_j> tile tags plain added."""
    tile_tags = tuple(f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7))
    image_tokens = ("<fake_token_around_image>", "<image>", "<end_of_utterance>")
    specials = tuple(dict.fromkeys((bos, eos, pad, *image_tokens, *extra)))
    spec = TokenizerSpec(
        specials=specials, bos=bos, eos=eos, pad=pad, add_bos=add_bos, added=("<global-img>", *tile_tags)
    )
    return train_tokenizer(spec)


def build(sizes: Sizes) -> Built:
    """Idefics3 (Llama 3): SigLIP-like ViT on up to 2x2 tiles + a global image, pixel shuffle 2; 4 tokens a tile."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
        Idefics3VisionConfig,
        LlamaConfig,
    )

    image_size, patch, scale = 32, 8, 2
    # Llama 3's tokenizer adds <|begin_of_text|>, and the template writes it too (as the published ones do)
    tokenizer = idefics3_tokenizer("<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", add_bos=True)
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": 2 * image_size},
        max_image_size={"longest_edge": image_size},
        do_image_splitting=True,
        image_mean=HALF,
        image_std=HALF,
    )
    processor = Idefics3Processor(
        image_processor,
        tokenizer,
        image_seq_len=(image_size // patch) ** 2 // scale**2,
        chat_template=IDEFICS3_TEMPLATE.format(start="<|begin_of_text|>"),
    )
    bos, eos, pad = token_ids(tokenizer, "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>")
    image, end_of_utterance = token_ids(tokenizer, "<image>", "<end_of_utterance>")
    config = Idefics3Config(
        vision_config=Idefics3VisionConfig(**vit_kwargs(sizes, image_size, patch)),
        text_config=LlamaConfig(**text_kwargs(sizes, padded_vocab_size(tokenizer), bos, eos, pad)),
        scale_factor=scale,
        image_token_id=image,
        tie_word_embeddings=False,
    )
    return Built(Idefics3ForConditionalGeneration(config), processor, [eos, end_of_utterance], pad, bos)
