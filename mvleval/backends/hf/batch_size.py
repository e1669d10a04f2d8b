"""--batch-size auto: the largest batch that fits (CUDA: no out-of-memory; CPU: measured peak memory in a budget),
probed through any backend's own generate call."""

from __future__ import annotations

import gc
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mvleval.util.errors import MvlevalError

if TYPE_CHECKING:
    from mvleval.backends.base import GenerationRequest
    from mvleval.benchmarks.task import GenerationSettings

logger = logging.getLogger("mvleval.backends.batch_size")

#: A backend's call that generates for a batch of requests (its result is ignored).
GenerateFn = Callable[[Sequence["GenerationRequest"], "GenerationSettings"], Any]

#: On CPU, batches beyond this gain no throughput (the matmuls already fill the cores) and a crash loses more.
CPU_BATCH_CAP = 64
#: Share of the currently available memory a CPU run may fill with generation activations.
CPU_MEMORY_FRACTION = 0.5
#: The measured per-sample peak is multiplied by this: allocator fragmentation and longer prompts than the probe's.
CPU_SAFETY_FACTOR = 2.0
#: Floor of the per-sample estimate: a measurement near 0 means the allocator reused freed pages, not a free sample.
CPU_MIN_BYTES_PER_SAMPLE = 2**20


def auto_batch_size(
    generate: GenerateFn,
    device: str,
    sample_requests: Sequence[GenerationRequest],
    settings: GenerationSettings,
    *,
    start: int = 32,
    max_size: int = 256,
    memory_budget: int | None = None,
) -> int:
    """The largest batch size the run can use without running out of memory (``--batch-size auto``).

    The probe batches repeat the sample requests with the longest prompts first and generate the full
    ``max_new_tokens`` for every row (EOS suppressed), the most memory any batch of the run can need.

    * CUDA: tries ``start``, doubles while it fits (up to ``max_size``) or halves until it fits, then bisects between
      the last size that fit and the first that did not; a size fits when ``generate`` raises no
      ``torch.cuda.OutOfMemoryError``.
    * CPU: measures the peak memory of one probe batch per sample (Linux VmHWM; elsewhere sampled RSS; at least
      CPU_MIN_BYTES_PER_SAMPLE), multiplies it by CPU_SAFETY_FACTOR and fits as many samples as ``memory_budget``
      allows (default: CPU_MEMORY_FRACTION of psutil's available memory), at most ``min(max_size, CPU_BATCH_CAP)``.

    Args:
        generate: the backend's generate call (the caller keeps its caches as they were).
        device: where the model runs.
        sample_requests: requests of the run (those with the most images and longest prompts are used).
        settings: the run's generation settings.
        start: first size tried on CUDA.
        max_size: largest size returned.
        memory_budget: bytes a CPU run may use for generation (default: half of the available memory).

    Raises:
        MvlevalError: not even one sample fits on the GPU, or ``start``/``max_size`` below 1.
        ValueError: no sample requests.
    """
    if start < 1 or max_size < 1:
        raise MvlevalError(
            f"batch size search needs start and max at least 1, got {start} and {max_size}.",
            fix="pass positive numbers.",
        )
    if not sample_requests:
        raise ValueError("auto_batch_size needs at least one sample request")
    most = max(len(r.images) for r in sample_requests)
    probe = sorted((r for r in sample_requests if len(r.images) == most), key=lambda r: -len(r.prompt))
    worst = settings.replace(min_new_tokens=settings.max_new_tokens)
    started = time.perf_counter()
    if device.startswith("cuda"):
        size = largest_fitting_batch(
            lambda b: _fits_on_cuda(generate, device, probe, worst, b), start=min(start, max_size), max_size=max_size
        )
        how = "largest batch without CUDA out-of-memory"
    else:
        import psutil

        measured = min(8, max_size)
        peak = peak_bytes_per_sample(generate, probe, worst, measured)
        per_sample = max(peak, CPU_MIN_BYTES_PER_SAMPLE) * CPU_SAFETY_FACTOR
        if memory_budget is None:
            memory_budget = int(psutil.virtual_memory().available * CPU_MEMORY_FRACTION)
        size = batch_size_for_budget(memory_budget, per_sample, min(max_size, CPU_BATCH_CAP))
        how = f"{per_sample / 2**20:.1f} MiB per sample (measured x{CPU_SAFETY_FACTOR:g}) in a {memory_budget / 2**30:.2f} GiB budget"
    logger.info("auto batch size %d (%s; %.1f s)", size, how, time.perf_counter() - started)
    return size


def largest_fitting_batch(fits: Callable[[int], bool], *, start: int, max_size: int) -> int:
    """The largest size in [1, max_size] for which ``fits`` is true, assuming every smaller size fits too.

    Doubles from ``start`` while it fits (halves while it does not), then bisects exactly between the last size that
    fit and the first that did not.

    Raises:
        MvlevalError: not even a batch of 1 fits.
    """
    if fits(start):
        lo, hi = start, 0
        while lo < max_size:
            nxt = min(2 * lo, max_size)
            if not fits(nxt):
                hi = nxt
                break
            lo = nxt
        if hi == 0:
            return lo
    else:
        hi, lo = start, start // 2
        while lo >= 1 and not fits(lo):
            hi, lo = lo, lo // 2
        if lo < 1:
            raise MvlevalError(
                "not even one sample fits in GPU memory.",
                fix="load the model with fewer bits (--bits 4), use a smaller model, or free the GPU.",
            )
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def batch_size_for_budget(budget_bytes: float, per_sample_bytes: float, cap: int) -> int:
    """How many samples of ``per_sample_bytes`` fit in ``budget_bytes``: at least 1 (the run must make progress;
    a warning says when even one exceeds the budget), at most ``cap``."""
    if per_sample_bytes <= 0:
        return cap
    fit = int(budget_bytes // per_sample_bytes)
    if fit < 1:
        logger.warning(
            "one sample needs about %.0f MiB, more than the %.0f MiB budget; using batch size 1",
            per_sample_bytes / 2**20,
            budget_bytes / 2**20,
        )
    return max(1, min(cap, fit))


def _probe_batch(probe: Sequence[GenerationRequest], size: int) -> list[GenerationRequest]:
    return [probe[i % len(probe)] for i in range(size)]


def _fits_on_cuda(
    generate: GenerateFn, device: str, probe: Sequence[GenerationRequest], settings: GenerationSettings, size: int
) -> bool:
    import torch

    try:
        generate(_probe_batch(probe, size), settings)
        torch.cuda.synchronize(device)
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        gc.collect()
        torch.cuda.empty_cache()


_HWM = re.compile(r"^VmHWM:\s+(\d+)\s+kB", re.MULTILINE)


def _reset_peak_rss() -> bool:
    """Reset Linux's peak-RSS counter (VmHWM) of this process; False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _HWM.search(Path("/proc/self/status").read_text()) is not None
    except OSError:
        return False


def _peak_rss() -> int:
    match = _HWM.search(Path("/proc/self/status").read_text())
    assert match is not None
    return int(match.group(1)) * 1024


def peak_bytes_per_sample(
    generate: GenerateFn, probe: Sequence[GenerationRequest], settings: GenerationSettings, size: int
) -> float:
    """Peak resident memory a ``generate`` call of ``size`` probe requests adds, divided by ``size`` (CPU).

    One small call first absorbs one-time allocations (kernels' caches, the probe images' encodings), so what is
    measured grows with the batch. Linux: the kernel's exact peak (VmHWM, reset before the call); elsewhere RSS
    sampled every 2 ms by a thread (which can miss short peaks: hence CPU_SAFETY_FACTOR).
    """
    import psutil

    process = psutil.Process()
    generate(_probe_batch(probe, 1), settings)
    gc.collect()
    baseline = process.memory_info().rss
    batch = _probe_batch(probe, size)
    if _reset_peak_rss():
        generate(batch, settings)
        peak = _peak_rss()
    else:
        highest = [baseline]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                highest[0] = max(highest[0], process.memory_info().rss)
                stop.wait(0.002)

        sampler = threading.Thread(target=sample, name="mvleval-rss-sampler", daemon=True)
        sampler.start()
        try:
            generate(batch, settings)
        finally:
            stop.set()
            sampler.join()
        peak = max(highest[0], process.memory_info().rss)
    return max(peak - baseline, 0) / size
