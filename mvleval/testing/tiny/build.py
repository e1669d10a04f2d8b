"""Builds a tiny checkpoint of any family by name: the family registry and the public API of mvleval.testing.tiny_vlm."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mvleval.testing.tiny import (
    aya_vision,
    gemma3,
    idefics3,
    instructblip,
    llava,
    llava_next,
    mllama,
    paligemma,
    qwen2_vl,
    smolvlm,
)
from mvleval.testing.tiny.common import FAMILIES, Built, Sizes, check_family
from mvleval.testing.tiny.image_only import image_only_processor_class
from mvleval.testing.tiny.save import reinitialise_variance_preserving, save_checkpoint
from mvleval.util.errors import MvlevalError

if TYPE_CHECKING:
    from transformers import ProcessorMixin

logger = logging.getLogger("mvleval.testing.tiny_vlm")


#: Families whose processor and model take several images in one prompt. InstructBLIP's Q-Former reads one image.
#: (PaliGemma and llava-1.5 were trained on single images; their processors and models still accept several.)
_MULTI_IMAGE: frozenset[str] = frozenset(FAMILIES) - {"instructblip"}


#: Families whose processor includes a video processor, which transformers 5.23 cannot construct without torchvision.
_NEEDS_TORCHVISION: frozenset[str] = frozenset({"qwen2_vl", "qwen2_5_vl", "smolvlm"})


#: One builder a family, each in its own module.
BUILDERS: dict[str, Callable[[Sizes], Built]] = {
    "qwen2_vl": lambda sizes: qwen2_vl.build(sizes, v2_5=False),
    "qwen2_5_vl": lambda sizes: qwen2_vl.build(sizes, v2_5=True),
    "paligemma": paligemma.build,
    "llava": llava.build,
    "llava_next": llava_next.build,
    "idefics3": idefics3.build,
    "smolvlm": smolvlm.build,
    "gemma3": gemma3.build,
    "aya_vision": aya_vision.build,
    "instructblip": instructblip.build,
    "mllama": mllama.build,
}


def multi_image(family: str) -> bool:
    """Whether `family` accepts several images in one user turn.

    Args:
        family: one of FAMILIES.

    Returns:
        True for every family but InstructBLIP, whose Q-Former reads a single image per prompt.

    Raises:
        MvlevalError: `family` is not in FAMILIES.
    """
    check_family(family)
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
    check_family(family)
    return family in _NEEDS_TORCHVISION


def build_tiny_vlm(
    family: str, out_dir: Path, *, seed: int = 0, hidden: int = 32, layers: int = 2, vision_layers: int | None = None
) -> Path:
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
        vision_layers: depth of the vision tower alone (default: `layers`; Gemma 3, PaliGemma, Qwen2-VL / Qwen2.5-VL
            and the CLIP / SigLIP towers of the other families; not Mllama's tiled ViT).

    Returns:
        `out_dir`.

    Raises:
        MvlevalError: an unknown family or unusable sizes.
    """
    import torch

    check_family(family)
    if hidden < 16 or hidden % 8:
        raise MvlevalError(f"hidden={hidden} is not a multiple of 8 of at least 16.", fix="use e.g. 32 or 64.")
    for name, depth in (("layers", layers), ("vision_layers", vision_layers or layers)):
        if depth < 2:
            raise MvlevalError(f"{name}={depth} is below 2.", fix="use 2 or more.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG state untouched
        torch.manual_seed(seed)
        built = BUILDERS[family](Sizes(hidden=hidden, layers=layers, vision_layers=vision_layers))
        reinitialise_variance_preserving(built.model)
    save_checkpoint(built, out_dir)
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
    from transformers.utils.import_utils import is_torchvision_available

    model_dir = Path(model_dir)
    if family is None:
        family = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))["model_type"]
    if family in _NEEDS_TORCHVISION and not is_torchvision_available():
        return image_only_processor_class(family).from_pretrained(model_dir, backend="pil")
    processor: ProcessorMixin = AutoProcessor.from_pretrained(model_dir, backend="pil")
    return processor
