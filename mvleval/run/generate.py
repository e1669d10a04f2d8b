"""Generation: the backend a run loads (on this process's device), batches through it with image prefetch and
progress, each batch appended to the partial file as it finishes; data-parallel ranks share the work by image."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mvleval.benchmarks.task import Example
from mvleval.run.files import RowWriter, RunPaths, SampleRow
from mvleval.run.plan import PreparedRun, RunOptions
from mvleval.util.errors import MvlevalError

if TYPE_CHECKING:
    from mvleval.backends.base import Backend

log = logging.getLogger("mvleval.run")


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a data-parallel run (torchrun / accelerate launch set RANK and WORLD_SIZE)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> DistInfo:
        return cls(
            rank=int(os.environ.get("RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(dist_info: DistInfo) -> None:
    import torch
    import torch.distributed as dist

    if dist_info.world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)


def barrier(dist_info: DistInfo) -> None:
    if dist_info.world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def torch_seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


class Progress(Protocol):
    """How the runner reports progress; the CLI renders it with rich, tests pass NullProgress."""

    def start(self, label: str, total: int, done: int) -> None: ...

    def advance(self, n: int, status: str = "") -> None: ...

    def finish(self) -> None: ...

    def note(self, message: str) -> None:
        """A one-line status message (what is loading, where a run resumed, the batch size picked)."""
        ...


class NullProgress:
    def start(self, label: str, total: int, done: int) -> None:
        pass

    def advance(self, n: int, status: str = "") -> None:
        pass

    def finish(self) -> None:
        pass

    def note(self, message: str) -> None:
        log.info(message)


class RunStopped(MvlevalError):
    """Generation stopped part-way on purpose (a served model's request failed after its retries): what arrived is
    saved for --resume, nothing is scored."""


# -- the backend -----------------------------------------------------------------------------------------------------
def load_run_backend(options: RunOptions) -> Backend:
    """The backend a run of `options` uses (on this process's GPU in a data-parallel run); load once, reuse for tasks."""
    return load_backend(options, DistInfo.from_env())


def load_backend(options: RunOptions, dist_info: DistInfo) -> Backend:
    from mvleval.backends import BackendOptions
    from mvleval.backends import load_backend as load
    from mvleval.backends.registry import is_served

    device = None
    if not is_served(options.model, options.backend):
        from mvleval.util.extras import require_hf

        require_hf(f"a model run on this machine (--model {options.model})")
        import torch

        device = f"cuda:{dist_info.local_rank}" if torch.cuda.is_available() else "cpu"
    return load(
        BackendOptions(
            model=options.model,
            adapter=options.adapter,
            bits=options.bits,
            allow_pickle=options.allow_pickle,
            device=device,
            shared_prefix=options.shared_prefix,
            backend=options.backend,
            trust_remote_code=options.trust_remote_code,
            image_handling=options.image_handling,
            endpoint=options.endpoint,
            model_options=options.model_options,
        )
    )


def with_local_cache(backend: Backend, options: RunOptions, prepared: PreparedRun) -> Backend:
    """`backend` answering from the response cache where the run asks for it and the backend says what its answers
    depend on (a local model; a served one caches its own requests); else `backend` itself."""
    if options.cache == "off":
        return backend
    from mvleval.run.cache import ResponseCache, check_mode

    identity = backend.cache_identity(prepared.generation)
    if identity is None:
        return backend
    from mvleval.backends.local_cache import CachedBackend

    return CachedBackend(
        backend, prepared.generation, identity, options.model, ResponseCache(check_mode(options.cache))
    )


def auto_batch_size(backend: Backend, prepared: PreparedRun) -> int:
    """The largest batch that fits, probed with the run's longest prompts (--batch-size auto)."""
    from mvleval.backends.base import GenerationRequest

    examples = sorted((e for exs in prepared.examples.values() for e in exs), key=lambda e: -len(e.prompt))[:32]
    size = backend.pick_batch_size([GenerationRequest(e.prompt, e.images) for e in examples], prepared.generation)
    log.info("--batch-size auto: using %d", size)
    return size


# -- batches ---------------------------------------------------------------------------------------------------------
def batches(examples: Sequence[Example], batch_size: int) -> list[list[Example]]:
    """Length-aware batches: examples sorted by prompt length (stable) so padding is small; a batch never mixes
    numbers of images (a backend batches one image count at a time), so fewer images come first (a task with one
    count per example batches exactly as before)."""
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i].images), len(examples[i].prompt), i))
    result: list[list[Example]] = []
    for i in order:
        e = examples[i]
        if not result or len(result[-1]) == batch_size or len(result[-1][0].images) != len(e.images):
            result.append([])
        result[-1].append(e)
    return result


def sample_row(example: Example, prediction: str, image_root: Path, cached: bool = False) -> SampleRow:
    """The row of one generated example (its scores are filled in by run/score.py)."""
    from mvleval.benchmarks.hubdata import image_name

    return SampleRow(
        id=example.id,
        lang=example.lang,
        prompt=example.prompt,
        prediction=prediction,
        references=list(example.references),
        # relative to the image root, as in the data fingerprint: `mvleval report --image-root` shows them
        images=[Path(image_name(p, image_root)).as_posix() for p in example.images],
        cached=cached,
    )


def image_owner(prepared: PreparedRun, world_size: int) -> dict[tuple[Path, ...], int]:
    """Assign each distinct image (tuple) to a rank, round-robin in order of first appearance, the same in every language."""
    owner: dict[tuple[Path, ...], int] = {}
    for lang in prepared.languages:
        for e in prepared.examples[lang]:
            if e.images not in owner:
                owner[e.images] = len(owner) % world_size
    return owner


@dataclass(frozen=True)
class Generation:
    """What generation of one run works with: the backend, where rows go, this process's share, the batch size."""

    prepared: PreparedRun
    backend: Backend
    paths: RunPaths
    dist_info: DistInfo
    batch_size: int
    progress: Progress
    image_root: Path
    # told each batch's rows once they are written (run/rank_ahead.py: language fidelity's rankings made meanwhile)
    on_rows: Callable[[list[SampleRow]], None] | None = None


def generate_all(gen: Generation, done: dict[tuple[str, str], SampleRow]) -> None:
    """Generate every example not in `done`, appending (and fsyncing) each batch to the partial file and to `done`."""
    from mvleval.backends.base import GenerationRequest

    prepared, backend, progress = gen.prepared, gen.backend, gen.progress
    owner = image_owner(prepared, gen.dist_info.world_size)
    with RowWriter(gen.paths.partial) as writer:
        for lang in prepared.languages:
            # Data-parallel: each rank takes the examples of its images (so no image is encoded on two ranks);
            # predictions do not depend on batch composition, so the merged result equals a single-process run.
            shard = [e for e in prepared.examples[lang] if owner[e.images] == gen.dist_info.rank]
            todo = [e for e in shard if (lang, e.id) not in done]
            progress.start(f"{prepared.task.name} {lang}", len(shard), len(shard) - len(todo))
            lang_batches = batches(todo, gen.batch_size)
            # decode + preprocess this language's images in worker threads, ahead of use
            backend.prefetch([GenerationRequest(e.prompt, e.images) for b in lang_batches for e in b])
            for batch in lang_batches:
                rows = _generate_batch(gen, batch, writer, done)
                writer.write_batch(rows)
                done.update((row.key, row) for row in rows)
                if gen.on_rows is not None:
                    gen.on_rows(rows)
                progress.advance(len(batch), backend.progress_note())
            progress.finish()


def _generate_batch(
    gen: Generation, batch: list[Example], writer: RowWriter, done: dict[tuple[str, str], SampleRow]
) -> list[SampleRow]:
    from mvleval.backends.base import BatchFailed, GenerationRequest

    backend = gen.backend
    try:
        preds = backend.generate([GenerationRequest(e.prompt, e.images) for e in batch], gen.prepared.generation)
    except BatchFailed as exc:
        # keep what arrived (a resume does not ask again), score nothing, and say where the run stands
        cached = backend.from_cache()
        kept = [sample_row(batch[i], p, gen.image_root, i in cached) for i, p in sorted(exc.answered.items())]
        writer.write_batch(kept)
        done.update((row.key, row) for row in kept)
        total = sum(len(exs) for exs in gen.prepared.examples.values())
        raise RunStopped(
            f"{exc.what} The run stopped without scoring: {len(done)} of {total} {gen.prepared.task.name} examples "
            f"are done and saved in {gen.paths.partial}.",
            fix=exc.fix,
        ) from None
    cached = backend.from_cache()
    return [sample_row(e, p, gen.image_root, i in cached) for i, (e, p) in enumerate(zip(batch, preds, strict=True))]
