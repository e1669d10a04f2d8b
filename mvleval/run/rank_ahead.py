"""Language fidelity's lingua rankings made ahead, in a worker process, while the model generates.

Scoring a run's language fidelity asks lingua to rank each distinct answer; a text never ranked on this machine loads
lingua's models first, and that load is most of what a run spends outside generation (bench/bench_hf_vlm.py,
xGQA-shaped, empty ranking cache: scoring 16-47 s of a 45-119 s run on a shared machine, 12.2 of 13.7 profiled
seconds lingua loading models, mostly the unrestricted detector's for long multi-script answers). lingua holds the interpreter while it loads (a thread would stop generation), so a worker
process does it instead, on another core, fed with each batch's answers as generation writes them: it judges them
exactly as `LanguageFidelity.score` will (same metric, same letter model from the same references, same requested
language) and so keeps every ranking the score needs in the cache of lingua's rankings
(``mvleval.metrics.ranking_cache``, SQLite, shared by processes). Scoring, after generation, then finds every ranking
there and loads no model.

Nothing it does can change a score: scoring runs the same code in the run's own process, the worker only fills a
cache whose rankings are lingua's own (a worker that fails, or a cache that cannot be written, leaves texts unranked,
and scoring ranks them itself, as before). It starts only once generation has run for ``START_AFTER_S`` seconds (a
short run is over before a worker's start pays off), only where generation leaves a core free (`spare_core`: a GPU or
served model, or torch on fewer threads than there are cores), never in a data-parallel run (rank 0 scores every
rank's answers), and only for tasks scored with language fidelity. It moves lingua's work, it does not shrink it: on
a machine whose cores are all busy with other work the worker's model loads slow generation about as much as they
save scoring (bench/README.md, bench_hf_vlm.py).
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mvleval.run.files import SampleRow

if TYPE_CHECKING:
    from mvleval.metrics.language_fidelity import LanguageFidelity
    from mvleval.run.plan import PreparedRun

log = logging.getLogger("mvleval.run")

#: generation that has run this long gets the worker (a tiny run finishes before its ~0.5 s start pays off)
START_AFTER_S = 2.0

#: (index of the metric, language) -> texts
Job = tuple[int, str]


class RankAhead:
    """The run's side of the worker: texts to rank go in as batches finish; `finish` waits until all are ranked."""

    def __init__(
        self,
        metrics: Sequence[LanguageFidelity],
        references: dict[str, list[list[str]]],
        answer_of: Callable[[str], str],
    ) -> None:
        self.metrics = list(metrics)
        self.references = references
        self.answer_of = answer_of
        self.started_at = time.monotonic()
        self.texts_sent = 0  # distinct (metric, language, text) sent to the worker
        self.worker_started = False
        self.worker_returncode: int | None = None
        self._finished = False
        self._pending: list[tuple[Job, list[str]]] = []
        self._seen: set[tuple[int, str, str]] = set()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._writer: threading.Thread | None = None

    @classmethod
    def for_run(
        cls, prepared: PreparedRun, answer_of: Callable[[str], str], world_size: int, device: str
    ) -> RankAhead | None:
        """The worker's feeder for a run of `prepared` on `device`, or None where there is nothing to rank ahead or
        no core to do it on."""
        from mvleval.metrics.language_fidelity import LanguageFidelity

        metrics = [m for m in prepared.task.metrics() if isinstance(m, LanguageFidelity)]
        if not metrics or world_size > 1 or not spare_core(device):
            return None
        references = {lang: [list(e.references) for e in prepared.examples[lang]] for lang in prepared.languages}
        return cls(metrics, references, answer_of)

    # -- the run's side ----------------------------------------------------------------------------------------------
    def feed(self, rows: Iterable[SampleRow]) -> None:
        """The answers of rows just generated (or resumed); the worker starts here once generation ran long enough."""
        if self._finished:
            return
        by_lang: dict[str, list[str]] = {}
        for row in rows:
            by_lang.setdefault(row.lang, []).append(self.answer_of(row.prediction))
        for lang, answers in by_lang.items():
            for i in range(len(self.metrics)):
                fresh = [a for a in dict.fromkeys(answers) if (i, lang, a) not in self._seen]
                if fresh:
                    self._seen.update((i, lang, a) for a in fresh)
                    self._pending.append(((i, lang), fresh))
        if self._proc is None and time.monotonic() - self.started_at >= START_AFTER_S:
            self._start()
        if self._proc is not None:
            for job, texts in self._pending:
                self._queue.put(("texts", job, texts))
                self.texts_sent += len(texts)
            self._pending = []

    def finish(self) -> None:
        """Wait until the worker has ranked every text sent (kept in the cache), then let it go."""
        self._finished = True
        if self._proc is None:
            return
        self._queue.put(None)
        if self._writer is not None:
            self._writer.join()
        self.worker_returncode = self._proc.wait()
        if self.worker_returncode != 0:  # scoring ranks what is missing itself: the same scores, only slower
            detail = b""
            if self._stderr is not None:
                self._stderr.seek(0)
                detail = self._stderr.read()[-2000:]
            log.debug("the ranking worker exited with %s: %s", self.worker_returncode, detail.decode(errors="replace"))
        self._cleanup()

    def close(self) -> None:
        """Stop the worker where it stands (the run failed or was interrupted)."""
        self._finished = True
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._queue.put(None)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self._proc = None if self._proc is None or self._proc.poll() is not None else self._proc

    def _start(self) -> None:
        import mvleval

        checkout = str(Path(mvleval.__file__).resolve().parents[1])  # the worker imports this very mvleval
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (checkout, env.get("PYTHONPATH", "")) if p)
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "mvleval.run.rank_ahead"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env=env,
        )
        self.worker_started = True
        self._queue.put(("start", self.metrics, self.references))
        # a writer thread: a full pipe (the worker behind) must never hold up generation
        self._writer = threading.Thread(target=self._write, args=(self._proc,), daemon=True)
        self._writer.start()

    def _write(self, proc: subprocess.Popen[bytes]) -> None:
        stdin = proc.stdin
        assert stdin is not None
        try:
            while (message := self._queue.get()) is not None:
                pickle.dump(message, stdin, protocol=pickle.HIGHEST_PROTOCOL)
                stdin.flush()
        except OSError:  # the worker is gone: scoring ranks the rest itself
            pass
        finally:
            try:
                stdin.close()
            except OSError:
                pass


def spare_core(device: str) -> bool:
    """Whether a worker would find a core generation leaves free: always for a model on a GPU or behind an endpoint;
    for one on this CPU only when torch runs fewer threads than the cores this process may use (with as many, the
    worker would take turns with torch's threads, which wait for each other: generation would slow down more than
    scoring gains)."""
    if not device.startswith("cpu"):
        return True
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return torch.get_num_threads() < cores


# -- the worker's side -------------------------------------------------------------------------------------------------
def _serve(stream: IO[bytes]) -> None:
    """Judge every text that comes in as `LanguageFidelity.score` judges it (ranking what the cache lacks)."""
    from mvleval.metrics.language_fidelity import letter_model_for, lingua_names

    metrics: list[LanguageFidelity] = []
    references: dict[str, list[list[str]]] = {}
    models: dict[Job, Any] = {}

    def judge(job: Job, texts: Sequence[str]) -> None:
        index, lang = job
        metric = metrics[index]
        requested = metric.answer_language or lang
        if lingua_names(requested) is None or not references.get(lang):
            return
        if job not in models:
            models[job] = letter_model_for(references[lang], requested)
        metric.judgements(texts, requested, models[job])

    while True:
        try:
            message = pickle.load(stream)
        except EOFError:
            return
        if message[0] == "start":
            _, metrics, references = message
            for index in range(len(metrics)):  # the references' fidelity is scored too (known before any answer)
                for lang, refs in references.items():
                    firsts = [r[0] for r in refs if r]
                    if firsts:
                        judge((index, lang), firsts)
        else:
            _, job, texts = message
            judge(job, texts)


def main() -> None:
    logging.disable(logging.CRITICAL)  # the run's own scoring says what there is to say (a cache that cannot be used)
    _serve(sys.stdin.buffer)


if __name__ == "__main__":
    main()
