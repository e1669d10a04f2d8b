"""Precision: device and bits defaults, the one BitsAndBytes config builder (inference, training, export), and the
bitsandbytes CPU workarounds measured in NOTES.md."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mvleval.util.errors import MissingDependencyError, MvlevalError

if TYPE_CHECKING:
    import torch


def default_device() -> str:
    """cuda when a GPU is visible, else cpu (the default of every command)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(requested: str | None) -> str:
    """The device a load uses: the one asked for, else cuda when a GPU is visible, else cpu.

    Raises:
        MvlevalError: CUDA was asked for but is not available.
    """
    import torch

    device = requested or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MvlevalError(
            f"--device {device} was asked for, but CUDA is not available.", fix="drop --device or use cpu."
        )
    return device


def bnb_config(bits: int, compute: Any, skip_modules: Sequence[str], double_quant: bool = True) -> Any:
    """The one BitsAndBytesConfig builder (inference, training, export): 4-bit nf4 (double quantisation by default,
    as QLoRA) or 8-bit int8, keeping `skip_modules` unquantised. Passing llm_int8_skip_modules replaces
    transformers' default list, so lm_head must be in it."""
    require_bitsandbytes()
    from transformers import BitsAndBytesConfig

    if bits == 4:
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=compute,
            bnb_4bit_use_double_quant=double_quant,
            llm_int8_skip_modules=list(skip_modules),
        )
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(skip_modules))
    raise ValueError(f"bitsandbytes quantises to 4 or 8 bits, not {bits}")


def disable_cpu_bf16_repack(model: torch.nn.Module) -> int:
    """Apply the bitsandbytes CPU workaround (NOTES.md) to every 4-bit Linear; return how many were changed.

    With AVX512-BF16, the first eval-mode forward repacks 4-bit weights (a later save is then lossy) and
    in_features not divisible by 64 crash; turning the bf16 path off fixes both.
    """
    from bitsandbytes.nn.modules import Linear4bit

    count = 0
    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count


def precision(
    config_json: dict[str, Any],
    bits: int | None,
    on_cuda: bool,
    model_dir: Path,
    skip_modules: Sequence[str],
    double_quant: bool = True,
) -> tuple[int, Any, Any, str | None]:
    """(bits, quantization_config or None, dtype of unquantised weights, description) for a load."""
    import torch

    compute = torch.bfloat16 if on_cuda else torch.float32
    saved = config_json.get("quantization_config")
    if saved is not None:
        method = saved.get("quant_method")
        if method != "bitsandbytes":
            raise MvlevalError(
                f"the checkpoint is pre-quantised with '{method}', which mvleval does not load.",
                fix="use a bitsandbytes-quantised or unquantised checkpoint.",
                where=model_dir / "config.json",
            )
        saved_bits = 4 if saved.get("load_in_4bit") else 8 if saved.get("load_in_8bit") else None
        if saved_bits is None:
            raise MvlevalError(
                "quantization_config says neither 4-bit nor 8-bit.",
                fix="re-save the checkpoint.",
                where=model_dir / "config.json",
            )
        if bits is not None and bits != saved_bits:
            raise MvlevalError(
                f"the checkpoint is already quantised to {saved_bits} bits; it cannot be loaded with --bits {bits}.",
                fix=f"drop --bits (or pass --bits {saved_bits}), or use the unquantised checkpoint.",
                where=model_dir,
            )
        require_bitsandbytes()
        kind = saved.get("bnb_4bit_quant_type", "nf4") if saved_bits == 4 else "int8"
        return saved_bits, None, compute, f"pre-quantised bitsandbytes {kind}"
    if bits is None:
        bits = 4 if on_cuda else 32
    if bits == 32:
        return 32, None, torch.float32, None
    if bits == 16:
        return 16, None, torch.bfloat16, None
    require_bitsandbytes()
    config = bnb_config(bits, compute, skip_modules, double_quant)
    if bits == 4:
        desc = f"bitsandbytes nf4 (compute {str(compute).removeprefix('torch.')}{', double quant' if double_quant else ''})"
    else:
        desc = "bitsandbytes int8"
    return bits, config, compute, desc


def require_bitsandbytes() -> None:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise MissingDependencyError("bitsandbytes", "4-bit and 8-bit loading (--bits 4/8)") from None


_bnb_warning_lock = threading.Lock()
_bnb_warning_silenced = False


def silence_bnb_cast_warning() -> None:
    """Hide bitsandbytes' per-call "inputs will be cast from ..." warning (int8 on CPU) once for the process.

    A process-wide filter rather than ``warnings.catch_warnings`` around each generate call: that context manager
    swaps global state and is not thread-safe, and the prefetch threads' ``load_image`` uses it at the same time.
    """
    global _bnb_warning_silenced
    with _bnb_warning_lock:
        if not _bnb_warning_silenced:
            warnings.filterwarnings("ignore", message=".*inputs will be cast from.*")
            _bnb_warning_silenced = True


def load_weights(model_class: Any, model_dir: Path, load_kwargs: dict[str, Any], *, bits: int, on_cuda: bool) -> Any:
    """``model_class.from_pretrained`` with a clear error, then the bitsandbytes CPU workaround and eval mode: how every
    transformers backend loads its weights.

    Raises:
        MvlevalError: the folder's weights do not load (incomplete download, wrong files).
    """
    try:
        model = model_class.from_pretrained(str(model_dir), **load_kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise MvlevalError(
            f"could not load the checkpoint ({exc}).", fix="check that the folder is complete.", where=model_dir
        ) from None
    if bits == 4 and not on_cuda:
        disable_cpu_bf16_repack(model)
    model.eval()
    silence_bnb_cast_warning()
    return model
