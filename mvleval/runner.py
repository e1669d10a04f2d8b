"""The run's former single module, kept for the imports of other modules, tests and bench/ scripts: the run itself
lives in mvleval/run/ (plan -> generate -> score -> files, tied together by run/evaluate.py)."""

from __future__ import annotations

from mvleval.run.evaluate import evaluate, finished_record, interrupted_run
from mvleval.run.files import RunPaths, SampleRow
from mvleval.run.generate import (
    DistInfo,
    NullProgress,
    Progress,
    RunStopped,
    load_run_backend,
    torch_seed,
)
from mvleval.run.generate import batches as _batches
from mvleval.run.plan import (
    PreparedRun,
    RunOptions,
    check_generation,
    planned_comparable,
    prepare,
    run_identity,
    run_name,
)
from mvleval.run.rescore import rescore
from mvleval.run.score import score_rows, task_signature

__all__ = [
    "DistInfo",
    "NullProgress",
    "PreparedRun",
    "Progress",
    "RunOptions",
    "RunPaths",
    "RunStopped",
    "SampleRow",
    "_batches",
    "check_generation",
    "evaluate",
    "finished_record",
    "interrupted_run",
    "load_run_backend",
    "planned_comparable",
    "prepare",
    "rescore",
    "run_identity",
    "run_name",
    "score_rows",
    "task_signature",
    "torch_seed",
]
