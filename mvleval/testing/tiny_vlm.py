"""Tiny real vision-LLM checkpoints of every family mvleval's generic backend supports, built from config (tests, bench, no download).

Each builder makes a random model of one transformers family (width 32, 2 layers, a tiny vision tower on 28-64 px
images), a byte-level BPE tokenizer trained offline on mvleval's multilingual corpus with the family's special
tokens, the family's PIL image processor and, where the published checkpoints have one, a chat template shaped like
theirs. Everything is written with ``save_pretrained`` (config.json, model.safetensors, generation_config.json,
tokenizer files, processor_config.json, chat_template.jinja), so a checkpoint loads through the same
``AutoModelForImageTextToText`` / ``AutoProcessor`` code path as the published one, offline, in well under a second.

Weights are re-drawn with a variance-preserving initialisation and the language-model head is untied, so a tiny
model's answer changes with its image and prompt: tests that compare predictions (batched vs single, image A vs
image B) need that.

Qwen2-VL, Qwen2.5-VL and SmolVLM processors hold a video processor, which transformers 5.23 cannot construct without
torchvision. Their checkpoints are saved by an image-only subclass of the real processor and name the real processor
class and a video-processor entry in processor_config.json, as a published checkpoint does; :func:`load_processor`
loads the image-only variant (same ``__call__``, token expansion and chat template) when torchvision is missing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mvleval.errors import MvlevalError, did_you_mean
from mvleval.factory import TOKENIZER_CORPUS

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, ProcessorMixin, TokenizersBackend

logger = logging.getLogger("mvleval.testing.tiny_vlm")

#: Every family a tiny checkpoint can be built for (transformers ``model_type`` names).
FAMILIES: tuple[str, ...] = (
    "qwen2_vl",
    "qwen2_5_vl",
    "paligemma",
    "llava",
    "llava_next",
    "idefics3",
    "smolvlm",
    "gemma3",
    "aya_vision",
    "instructblip",
    "mllama",
)

#: Families whose processor and model take several images in one prompt. InstructBLIP's Q-Former reads one image.
#: (PaliGemma and llava-1.5 were trained on single images; their processors and models still accept several.)
_MULTI_IMAGE: frozenset[str] = frozenset(FAMILIES) - {"instructblip"}

#: Families whose processor includes a video processor, which transformers 5.23 cannot construct without torchvision.
_NEEDS_TORCHVISION: frozenset[str] = frozenset({"qwen2_vl", "qwen2_5_vl", "smolvlm"})

#: OpenAI CLIP normalisation (llava, llava-next, instructblip, qwen2-vl, mllama) and SigLIP's (the others).
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_HALF = (0.5, 0.5, 0.5)

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

# -- chat templates -------------------------------------------------------------------------------------------------
# Modelled on the published checkpoints' templates: same turn markers, image placeholders and image placement; tool,
# document and date preambles are left out. PaliGemma and InstructBLIP have none (processor(text=..., images=...)).

#: Qwen/Qwen2-VL-*-Instruct (Qwen2.5-VL ships the same): default system prompt, images stay where they are.
_QWEN2_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: llava-hf/llava-1.5-*-hf: every image of a turn first, then its text.
_LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{# Render all text next #}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

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

#: HuggingFaceM4/Idefics3-8B-Llama3 and SmolVLM (which start with <|im_start|>): ``{start}`` is filled per family.
_IDEFICS3_TEMPLATE = (
    "{start}{{% for message in messages %}}{{{{message['role'] | capitalize}}}}"
    "{{% if message['content'][0]['type'] == 'image' %}}{{{{':'}}}}{{% else %}}{{{{': '}}}}{{% endif %}}"
    "{{% for line in message['content'] %}}{{% if line['type'] == 'text' %}}{{{{line['text']}}}}"
    "{{% elif line['type'] == 'image' %}}{{{{ '<image>' }}}}{{% endif %}}{{% endfor %}}<end_of_utterance>\n"
    "{{% endfor %}}{{% if add_generation_prompt %}}{{{{ 'Assistant:' }}}}{{% endif %}}"
)

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

#: meta-llama/Llama-3.2-*-Vision-Instruct without its date/tool preamble: header turns, images stay in place.
_MLLAMA_TEMPLATE = (
    "{% for message in messages %}{% if loop.index0 == 0 %}{{ bos_token }}{% endif %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<|image|>' }}{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


# -- public API -----------------------------------------------------------------------------------------------------


def multi_image(family: str) -> bool:
    """Whether `family` accepts several images in one user turn.

    Args:
        family: one of FAMILIES.

    Returns:
        True for every family but InstructBLIP, whose Q-Former reads a single image per prompt.

    Raises:
        MvlevalError: `family` is not in FAMILIES.
    """
    _check_family(family)
    return family in _MULTI_IMAGE


def needs_torchvision(family: str) -> bool:
    """Whether `family`'s processor cannot be constructed without torchvision in transformers 5.23.

    Qwen2-VL, Qwen2.5-VL and SmolVLM processors take a video processor, and every video processor class is a
    torchvision-only dummy there: ``AutoProcessor.from_pretrained`` raises ImportError for them even with
    ``backend="pil"``. :func:`load_processor` still gives a working image-only processor.

    Args:
        family: one of FAMILIES.

    Returns:
        True for qwen2_vl, qwen2_5_vl and smolvlm.

    Raises:
        MvlevalError: `family` is not in FAMILIES.
    """
    _check_family(family)
    return family in _NEEDS_TORCHVISION


def build_tiny_vlm(family: str, out_dir: Path, *, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """Build a tiny random model of `family` from its config and save it like a published checkpoint.

    The same arguments give byte-identical files, whatever the process's hash seed (the tokenizer depends only on
    the family). Takes ~0.1 s and ~0.6 MB (PaliGemma ~1.1 MB: its processor adds 1152 location/segmentation tokens).

    Args:
        family: one of FAMILIES.
        out_dir: folder to write into (created; files with the same names are overwritten).
        seed: seeds the weight initialisation.
        hidden: width of the language model and of the vision tower (a multiple of 8, at least 16).
        layers: depth of the language model and of the vision tower (at least 2: Mllama's last text layer is its
            cross-attention layer).

    Returns:
        `out_dir`.

    Raises:
        MvlevalError: an unknown family or unusable sizes.
    """
    import torch

    _check_family(family)
    if hidden < 16 or hidden % 8:
        raise MvlevalError(f"hidden={hidden} is not a multiple of 8 of at least 16.", fix="use e.g. 32 or 64.")
    if layers < 2:
        raise MvlevalError(f"layers={layers} is below 2.", fix="use 2 or more.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG state untouched
        torch.manual_seed(seed)
        built = _BUILDERS[family](_Sizes(hidden=hidden, layers=layers))
        _reinitialise_variance_preserving(built.model)
    _save(built, out_dir)
    logger.info("built tiny %s checkpoint (seed %d) in %s", family, seed, out_dir)
    return out_dir


def load_processor(model_dir: Path, family: str | None = None) -> ProcessorMixin:
    """Load a checkpoint's processor with PIL image processing, falling back to image-only without torchvision.

    Args:
        model_dir: a folder written by :func:`build_tiny_vlm` (or any local checkpoint).
        family: the checkpoint's family; read from config.json when omitted.

    Returns:
        ``AutoProcessor.from_pretrained(model_dir, backend="pil")``; for Qwen2-VL, Qwen2.5-VL and SmolVLM without
        torchvision, an image-only subclass of the real processor class loaded from the same files.
    """
    from transformers import AutoProcessor
    from transformers.utils import is_torchvision_available

    model_dir = Path(model_dir)
    if family is None:
        family = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))["model_type"]
    if family in _NEEDS_TORCHVISION and not is_torchvision_available():
        return _image_only_processor_class(family).from_pretrained(model_dir, backend="pil")
    return AutoProcessor.from_pretrained(model_dir, backend="pil")


# -- shared helpers -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sizes:
    """Widths and depths shared by every builder."""

    hidden: int
    layers: int

    @property
    def heads(self) -> int:
        # head width 8 keeps every family's rotary / multimodal-rope split integral
        return max(2, self.hidden // 8)

    @property
    def mlp(self) -> int:
        return self.hidden * 4


@dataclass
class _Built:
    """What a family builder returns: the model, its processor and generation's special token ids."""

    model: PreTrainedModel
    processor: ProcessorMixin
    eos_token_ids: list[int]
    pad_token_id: int
    bos_token_id: int | None
    #: processor_config.json entries of sub-processors that cannot be constructed here (video processors)
    processor_config_extra: dict[str, Any] = field(default_factory=dict)
    #: the published processor class, when an image-only stand-in saved the processor
    processor_class: str | None = None


@dataclass(frozen=True)
class _TokenizerSpec:
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


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise MvlevalError(
            f"unknown vision-LLM family '{family}'.{did_you_mean(family, FAMILIES)}",
            fix=f"use one of {', '.join(FAMILIES)}.",
        )


def _train_tokenizer(spec: _TokenizerSpec) -> TokenizersBackend:
    """A byte-level BPE (deterministic) holding the family's special tokens at the lowest ids."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
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


def _train_bert_wordpiece(corpus: Sequence[str], vocab_size: int = 600) -> TokenizersBackend:
    """A BERT-style uncased WordPiece tokenizer ([CLS] text [SEP]) for InstructBLIP's Q-Former instruction.

    Like bert-base-uncased (which the published InstructBLIP checkpoints ship as ``qformer_tokenizer/``), it saves
    ``padding_side: "right"`` in its tokenizer_config.json.

    The vocabulary is counted here rather than with ``WordPieceTrainer``, whose ids change with the process's hash
    seed: special tokens, every character alone and as a ``##`` continuation, then the most frequent words.
    """
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
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


def _ids(tokenizer: TokenizersBackend, *tokens: str) -> list[int]:
    """Ids of tokens that must each be one vocabulary entry (a typo would otherwise become <unk> or None)."""
    ids = [tokenizer.convert_tokens_to_ids(token) for token in tokens]
    for token, token_id in zip(tokens, ids):
        if token_id is None or (tokenizer.unk_token_id is not None and token_id == tokenizer.unk_token_id):
            raise AssertionError(f"special token {token!r} is not in the tiny tokenizer")
    return ids


def _vocab_size(tokenizer: TokenizersBackend) -> int:
    # real checkpoints pad the embedding matrix past the tokenizer; to a multiple of 64 as most do
    return -(-len(tokenizer) // 64) * 64


def _text_kwargs(sizes: _Sizes, vocab_size: int, bos: int | None, eos: int, pad: int) -> dict[str, Any]:
    """Arguments shared by the Llama-like language-model configs."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": sizes.hidden,
        "intermediate_size": sizes.mlp,
        "num_hidden_layers": sizes.layers,
        "num_attention_heads": sizes.heads,
        "num_key_value_heads": sizes.heads,
        "max_position_embeddings": 4096,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        # tied and random, a tiny model mostly repeats its last prompt token whatever the image
        "tie_word_embeddings": False,
    }


#: Sliding-window width of the Gemma 3 and Aya Vision (Cohere2) language models: shorter than every tiny prompt.
_SLIDING_WINDOW = 5


def _local_then_global(layers: int, every: int) -> list[str]:
    """Layer types of a model with a global-attention layer every `every` layers, the rest sliding-window; the last
    layer is global whatever the depth (a tiny model would otherwise have no global layer)."""
    types = ["full_attention" if (i + 1) % every == 0 else "sliding_attention" for i in range(layers)]
    types[-1] = "full_attention"
    return types


def _vit_kwargs(sizes: _Sizes, image_size: int, patch_size: int) -> dict[str, Any]:
    """Arguments shared by the CLIP / SigLIP / Idefics3 / BLIP vision-tower configs."""
    return {
        "hidden_size": sizes.hidden,
        "intermediate_size": sizes.mlp,
        "num_hidden_layers": sizes.layers,
        "num_attention_heads": sizes.heads,
        "image_size": image_size,
        "patch_size": patch_size,
    }


def _reinitialise_variance_preserving(model: torch.nn.Module) -> None:
    """Re-draw weights so an untrained tiny model's answer depends on its image and prompt.

    With transformers' default initialisation (std 0.02, zero gates, zero projections) tiny random models generate
    the same tokens whatever the input. Every Linear and convolution gets std 1/sqrt(fan_in) (activations keep their
    scale through the layers); embeddings, learned queries, class embeddings and image-newline vectors std 1;
    Gemma 3's projection matrix (a bare zero Parameter, which would blank every image) std 1/sqrt(fan_in); Mllama's
    scalar tanh gates (zero, which would switch cross-attention to the image off) 1.
    """
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Conv3d)):
                module.weight.normal_(mean=0.0, std=module.weight[0].numel() ** -0.5)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, torch.nn.Embedding):
                module.weight.normal_(mean=0.0, std=1.0)
        for name, param in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("query_tokens", "image_newline", "class_embedding"):
                param.normal_(mean=0.0, std=1.0)
            elif leaf == "mm_input_projection_weight":  # used as features @ weight: fan_in is the first dimension
                param.normal_(mean=0.0, std=param.shape[0] ** -0.5)
            elif "gate" in leaf and param.numel() == 1:
                param.fill_(1.0)


def _save(built: _Built, out_dir: Path) -> None:
    """save_pretrained model, generation config and processor; complete processor_config.json where needed."""
    from transformers import GenerationConfig
    from transformers.utils import logging as hf_logging

    model = built.model.eval()
    eos = built.eos_token_ids
    model.generation_config = GenerationConfig(
        bos_token_id=built.bos_token_id, eos_token_id=eos if len(eos) > 1 else eos[0], pad_token_id=built.pad_token_id
    )
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Writing model shards" bar per tiny checkpoint clutters test output
    try:
        model.save_pretrained(out_dir)  # safetensors
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    built.processor.save_pretrained(out_dir)
    if not (built.processor_config_extra or built.processor_class):
        return
    # an image-only stand-in saved the processor: name the published class and its video processor, as the
    # published checkpoint's processor_config.json does, so AutoProcessor builds the real one where torchvision is
    path = out_dir / "processor_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(built.processor_config_extra)
    if built.processor_class:
        config["processor_class"] = built.processor_class
        tokenizer_path = out_dir / "tokenizer_config.json"
        tokenizer_config = json.loads(tokenizer_path.read_text(encoding="utf-8"))
        tokenizer_config["processor_class"] = built.processor_class
        tokenizer_path.write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# -- image-only processors (no torchvision) -------------------------------------------------------------------------

_IMAGE_ONLY_CLASSES: dict[str, type] = {}


def _image_only_processor_class(family: str) -> type:
    """A subclass of the family's processor whose sub-processors are the image processor and the tokenizer only.

    ProcessorMixin derives a processor's sub-processors from its ``__init__`` signature, so an ``__init__`` without
    ``video_processor`` is enough for construction, ``save_pretrained`` and ``from_pretrained`` to skip the
    torchvision-only video processor; ``__call__``, the image-token expansion and the chat template are inherited.
    """
    if family in _IMAGE_ONLY_CLASSES:
        return _IMAGE_ONLY_CLASSES[family]
    from transformers import ProcessorMixin, Qwen2_5_VLProcessor, Qwen2VLProcessor, SmolVLMProcessor

    namespace: dict[str, Any] = {}
    if family in ("qwen2_vl", "qwen2_5_vl"):
        base: type = Qwen2VLProcessor if family == "qwen2_vl" else Qwen2_5_VLProcessor

        def qwen_init(
            self: Any,
            image_processor: Any = None,
            tokenizer: Any = None,
            chat_template: str | None = None,
            **kwargs: Any,
        ) -> None:
            base.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

        namespace["__init__"] = qwen_init
    elif family == "smolvlm":
        base = SmolVLMProcessor

        def smolvlm_init(
            self: Any,
            image_processor: Any = None,
            tokenizer: Any = None,
            image_seq_len: int = 169,
            chat_template: str | None = None,
            **kwargs: Any,
        ) -> None:
            # SmolVLMProcessor.__init__ (transformers 5.23) without the video processor and without its num2words
            # check: num2words only spells out video frame counts
            self.fake_image_token = getattr(tokenizer, "fake_image_token", "<fake_token_around_image>")
            self.image_token = getattr(tokenizer, "image_token", "<image>")
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.end_of_utterance_token = getattr(tokenizer, "end_of_utterance_token", "<end_of_utterance>")
            self.global_image_token = getattr(tokenizer, "global_image_token", "<global-img>")
            self.image_seq_len = image_seq_len
            self.video_token = getattr(tokenizer, "video_token", "<video>")
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)

        def smolvlm_apply_chat_template(
            self: Any, conversation: Any, chat_template: str | None = None, **kwargs: Any
        ) -> Any:
            # SmolVLMProcessor's override only adds video-sampling defaults, read from the video processor
            return ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)

        namespace["__init__"] = smolvlm_init
        namespace["apply_chat_template"] = smolvlm_apply_chat_template
    else:
        raise MvlevalError(f"family '{family}' has no image-only processor.", fix="use AutoProcessor.")
    namespace["__doc__"] = f"{base.__name__} without its video processor (transformers without torchvision)."
    cls = type(f"ImageOnly{base.__name__}", (base,), namespace)
    _IMAGE_ONLY_CLASSES[family] = cls
    return cls


# -- family builders ------------------------------------------------------------------------------------------------

#: Llama 2 / Vicuna / Mistral sentencepiece tokenizers' special tokens (llava-hf adds <image> and <pad>).
_LLAMA2_SPEC = _TokenizerSpec(
    specials=("<unk>", "<s>", "</s>", "<pad>", "<image>"), bos="<s>", eos="</s>", pad="<pad>", unk="<unk>", add_bos=True
)

#: Gemma's first four ids.
_GEMMA_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>")


def _build_llava(sizes: _Sizes) -> _Built:
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
    tokenizer = _train_tokenizer(replace(_LLAMA2_SPEC, padding_side="left"))  # llava-hf saves padding side left
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=_CLIP_MEAN,
        image_std=_CLIP_STD,
    )
    processor = LlavaProcessor(
        image_processor,
        tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS, which the "default" strategy drops
        chat_template=_LLAVA_TEMPLATE,
    )
    bos, eos, pad, image = _ids(tokenizer, "<s>", "</s>", "<pad>", "<image>")
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**_vit_kwargs(sizes, image_size, patch), projection_dim=sizes.hidden),
        text_config=LlamaConfig(**_text_kwargs(sizes, _vocab_size(tokenizer), bos, eos, pad)),
        image_token_index=image,
        image_seq_length=(image_size // patch) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        tie_word_embeddings=False,
    )
    return _Built(LlavaForConditionalGeneration(config), processor, [eos], pad, bos)


def _build_llava_next(sizes: _Sizes) -> _Built:
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
    tokenizer = _train_tokenizer(replace(_LLAMA2_SPEC, padding_side="left"))  # llava-hf saves padding side left
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_grid_pinpoints=pinpoints,
        image_mean=_CLIP_MEAN,
        image_std=_CLIP_STD,
    )
    processor = LlavaNextProcessor(
        image_processor,
        tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=_LLAVA_NEXT_TEMPLATE,
    )
    bos, eos, pad, image = _ids(tokenizer, "<s>", "</s>", "<pad>", "<image>")
    text = MistralConfig(**_text_kwargs(sizes, _vocab_size(tokenizer), bos, eos, pad), sliding_window=None)
    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(**_vit_kwargs(sizes, image_size, patch), projection_dim=sizes.hidden),
        text_config=text,
        image_token_index=image,
        image_grid_pinpoints=pinpoints,
        image_seq_length=(image_size // patch) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        tie_word_embeddings=False,
    )
    return _Built(LlavaNextForConditionalGeneration(config), processor, [eos], pad, bos)


def _build_paligemma(sizes: _Sizes) -> _Built:
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
    spec = _TokenizerSpec(
        specials=(*_GEMMA_SPECIALS, "<image>"),
        bos="<bos>",
        eos="<eos>",
        pad="<pad>",
        unk="<unk>",
        add_bos=True,
        named={"image_token": "<image>"},
    )
    tokenizer = _train_tokenizer(spec)
    image_processor = SiglipImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_mean=_HALF,
        image_std=_HALF,
        image_seq_length=(image_size // patch) ** 2,  # PaliGemmaProcessor reads it from the image processor
    )
    # the processor adds PaliGemma's 1024 <locNNNN> and 128 <segNNN> tokens, as the published tokenizer has them
    processor = PaliGemmaProcessor(image_processor, tokenizer)
    bos, eos, pad, image = _ids(tokenizer, "<bos>", "<eos>", "<pad>", "<image>")
    vocab = _vocab_size(tokenizer)
    config = PaliGemmaConfig(
        vision_config=SiglipVisionConfig(**_vit_kwargs(sizes, image_size, patch), projection_dim=sizes.hidden),
        text_config=GemmaConfig(**_text_kwargs(sizes, vocab, bos, eos, pad), head_dim=sizes.hidden // sizes.heads),
        image_token_index=image,
        vocab_size=vocab,
        projection_dim=sizes.hidden,
        hidden_size=sizes.hidden,
        tie_word_embeddings=False,
    )
    return _Built(PaliGemmaForConditionalGeneration(config), processor, [eos], pad, bos)


def _build_gemma3(sizes: _Sizes) -> _Built:
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
    spec = _TokenizerSpec(
        specials=(
            *_GEMMA_SPECIALS,
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
    tokenizer = _train_tokenizer(spec)
    image_processor = Gemma3ImageProcessorPil(
        size={"height": image_size, "width": image_size}, image_mean=_HALF, image_std=_HALF, do_pan_and_scan=False
    )
    processor = Gemma3Processor(image_processor, tokenizer, chat_template=_GEMMA3_TEMPLATE, image_seq_length=mm_tokens)
    bos, eos, pad, end_of_turn = _ids(tokenizer, "<bos>", "<eos>", "<pad>", "<end_of_turn>")
    boi, eoi, soft = _ids(tokenizer, "<start_of_image>", "<end_of_image>", "<image_soft_token>")
    head_dim = sizes.hidden // sizes.heads
    text = Gemma3TextConfig(
        **_text_kwargs(sizes, _vocab_size(tokenizer), bos, eos, pad),
        head_dim=head_dim,
        query_pre_attn_scalar=head_dim,
        # as published: local (sliding-window) layers with a global one every 6th (here: 1 local + 1 global), the
        # window shorter than a prompt (16 soft tokens alone) so that padding and positions inside it matter
        sliding_window=_SLIDING_WINDOW,
        layer_types=_local_then_global(sizes.layers, every=6),
    )
    config = Gemma3Config(
        text_config=text,
        vision_config=SiglipVisionConfig(**_vit_kwargs(sizes, image_size, patch)),
        mm_tokens_per_image=mm_tokens,
        boi_token_index=boi,
        eoi_token_index=eoi,
        # the soft tokens are replaced by image features (the processor's image_token_id is <start_of_image>)
        image_token_index=soft,
        tie_word_embeddings=False,
    )
    # instruction-tuned Gemma 3 ends its answers with <end_of_turn>
    return _Built(Gemma3ForConditionalGeneration(config), processor, [eos, end_of_turn], pad, bos)


def _build_aya_vision(sizes: _Sizes) -> _Built:
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
    spec = _TokenizerSpec(
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
    tokenizer = _train_tokenizer(spec)
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": image_size, "width": image_size},
        crop_to_patches=True,
        min_patches=1,
        max_patches=2,
        image_mean=_HALF,
        image_std=_HALF,
    )
    processor = AyaVisionProcessor(
        image_processor,
        tokenizer,
        patch_size=patch,
        img_size=image_size,
        downsample_factor=downsample,
        chat_template=_AYA_VISION_TEMPLATE,
    )
    bos, eos, pad, img_patch = _ids(tokenizer, "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>", "<PAD>", "<|IMG_PATCH|>")
    config = AyaVisionConfig(
        vision_config=SiglipVisionConfig(**_vit_kwargs(sizes, image_size, patch)),
        # Command R7B: 3 sliding-window layers, then a global one (here 1 + 1), the window shorter than a prompt
        text_config=Cohere2Config(
            **_text_kwargs(sizes, _vocab_size(tokenizer), bos, eos, pad),
            sliding_window=_SLIDING_WINDOW,
            layer_types=_local_then_global(sizes.layers, every=4),
        ),
        downsample_factor=downsample,
        # the model fills the <|IMG_PATCH|> positions the processor expands "<image>" into, not "<image>" itself
        image_token_index=img_patch,
        vision_feature_layer=-1,
        tie_word_embeddings=False,
    )
    return _Built(AyaVisionForConditionalGeneration(config), processor, [eos], pad, bos)


def _build_instructblip(sizes: _Sizes) -> _Built:
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
    tokenizer = _train_tokenizer(replace(_LLAMA2_SPEC, padding_side="right"))
    qformer_tokenizer = _train_bert_wordpiece(TOKENIZER_CORPUS)
    image_processor = BlipImageProcessorPil(
        size={"height": image_size, "width": image_size}, image_mean=_CLIP_MEAN, image_std=_CLIP_STD
    )
    # without num_query_tokens the processor inserts no <image> tokens and the image is silently ignored (NOTES.md)
    processor = InstructBlipProcessor(image_processor, tokenizer, qformer_tokenizer, num_query_tokens=queries)
    bos, eos, pad, image = _ids(tokenizer, "<s>", "</s>", "<pad>", "<image>")
    config = InstructBlipConfig(
        vision_config=_vit_kwargs(sizes, image_size, patch),
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
        text_config=LlamaConfig(**_text_kwargs(sizes, _vocab_size(tokenizer), bos, eos, pad)).to_dict(),
        num_query_tokens=queries,
        image_token_index=image,  # None would crash generate (NOTES.md)
    )
    return _Built(InstructBlipForConditionalGeneration(config), processor, [eos], pad, bos)


def _build_mllama(sizes: _Sizes) -> _Built:
    """Llama 3.2 Vision: tiled ViT with gated global layers; the last text layer cross-attends to it."""
    from transformers import (
        MllamaConfig,
        MllamaForConditionalGeneration,
        MllamaImageProcessorPil,
        MllamaProcessor,
        MllamaTextConfig,
        MllamaVisionConfig,
    )

    image_size, patch, tiles = 32, 8, 2
    spec = _TokenizerSpec(
        specials=(
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|finetune_right_pad_id|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|python_tag|>",  # MllamaProcessor looks it up
            "<|image|>",
        ),
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        pad="<|finetune_right_pad_id|>",
        add_bos=True,
    )
    tokenizer = _train_tokenizer(spec)
    image_processor = MllamaImageProcessorPil(
        size={"height": image_size, "width": image_size},
        max_image_tiles=tiles,
        image_mean=_CLIP_MEAN,
        image_std=_CLIP_STD,
    )
    processor = MllamaProcessor(image_processor, tokenizer, chat_template=_MLLAMA_TEMPLATE)
    bos, end_of_text, eot, pad, image = _ids(
        tokenizer, "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>", "<|image|>"
    )
    intermediate = [0]
    vision = MllamaVisionConfig(
        hidden_size=sizes.hidden,
        intermediate_size=sizes.mlp,
        num_hidden_layers=sizes.layers,
        num_global_layers=1,
        attention_heads=sizes.heads,
        image_size=image_size,
        patch_size=patch,
        max_num_tiles=tiles,
        # the image processor's order for 2 tiles (aspect-ratio ids index this list); the default needs 4 tiles
        supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]],
        intermediate_layers_indices=intermediate,
        # the final hidden state and each listed intermediate one are concatenated
        vision_output_dim=sizes.hidden * (len(intermediate) + 1),
    )
    text_kwargs = _text_kwargs(sizes, _vocab_size(tokenizer), bos, eot, pad)
    # like every 5th layer of the 11B model, the last decoder layer cross-attends to the image
    text = MllamaTextConfig(**text_kwargs, cross_attention_layers=[sizes.layers - 1])
    config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=image, tie_word_embeddings=False)
    return _Built(MllamaForConditionalGeneration(config), processor, [end_of_text, eot], pad, bos)


def _idefics3_tokenizer(
    bos: str, eos: str, pad: str, *, add_bos: bool, extra: tuple[str, ...] = ()
) -> TokenizersBackend:
    """Idefics3 / SmolVLM tokenizer: image tokens are special; <global-img> and <row_i_col_j> tile tags plain added."""
    tile_tags = tuple(f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7))
    image_tokens = ("<fake_token_around_image>", "<image>", "<end_of_utterance>")
    specials = tuple(dict.fromkeys((bos, eos, pad, *image_tokens, *extra)))
    spec = _TokenizerSpec(
        specials=specials, bos=bos, eos=eos, pad=pad, add_bos=add_bos, added=("<global-img>", *tile_tags)
    )
    return _train_tokenizer(spec)


def _build_idefics3(sizes: _Sizes) -> _Built:
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
    tokenizer = _idefics3_tokenizer(
        "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", add_bos=True
    )
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": 2 * image_size},
        max_image_size={"longest_edge": image_size},
        do_image_splitting=True,
        image_mean=_HALF,
        image_std=_HALF,
    )
    processor = Idefics3Processor(
        image_processor,
        tokenizer,
        image_seq_len=(image_size // patch) ** 2 // scale**2,
        chat_template=_IDEFICS3_TEMPLATE.format(start="<|begin_of_text|>"),
    )
    bos, eos, pad = _ids(tokenizer, "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>")
    image, end_of_utterance = _ids(tokenizer, "<image>", "<end_of_utterance>")
    config = Idefics3Config(
        vision_config=Idefics3VisionConfig(**_vit_kwargs(sizes, image_size, patch)),
        text_config=LlamaConfig(**_text_kwargs(sizes, _vocab_size(tokenizer), bos, eos, pad)),
        scale_factor=scale,
        image_token_id=image,
        tie_word_embeddings=False,
    )
    return _Built(Idefics3ForConditionalGeneration(config), processor, [eos, end_of_utterance], pad, bos)


def _build_smolvlm(sizes: _Sizes) -> _Built:
    """SmolVLM: Idefics3's architecture on SmolLM2 (no BOS added); processor saved by its image-only stand-in."""
    from transformers import (
        LlamaConfig,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessorPil,
        SmolVLMVisionConfig,
    )

    image_size, patch, scale = 32, 8, 2
    tokenizer = _idefics3_tokenizer(
        "<|im_start|>", "<end_of_utterance>", "<|im_end|>", add_bos=False, extra=("<|endoftext|>", "<video>")
    )
    image_processor = SmolVLMImageProcessorPil(
        size={"longest_edge": 2 * image_size},
        max_image_size={"longest_edge": image_size},
        do_image_splitting=True,
        image_mean=_HALF,
        image_std=_HALF,
    )
    processor = _image_only_processor_class("smolvlm")(
        image_processor,
        tokenizer,
        image_seq_len=(image_size // patch) ** 2 // scale**2,
        chat_template=_IDEFICS3_TEMPLATE.format(start="<|im_start|>"),
    )
    bos, eos, pad, image = _ids(tokenizer, "<|im_start|>", "<end_of_utterance>", "<|im_end|>", "<image>")
    config = SmolVLMConfig(
        vision_config=SmolVLMVisionConfig(**_vit_kwargs(sizes, image_size, patch)),
        text_config=LlamaConfig(**_text_kwargs(sizes, _vocab_size(tokenizer), bos, eos, pad)),
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
        "image_mean": list(_HALF),
        "image_std": list(_HALF),
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
    return _Built(model, processor, [eos], pad, bos, {"video_processor": video}, "SmolVLMProcessor")


#: Qwen2 tokenizer special tokens (no BOS; <|endoftext|> pads).
_QWEN_SPEC = _TokenizerSpec(
    specials=(
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|vision_pad|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ),
    bos=None,
    eos="<|im_end|>",
    pad="<|endoftext|>",
)


def _mrope_section(head_dim: int) -> list[int]:
    """Temporal/height/width split of the rotary half-dimension, in Qwen2-VL's 16/24/24 proportions."""
    half = head_dim // 2
    spatial = max(1, half * 3 // 8)
    return [half - 2 * spatial, spatial, spatial]


def _build_qwen(sizes: _Sizes, *, v2_5: bool) -> _Built:
    """Qwen2-VL / Qwen2.5-VL: native-resolution ViT (4 px patches, 2x2 merge, 3-D rope) + Qwen2; image-only saved."""
    import transformers
    from transformers import Qwen2VLImageProcessorPil

    patch, merge, temporal = 4, 2, 2
    factor = patch * merge
    tokenizer = _train_tokenizer(_QWEN_SPEC)
    # images are resized to multiples of 8 px holding 16x16 to 48x48 pixels: 4 to 36 image tokens each
    min_pixels, max_pixels = (2 * factor) ** 2, (6 * factor) ** 2
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
        patch_size=patch,
        temporal_patch_size=temporal,
        merge_size=merge,
        image_mean=_CLIP_MEAN,
        image_std=_CLIP_STD,
    )
    family = "qwen2_5_vl" if v2_5 else "qwen2_vl"
    processor = _image_only_processor_class(family)(image_processor, tokenizer, chat_template=_QWEN2_VL_TEMPLATE)
    end_of_text, im_end, vision_start, vision_end, image, video = _ids(
        tokenizer, "<|endoftext|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"
    )
    text = _text_kwargs(sizes, _vocab_size(tokenizer), end_of_text, im_end, end_of_text)
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 1_000_000.0,
        "mrope_section": _mrope_section(sizes.hidden // sizes.heads),
    }
    vision: dict[str, Any] = {
        "depth": sizes.layers,
        "num_heads": sizes.heads,
        "patch_size": patch,
        "spatial_merge_size": merge,
        "temporal_patch_size": temporal,
    }
    if v2_5:
        vision.update(
            hidden_size=sizes.hidden,
            intermediate_size=sizes.mlp,
            out_hidden_size=sizes.hidden,
            window_size=2 * factor,  # windows of 2x2 merged patches
            fullatt_block_indexes=[sizes.layers - 1],
        )
        config_class, model_class = transformers.Qwen2_5_VLConfig, transformers.Qwen2_5_VLForConditionalGeneration
        processor_class = "Qwen2_5_VLProcessor"
    else:
        vision.update(embed_dim=sizes.hidden, hidden_size=sizes.hidden, mlp_ratio=4)
        config_class, model_class = transformers.Qwen2VLConfig, transformers.Qwen2VLForConditionalGeneration
        processor_class = "Qwen2VLProcessor"
    config = config_class(
        text_config=text,
        vision_config=vision,
        image_token_id=image,
        video_token_id=video,
        vision_start_token_id=vision_start,
        vision_end_token_id=vision_end,
        tie_word_embeddings=False,
    )
    # what Qwen2VLProcessor.save_pretrained would write for its video processor (not constructible here)
    video_config = {
        "video_processor_type": "Qwen2VLVideoProcessor",
        "processor_class": processor_class,
        "size": {"shortest_edge": min_pixels, "longest_edge": max_pixels},
        "patch_size": patch,
        "temporal_patch_size": temporal,
        "merge_size": merge,
        "image_mean": list(_CLIP_MEAN),
        "image_std": list(_CLIP_STD),
        "do_resize": True,
        "do_rescale": True,
        "do_normalize": True,
        "do_convert_rgb": True,
        "rescale_factor": 1 / 255,
        "resample": 3,
    }
    eos = [im_end, end_of_text]  # as Qwen2-VL-Instruct's generation_config.json
    extra = {"video_processor": video_config}
    return _Built(model_class(config), processor, eos, end_of_text, None, extra, processor_class)


_BUILDERS: dict[str, Callable[[_Sizes], _Built]] = {
    "qwen2_vl": lambda sizes: _build_qwen(sizes, v2_5=False),
    "qwen2_5_vl": lambda sizes: _build_qwen(sizes, v2_5=True),
    "paligemma": _build_paligemma,
    "llava": _build_llava,
    "llava_next": _build_llava_next,
    "idefics3": _build_idefics3,
    "smolvlm": _build_smolvlm,
    "gemma3": _build_gemma3,
    "aya_vision": _build_aya_vision,
    "instructblip": _build_instructblip,
    "mllama": _build_mllama,
}
