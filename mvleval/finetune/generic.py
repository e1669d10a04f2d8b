"""Fine-tuning any vision-LLM the generic backend runs (Qwen2-VL / Qwen2.5-VL, PaliGemma 2, Gemma 3, Idefics3 /
SmolVLM, LLaVA-1.5 / NeXT, Aya Vision, ...) with LoRA or QLoRA; BLIP-2 / mBLIP keeps its own recipe (train.py).

Read top to bottom:

1. ``render_training_texts``: a training example is the conversation the generic backend evaluates with: the prompt
   rendered by the backend's own ``render_user_turn`` (the family's chat template, the task's prompt style, the images
   where the template puts them), followed by the answer as the assistant turn, cut right after the family's
   end-of-turn token (the template's own rendering of the assistant message, so Idefics3's " answer" and LLaVA-NeXT's
   " answer</s>" come out as their templates write them). Processors without a chat template but with a ``suffix``
   argument (PaliGemma) get the answer as that suffix, as their model cards fine-tune.
2. ``build_batch``: the processor's batch for the full texts, left-padded and left-aligned exactly as evaluation builds
   it, with ``labels`` -100 everywhere except the answer's tokens and the end-of-turn token (each row's last tokens;
   checked to be exactly the target's own tokenisation, never assumed).
3. ``load_generic_model`` / ``add_generic_lora``: the backend's loader (bitsandbytes nf4 with the vision tower,
   projector and lm_head unquantised); LoRA on every linear layer of the language model found by module structure
   (``get_decoder()``'s modules), the vision tower frozen, the projector trained (peft ``modules_to_save``, so it
   travels in the adapter folder) or frozen by ``train_projection``.
4. ``train_generic``: the same loop, checkpoints, log and loss plot as mBLIP's (train.py), so a resumed run ends with
   the weights of an uninterrupted one.

The adapter folder is a plain peft adapter of the whole model: ``mvleval run --model BASE --adapter DIR`` and
``PeftModel.from_pretrained`` read it; ``export_generic`` merges it into a ``save_pretrained`` checkpoint that
``AutoModelForImageTextToText.from_pretrained`` loads.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mvleval.util.errors import MvlevalError

if TYPE_CHECKING:
    import torch

    from mvleval.benchmarks.task import Example
    from mvleval.finetune.config import TrainConfig
    from mvleval.finetune.loop import TrainProgress

logger = logging.getLogger("mvleval.finetune.generic")

#: Projector modules by family (the trainable-or-frozen part between vision tower and language model).
PROJECTOR_NAMES = ("multi_modal_projector", "connector", "mm_projector", "visual.merger", "embed_vision")
#: Vision towers by family (frozen, kept in eval mode while training).
VISION_TOWER_NAMES = ("vision_tower", "vision_model", "visual")


# -- 1. the conversation ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RenderedExample:
    """One training example as text.

    Attributes:
        prompt: what the backend gives the processor at evaluation (the user turn plus the generation prompt).
        target: the assistant's answer as the template writes it, ending with the end-of-turn token's text; for a
            processor without chat template (PaliGemma) the answer alone (the processor appends EOS to a suffix).
        end_of_turn_id: the token the model learns to stop with.
    """

    prompt: str
    target: str
    end_of_turn_id: int


def _stop_ids(model_dir: Path | None, tokenizer: Any) -> list[int]:
    """The ids generation stops at (generation_config.json's eos_token_id, else the tokenizer's EOS)."""
    ids: list[int] = []
    if model_dir is not None and (model_dir / "generation_config.json").is_file():
        eos = json.loads((model_dir / "generation_config.json").read_text(encoding="utf-8")).get("eos_token_id")
        ids = [int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(int(tokenizer.eos_token_id))
    return ids


def render_training_texts(
    processor: Any, examples: Sequence[Example], stop_ids: Sequence[int]
) -> list[RenderedExample]:
    """Each example's evaluation prompt and its answer as the assistant turn (see the module docstring).

    Raises:
        MvlevalError: the chat template renders a conversation whose start is not the evaluation prompt, or writes
            no end-of-turn token after the answer; a family with neither chat template nor answer suffix.
    """
    from mvleval.backends.hf_vlm import render_user_turn, user_turn

    tokenizer = getattr(processor, "tokenizer", processor)
    chat_template: str | None = getattr(processor, "chat_template", None) or None
    stops = {tokenizer.convert_ids_to_tokens(int(i)): int(i) for i in stop_ids}
    out: list[RenderedExample] = []
    for ex in examples:
        prompt = render_user_turn(processor, chat_template, ex.prompt, len(ex.images))
        if not chat_template:
            if not _takes_suffix(processor):
                raise MvlevalError(
                    f"the {type(processor).__name__} has no chat template and no answer suffix, so mvleval cannot tell "
                    "where the prompt ends and the answer begins.",
                    fix="fine-tune a checkpoint whose processor has a chat template (or PaliGemma's suffix).",
                )
            out.append(RenderedExample(prompt, ex.target, int(tokenizer.eos_token_id)))
            continue
        conversation = [
            user_turn(ex.prompt, len(ex.images)),
            {"role": "assistant", "content": [{"type": "text", "text": ex.target}]},
        ]
        full = str(processor.apply_chat_template(conversation, tokenize=False))
        if not full.startswith(prompt):
            raise MvlevalError(
                "the chat template renders the conversation with its answer differently from the evaluation prompt, "
                "so training would not see the prompt the model is evaluated with.",
                fix="use a checkpoint whose chat template renders the user turn the same with and without the answer.",
                where=ex.source or None,
            )
        rest = full[len(prompt) :]
        found = [(rest.find(text), text) for text in stops if text and rest.find(text) >= 0]
        if not found:
            raise MvlevalError(
                f"the chat template writes none of the end-of-turn tokens {sorted(stops)} after the answer.",
                fix="use a checkpoint whose generation_config.json names the template's end-of-turn token.",
                where=ex.source or None,
            )
        at, text = min(found)
        out.append(RenderedExample(prompt, rest[: at + len(text)], stops[text]))
    return out


def _takes_suffix(processor: Any) -> bool:
    import inspect

    return "suffix" in inspect.signature(type(processor).__call__).parameters


def target_ids(tokenizer: Any, rendered: RenderedExample, suffix_style: bool) -> list[int]:
    """The tokens the loss covers: the answer's tokens and the end-of-turn token."""
    if suffix_style:
        return [*tokenizer(rendered.target, add_special_tokens=False)["input_ids"], rendered.end_of_turn_id]
    return list(tokenizer(rendered.target, add_special_tokens=False)["input_ids"])


# -- 2. the batch -----------------------------------------------------------------------------------------------------
def build_batch(
    processor: Any, rendered: Sequence[RenderedExample], images: Sequence[Sequence[Any]], device: str
) -> dict[str, Any]:
    """The processor's batch for the full conversations (left-padded as at evaluation) with answer-only ``labels``.

    Raises:
        RuntimeError: a row whose last tokens are not its target's own tokenisation (a bug, not a user error).
    """
    import torch

    from mvleval.backends.hf_vlm import left_align, writes_own_bos

    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = "left"
    chat_template = getattr(processor, "chat_template", None) or None
    suffix_style = not chat_template
    kwargs: dict[str, Any] = {"padding": True, "return_tensors": "pt"}
    if suffix_style:
        texts = [r.prompt for r in rendered]
        kwargs["suffix"] = [r.target for r in rendered]
    else:
        texts = [r.prompt + r.target for r in rendered]
    kwargs["add_special_tokens"] = not writes_own_bos(tokenizer, chat_template, texts)
    batch = processor(text=texts, images=[list(i) for i in images], **kwargs)
    batch.pop("labels", None)
    left_align(batch)
    ids = batch["input_ids"]
    labels = torch.full_like(ids, -100)
    for row, r in enumerate(rendered):
        want = target_ids(tokenizer, r, suffix_style)
        n = len(want)
        got = ids[row, -n:].tolist()
        if got != want or int(batch["attention_mask"][row, -n:].min()) == 0:
            raise RuntimeError(f"row {row}: the last {n} tokens {got} are not the answer's tokens {want}")
        labels[row, -n:] = ids[row, -n:]
    batch["labels"] = labels
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}


def answer_loss(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    """Mean next-token cross-entropy over the answer tokens (position t predicts token t+1)."""
    import torch.nn.functional as F

    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits
    labels = batch["labels"]
    return F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
    )


# -- 3. model and LoRA ------------------------------------------------------------------------------------------------
def load_generic_model(base_model: str, bits: int, device: str, processor: Any = None) -> tuple[Any, Any, Path]:
    """The base model and processor as the generic backend loads them (bitsandbytes nf4 for --bits 4, the vision tower,
    projector and lm_head unquantised); (model, processor, model_dir)."""
    from transformers import AutoModelForImageTextToText

    from mvleval.backends.hf.checkpoint import resolve_model_dir
    from mvleval.backends.hf.precision import load_weights, precision
    from mvleval.backends.hf.processor import load_processor
    from mvleval.backends.hf_vlm import QUANT_SKIP_MODULES
    from mvleval.finetune.base import check_generic_base
    from mvleval.finetune.loop import bf16_training

    model_dir = resolve_model_dir(base_model)
    config_json = check_generic_base(base_model)
    if config_json.get("quantization_config") is not None:
        raise MvlevalError(
            "the base checkpoint is already quantised; LoRA is trained and merged on full-precision weights.",
            fix="pass the unquantised checkpoint to --model (use --bits 4 to train QLoRA on it).",
            where=model_dir,
        )
    on_cuda = device.startswith("cuda")
    bits, qconfig, dtype, _desc = precision(config_json, bits, on_cuda, model_dir, QUANT_SKIP_MODULES)
    if bits == 4 and bf16_training(bits, on_cuda):
        # training keeps the unquantised parts in bf16 and dequantises nf4 to bf16, as the 16-bit run holds them
        # (train.bf16_training); evaluation's loads (precision()) are unchanged
        import torch

        dtype = qconfig.bnb_4bit_compute_dtype = torch.bfloat16
    if processor is None:
        processor = load_processor(model_dir, str(config_json.get("model_type")))
    kwargs: dict[str, Any] = {"dtype": dtype, "device_map": {"": device}, "use_safetensors": True}
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
    model = load_weights(AutoModelForImageTextToText, model_dir, kwargs, bits=bits, on_cuda=on_cuda)
    if bits == 4 and not on_cuda:
        from mvleval.finetune.loop import release_checkpoint_file

        release_checkpoint_file(model)
    return model, processor, model_dir


def language_model_prefix(model: Any) -> str:
    """The dotted name of the language model inside the vision-LLM (its ``get_decoder()``), found by identity."""
    decoder = model.get_decoder()
    for name, module in model.named_modules():
        if module is decoder and name:
            return cast(str, name)
    raise RuntimeError(f"{type(model).__name__}.get_decoder() is not one of its submodules")


def projector_names(model: Any) -> list[str]:
    """Full names of the projector modules between vision tower and language model."""
    found = []
    for name, _ in model.named_modules():
        if any(name == p or name.endswith("." + p) for p in PROJECTOR_NAMES):
            found.append(name)
    return [n for n in found if not any(n != o and n.startswith(o + ".") for o in found)]


def lora_targets(model: Any, config: TrainConfig) -> tuple[str, list[str]]:
    """(anchored regex over the whole model's module names, the chosen leaf names): every linear layer of the
    language model's blocks (or the configured names), nothing in the vision tower, projector or lm_head."""
    import torch

    from mvleval.finetune.loop import lora_leaf_names

    prefix = language_model_prefix(model)
    lm = model.get_submodule(prefix)
    available = lora_leaf_names(lm)
    if config.lora_targets == "all":
        leaves = available
    else:
        unknown = [t for t in config.lora_targets if t not in available]
        if unknown:
            from mvleval.util.errors import did_you_mean

            hints = "".join(did_you_mean(u, available) for u in unknown)
            raise MvlevalError(
                f"lora_targets {unknown} are not linear layers of this {type(lm).__name__}.{hints}",
                fix=f"choose from {', '.join(available)}, or use 'all'.",
            )
        leaves = sorted(config.lora_targets)
    regex = rf"^{re.escape(prefix)}\.(?:.*\.)?(?:{'|'.join(map(re.escape, leaves))})$"
    chosen = [
        f"{prefix}.{n}"
        for n, m in lm.named_modules()
        if isinstance(m, torch.nn.Linear) and "." in n and n.rsplit(".", 1)[1] in leaves
    ]
    matched = [n for n, _ in model.named_modules() if re.fullmatch(regex, n)]
    if sorted(matched) != sorted(chosen):
        raise RuntimeError(f"LoRA target regex {regex!r} selects {len(matched)} modules, expected {len(chosen)}")
    return regex, leaves


def add_generic_lora(model: Any, config: TrainConfig) -> Any:
    """Wrap the whole model in a peft LoRA model: LoRA on the language model's linear layers, the projector trained
    (a full copy in the adapter) when ``train_projection``, everything else frozen; trained weights in fp32."""
    from peft import LoraConfig, get_peft_model

    regex, _ = lora_targets(model, config)
    for param in model.parameters():
        param.requires_grad_(False)
    lora_config = LoraConfig(
        r=config.lora_r,
        lora_alpha=cast(int, config.lora_alpha),
        lora_dropout=config.lora_dropout,
        target_modules=regex,
        modules_to_save=projector_names(model) if config.train_projection else None,
        bias="none",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, lora_config)
    for _, param in peft_model.named_parameters():
        if param.requires_grad:
            param.data = param.data.float()
    return peft_model


# -- 4. the loop ------------------------------------------------------------------------------------------------------
def train_generic(
    config: TrainConfig,
    examples: list[Example],
    *,
    resume: bool,
    progress: TrainProgress,
    processor: Any = None,
) -> Path:
    """Fine-tune a generic vision-LLM (train.train's loop: checkpoints, log, plot, bit-identical resume)."""
    import torch

    from mvleval.benchmarks.images import load_image
    from mvleval.finetune.loop import TrainingParts, run_training_loop

    device, bits = cast(str, config.device), cast(int, config.bits)
    torch.manual_seed(config.seed)
    progress.note(f"loading {config.base_model} ({bits}-bit, {device}) ...")
    model, processor, model_dir = load_generic_model(config.base_model, bits, device, processor)
    peft_model = add_generic_lora(model, config)
    if config.gradient_checkpointing:
        from mvleval.finetune.loop import enable_checkpointing

        enable_checkpointing(model)  # the whole model's decoder layers, non-reentrant
    tokenizer = getattr(processor, "tokenizer", processor)
    rendered = render_training_texts(processor, examples, _stop_ids(model_dir, tokenizer))

    from mvleval.finetune.loop import bf16_training

    use_autocast = device.startswith("cuda") or bf16_training(bits, False)
    autocast_device = "cuda" if device.startswith("cuda") else "cpu"

    def set_modes() -> None:
        peft_model.train()
        for name, module in model.named_modules():
            if name.rsplit(".", 1)[-1] in VISION_TOWER_NAMES:
                module.eval()  # frozen: no dropout in the image encoder

    decoded: dict[Path, Any] = {}

    def images_of(ex: Example) -> list[Any]:
        for p in ex.images:
            if p not in decoded:
                decoded[p] = load_image(Path(p))
        return [decoded[p] for p in ex.images]

    def micro_loss(indices: list[int]) -> torch.Tensor:
        batch = build_batch(
            processor, [rendered[i] for i in indices], [images_of(examples[i]) for i in indices], device
        )
        with torch.autocast(autocast_device, dtype=torch.bfloat16, enabled=use_autocast):
            return answer_loss(peft_model, batch)

    parts = TrainingParts(peft_model, peft_model, set_modes, micro_loss, len(examples), "lr_projector")
    return run_training_loop(config, parts, resume=resume, progress=progress)


# -- export -----------------------------------------------------------------------------------------------------------
def merged_generic(train_dir: Path, base_model: str, processor: Any = None) -> tuple[Any, Any]:
    """The fp32 base with the run's adapter merged in (plain Linear layers), and its processor."""
    from mvleval.backends.hf_vlm import apply_lora

    model, processor, _ = load_generic_model(base_model, 32, "cpu", processor)
    peft_model = apply_lora(model, Path(train_dir))
    merged = peft_model.merge_and_unload()
    leftover = [name for name, _ in merged.named_modules() if "lora_" in name or "modules_to_save" in name]
    if leftover:
        raise RuntimeError(f"merge_and_unload left adapter modules behind (first: {leftover[0]})")
    merged.eval()
    return merged, processor


def export_generic(
    train_dir: Path, out: Path, bits: int, base_model: str, saved: dict[str, Any], device: str | None = None
) -> Path:
    """Merge a generic run's adapter into its fp32 base and save a ``save_pretrained`` checkpoint with its processor:
    fp32 (32), bf16 (16), or re-loaded through bitsandbytes (nf4 / int8, the vision tower, projector and lm_head
    unquantised) and saved with its quantization_config (4 / 8). ``AutoModelForImageTextToText.from_pretrained`` and
    ``mvleval run --model OUT`` load it."""
    import tempfile

    import torch

    from mvleval.backends.hf.adapter import adapter_fingerprint
    from mvleval.finetune.loop import EXPORT_INFO_FILE

    model, processor = merged_generic(train_dir, base_model)
    out.mkdir(parents=True, exist_ok=True)
    if bits == 32:
        model.save_pretrained(str(out))
    elif bits == 16:
        model.to(torch.bfloat16).save_pretrained(str(out))
    else:
        from transformers import AutoModelForImageTextToText

        from mvleval.backends.hf.precision import bnb_config, disable_cpu_bf16_repack
        from mvleval.backends.hf_vlm import QUANT_SKIP_MODULES

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        with tempfile.TemporaryDirectory(prefix=".mvleval-export-", dir=out.parent) as scratch:
            model.save_pretrained(scratch)
            del model
            quantised = AutoModelForImageTextToText.from_pretrained(
                scratch,
                quantization_config=bnb_config(bits, torch.bfloat16, QUANT_SKIP_MODULES),
                dtype=torch.float32,
                device_map={"": device},
            )
            if bits == 4 and not device.startswith("cuda"):
                disable_cpu_bf16_repack(quantised)  # NOTES.md bitsandbytes CPU bug A
            quantised.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    model_dir = Path(str(saved.get("base_model", base_model)))
    for name in ("generation_config.json",):  # the stop tokens of the base, as published
        if (model_dir / name).is_file() and not (out / name).is_file():
            (out / name).write_bytes((model_dir / name).read_bytes())
    info = {
        "source": str(Path(train_dir).absolute()),
        "source_fingerprint": adapter_fingerprint(Path(train_dir)),
        "base_model": base_model,
        "bits": bits,
        "merged": "LoRA (and a trained projector) merged into the fp32 base with peft's merge_and_unload",
    }
    (out / EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    from mvleval.util.fileperms import follow_umask_tree

    follow_umask_tree(out)
    logger.info("exported %s as a %d-bit checkpoint to %s", train_dir, bits, out)
    return out


__all__ = [
    "export_generic",
    "RenderedExample",
    "add_generic_lora",
    "answer_loss",
    "build_batch",
    "load_generic_model",
    "merged_generic",
    "render_training_texts",
    "train_generic",
]
