"""The Backend protocol, GenerationRequest and get_backend (lazy import, load once)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mvleval.record import ModelInfo
    from mvleval.task import GenerationSettings


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt with its images (1, or 2 for MaRVL), which the backend loads, encodes and caches."""

    prompt: str
    images: tuple[Path, ...]


class Backend(Protocol):
    """What the runner needs from a model."""

    def generate(self, requests: Sequence[GenerationRequest], settings: GenerationSettings) -> list[str]:
        """Generate one answer per request (batched; all requests in a call have the same number of images)."""
        ...

    def info(self, settings: GenerationSettings) -> ModelInfo:
        """What was loaded and how (path, kind, bits, dtype, adapter, generation settings)."""
        ...


@dataclass(frozen=True)
class BackendOptions:
    """How to load a model; frozen so a run's options cannot drift."""

    model: str
    adapter: str | None = None
    bits: int | None = None  # None: 4 on CUDA, 32 on CPU; a pre-quantised checkpoint loads as it is
    device: str | None = None  # None: cuda if available, else cpu
    allow_pickle: bool = False
    image_cache_size: int = 4096  # number of encoded images kept (each num_query_tokens x hidden floats)
    # beam search runs the prompt once per sample, not once per beam (same token ids); False: transformers' plain path
    shared_prefix: bool = True


def get_backend(options: BackendOptions) -> Backend:
    """Load the backend for a model path or hub id (imports torch and transformers lazily)."""
    from mvleval.backends.mblip import MBlipBackend

    return MBlipBackend.load(options)
