"""mBLIP's decoding settings, written once in mvleval/benchmarks/spec.py and given to the kinds in kinds.py, reach
every built-in task and benchmark-folder kind.
The expected values are mBLIP's public evaluation code's (gregor-ge/mBLIP; /work/shared/NOTES.md's protocol table):
captions 5 beams, 1-50 new tokens, length penalty 1; short answers 5 beams, 1-10 new tokens, length penalty -1."""

from __future__ import annotations

import pytest

from mvleval.benchmarks.kinds import KINDS as KIND_TABLE
from mvleval.benchmarks.registry import load_task

CAPTION = {"num_beams": 5, "max_new_tokens": 50, "min_new_tokens": 1, "length_penalty": 1.0, "do_sample": False}
SHORT = {"num_beams": 5, "max_new_tokens": 10, "min_new_tokens": 1, "length_penalty": -1.0, "do_sample": False}
TASKS = {"xm3600": CAPTION, "xflickrco": CAPTION, "xgqa": SHORT, "marvl": SHORT, "xvnli": SHORT, "maxm": SHORT}
KINDS = {"caption": CAPTION, "vqa": SHORT, "yesno": SHORT, "multiple_choice": SHORT}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_built_in_task_generates_as_mblip(name: str) -> None:
    assert load_task(name).generation.to_dict() == TASKS[name]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_benchmark_kind_generates_as_mblip(kind: str) -> None:
    assert KIND_TABLE[kind].generation.to_dict() == KINDS[kind]
