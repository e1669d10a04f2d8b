"""Building tiny, deterministic mBLIP-shaped checkpoints (BLIP-2 + mT5 or BLOOM) for tests, demos and benchmarks.

A checkpoint built here is saved with ``save_pretrained`` exactly like a published one (config.json, safetensors
weights, tokenizer files, image processor and processor configs), so the backend loads it through the same code
path as ``Gregor/mblip-mt0-xl`` or ``Gregor/mblip-bloomz-7b``. Everything is offline: the tokenizer is trained on
the small multilingual corpus below (sentencepiece unigram for mT5, byte-level BPE for BLOOM, both deterministic).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

from mvleval.util.errors import MvlevalError

if TYPE_CHECKING:
    from transformers import Blip2ForConditionalGeneration, T5Tokenizer, TokenizersBackend

logger = logging.getLogger("mvleval.testing.factory")

#: The words a synthetic demo talks about, per language: colours, shapes, numbers 1-5 and the answers yes/no/maybe.
#: Languages cover the scripts mBLIP's benchmarks use: Latin, Cyrillic, Han, Kana, Arabic, Devanagari, Bengali, Thai.
LEXICON: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "colours": ("red", "green", "blue", "yellow", "black", "white"),
        "shapes": ("circle", "square", "triangle"),
        "numbers": ("one", "two", "three", "four", "five"),
        "answers": ("yes", "no", "maybe"),
    },
    "de": {
        "colours": ("rot", "grün", "blau", "gelb", "schwarz", "weiß"),
        "shapes": ("Kreis", "Quadrat", "Dreieck"),
        "numbers": ("eins", "zwei", "drei", "vier", "fünf"),
        "answers": ("ja", "nein", "vielleicht"),
    },
    "fr": {
        "colours": ("rouge", "vert", "bleu", "jaune", "noir", "blanc"),
        "shapes": ("cercle", "carré", "triangle"),
        "numbers": ("un", "deux", "trois", "quatre", "cinq"),
        "answers": ("oui", "non", "peut-être"),
    },
    "es": {
        "colours": ("rojo", "verde", "azul", "amarillo", "negro", "blanco"),
        "shapes": ("círculo", "cuadrado", "triángulo"),
        "numbers": ("uno", "dos", "tres", "cuatro", "cinco"),
        "answers": ("sí", "no", "quizás"),
    },
    "id": {
        "colours": ("merah", "hijau", "biru", "kuning", "hitam", "putih"),
        "shapes": ("lingkaran", "persegi", "segitiga"),
        "numbers": ("satu", "dua", "tiga", "empat", "lima"),
        "answers": ("ya", "tidak", "mungkin"),
    },
    "ru": {
        "colours": ("красный", "зелёный", "синий", "жёлтый", "чёрный", "белый"),
        "shapes": ("круг", "квадрат", "треугольник"),
        "numbers": ("один", "два", "три", "четыре", "пять"),
        "answers": ("да", "нет", "может быть"),
    },
    "zh": {
        "colours": ("红色", "绿色", "蓝色", "黄色", "黑色", "白色"),
        "shapes": ("圆形", "正方形", "三角形"),
        "numbers": ("一", "二", "三", "四", "五"),
        "answers": ("是", "不是", "也许"),
    },
    "ja": {
        "colours": ("赤", "緑", "青", "黄色", "黒", "白"),
        "shapes": ("円", "四角", "三角"),
        "numbers": ("一つ", "二つ", "三つ", "四つ", "五つ"),
        "answers": ("はい", "いいえ", "たぶん"),
    },
    "ar": {
        "colours": ("أحمر", "أخضر", "أزرق", "أصفر", "أسود", "أبيض"),
        "shapes": ("دائرة", "مربع", "مثلث"),
        "numbers": ("واحد", "اثنان", "ثلاثة", "أربعة", "خمسة"),
        "answers": ("نعم", "لا", "ربما"),
    },
    "hi": {
        "colours": ("लाल", "हरा", "नीला", "पीला", "काला", "सफ़ेद"),
        "shapes": ("वृत्त", "वर्ग", "त्रिकोण"),
        "numbers": ("एक", "दो", "तीन", "चार", "पाँच"),
        "answers": ("हाँ", "नहीं", "शायद"),
    },
    "bn": {
        "colours": ("লাল", "সবুজ", "নীল", "হলুদ", "কালো", "সাদা"),
        "shapes": ("বৃত্ত", "বর্গ", "ত্রিভুজ"),
        "numbers": ("এক", "দুই", "তিন", "চার", "পাঁচ"),
        "answers": ("হ্যাঁ", "না", "হয়তো"),
    },
    "th": {
        "colours": ("สีแดง", "สีเขียว", "สีน้ำเงิน", "สีเหลือง", "สีดำ", "สีขาว"),
        "shapes": ("วงกลม", "สี่เหลี่ยม", "สามเหลี่ยม"),
        "numbers": ("หนึ่ง", "สอง", "สาม", "สี่", "ห้า"),
        "answers": ("ใช่", "ไม่ใช่", "อาจจะ"),
    },
}

#: mBLIP's prompt templates (NOTES.md) with the English language names they use, so prompts tokenise compactly.
PROMPT_TEXTS: tuple[str, ...] = (
    "Caption in English: ",
    "Caption in German: ",
    "Caption in French: ",
    "Caption in Spanish: ",
    "Caption in Indonesian: ",
    "Caption in Russian: ",
    "Caption in Chinese: ",
    "Caption in Japanese: ",
    "Caption in Arabic: ",
    "Caption in Hindi: ",
    "Caption in Bengali: ",
    "Caption in Thai: ",
    "Question: What colour is the shape? Short answer in English:",
    "Question: How many shapes are there? Short answer in English:",
    "Question: Is there a circle? Short answer in English:",
    'Based on the two images, is it correct to say "there are two circles"? Yes or no?',
    'Is it guaranteed true that "the square is red"? Yes, no, or maybe? Answer in English:',
)


def _lexicon_sentences() -> list[str]:
    """Short captions and answers in every language, built deterministically from LEXICON."""
    sentences: list[str] = []
    for words in LEXICON.values():
        colours, shapes, numbers, answers = words["colours"], words["shapes"], words["numbers"], words["answers"]
        # every number x colour x shape combination, so each word is frequent enough to stay one piece
        for number in numbers:
            for colour in colours:
                for shape in shapes:
                    sentences.append(f"{number} {colour} {shape}")
        for colour in colours:
            for shape in shapes:
                sentences.append(f"{colour} {shape}")
        # every word also stands alone, repeated, so the tokenizer keeps it as one piece (or very few):
        # a short answer such as "yes" or "two" should cost one or two decoding steps, as in a real vocabulary
        for group in (answers, numbers, colours, shapes):
            sentences.extend(list(group) * 10)
        sentences.extend(" ".join(answers) for _ in range(10))
    return sentences


#: The tokenizer-training corpus: prompts, captions and answers in 12 languages. A demo may extend it
#: (``build_tiny_checkpoint(..., corpus=TOKENIZER_CORPUS + extra)``); the order of sentences is part of the recipe.
TOKENIZER_CORPUS: tuple[str, ...] = tuple(list(PROMPT_TEXTS) * 10 + _lexicon_sentences())

#: BLOOM's special tokens in its order (unk 0, bos 1, eos 2, pad 3); mT5's (pad 0, eos 1, unk 2, no bos) are set
#: through sentencepiece's ids below.
_BLOOM_SPECIALS = ("<unk>", "<s>", "</s>", "<pad>")

#: BLIP-2's image normalisation (OpenAI CLIP statistics), as in Salesforce/blip2-* and mBLIP's preprocessor_config.json.
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _train_mt5_tokenizer(corpus: Sequence[str], vocab_size: int) -> T5Tokenizer:
    """A sentencepiece unigram model (single-threaded: deterministic) loaded into mT5's tokenizer class."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2
    from transformers import T5Tokenizer

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(corpus)),
        model_writer=buffer,
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,  # a small corpus cannot always fill the requested size
        character_coverage=1.0,  # keep every Han/Thai/Bengali character rather than mapping rare ones to <unk>
        normalization_rule_name="nmt_nfkc",  # what mT5's spiece.model uses
        num_threads=1,  # multi-threaded EM is not bit-reproducible
        shuffle_input_sentence=False,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,  # mT5 has no BOS
        minloglevel=2,
    )
    # protobuf's builder defines the message classes when the module is imported: no static attribute to type
    proto = vars(sentencepiece_model_pb2)["ModelProto"]()
    proto.ParseFromString(buffer.getvalue())
    vocab = [(piece.piece, float(piece.score)) for piece in proto.pieces]
    return T5Tokenizer(
        vocab=vocab,
        _spm_precompiled_charsmap=proto.normalizer_spec.precompiled_charsmap,
        extra_ids=0,
        model_max_length=512,
    )


def _train_bloom_tokenizer(corpus: Sequence[str], vocab_size: int) -> TokenizersBackend:
    """A byte-level BPE like BLOOM's (no BOS/EOS added when encoding), trained deterministically."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import TokenizersBackend

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(_BLOOM_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    return TokenizersBackend(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        padding_side="left",  # as bloomz's tokenizer_config.json
        model_max_length=2048,
    )


def _reinitialise_variance_preserving(model: Blip2ForConditionalGeneration) -> None:
    """Re-draw weights so an untrained tiny model's output depends on its image and prompt.

    With transformers' default initialisation (std 0.02, zero query tokens) a tiny random BLIP-2 generates the same
    tokens whatever the image: the projected image embeddings are ~10x smaller than the token embeddings and the
    identical zero queries read the same thing. Tests that compare predictions (batched vs single, cached vs not,
    image A vs image B) need a model whose answers change with the input, so every Linear gets std 1/sqrt(fan_in)
    (activations keep their scale through the layers), embeddings and query tokens std 1.
    """
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(mean=0.0, std=module.in_features**-0.5)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, torch.nn.Embedding):
                module.weight.normal_(mean=0.0, std=1.0)
        model.query_tokens.normal_(mean=0.0, std=1.0)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def build_tiny_checkpoint(
    out_dir: Path,
    kind: Literal["mt5", "bloom"],
    *,
    seed: int = 0,
    vision_hidden: int = 32,
    text_hidden: int = 32,
    qformer_hidden: int | None = None,
    num_query_tokens: int = 8,
    image_size: int = 32,
    patch_size: int | None = None,
    layers: int = 2,
    vision_layers: int | None = None,
    qformer_layers: int | None = None,
    text_layers: int | None = None,
    num_heads: int = 4,
    mlp_ratio: int = 4,
    tokenizer_vocab_size: int = 1200,
    corpus: Sequence[str] = TOKENIZER_CORPUS,
    legacy_layout: bool = False,
) -> Path:
    """Build and save a small random mBLIP-shaped checkpoint; the same arguments give byte-identical weights.

    Args:
        out_dir: folder to write into (created; existing files with the same names are overwritten).
        kind: "mt5" (encoder-decoder, like mblip-mt0-xl) or "bloom" (decoder-only, like mblip-bloomz-7b).
        seed: seeds the weight initialisation (the tokenizer depends only on `corpus` and the vocabulary size).
        vision_hidden: ViT width.
        text_hidden: language model width (d_model / hidden_size).
        qformer_hidden: Q-Former width (defaults to `vision_hidden`).
        num_query_tokens: Q-Former queries = image positions per image in the language model input.
        image_size: square input resolution of the image processor and the ViT.
        patch_size: ViT patch size (defaults to image_size // 4, or 14 when image_size is 224 like BLIP-2).
        layers: depth used for the ViT, the Q-Former and the language model unless set individually.
        vision_layers: ViT depth (defaults to `layers`).
        qformer_layers: Q-Former depth (defaults to `layers`; every layer cross-attends to the image).
        text_layers: language model depth (encoder and decoder for mT5; defaults to `layers`).
        num_heads: attention heads in every part (each width must be divisible by it).
        mlp_ratio: feed-forward width as a multiple of the hidden width.
        tokenizer_vocab_size: target vocabulary size of the trained tokenizer (sentencepiece may stop earlier).
        corpus: tokenizer training sentences; extend TOKENIZER_CORPUS rather than replacing it.
        legacy_layout: save like the published mBLIP checkpoints: tokenizer files and preprocessor_config.json
            but no processor_config.json, no ``<image>`` token in the tokenizer, no num_query_tokens and no
            image_token_index in config.json (the backend completes them from the model config).

    Returns:
        `out_dir`.

    Raises:
        MvlevalError: an unknown `kind` or inconsistent sizes.
    """
    import torch
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessorPil,
        BloomConfig,
        MT5Config,
    )

    if kind not in ("mt5", "bloom"):
        raise MvlevalError(f"unknown tiny checkpoint kind '{kind}'.", fix="use 'mt5' or 'bloom'.")
    qformer_hidden = qformer_hidden or vision_hidden
    for name, width in (
        ("vision_hidden", vision_hidden),
        ("text_hidden", text_hidden),
        ("qformer_hidden", qformer_hidden),
    ):
        if width % num_heads:
            raise MvlevalError(f"{name}={width} is not divisible by num_heads={num_heads}.", fix="change one of them.")
    if patch_size is None:
        patch_size = 14 if image_size == 224 else max(1, image_size // 4)
    if image_size % patch_size:
        raise MvlevalError(
            f"image_size={image_size} is not a multiple of patch_size={patch_size}.", fix="change one of them."
        )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # -- tokenizer + processor (the processor adds the <image> token, which the embedding matrix must cover) ---------
    tokenizer = (
        _train_mt5_tokenizer(corpus, tokenizer_vocab_size)
        if kind == "mt5"
        else _train_bloom_tokenizer(corpus, tokenizer_vocab_size)
    )
    image_processor = BlipImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_mean=_CLIP_MEAN,
        image_std=_CLIP_STD,
    )
    if legacy_layout:
        # saved before Blip2Processor adds its <image> token to the tokenizer, as the published checkpoints were
        tokenizer.save_pretrained(out_dir)
        image_processor.save_pretrained(out_dir)
    processor = Blip2Processor(image_processor, tokenizer, num_query_tokens=num_query_tokens)
    # one token in, one id out (a list comes back only for a list of tokens)
    image_token_index = cast("int | None", tokenizer.convert_tokens_to_ids(processor.image_token.content))
    # real checkpoints pad the embedding matrix past the tokenizer (mt0: 250112 rows for 250100 pieces)
    vocab_size = _round_up(len(tokenizer), 64)

    # -- model ---------------------------------------------------------------------------------------------------
    v_layers = vision_layers or layers
    q_layers = qformer_layers or layers
    t_layers = text_layers or layers
    text_config: MT5Config | BloomConfig
    if kind == "mt5":
        text_config = MT5Config(
            vocab_size=vocab_size,
            d_model=text_hidden,
            d_kv=text_hidden // num_heads,
            d_ff=text_hidden * mlp_ratio,
            num_layers=t_layers,
            num_decoder_layers=t_layers,
            num_heads=num_heads,
            feed_forward_proj="gated-gelu",  # mT5/mT0 use gated GELU
            dropout_rate=0.0,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
        )
    else:
        text_config = BloomConfig(
            vocab_size=vocab_size,
            hidden_size=text_hidden,
            n_layer=t_layers,
            n_head=num_heads,
            hidden_dropout=0.0,
            attention_dropout=0.0,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            # BLOOM ties lm_head to the embeddings, but a random tied model just repeats its last prompt token
            # whatever the image; untied, the tiny model's answers depend on image and prompt (tests need that)
            tie_word_embeddings=False,
        )
    config = Blip2Config(
        vision_config={
            "hidden_size": vision_hidden,
            "intermediate_size": vision_hidden * mlp_ratio,
            "num_hidden_layers": v_layers,
            "num_attention_heads": num_heads,
            "image_size": image_size,
            "patch_size": patch_size,
        },
        qformer_config={
            "hidden_size": qformer_hidden,
            "intermediate_size": qformer_hidden * mlp_ratio,
            "num_hidden_layers": q_layers,
            "num_attention_heads": num_heads,
            "cross_attention_frequency": 1,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
        },
        text_config=text_config.to_dict(),
        num_query_tokens=num_query_tokens,
        image_token_index=None if legacy_layout else image_token_index,
    )
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG state untouched
        torch.manual_seed(seed)
        model = Blip2ForConditionalGeneration(config)
        _reinitialise_variance_preserving(model)
    model.eval()
    model.save_pretrained(out_dir)  # safetensors
    if not legacy_layout:
        processor.save_pretrained(out_dir)
    logger.info("built tiny %s checkpoint (seed %d, vocab %d) in %s", kind, seed, vocab_size, out_dir)
    return out_dir
