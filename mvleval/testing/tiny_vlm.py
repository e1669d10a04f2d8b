"""Re-exports the tiny vision-LLM checkpoint builders of :mod:`mvleval.testing.tiny` under their historical name.

See :mod:`mvleval.testing.tiny` for what a tiny checkpoint is; one module a family lives there.
"""

from __future__ import annotations

from mvleval.testing.tiny.build import (
    build_tiny_vlm,
    load_processor,
    logger,
    multi_image,
    needs_torchvision,
)
from mvleval.testing.tiny.common import FAMILIES

__all__ = ["FAMILIES", "build_tiny_vlm", "load_processor", "logger", "multi_image", "needs_torchvision"]
