"""Trains the tiny checkpoints' tokenizers offline: a byte-level BPE per family and InstructBLIP's Q-Former WordPiece."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mvleval.testing.factory import TOKENIZER_CORPUS

if TYPE_CHECKING:
    from transformers import TokenizersBackend


#: Chat scaffolding (role names, Qwen's system prompt) and a few prompts, so they tokenise compactly as in a real
#: vocabulary; appended to mvleval's multilingual corpus (12 languages, 8 scripts).
_CHAT_CORPUS: tuple[str, ...] = (
    "system",
    "user",
    "assistant",
    "model",
    "User:",
    "Assistant:",
    "USER:",
    "ASSISTANT:",
    "You are a helpful assistant.",
    "Describe the image.",
    "What is in the picture?",
    "Beschreibe das Bild.",
    "Опиши картинку.",
    "描述这张图片。",
    "caption en",
    "answer en",
)


#: BPE merges beyond the byte alphabet and the special tokens: small, so embeddings stay a few hundred kB.
_BPE_VOCAB_SIZE = 1000


@dataclass(frozen=True)
class TokenizerSpec:
    """The special tokens of one family's tokenizer, in id order, and which of them play which role."""

    specials: tuple[str, ...]
    bos: str | None
    eos: str
    pad: str
    unk: str | None = None
    add_bos: bool = False
    #: model-specific named tokens (``tokenizer.image_token`` etc.), where the published tokenizer_config.json has them
    named: dict[str, str] = field(default_factory=dict)
    #: added tokens that are not special (kept whole, still printed when decoding)
    added: tuple[str, ...] = ()
    #: the padding side saved in tokenizer_config.json, where the published tokenizer saves one
    padding_side: str | None = None


#: Llama 2 / Vicuna / Mistral sentencepiece tokenizers' special tokens (llava-hf adds <image> and <pad>).
LLAMA2_SPEC = TokenizerSpec(
    specials=("<unk>", "<s>", "</s>", "<pad>", "<image>"), bos="<s>", eos="</s>", pad="<pad>", unk="<unk>", add_bos=True
)


#: Gemma's first four ids.
GEMMA_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>")


def train_tokenizer(spec: TokenizerSpec) -> TokenizersBackend:
    """A byte-level BPE (deterministic) holding the family's special tokens at the lowest ids."""
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        trainers,
    )
    from transformers import TokenizersBackend

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_BPE_VOCAB_SIZE + len(spec.specials),
        special_tokens=list(spec.specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([*TOKENIZER_CORPUS, *_CHAT_CORPUS], trainer=trainer)
    if spec.added:
        tok.add_tokens([AddedToken(token, normalized=False, special=False) for token in spec.added])
    return TokenizersBackend(
        tokenizer_object=tok,
        bos_token=spec.bos,
        eos_token=spec.eos,
        pad_token=spec.pad,
        unk_token=spec.unk,
        add_bos_token=spec.add_bos,
        extra_special_tokens=dict(spec.named) or None,
        model_max_length=4096,
        **({"padding_side": spec.padding_side} if spec.padding_side else {}),
    )


def train_bert_wordpiece(corpus: Sequence[str], vocab_size: int = 600) -> TokenizersBackend:
    """A BERT-style uncased WordPiece tokenizer ([CLS] text [SEP]) for InstructBLIP's Q-Former instruction.

    Like bert-base-uncased (which the published InstructBLIP checkpoints ship as ``qformer_tokenizer/``), it saves
    ``padding_side: "right"`` in its tokenizer_config.json.

    The vocabulary is counted here rather than with ``WordPieceTrainer``, whose ids change with the process's hash
    seed: special tokens, every character alone and as a ``##`` continuation, then the most frequent words.
    """
    from collections import Counter

    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from transformers import TokenizersBackend

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for sentence in corpus:
        words.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(sentence)))
    chars = sorted({char for word in words for char in word})
    pieces = [*specials, *chars, *(f"##{char}" for char in chars)]
    known = set(pieces)
    for word, _ in sorted(words.items(), key=lambda item: (-item[1], item[0])):
        if len(pieces) >= vocab_size:
            break
        if word not in known:
            pieces.append(word)
            known.add(word)
    tok = Tokenizer(models.WordPiece(vocab={piece: i for i, piece in enumerate(pieces)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return TokenizersBackend(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
        padding_side="right",
    )


def token_ids(tokenizer: TokenizersBackend, *tokens: str) -> list[int]:
    """Ids of tokens that must each be one vocabulary entry (a typo would otherwise become <unk> or None)."""
    ids: list[int] = []
    for token in tokens:
        token_id = tokenizer.convert_tokens_to_ids(token)  # an int for one token, None when transformers finds none
        if not isinstance(token_id, int) or (tokenizer.unk_token_id is not None and token_id == tokenizer.unk_token_id):
            raise AssertionError(f"special token {token!r} is not in the tiny tokenizer")
        ids.append(token_id)
    return ids


def padded_vocab_size(tokenizer: TokenizersBackend) -> int:
    # real checkpoints pad the embedding matrix past the tokenizer; to a multiple of 64 as most do
    return -(-len(tokenizer) // 64) * 64
