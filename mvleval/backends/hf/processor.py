"""Loading a checkpoint's processor the same way for every transformers backend: the PIL image processor (the same
pixels whether or not torchvision is installed), one clear error for missing files and for families that need
torchvision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mvleval.util.errors import MissingDependencyError, MvlevalError


def load_processor(model_dir: Path, family: str, trust_remote_code: bool = False) -> Any:
    """The checkpoint's processor with PIL image processing (the same pixels whether or not torchvision is installed).

    Raises:
        MissingDependencyError: the family's processor needs torchvision (Qwen2-VL, Qwen2.5-VL, SmolVLM in
            transformers 5.x construct a video processor that only exists with it).
        MvlevalError: the processor files are missing or broken.
    """
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(str(model_dir), backend="pil", trust_remote_code=trust_remote_code)
    except ImportError as exc:
        from transformers.utils.import_utils import is_torchvision_available

        # transformers 5.x builds Qwen2-VL's, Qwen2.5-VL's and SmolVLM's video processor only with torchvision; its
        # message ("Video processor cannot be loaded - requested pil backend is not available") does not say so
        if not is_torchvision_available() and (
            "torchvision" in str(exc).lower() or "video processor" in str(exc).lower()
        ):
            raise MissingDependencyError(
                "torchvision",
                f"the {family} processor (transformers builds its video processor only with torchvision; install the "
                "torchvision build that matches your torch)",
                install="pip install torchvision",
            ) from None
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MvlevalError(
            f"could not load the checkpoint's processor ({exc}).",
            fix="make sure the tokenizer, processor and preprocessor files of the checkpoint are present.",
            where=model_dir,
        ) from None
    return processor
