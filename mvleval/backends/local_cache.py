"""The response cache (mvleval/run/cache.py) for models run on this machine: re-running a finished local evaluation (a new
metric, a second report, another task sharing examples) costs no generation.

A local answer's key is the SHA-256 (``mvleval.run.cache.local_key``) of everything that changes it and nothing else:

- the weights' content fingerprint, adapter files included (``fingerprint_files``: names and contents, not the folder
  the checkpoint sits in, so a copied or moved checkpoint keeps its answers), and the tokenizer/processor/chat-template
  files' digest;
- precision: bits, dtype and quantisation recipe; the model class, family, backend and the code path that generates
  (``generation_path``), image handling and the BLIP-2 query tokens / JPEG draft decoding that change the pixels;
- the device kind (``cpu``, or ``cuda`` with the GPU's name): kernels differ between a CPU and a GPU, and between GPU
  architectures, and beam search amplifies a last-bit difference into another answer;
- the versions of transformers, torch and mvleval, and a digest of mvleval's backend code (mvleval/backends/**.py): a
  new release can change a kernel, a generation default or a processor's resize, and an edit of a backend (a family
  quirk fixed) changes answers within one mvleval version; an answer is never served across them (the price: an
  upgrade starts with an empty cache for its own answers; older ones stay until ``mvleval cache clear``);
- the generation settings (num_beams, max_new_tokens, min_new_tokens, length_penalty, do_sample);
- per example, the prompt exactly as the model sees it (the chat template rendered around the task's prompt) and the
  SHA-256 of each image file's bytes, in order (not its path: the same photo under two names is one entry).

Not in the key, deliberately: the batch size, the example's position in its batch and the other examples of the batch.
The project promises (and tests: tests/test_run_hf_vlm.py, tests/test_run_instructblip_batch.py) that an answer does not
depend on the batch (left padding, per-row positions, the InstructBLIP Q-Former fix), so an answer generated in a batch
of 16 is the answer of that example alone, and caching it per example is sound. Sampling (``do_sample``) is the
exception: a sampled answer depends on the random state the batch leaves, so sampled runs never use the cache.

The model's name as given to ``--model`` labels its entries (``mvleval cache info``, ``mvleval cache clear --model``).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mvleval.backends.base import Backend, GenerationRequest
from mvleval.record.provenance import file_sha256
from mvleval.run.cache import ResponseCache, local_key

if TYPE_CHECKING:
    from mvleval.benchmarks.task import GenerationSettings
    from mvleval.record.schema import ModelInfo

#: Fields of ModelInfo that name where things are, not what they are: not part of a key.
_LOCATION_FIELDS = {"path", "adapter", "details"}


def device_kind(device: str) -> str:
    """'cpu', or 'cuda (<GPU name>)': what decides which kernels compute an answer (not the GPU's index)."""
    kind = device.split(":", 1)[0]
    if kind == "cuda":
        import torch

        if torch.cuda.is_available():
            index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
            return f"cuda ({torch.cuda.get_device_name(index)})"
    return kind


def local_identity(info: ModelInfo, device: str, **extra: Any) -> dict[str, Any]:
    """What a local model's answers depend on apart from the example: `info` without the fields naming locations, the
    device kind, the library versions and a backend's `extra` facts."""
    import torch
    import transformers

    import mvleval

    identity = info.model_dump(mode="json", exclude=_LOCATION_FIELDS)
    identity["device_kind"] = device_kind(device)
    identity["versions"] = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "mvleval": mvleval.__version__,
        "backend_code": backend_code_digest(),
    }
    identity.update(extra)
    return identity


@functools.cache
def backend_code_digest() -> str:
    """SHA-256 over the source of mvleval's backends (names and contents), read once per process."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


class _ImageDigests:
    """SHA-256 of image files, read once per (path, size, mtime) in this process (an xGQA image serves ~30 questions)."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int, int], str] = {}

    def __call__(self, path: Path) -> str | None:
        try:
            st = Path(path).stat()
            key = (str(path), st.st_size, st.st_mtime_ns)
            digest = self._known.get(key)
            if digest is None:
                digest = self._known[key] = file_sha256(Path(path))
            return digest
        except OSError:
            return None  # the backend reports the unreadable image, with its own clear error


class CachedBackend(Backend):
    """A local backend whose answers are looked up in, and kept in, the response cache.

    ``evaluate`` wraps a loaded backend in it for one run when the cache is on and the backend says what its answers
    depend on (``Backend.cache_identity``); everything else is the wrapped backend's.

    Args:
        inner: the loaded local backend.
        settings: the run's generation settings (announced requests are looked up with them).
        identity: ``inner.cache_identity(settings)``.
        cache: the response cache handle (its mode: read-write or read).
    """

    def __init__(
        self, inner: Backend, settings: GenerationSettings, identity: dict[str, Any], label: str, cache: ResponseCache
    ) -> None:
        self.inner = inner
        self.device = inner.device
        self.label = label
        self._cache = cache
        self._identities: dict[GenerationSettings, dict[str, Any] | None] = {settings: identity}
        self._settings = settings
        self._digests = _ImageDigests()
        self._known: dict[str, str] = {}  # answers found when requests were announced (prefetch)
        self._asked: set[str] = set()  # keys already looked up (found or not)
        self._from_cache: frozenset[int] = frozenset()
        self.hits = 0
        self.generated = 0

    # -- keys ----------------------------------------------------------------------------------------------------
    def _keys(self, requests: Sequence[GenerationRequest], settings: GenerationSettings) -> list[str | None]:
        if settings not in self._identities:
            self._identities[settings] = self.inner.cache_identity(settings)
        identity = self._identities[settings]
        if identity is None:
            return [None] * len(requests)
        keys: list[str | None] = []
        for request in requests:
            digests = [self._digests(p) for p in request.images]
            if any(d is None for d in digests):
                keys.append(None)
                continue
            keys.append(local_key(identity, self.inner.rendered_prompt(request), [d for d in digests if d is not None]))
        return keys

    def _lookup(self, keys: Sequence[str | None]) -> None:
        fresh = [k for k in dict.fromkeys(keys) if k is not None and k not in self._asked]
        if fresh:
            self._known.update(self._cache.lookup(fresh))
            self._asked.update(fresh)

    # -- the Backend API -----------------------------------------------------------------------------------------
    def prefetch(self, requests: Sequence[GenerationRequest]) -> int:
        """Look the announced requests up in one query; only the ones not found are prefetched by the backend."""
        keys = self._keys(requests, self._settings)
        self._lookup(keys)
        return self.inner.prefetch([r for r, k in zip(requests, keys) if k is None or k not in self._known])

    def generate(self, requests: Sequence[GenerationRequest], settings: GenerationSettings) -> list[str]:
        """The cached answers from the cache; the others generated by the backend (in one batch) and kept."""
        keys = self._keys(requests, settings)
        self._lookup(keys)
        answers: dict[int, str] = {i: self._known[k] for i, k in enumerate(keys) if k is not None and k in self._known}
        self._from_cache = frozenset(answers)
        missing = [i for i in range(len(requests)) if i not in answers]
        if missing:
            generated = self.inner.generate([requests[i] for i in missing], settings)
            answers.update(zip(missing, generated, strict=True))
            new = {key: answers[i] for i in missing if (key := keys[i]) is not None}
            self._cache.store(self.label, new)  # a no-op in read mode
            if self._cache.mode == "read-write":
                self._known.update(new)  # the same example again later in this run (another language's copy) is a hit
        self.hits += len(self._from_cache)
        self.generated += len(missing)
        return [answers[i] for i in range(len(requests))]

    def from_cache(self) -> frozenset[int]:
        return self._from_cache

    def run_details(self) -> dict[str, Any]:
        details = dict(self.inner.run_details())
        details["cache"] = {
            "mode": self._cache.mode,
            "answers_from_cache": self.hits,
            "answers_generated": self.generated,
            "answers_stored": self._cache.stored,
        }
        self.hits = self.generated = self._cache.stored = 0
        return details

    def check_settings(self, settings: GenerationSettings, images_per_example: int) -> None:
        self.inner.check_settings(settings, images_per_example)

    def info(self, settings: GenerationSettings) -> ModelInfo:
        return self.inner.info(settings)

    def pick_batch_size(self, requests: Sequence[GenerationRequest], settings: GenerationSettings) -> int:
        return self.inner.pick_batch_size(requests, settings)

    def progress_note(self) -> str:
        return self.inner.progress_note()

    def cache_identity(self, settings: GenerationSettings) -> dict[str, Any] | None:
        return self.inner.cache_identity(settings)

    def rendered_prompt(self, request: GenerationRequest) -> str:
        return self.inner.rendered_prompt(request)

    def close(self) -> None:
        self.inner.close()
        self._cache.close()

    def __getattr__(self, name: str) -> Any:  # anything else (model, tokenizer, ...) is the wrapped backend's
        return getattr(self.__dict__["inner"], name)


__all__ = ["CachedBackend", "backend_code_digest", "device_kind", "local_identity"]
