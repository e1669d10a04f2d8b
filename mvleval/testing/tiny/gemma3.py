"""Builds the tiny Gemma 3 checkpoint: SigLIP average-pooled to soft tokens + sliding-window Gemma 3."""

from __future__ import annotations

from mvleval.testing.tiny.common import HALF, SLIDING_WINDOW, Built, Sizes, local_then_global, text_kwargs, vit_kwargs
from mvleval.testing.tiny.tokenizer import GEMMA_SPECIALS, TokenizerSpec, padded_vocab_size, token_ids, train_tokenizer

#: google/gemma-3-*-it: BOS in the template, system text folded into the first user turn, images stay in place.
_GEMMA3_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    '    {%- set first_user_prefix = "" -%}\n'
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    '        {%- set role = "model" -%}\n'
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- else -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\n'}}\n"
    "{%- endif -%}\n"
)


def build(sizes: Sizes) -> Built:
    """Gemma 3: SigLIP (8x8 patches average-pooled to 16 soft tokens) between <start_of_image>/<end_of_image>."""
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
        Gemma3TextConfig,
        SiglipVisionConfig,
    )

    image_size, patch, mm_tokens = 32, 4, 16
    spec = TokenizerSpec(
        specials=(
            *GEMMA_SPECIALS,
            "<start_of_turn>",
            "<end_of_turn>",
            "<start_of_image>",
            "<end_of_image>",
            "<image_soft_token>",
        ),
        bos="<bos>",
        eos="<eos>",
        pad="<pad>",
        unk="<unk>",
        add_bos=True,
        # Gemma3Processor reads all three from the tokenizer
        named={"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"},
    )
    tokenizer = train_tokenizer(spec)
    image_processor = Gemma3ImageProcessorPil(
        size={"height": image_size, "width": image_size}, image_mean=HALF, image_std=HALF, do_pan_and_scan=False
    )
    processor = Gemma3Processor(image_processor, tokenizer, chat_template=_GEMMA3_TEMPLATE, image_seq_length=mm_tokens)
    bos, eos, pad, end_of_turn = token_ids(tokenizer, "<bos>", "<eos>", "<pad>", "<end_of_turn>")
    boi, eoi, soft = token_ids(tokenizer, "<start_of_image>", "<end_of_image>", "<image_soft_token>")
    head_dim = sizes.hidden // sizes.heads
    text = Gemma3TextConfig(
        **text_kwargs(sizes, padded_vocab_size(tokenizer), bos, eos, pad),
        head_dim=head_dim,
        query_pre_attn_scalar=head_dim,
        # as published: local (sliding-window) layers with a global one every 6th (here: 1 local + 1 global), the
        # window shorter than a prompt (16 soft tokens alone) so that padding and positions inside it matter
        sliding_window=SLIDING_WINDOW,
        layer_types=local_then_global(sizes.layers, every=6),
    )
    config = Gemma3Config(
        text_config=text,
        vision_config=SiglipVisionConfig(**vit_kwargs(sizes, image_size, patch)),
        mm_tokens_per_image=mm_tokens,
        boi_token_index=boi,
        eoi_token_index=eoi,
        # the soft tokens are replaced by image features (the processor's image_token_id is <start_of_image>)
        image_token_index=soft,
        tie_word_embeddings=False,
    )
    # instruction-tuned Gemma 3 ends its answers with <end_of_turn>
    return Built(Gemma3ForConditionalGeneration(config), processor, [eos, end_of_turn], pad, bos)
