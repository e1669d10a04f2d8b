"""Decoding and preprocessing images on worker threads ahead of generation, so the model never waits on PIL.

The backend announces the images its upcoming batches need (``PixelPrefetcher.submit``, non-blocking); worker threads
open them with ``mvleval.benchmarks.images.load_image`` and run the image processor; ``take`` hands the pixel tensor to the
backend when a batch needs it. At most ``window`` images are decoded or held at a time (the rest wait in a queue in
announcement order), so announcing a whole benchmark costs no more memory than a few batches. A worker's error
(missing, corrupt, oversized image) is kept and raised by ``take`` in the calling thread: the same ``MvlevalError``
``load_image`` raised, when and where the image is needed.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Generic, TypeVar

#: what ``preprocess`` makes of one image: a pixel tensor (mBLIP) or the decoded image (the generic backend)
Prepared = TypeVar("Prepared")

#: Images decoded or held ahead of use: two chunks of 32 (the backend's vision-encoding chunk). At 224x224 that is
#: ~40 MB of float32 pixels; enough to keep ahead of any model, since each image is decoded once per run.
DEFAULT_WINDOW = 64


class PixelPrefetcher(Generic[Prepared]):
    """Runs ``preprocess(path) -> pixel tensor`` on worker threads for announced paths, a bounded window at a time.

    Thread-safety: ``submit``, ``take``, ``discard`` and ``close`` are meant to be called from one thread (the
    backend's); the workers only run ``preprocess``.

    Attributes:
        served: images whose pixels ``take`` returned from a worker.
        waited_s: seconds ``take`` spent waiting for workers that had not finished yet (0 when they keep ahead).
    """

    def __init__(
        self,
        preprocess: Callable[[Path], Prepared],
        *,
        workers: int = 2,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        """Create a prefetcher; threads start on the first ``submit``.

        Args:
            preprocess: decodes one image and returns its pixel tensor (runs on a worker thread).
            workers: number of worker threads (at least 1).
            window: most images decoded or held ahead of use at a time (at least 1).

        Raises:
            ValueError: workers or window below 1.
        """
        if workers < 1 or window < 1:
            raise ValueError(f"workers and window must be at least 1, got {workers} and {window}")
        self._preprocess = preprocess
        self._workers = workers
        self._window = window
        self._queued: OrderedDict[str, Path] = OrderedDict()  # announced, not yet given to a worker
        self._running: dict[str, Future[Prepared]] = {}  # given to a worker, not yet taken
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.served = 0
        self.waited_s = 0.0

    # -- public API ----------------------------------------------------------------------------------------------
    def submit(self, paths: Iterable[Path]) -> int:
        """Announce images in the order they will be needed; returns how many were new. Never blocks or raises for
        a bad image (its error comes from ``take``).

        Args:
            paths: image paths; ones already queued or in flight are skipped.
        """
        added = 0
        with self._lock:
            for path in paths:
                key = str(path)
                if key in self._queued or key in self._running:
                    continue
                self._queued[key] = Path(path)
                added += 1
        self._pump()
        return added

    def take(self, path: Path) -> Prepared | None:
        """The pixel tensor of an announced image (waiting for its worker if needed), or None if it was never
        announced or its turn has not come (the caller then decodes it itself).

        Raises:
            MvlevalError: the worker could not read the image (the exception ``load_image`` raised, re-raised here).
        """
        key = str(path)
        with self._lock:
            future = self._running.pop(key, None)
            if future is None:
                # announced but not started: the caller decodes it now, so drop it from the queue
                self._queued.pop(key, None)
        if future is None:
            return None
        self._pump()  # its slot is free: start the next announced image before waiting on this one
        if not future.done():
            started = time.perf_counter()
            try:
                future.exception()  # wait without raising here, so the wait is timed even when the worker fails
            finally:
                self.waited_s += time.perf_counter() - started
        pixels = future.result()  # re-raises the worker's exception in this thread
        self.served += 1
        return pixels

    def discard(self, path: Path) -> None:
        """Forget an announced image the caller no longer needs (e.g. its encoding is cached); frees its slot."""
        key = str(path)
        with self._lock:
            self._queued.pop(key, None)
            future = self._running.pop(key, None)
        if future is not None:
            future.cancel()
            self._pump()

    def cancel(self) -> None:
        """Forget every announced image (those in flight finish and are dropped)."""
        with self._lock:
            self._queued.clear()
            running, self._running = self._running, {}
        for future in running.values():
            future.cancel()

    def close(self) -> None:
        """Cancel everything and stop the worker threads (a later ``submit`` starts new ones)."""
        self.cancel()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    @property
    def pending(self) -> int:
        """Announced images not yet taken (queued or in flight)."""
        with self._lock:
            return len(self._queued) + len(self._running)

    # -- internals -----------------------------------------------------------------------------------------------
    def _pump(self) -> None:
        """Hand queued images to the workers while fewer than ``window`` are in flight or held."""
        with self._lock:
            while self._queued and len(self._running) < self._window:
                key, path = self._queued.popitem(last=False)
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="mvleval-prefetch")
                self._running[key] = self._pool.submit(self._preprocess, path)
