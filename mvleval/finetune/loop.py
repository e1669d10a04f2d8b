"""The training loop every recipe shares (mBLIP's in train.py, the generic families' in generic.py): precision and
quantisation on this device, LoRA placement by module structure, the optimizer and its schedule, the data order, gradient
accumulation, checkpoints and resume (the same weights as an uninterrupted run), the log and the loss plot.

A recipe hands the loop its parts (`TrainingParts`: the model, the peft wrapper, how to set train/eval modes, the loss of
a micro-batch); nothing here knows a family. Kept apart from train.py (which picks the recipe) so that the recipes import
the loop and the loop imports no recipe."""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mvleval.finetune.config import TrainConfig, total_steps, warmup_steps
from mvleval.util.errors import MvlevalError

if TYPE_CHECKING:
    import torch
    from transformers import Blip2ForConditionalGeneration

logger = logging.getLogger("mvleval.finetune.loop")

TRAIN_CONFIG_FILE = "train_config.json"
EXPORT_INFO_FILE = "mvleval_export.json"
TRAIN_LOG_FILE = "train_log.jsonl"
LOSS_PLOT_FILE = "loss.png"
CHECKPOINTS_DIR = "checkpoints"
_STATE_FILE = "trainer_state.json"  # written last: a checkpoint folder without it is incomplete
_BLIP_PART_PREFIXES = ("qformer.", "query_tokens", "language_projection.")


# -- progress -------------------------------------------------------------------------------------------------------
class LanguageModel(Protocol):
    """What LoRA targeting and checkpointing use of the LLM inside BLIP-2 (transformers leaves these unannotated)."""

    def named_modules(self) -> Iterator[tuple[str, torch.nn.Module]]:
        """Every submodule with its dotted name."""
        ...

    def get_output_embeddings(self) -> torch.nn.Module | None:
        """The LM head (kept out of LoRA)."""
        ...

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        """Recompute activations in backward."""
        ...


class TrainProgress(Protocol):
    """How training reports progress; the CLI renders it as a rich bar (loss, ETA), tests pass None."""

    def start(self, label: str, total: int, done: int) -> None:
        """Training of `total` optimizer steps begins, `done` of them already done (resume)."""
        ...

    def update(self, step: int, loss: float, lr: float, examples_per_s: float) -> None:
        """Optimizer step `step` (1-based) finished with this mean loss and LoRA learning rate."""
        ...

    def finish(self) -> None:
        """Training ended (also called when it stops with an error)."""
        ...

    def note(self, message: str) -> None:
        """A one-line status message: what is loading, where a resumed run continues."""
        ...


class NoProgress:
    def start(self, label: str, total: int, done: int) -> None:
        pass

    def update(self, step: int, loss: float, lr: float, examples_per_s: float) -> None:
        pass

    def finish(self) -> None:
        pass

    def note(self, message: str) -> None:
        logger.info(message)


# -- 1. the base model ----------------------------------------------------------------------------------------------
def resolve_precision(config: TrainConfig) -> tuple[str, int]:
    """(device, bits) with the defaults filled in: cuda when available, 4 bits on CUDA and 32 on CPU."""
    import torch

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MvlevalError(
            f"device {device} was asked for, but CUDA is not available.", fix="drop --set device=... or use cpu."
        )
    bits = config.bits if config.bits is not None else (4 if device.startswith("cuda") else 32)
    return device, bits


def quantization_config(bits: int, encoder_decoder: bool, bf16_compute: bool) -> Any:
    """bitsandbytes settings for QLoRA (4) or int8 (8) training and 4/8-bit export; None for 16/32 bits.

    nf4 with double quantisation for encoder-decoder LLMs and without for decoder-only ones, as mBLIP quantises mT0
    and BLOOMZ; bf16 compute when `bf16_compute` (training: see bf16_training; export: always). The ViT, Q-Former, projection and lm_head stay unquantised (NOTES.md: QLoRA
    needs language_projection unquantised, and the skip list replaces transformers' default, so lm_head is named).
    """
    if bits not in (4, 8):
        return None
    import torch

    from mvleval.backends.hf.precision import bnb_config
    from mvleval.backends.mblip import QUANT_SKIP_MODULES

    # the same builder as evaluation and export (one nf4 rule: double quantisation for encoder-decoder LLMs)
    return bnb_config(
        bits, torch.bfloat16 if bf16_compute else torch.float32, QUANT_SKIP_MODULES, double_quant=encoder_decoder
    )


def bf16_training(bits: int, on_cuda: bool) -> bool:
    """Whether a training run keeps its unquantised weights in bf16 and computes under bf16 autocast.

    16 bits anywhere; 4 bits (QLoRA) on CPU too, so a 4-bit run holds its vision tower, projector, embeddings and
    lm_head as the 16-bit run does (fp32 there made the 4-bit run's peak memory exceed the 16-bit run's), with nf4
    dequantised to bf16; every quantised run on CUDA. 32 bits and 8 bits on CPU stay in fp32.
    """
    return bits == 16 or bits == 4 or (bits == 8 and on_cuda)


def release_checkpoint_file(model: torch.nn.Module) -> None:
    """After a 4-bit load on CPU: give the unquantised weights their own memory, so the checkpoint file's mapping
    is released, then hand the loader's freed heap back to the system (glibc's malloc_trim).

    A 4-bit load reads every weight of the (bf16) file to quantise it, and the unquantised weights stay views of the
    memory-mapped file; the whole file therefore stayed mapped and resident beside the nf4 copies, and a 4-bit run's
    peak memory exceeded the 16-bit run's (bench/bench_train.py). The values are unchanged.
    """
    import ctypes
    import gc

    import torch
    from bitsandbytes.nn.modules import Params4bit

    with torch.no_grad():
        for module in model.modules():
            for param in module.parameters(recurse=False):
                if not isinstance(param, Params4bit):
                    param.data = param.data.clone()
            for name, buffer in list(module.named_buffers(recurse=False)):
                if buffer is not None:
                    module._buffers[name] = buffer.clone()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the allocator keeps what it keeps
        pass


# -- 2. LoRA and what is trained ------------------------------------------------------------------------------------
def lora_leaf_names(language_model: LanguageModel) -> list[str]:
    """Names of the linear layers inside the LLM's blocks, found by structure (what mBLIP's "lora_all" targets).

    Every ``nn.Linear`` (bitsandbytes' 4/8-bit layers subclass it) below a top-level container of the language model,
    except the output embedding: mT5 -> q, k, v, o, wi_0, wi_1, wo; BLOOM -> query_key_value, dense,
    dense_h_to_4h, dense_4h_to_h.
    """
    import torch

    output = language_model.get_output_embeddings()
    leaves: set[str] = set()
    for name, module in language_model.named_modules():
        if isinstance(module, torch.nn.Linear) and module is not output and "." in name:
            leaves.add(name.rsplit(".", 1)[1])
    return sorted(leaves)


def lora_target_regex(language_model: LanguageModel, leaves: Sequence[str]) -> str:
    """An anchored regex matching exactly the chosen linear layers, relative to the language model.

    peft full-matches a string target against module names relative to the model it wraps; anchoring the top-level
    container (encoder/decoder/transformer) and the leaf keeps lm_head and anything outside the LLM out.
    """
    import torch

    output = language_model.get_output_embeddings()
    chosen = [
        name
        for name, module in language_model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and module is not output
        and "." in name
        and name.rsplit(".", 1)[1] in leaves
    ]
    tops = sorted({name.split(".", 1)[0] for name in chosen})
    regex = rf"^(?:{'|'.join(map(re.escape, tops))})\.(?:.*\.)?(?:{'|'.join(map(re.escape, sorted(leaves)))})$"
    # the regex must select exactly the modules chosen by structure: a bug otherwise, not a user error
    matched = [name for name, _ in language_model.named_modules() if re.fullmatch(regex, name)]
    if sorted(matched) != sorted(chosen):
        raise RuntimeError(f"LoRA target regex {regex!r} selects {len(matched)} modules, expected {len(chosen)}")
    return regex


def enable_checkpointing(language_model: LanguageModel) -> None:
    """Recompute the LLM's layer activations in backward (non-reentrant: the LLM's own inputs need no grad flag)."""
    kwargs = {"use_reentrant": False}
    if hasattr(language_model, "activation_checkpointing_enable"):  # transformers >= 5.x's name
        language_model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        language_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def trainable_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """(name, parameter) of everything trained, in a fixed order (the optimizer state depends on it)."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with mBLIP's two learning rates; no weight decay on biases and norm weights (1-D tensors)."""
    import torch

    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in trainable_parameters(model):
        is_lora = "lora_" in name
        decay = param.ndim >= 2
        groups.setdefault((is_lora, decay), []).append(param)
    param_groups = [
        {
            "params": params,
            "lr": config.lr_lora if is_lora else config.lr_blip,
            "weight_decay": config.weight_decay if decay else 0.0,
            "name": f"{'lora' if is_lora else 'blip'}{'' if decay else '_no_decay'}",
        }
        for (is_lora, decay), params in sorted(groups.items(), key=lambda kv: (not kv[0][0], not kv[0][1]))
    ]
    betas = (config.adam_betas[0], config.adam_betas[1])
    return torch.optim.AdamW(param_groups, betas=betas, eps=config.adam_eps, foreach=False)


# -- data order ---------------------------------------------------------------------------------------------------
class DataOrder:
    """An endless stream of example indices: one seeded permutation per epoch, concatenated.

    Micro-batch i takes stream positions [i*batch_size, (i+1)*batch_size), so the data position of a run is just the
    number of micro-batches done, and a resumed run sees exactly the examples an uninterrupted one would.
    """

    def __init__(self, n_examples: int, batch_size: int, seed: int) -> None:
        self.n = n_examples
        self.batch_size = batch_size
        self.seed = seed
        self._epoch = -1
        self._perm: list[int] = []

    def _permutation(self, epoch: int) -> list[int]:
        import torch

        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.n, generator=generator).tolist()
            self._epoch = epoch
        return self._perm

    def batch(self, index: int) -> list[int]:
        """Example indices of micro-batch `index` (may straddle an epoch boundary)."""
        out = []
        for pos in range(index * self.batch_size, (index + 1) * self.batch_size):
            out.append(self._permutation(pos // self.n)[pos % self.n])
        return out


# -- checkpoints -------------------------------------------------------------------------------------------------
def save_trained_weights(model: Blip2ForConditionalGeneration, peft_model: Any, folder: Path) -> None:
    """Write the adapter folder the backend reads: peft LoRA adapter + blip_parts.safetensors.

    query_tokens is saved here explicitly: peft's modules_to_save ignores a bare Parameter (NOTES.md).
    """
    from safetensors.torch import save_file

    from mvleval.backends.mblip import BLIP_PARTS_FILE

    folder.mkdir(parents=True, exist_ok=True)
    card = folder / "README.md"
    had_card = card.exists()
    peft_model.save_pretrained(str(folder))
    if not had_card and card.is_file():
        # peft also writes an empty model-card template; the run's own files describe it
        card.unlink()
    parts = {
        name: param.detach().to("cpu").contiguous()
        for name, param in model.named_parameters()
        if param.requires_grad and name.startswith(_BLIP_PART_PREFIXES)
    }
    if parts:
        save_file(parts, str(folder / BLIP_PARTS_FILE), metadata={"format": "pt"})
    from mvleval.util.fileperms import follow_umask_tree

    follow_umask_tree(folder)  # safetensors renames a 0600 temporary file into place


def _rng_state() -> dict[str, Any]:
    import torch

    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    out_dir: Path,
    step: int,
    model: Blip2ForConditionalGeneration,
    peft_model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
    keep: int,
) -> Path:
    """Write checkpoints/step-N atomically (a temporary folder renamed at the end) and prune old ones."""
    import torch

    root = out_dir / CHECKPOINTS_DIR
    final = root / f"step-{step}"
    tmp = root / f".step-{step}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_trained_weights(model, peft_model, tmp)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(_rng_state(), tmp / "rng.pt")
    (tmp / _STATE_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in list_checkpoints(out_dir)[:-keep]:
        shutil.rmtree(old)
    return final


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoint folders (trainer_state.json present), oldest first."""
    root = out_dir / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = re.fullmatch(r"step-(\d+)", path.name)
        if match and (path / _STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return [p for _, p in sorted(found)]


def load_checkpoint(
    folder: Path,
    model: Blip2ForConditionalGeneration,
    peft_model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNG from a checkpoint folder; return its trainer state."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from mvleval.backends.mblip import BLIP_PARTS_FILE

    adapter = load_file(str(folder / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(peft_model, adapter)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise MvlevalError(
            f"checkpoint adapter has {len(unexpected)} tensors this model lacks (first: {unexpected[0]}).",
            fix="resume with the same --model and LoRA settings the run started with.",
            where=folder,
        )
    parts_path = folder / BLIP_PARTS_FILE
    params = dict(model.named_parameters())
    if parts_path.is_file():
        with torch.no_grad():
            for name, tensor in load_file(str(parts_path)).items():
                params[name].copy_(tensor.to(params[name].device))
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", map_location="cpu", weights_only=True))
    _set_rng_state(torch.load(folder / "rng.pt", map_location="cpu", weights_only=True))
    state: dict[str, Any] = json.loads((folder / _STATE_FILE).read_text(encoding="utf-8"))
    return state


# -- logs ------------------------------------------------------------------------------------------------------
def read_train_log(out_dir: Path) -> list[dict[str, Any]]:
    """The train_log.jsonl records of a run (one per logged optimizer step)."""
    path = out_dir / TRAIN_LOG_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_loss(records: Sequence[dict[str, Any]], path: Path) -> None:
    """Save the loss curve (matplotlib's Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([r["step"] for r in records], [r["loss"] for r in records], linewidth=1.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def check_out_dir(config: TrainConfig, resume: bool) -> None:
    """Refuse to mix runs: a fresh run needs an unused folder; --resume needs the same weight-defining settings.

    Nothing is written here: train_config.json is written once the model and data are set up, so a run that fails
    on bad input leaves no half-started run behind that would block the corrected rerun.
    """
    out = config.output_dir
    saved_path = out / TRAIN_CONFIG_FILE
    if not resume:
        if saved_path.exists() or (out / CHECKPOINTS_DIR).exists():
            raise MvlevalError(
                "the output folder already holds a training run.",
                fix="pass --resume to continue it, or choose another --out.",
                where=out,
            )
        return
    if not saved_path.is_file():
        raise MvlevalError(
            "nothing to resume: the output folder holds no train_config.json.",
            fix="drop --resume to start a new run, or point --out at the interrupted run's folder.",
            where=out,
        )
    saved = TrainConfig.model_validate_json(saved_path.read_text(encoding="utf-8"))
    old, new = saved.without_bookkeeping(), config.without_bookkeeping()
    diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diffs:
        raise MvlevalError(
            "the resumed run's settings differ from the interrupted run's, so it would not end with the same weights: "
            + "; ".join(diffs)
            + ".",
            fix="resume with the same settings (see train_config.json in the output folder), or start a new run in another --out.",
            where=saved_path,
        )


@dataclass
class TrainingParts:
    """What differs between mBLIP's recipe and the generic families' in the one training loop (run_training_loop).

    Attributes:
        model: the module whose trainable parameters are optimised, checkpointed and saved (mBLIP: the BLIP-2 model,
            whose Q-Former and projection train beside the adapter; generic: the peft model).
        peft_model: the peft wrapper holding the LoRA adapter.
        set_modes: puts the model in training mode with its frozen image encoder in eval mode (no dropout there).
        micro_loss: the loss of one micro-batch, given its example indices (under autocast where the run asks for it).
        n_examples: how many training examples the data order draws from.
        projector_lr_key: the train_log.jsonl name of the second parameter group's learning rate.
    """

    model: Any
    peft_model: Any
    set_modes: Callable[[], None]
    micro_loss: Callable[[list[int]], torch.Tensor]
    n_examples: int
    projector_lr_key: str


def run_training_loop(config: TrainConfig, parts: TrainingParts, *, resume: bool, progress: TrainProgress) -> Path:
    """The loop both recipes share: optimizer and schedule, resume from the newest checkpoint, gradient accumulation,
    the log, checkpoints, the saved adapter and the loss plot. Returns the output folder."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    out = config.output_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / TRAIN_CONFIG_FILE).write_text(config.to_json(), encoding="utf-8")
    steps = total_steps(config, parts.n_examples)
    optimizer = make_optimizer(parts.model, config)
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup_steps(config, steps), steps)
    order = DataOrder(parts.n_examples, config.batch_size, config.seed)
    step = _resume_step(config, parts, optimizer, scheduler, steps, resume, progress)
    # the log keeps exactly the steps the restored state has seen
    log_path = out / TRAIN_LOG_FILE
    kept = [r for r in read_train_log(out) if r["step"] <= step]
    log_path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    trainable = [p for _, p in trainable_parameters(parts.model)]
    parts.set_modes()
    progress.start("train", steps, step)
    started = time.monotonic()
    try:
        with log_path.open("a", encoding="utf-8") as log:
            while step < steps:
                step_start = time.monotonic()
                optimizer.zero_grad(set_to_none=True)
                losses: list[float] = []
                n_examples = 0
                for micro in range(config.grad_accum_steps):
                    indices = order.batch(step * config.grad_accum_steps + micro)
                    loss = parts.micro_loss(indices)
                    if not torch.isfinite(loss):
                        raise MvlevalError(
                            f"the training loss became {loss.item()} at step {step + 1}.",
                            fix="lower lr_lora/lr_blip, or train in 32 bits (--bits 32) to rule out precision problems.",
                        )
                    torch.autograd.backward(loss / config.grad_accum_steps)  # = Tensor.backward(), which is untyped
                    losses.append(float(loss.detach()))
                    n_examples += len(indices)
                grad_norm = torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
                lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
                optimizer.step()
                scheduler.step()
                step += 1
                record = _log_record(config, parts, step, losses, lrs, float(grad_norm), n_examples, step_start)
                if step % config.log_every == 0 or step == steps:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                if step % config.save_every == 0 or step == steps:
                    _save_step(config, parts, optimizer, scheduler, step, steps)
                progress.update(step, record["loss"], record["lr"], record["examples_per_s"])
    finally:
        progress.finish()

    save_trained_weights(parts.model, parts.peft_model, out)
    records = read_train_log(out)
    if records:
        plot_loss(records, out / LOSS_PLOT_FILE)
    logger.info("trained %d steps in %.1f s; adapter in %s", steps, time.monotonic() - started, out)
    return out


def _resume_step(
    config: TrainConfig,
    parts: TrainingParts,
    optimizer: Any,
    scheduler: Any,
    steps: int,
    resume: bool,
    progress: TrainProgress,
) -> int:
    """The step to start from: 0, or the newest checkpoint's (its weights, optimizer, schedule and RNG restored)."""
    if not resume:
        return 0
    checkpoints = list_checkpoints(config.output_dir)
    if not checkpoints:
        progress.note(f"no checkpoint in {config.output_dir} yet: starting from step 0")
        return 0
    state = load_checkpoint(checkpoints[-1], parts.model, parts.peft_model, optimizer, scheduler)
    step = int(state["step"])
    progress.note(f"resumed from {checkpoints[-1]} (step {step} of {steps})")
    return step


def _log_record(
    config: TrainConfig,
    parts: TrainingParts,
    step: int,
    losses: list[float],
    lrs: dict[str, float],
    grad_norm: float,
    n_examples: int,
    step_start: float,
) -> dict[str, Any]:
    """One train_log.jsonl line."""
    elapsed = max(time.monotonic() - step_start, 1e-9)
    return {
        "step": step,
        "epoch": round(step * config.grad_accum_steps * config.batch_size / parts.n_examples, 4),
        "loss": sum(losses) / len(losses),
        "lr": lrs.get("lora", next(iter(lrs.values()))),
        parts.projector_lr_key: lrs.get("blip", lrs.get("blip_no_decay")),
        "grad_norm": grad_norm,
        "examples_per_s": round(n_examples / elapsed, 3),
    }


def _save_step(
    config: TrainConfig, parts: TrainingParts, optimizer: Any, scheduler: Any, step: int, steps: int
) -> None:
    save_checkpoint(
        config.output_dir,
        step,
        parts.model,
        parts.peft_model,
        optimizer,
        scheduler,
        {
            "step": step,
            "micro_batches": step * config.grad_accum_steps,
            "examples_seen": step * config.grad_accum_steps * config.batch_size,
            "total_steps": steps,
        },
        config.keep_checkpoints,
    )
