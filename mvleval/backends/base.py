"""The Backend base class (one abstract method; every optional capability has a default), GenerationRequest and
BackendOptions. Imports no model family: the registry picks and imports one."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from mvleval.backends.spec import ModelOptions
from mvleval.util.errors import MvlevalError

if TYPE_CHECKING:
    from mvleval.benchmarks.task import GenerationSettings
    from mvleval.record.schema import ModelInfo


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt with its images (0 for a text-only question, 1, 2 for MaRVL, up to 7 for MMMU), which the backend
    loads, encodes and caches."""

    prompt: str
    images: tuple[Path, ...]


#: where a prompt places its images: ``<image 1>`` ... (MMMU's markers), numbered from 1 in the request's image order
IMAGE_MARKER = re.compile(r"<image (\d+)>")


def interleave(prompt: str, n_images: int) -> list[str | int]:
    """The user turn's parts in order: text pieces and image indices (0-based into the request's images).

    A prompt without markers gives every image first, then the text (how every task without markers has always been
    asked). With markers, ``<image k>`` (1 <= k <= n_images) is replaced by image k where it stands; an image that no
    marker names goes first, in order; a marker naming no image (k > n_images) stays text. Empty text pieces are
    dropped.
    """
    parts: list[str | int] = []
    position = 0
    named: set[int] = set()
    for m in IMAGE_MARKER.finditer(prompt):
        k = int(m.group(1))
        if not 1 <= k <= n_images:
            continue
        if m.start() > position:
            parts.append(prompt[position : m.start()])
        parts.append(k - 1)
        named.add(k - 1)
        position = m.end()
    if position < len(prompt) or not named:  # without markers the text is kept whole (even empty), as always
        parts.append(prompt[position:])
    return [i for i in range(n_images) if i not in named] + parts


#: How a backend gives a model the images of a several-image example when the model takes one image per turn.
IMAGE_HANDLING = ("native", "side-by-side")


#: Which non-standard request fields a served model's endpoint gets: "none" (the plain OpenAI API: greedy decoding
#: only), "vllm" (``use_beam_search``/``n``/``length_penalty``/``min_tokens``), "transformers" (``transformers serve``'s
#: ``generation_config``).
SERVER_EXTENSIONS = ("none", "vllm", "transformers")


@dataclass(frozen=True)
class EndpointOptions:
    """How to reach a model served behind an OpenAI-compatible endpoint (``--model openai:NAME``)."""

    base_url: str = "https://api.openai.com/v1"  # the first replica
    #: every replica's base URL (repeated --base-url; data-parallel servers of one model); () means just base_url
    base_urls: tuple[str, ...] = ()
    api_key_env: str = "OPENAI_API_KEY"  # the NAME of the variable holding the key; the key itself is never stored
    concurrency: int | None = 8  # requests in flight per replica; None: adaptive (a window per replica, AIMD)
    timeout_s: float = 120.0  # per request attempt
    max_retries: int = 5  # after the first attempt, on 429 / 5xx / connection errors / timeouts / malformed bodies
    max_image_side: int | None = None  # downsize (aspect kept) so that the longer side is at most this, before encoding
    server_extensions: str = "none"  # one of SERVER_EXTENSIONS
    seed: int = 0  # sent with every request (servers that take one use it)
    cache: str = "read-write"  # the response cache (mvleval/run/cache.py): read-write, read or off

    @property
    def urls(self) -> tuple[str, ...]:
        """Every replica's base URL, in the order given."""
        return self.base_urls or (self.base_url,)

    def identity(self) -> dict[str, Any]:
        """The settings that change what the model is asked (part of a run's identity; the URL is not: a server may
        move between an interrupted run and its resume, and the served model id is in the identity already)."""
        return {"max_image_side": self.max_image_side, "server_extensions": self.server_extensions}


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
    backend: str | None = None  # None: chosen from the checkpoint's config.json (registry.py)
    trust_remote_code: bool = False  # run the checkpoint's own Python code (Centurio, InternVL, MiniCPM-V)
    # several images of one example: "native" (in order, in one turn) or "side-by-side" (pasted into one image)
    image_handling: str = "native"
    endpoint: EndpointOptions | None = None  # served models only
    # the backend's own options (-M KEY=VALUE), validated by its options_model; None: none given (the defaults)
    model_options: ModelOptions | None = None


class BatchFailed(MvlevalError):
    """Raised by ``generate`` when some requests of a batch failed for good (after their retries).

    Carries the answers that did arrive (index in the batch -> text), so the runner keeps them: a resumed run then
    does not ask for them again. Nothing of a failed request is ever scored.
    """

    def __init__(self, what: str, answered: dict[int, str], fix: str | None = None) -> None:
        super().__init__(what, fix=fix)
        self.answered = dict(answered)


class Backend(ABC):
    """What the runner needs from a model: ``generate`` and ``info``; the rest has defaults a family may override."""

    #: where the model runs ("cpu", "cuda:0", or an endpoint's host for served models)
    device: str = "cpu"
    #: this backend's own options (``-M KEY=VALUE``): one pydantic model, one field per key (default: none)
    options_model: ClassVar[type[ModelOptions]] = ModelOptions

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest], settings: GenerationSettings) -> list[str]:
        """Generate one answer per request (batched; all requests in a call have the same number of images)."""

    @abstractmethod
    def info(self, settings: GenerationSettings) -> ModelInfo:
        """What was loaded and how (backend, family, model, fingerprint, precision, generation settings, details)."""

    def check_settings(self, settings: GenerationSettings, images_per_example: int) -> None:  # noqa: B027 (optional hook)
        """Refuse settings or inputs this model cannot honour, before any generation (default: accept all).

        Raises:
            MvlevalError: e.g. two images per example for a family that takes one, without a fallback.
        """

    def prefetch(self, requests: Sequence[GenerationRequest]) -> int:
        """Announce upcoming requests so their images are prepared ahead of use; returns how many were queued."""
        return 0

    def pick_batch_size(self, requests: Sequence[GenerationRequest], settings: GenerationSettings) -> int:
        """The largest batch that fits (``--batch-size auto``); the default has no way to measure and says 8."""
        return 8

    def run_details(self) -> dict[str, Any]:
        """Facts about the generation since the previous call (a served model's token totals, retries, wall time);
        the runner calls it once after each run's generation and adds it to the record's ``model.details``."""
        return {}

    def from_cache(self) -> frozenset[int]:
        """Indices of the last ``generate`` call's requests answered from the response cache (default: none); the
        runner marks those rows ``"cached": true`` in the per-sample file."""
        return frozenset()

    def cache_identity(self, settings: GenerationSettings) -> dict[str, Any] | None:
        """What this model's answers depend on apart from the example (weights, precision, device kind, versions,
        settings: mvleval/backends/local_cache.py), so that the runner may answer from the response cache; None (the
        default, and a served model, which keys its own requests) means no caching by the runner."""
        return None

    def rendered_prompt(self, request: GenerationRequest) -> str:
        """The prompt as the model sees it (chat template applied), part of a cache key; default: the task's prompt."""
        return request.prompt

    def progress_note(self) -> str:
        """A short status shown beside the progress bar (a served model's answers/s and windows; default: none)."""
        return ""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release threads and connections; the backend stays usable."""
