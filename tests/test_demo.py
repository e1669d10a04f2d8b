"""`mvleval demo`: the fine-tuned demo model beats the untrained one on every task and matches the committed baselines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mvleval.demo import DEMO_LANGUAGES


@pytest.mark.slow
def test_demo_trained_model_beats_untrained_and_passes_the_gate(tmp_path: Path) -> None:
    from mvleval.demo import run_demo
    from mvleval.gate import gate
    from mvleval.record import read_record

    # .ci/run has already trained the demo model there; reusing it saves a second training run
    out = Path(os.environ.get("MVLEVAL_DEMO_DIR", tmp_path / "demo"))
    result = run_demo(out, seed=0, log=lambda msg: None)
    assert set(result.trained) == set(result.untrained) == set(DEMO_LANGUAGES)
    for task, (record, path) in result.trained.items():
        assert record.model.bits == 4 and "nf4" in (record.model.quantization or "")
        metric = record.headline()
        before = result.untrained[task][0].scores[metric].mean
        after = record.scores[metric].mean
        assert before is not None and after is not None
        # "clearly": at least 10 points (x100) better on the headline metric, for every task
        assert after >= before + 0.10, (task, metric, before, after)
        baseline_path = Path(__file__).resolve().parents[1] / "results" / "baselines" / task / "demo.json"
        report = gate(record, read_record(baseline_path), run_dir=path.parent, baseline_dir=baseline_path.parent, max_drop=2.0)
        assert report.passed, [c for c in report.cells if c.verdict == "fail"]
    assert (result.leaderboard[0]).name == "leaderboard.md" and result.leaderboard[0].is_file()
    text = result.leaderboard[0].read_text()
    for task in DEMO_LANGUAGES:
        assert task in text
