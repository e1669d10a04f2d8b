"""`train()` picks the recipe for the base checkpoint (finetune/base.py): any vision-LLM but BLIP-2 goes to generic.py;
a BLIP-2 gets mBLIP's recipe, here: LoRA on the language model plus the BLIP-2 parts, as mBLIP fine-tunes. Both hand
their parts to the one training loop (finetune/loop.py).

Read top to bottom:

1. ``load_base_model``: the checkpoint in 32/16 bits, or quantised (QLoRA: nf4, double quant for encoder-decoder
   LLMs as mBLIP does for mT0, bf16 compute and bf16 unquantised parts, as --bits 16 holds them), with the backend's own processor checks.
2. ``add_lora``: LoRA on every linear layer of the language model's blocks, found by walking its modules (not by the
   model's name), through an anchored regex applied to the language model only (the Q-Former's own query/value
   layers never match); Q-Former, query tokens and language projection trainable, ViT and LLM frozen.
3. ``build_inputs``: the same language-model input the backend builds at inference ([image queries ; prompt]),
   with the target appended for decoder-only LLMs (prompt and image positions masked out of the loss with -100)
   or as seq2seq labels for encoder-decoder LLMs. Two-image examples (MaRVL) get both images' queries in order.
4. ``train`` and the loop (loop.py): AdamW (LoRA lr and BLIP-2 lr in separate groups, weight decay off for biases and norms), cosine schedule
   with warm-up, gradient accumulation and clipping, bf16 autocast on CUDA (and on CPU for --bits 16 and 4), resumable
   checkpoints (weights, optimizer, scheduler, RNG, data position) so a resumed run ends bit-identical to an
   uninterrupted one, a JSONL log and a loss plot.

Deliberate differences from mBLIP's training code: no random-resized-crop/flip augmentation (images are preprocessed
exactly as at inference, which keeps runs deterministic and needs no torchvision); an unreadable image stops the run
(mBLIP's loader substitutes a black image). Bit-identical results for a seed hold on CPU; CUDA kernels may add run-to-run noise.

Outputs (the backend's ``--adapter DIR`` reads the folder directly)::

    adapter_config.json, adapter_model.safetensors   peft LoRA adapter of the language model
    blip_parts.safetensors                           trained Q-Former / query_tokens / language_projection
    train_config.json, train_log.jsonl, loss.png     the resolved config, one line per step, the loss curve
    checkpoints/step-N/                              resumable state (the newest `keep_checkpoints` kept)
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mvleval.benchmarks.task import Example
from mvleval.finetune.config import TrainConfig
from mvleval.finetune.data import TokenizedExample, load_examples, tokenize_examples
from mvleval.finetune.loop import (
    NoProgress,
    TrainingParts,
    TrainProgress,
    bf16_training,
    check_out_dir,
    enable_checkpointing,
    lora_leaf_names,
    lora_target_regex,
    quantization_config,
    release_checkpoint_file,
    resolve_precision,
    run_training_loop,
)
from mvleval.util.errors import MvlevalError

if TYPE_CHECKING:
    import torch
    from transformers import Blip2ForConditionalGeneration, Blip2Processor


logger = logging.getLogger("mvleval.finetune.train")


def load_base_model(base_model: str, bits: int, device: str) -> tuple[Blip2ForConditionalGeneration, Blip2Processor]:
    """Load the checkpoint to fine-tune (or export from) with its processor, checked exactly as the backend checks it.

    Raises:
        MvlevalError: not a BLIP-2 checkpoint, or one already quantised (train from the full-precision weights).
    """
    import torch
    from transformers import Blip2ForConditionalGeneration

    # the backend's own loading steps (processor/config reconciliation, tokenisation probe), so training and
    # evaluation see the same processor and the same image-token layout
    from mvleval.backends.hf.checkpoint import resolve_model_dir
    from mvleval.backends.hf.precision import disable_cpu_bf16_repack
    from mvleval.backends.mblip import (
        check_checkpoint_dir,
        load_config_and_processor,
        nf4_double_quant,
    )

    model_dir = resolve_model_dir(base_model)
    config_json = check_checkpoint_dir(model_dir, allow_pickle=False)
    if config_json.get("quantization_config") is not None:
        raise MvlevalError(
            "the base checkpoint is already quantised; LoRA is trained and merged on full-precision weights.",
            fix="pass the unquantised checkpoint to --model (use --bits 4 to train QLoRA on it).",
            where=model_dir,
        )
    on_cuda = device.startswith("cuda")
    bf16 = bf16_training(bits, on_cuda)
    qconfig = quantization_config(bits, nf4_double_quant(config_json), bf16)
    # unquantised modules (ViT, Q-Former, projection, embeddings, lm_head): bf16 where the run computes in bf16, as
    # the 16-bit run keeps them; fp32 otherwise (trainable ones are upcast to fp32 in add_lora)
    dtype = torch.bfloat16 if bf16 else torch.float32
    config, processor = load_config_and_processor(model_dir)
    kwargs: dict[str, Any] = {"config": config, "dtype": dtype, "device_map": {"": device}, "use_safetensors": True}
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
    model = Blip2ForConditionalGeneration.from_pretrained(str(model_dir), **kwargs)
    if bits == 4 and not on_cuda:
        disable_cpu_bf16_repack(model)  # NOTES.md bitsandbytes CPU bugs A and B
        release_checkpoint_file(model)
    return model, processor


def add_lora(model: Blip2ForConditionalGeneration, config: TrainConfig) -> Any:
    """Inject LoRA into the language model (in place) and make the configured BLIP-2 parts trainable in fp32.

    Returns:
        The PeftModel wrapping ``model.language_model`` (its save_pretrained writes the adapter folder).

    Raises:
        MvlevalError: a configured lora_targets name that is no linear layer of this language model.
    """
    from peft import LoraConfig, get_peft_model

    lm = model.language_model
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
    for param in model.parameters():
        param.requires_grad_(False)
    lora_config = LoraConfig(
        r=config.lora_r,
        # peft annotates an int but scales by alpha / r in floats: a fractional alpha is valid
        lora_alpha=cast(int, config.lora_alpha),
        lora_dropout=config.lora_dropout,
        target_modules=lora_target_regex(lm, leaves),
        bias="none",
    )
    with warnings.catch_warnings():
        # peft probes transformers' deprecated is_gradient_checkpointing; nothing the user can act on
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(lm, lora_config)  # injects into `lm` in place; model.language_model stays `lm`
    trained: list[torch.nn.Parameter] = []
    if config.train_qformer:
        trained.extend(model.qformer.parameters())
    if config.train_query_tokens:
        trained.append(model.query_tokens)
    if config.train_projection:
        trained.extend(model.language_projection.parameters())
    for param in trained:
        # optimizer states and updates of 1e-5-sized steps need fp32 even when the base is bf16
        param.data = param.data.float()
        param.requires_grad_(True)
    for name, param in lm.named_parameters():
        if "lora_" in name:
            param.data = param.data.float()
    return peft_model


# -- 3. inputs exactly as the backend builds them ------------------------------------------------------------------
@dataclass(frozen=True)
class TrainBatch:
    """One micro-batch for the language model (right-padded).

    Attributes:
        inputs_embeds: (batch, length, hidden): [image queries ; prompt (; target + EOS for decoder-only)].
        attention_mask: (batch, length).
        labels: decoder-only: (batch, length), -100 on image, prompt and padding positions;
            encoder-decoder: (batch, target length), -100 on padding.
        n_targets: target tokens in the batch (the loss is their mean).
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    n_targets: int


def load_pixels(paths: Sequence[Path], processor: Blip2Processor) -> torch.Tensor:
    """Pixel values of images as the backend computes them (mvleval.benchmarks.images.load_image + the PIL image processor)."""
    from mvleval.benchmarks.images import load_image

    images = [load_image(Path(p)) for p in paths]
    return cast("torch.Tensor", processor.image_processor(images, return_tensors="pt")["pixel_values"])


def image_queries(model: Blip2ForConditionalGeneration, pixel_values: torch.Tensor) -> torch.Tensor:
    """(n_images, num_query_tokens, hidden): ViT -> Q-Former -> projection, with gradients into the trained parts.

    The same call the backend makes at inference (``get_image_features(...).pooler_output``); the frozen ViT records no
    autograd graph because none of its inputs or weights require gradients.
    """
    vision_dtype = model.vision_model.embeddings.patch_embedding.weight.dtype
    features = model.get_image_features(pixel_values=pixel_values.to(vision_dtype), return_dict=True)
    return cast("torch.Tensor", features.pooler_output)


def build_inputs(
    model: Blip2ForConditionalGeneration,
    examples: Sequence[TokenizedExample],
    queries: torch.Tensor,
    *,
    image_token_id: int,
    pad_token_id: int,
) -> TrainBatch:
    """The language-model input of a micro-batch: per row [its images' queries ; prompt ids (; target ids + EOS)].

    Args:
        model: the BLIP-2 model (its language model's input embeddings are used).
        examples: tokenised examples of the batch.
        queries: (total images, num_query_tokens, hidden), the batch's images in row order, each row's in order.
        image_token_id: the image placeholder id (as Blip2Processor inserts it).
        pad_token_id: id written at padding positions (masked out).
    """
    import torch

    from mvleval.backends.mblip import is_decoder_only

    decoder_only = is_decoder_only(model.config)
    n_query = queries.shape[1]
    device = queries.device
    rows: list[list[int]] = []
    label_rows: list[list[int]] = []
    for ex in examples:
        image_part = [image_token_id] * (n_query * ex.n_images)
        if decoder_only:
            rows.append(image_part + list(ex.prompt_ids) + list(ex.target_ids))
            label_rows.append([-100] * (len(image_part) + len(ex.prompt_ids)) + list(ex.target_ids))
        else:
            rows.append(image_part + list(ex.prompt_ids))
            label_rows.append(list(ex.target_ids))
    width = max(len(r) for r in rows)
    label_width = max(len(r) for r in label_rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), label_width), -100, dtype=torch.long)
    for i, (row, label_row) in enumerate(zip(rows, label_rows)):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        labels[i, : len(label_row)] = torch.tensor(label_row)
    ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
    from mvleval.backends.mblip import embed_with_image_queries

    # the same [image queries ; text] embedding as evaluation builds (row by row, left to right)
    inputs_embeds = embed_with_image_queries(model, ids, ids == image_token_id, queries)
    return TrainBatch(inputs_embeds, mask, labels, int((labels != -100).sum()))


def compute_loss(model: Blip2ForConditionalGeneration, batch: TrainBatch) -> torch.Tensor:
    """Mean cross-entropy over the batch's target tokens (next-token for decoder-only, seq2seq for encoder-decoder)."""
    import torch.nn.functional as F

    lm = model.language_model
    if model.config.use_decoder_only_language_model:
        logits = lm(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask, use_cache=False).logits
        # position t predicts token t+1
        return F.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), batch.labels[:, 1:].reshape(-1), ignore_index=-100
        )
    out = lm(
        inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask, labels=batch.labels, use_cache=False
    )
    return cast("torch.Tensor", out.loss)


# -- 4. the loop -------------------------------------------------------------------------------------------------
def train(
    config: TrainConfig, *, resume: bool = False, progress: TrainProgress | None = None, processor: Any = None
) -> Path:
    """Fine-tune the base model as the config says; return the output folder (usable as --adapter DIR).

    Args:
        config: a validated TrainConfig (see load_config); bits/device None are resolved and saved.
        resume: continue from the newest checkpoint in config.output_dir (same settings required).
        progress: receives start/update/finish; None for silence.
        processor: a processor to use instead of the checkpoint's (generic families only; tests: an image-only
            processor where the real one needs torchvision).

    Raises:
        MvlevalError: bad data, an output folder that holds another run, or a resume with different settings.
    """
    import torch

    progress = progress or NoProgress()
    device, bits = resolve_precision(config)
    config = config.model_copy(update={"device": device, "bits": bits})
    examples: list[Example] = load_examples(config)  # data problems surface before any model is loaded
    check_out_dir(config, resume)
    out = config.output_dir
    from mvleval.util.fileperms import ensure_writable_dir

    ensure_writable_dir(out, "--out")
    from mvleval.finetune.base import is_blip2
    from mvleval.finetune.generic import train_generic

    if not is_blip2(config.base_model):  # every other family: the generic backend's conversation (generic.py)
        return train_generic(config, examples, resume=resume, progress=progress, processor=processor)

    torch.manual_seed(config.seed)
    progress.note(f"loading {config.base_model} ({bits}-bit, {device}) ...")
    model, processor = load_base_model(config.base_model, bits, device)
    peft_model = add_lora(model, config)
    if config.gradient_checkpointing:
        enable_checkpointing(model.language_model)
    tokenizer = processor.tokenizer
    image_token_id = int(cast(int, model.config.image_token_index))  # load_config_and_processor fills a missing one
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tokenized, truncated = tokenize_examples(
        examples,
        tokenizer,
        max_prompt_tokens=config.max_prompt_tokens,
        max_target_tokens=config.max_target_tokens,
        image_token_id=image_token_id,
    )
    if truncated:
        logger.warning(
            "%d of %d examples were longer than max_prompt_tokens/max_target_tokens and were truncated",
            truncated,
            len(examples),
        )

    def set_modes() -> None:
        model.train()
        model.vision_model.eval()  # frozen: no dropout in the image encoder

    def micro_loss(indices: list[int]) -> torch.Tensor:
        batch_examples = [examples[i] for i in indices]
        pixels = load_pixels([p for e in batch_examples for p in e.images], processor).to(device)
        with torch.autocast(autocast_device, dtype=torch.bfloat16, enabled=use_autocast):
            queries = image_queries(model, pixels)
            batch = build_inputs(
                model, [tokenized[i] for i in indices], queries, image_token_id=image_token_id, pad_token_id=pad_id
            )
            return compute_loss(model, batch)

    use_autocast = device.startswith("cuda") or bf16_training(bits, False)
    autocast_device = "cuda" if device.startswith("cuda") else "cpu"
    return run_training_loop(
        config,
        TrainingParts(model, peft_model, set_modes, micro_loss, len(examples), "lr_blip"),
        resume=resume,
        progress=progress,
    )
