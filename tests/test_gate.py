"""Gate and baselines: comparability refusals, exact tolerance edges, per-language tolerances, paired mode, blessing."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from mvleval.compare.baseline import bless
from mvleval.compare.gate import (
    GateReport,
    gate,
    parse_lang_tolerances,
    parse_max_drop,
    render_markdown,
    render_rich,
    report_json,
    write_summary,
)
from mvleval.record.schema import RunRecord, read_record, write_record
from mvleval.util.errors import MvlevalError
from tests.helpers import stub_provenance

EM_SIG = "exact_match|vqa-clean=lavis|v=1"
RA_SIG = "relaxed_accuracy|v=1"
FID_SIG = "language_fidelity|lingua=2.1.1|v=1"


def make_record(
    run_id: str = "run",
    *,
    scores: dict[str, dict[str, float | None]] | None = None,
    task: str = "xgqa",
    version: int = 1,
    split: str = "test",
    fingerprint: str = "f" * 32,
    protocol_hash: str = "p" * 16,
    n_examples: dict[str, int] | None = None,
    signatures: dict[str, str] | None = None,
    lower_is_better: tuple[str, ...] = (),
    generation: dict[str, Any] | None = None,
) -> RunRecord:
    """A hand-built record: `scores` maps metric -> {lang: value}; the first metric is the headline."""
    scores = scores if scores is not None else {"exact_match": {"de": 0.62, "en": 0.7}}
    langs = list(next(iter(scores.values())))
    sigs = {"exact_match": EM_SIG, "relaxed_accuracy": RA_SIG, "language_fidelity": FID_SIG, **(signatures or {})}
    return RunRecord.model_validate(
        {
            "run_id": run_id,
            "created_at": "2024-01-01T00:00:00+00:00",
            "task": {
                "name": task,
                "version": version,
                "split": split,
                "languages": langs,
                "n_examples": n_examples or {lang: 100 for lang in langs},
                "protocol_hash": protocol_hash,
            },
            "model": {
                "path": f"ckpt/{run_id}",
                "kind": "encoder-decoder",
                "bits": 4,
                "dtype": "bfloat16",
                "generation": generation or {"num_beams": 5},
                "num_query_tokens": 32,
            },
            "scores": {
                name: {
                    "signature": sigs.get(name, f"{name}|v=1"),
                    "per_lang": per_lang,
                    "mean": None,
                    "higher_is_better": name not in lower_is_better,
                }
                for name, per_lang in scores.items()
            },
            "provenance": stub_provenance(fingerprint),
            "duration_s": 1.0,
            "samples_file": f"{run_id}.samples.jsonl",
        }
    )


# -- the paired bootstrap ---------------------------------------------------------------------------------------------
def _reference_paired_bootstrap(
    a: list[float], b: list[float], *, n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> Any:
    """Stand-in with mvleval.metrics.bootstrap.paired_bootstrap's contract, used only until that module exists."""
    import numpy as np

    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    rng = np.random.default_rng(seed)
    deltas = diff[rng.integers(0, len(diff), size=(n_resamples, len(diff)))].mean(axis=1)
    low, high = np.quantile(deltas, [(1 - confidence) / 2, (1 + confidence) / 2])
    return types.SimpleNamespace(
        delta=float(diff.mean()),
        low=float(low),
        high=float(high),
        p_value=float((deltas >= 0).mean()),
        n_resamples=n_resamples,
        seed=seed,
    )


@pytest.fixture
def bootstrap(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The real paired bootstrap when it is installed, else the stand-in above under the same module name."""
    if importlib.util.find_spec("mvleval.metrics.bootstrap") is None:
        module = types.ModuleType("mvleval.metrics.bootstrap")
        module.paired_bootstrap = _reference_paired_bootstrap  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "mvleval.metrics.bootstrap", module)
    yield


def write_run(folder: Path, record: RunRecord, per_sample: dict[str, dict[str, list[float | None]]]) -> Path:
    """Write a record and its per-sample file: per_sample maps lang -> metric -> scores (ids are q0, q1, ...)."""
    rows = []
    for lang, by_metric in per_sample.items():
        n = len(next(iter(by_metric.values())))
        for i in range(n):
            rows.append(
                {
                    "id": f"q{i}",
                    "lang": lang,
                    "prompt": "p",
                    "prediction": "x",
                    "references": ["x"],
                    "scores": {m: v[i] for m, v in by_metric.items()},
                }
            )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / record.samples_file).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    path = folder / f"{record.run_id}.json"
    write_record(record, path)
    return path


def binary_scores(n: int, ones: int, flip_down: int = 0, flip_up: int = 0) -> tuple[list[float], list[float]]:
    """Baseline with `ones` correct of n; the run loses `flip_down` of them and gains `flip_up` of the wrong ones."""
    base = [1.0] * ones + [0.0] * (n - ones)
    run = list(base)
    for i in range(flip_down):
        run[i] = 0.0
    for i in range(flip_up):
        run[ones + i] = 1.0
    return base, run


def paired_pair(tmp_path: Path, base: list[float], run: list[float]) -> tuple[Path, RunRecord, Path, RunRecord]:
    n = len(base)
    b_rec = make_record("base", scores={"exact_match": {"en": sum(base) / n}}, n_examples={"en": n})
    r_rec = make_record("new", scores={"exact_match": {"en": sum(run) / n}}, n_examples={"en": n})
    b_path = write_run(tmp_path / "b", b_rec, {"en": {"exact_match": base}})
    r_path = write_run(tmp_path / "r", r_rec, {"en": {"exact_match": run}})
    return r_path, r_rec, b_path, b_rec


# -- comparability ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"task": "marvl"}, "task: run 'marvl', baseline 'xgqa'"),
        ({"version": 2}, "task version: run 2, baseline 1"),
        ({"protocol_hash": "q" * 16}, "task protocol hash"),
        ({"split": "dev"}, "split: run 'dev', baseline 'test'"),
        ({"fingerprint": "e" * 32}, "example set (data fingerprint)"),
        (
            {"scores": {"exact_match": {"de": 0.62, "zh": 0.7}}},
            "languages: only in run ['zh'], only in baseline ['en']",
        ),
        ({"n_examples": {"de": 100, "en": 99}}, "examples in en: run 99, baseline 100"),
        ({"signatures": {"exact_match": "exact_match|vqa-clean=none|v=1"}}, "metric exact_match signature"),
        ({"lower_is_better": ("exact_match",)}, "metric exact_match direction"),
        ({"scores": {"relaxed_accuracy": {"de": 0.62, "en": 0.7}}}, "metric exact_match: missing from the run"),
    ],
)
def test_incomparable_records_are_refused(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(MvlevalError, match="cannot be gated") as info:
        gate(make_record("new", **change), make_record("base"))
    assert reason in str(info.value)


def test_a_baseline_from_before_image_content_hashing_is_named_as_the_cause() -> None:
    """mvleval 0.2 hashes each image's content into the data fingerprint: a 0.1 baseline of the same data differs, and
    the gate says so (and only when exactly one side is older)."""
    run = make_record("new", fingerprint="a" * 32)
    old = make_record("base")
    old = old.model_copy(update={"provenance": old.provenance.model_copy(update={"mvleval_version": "0.1.0"})})
    with pytest.raises(MvlevalError) as info:
        gate(run, old)
    assert "the baseline was made by mvleval 0.1.0, whose fingerprint hashed image names only" in str(info.value)
    with pytest.raises(MvlevalError) as info:
        gate(run, make_record("base"))
    assert "hashed image names only" not in str(info.value)


def test_every_difference_is_reported_at_once() -> None:
    with pytest.raises(MvlevalError) as info:
        gate(make_record("new", version=3, split="dev"), make_record("base"))
    assert "task version: run 3, baseline 1" in str(info.value) and "split: run 'dev'" in str(info.value)


# -- tolerances -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("baseline", "run", "max_drop", "verdict"),
    [
        # drop exactly equal to the tolerance passes: 0.62 -> 0.61 is 1.0 point (a float subtraction would give 1.0000000000000009)
        (0.62, 0.61, 1.0, "pass"),
        (0.62, 0.6099, 1.0, "fail"),  # 1.01 points
        (0.62, 0.609999, 1.0, "fail"),  # 1.0001 points
        (0.62, 0.61, 0.99, "fail"),
        (0.62, 0.62, 0.0, "pass"),  # no change passes even with zero tolerance
        (0.62, 0.619999, 0.0, "fail"),
        (0.62, 0.9, 0.0, "pass"),  # an improvement never fails
        (0.3, 0.295, 0.5, "pass"),  # 0.5 points exactly
        (1.25, 1.2, 5.0, "pass"),  # CIDEr on the x100 scale: 125.0 -> 120.0 is 5 points
        (1.25, 1.1999, 5.0, "fail"),
    ],
)
def test_tolerance_edges(baseline: float, run: float, max_drop: float, verdict: str) -> None:
    report = gate(
        make_record("new", scores={"exact_match": {"en": run}}),
        make_record("base", scores={"exact_match": {"en": baseline}}),
        max_drop=max_drop,
    )
    assert [c.verdict for c in report.cells] == [verdict]
    assert report.passed is (verdict == "pass")
    assert report.exit_code == (0 if verdict == "pass" else 1)


@pytest.mark.parametrize(
    ("baseline", "run", "verdict"),
    [(0.30, 0.31, "pass"), (0.30, 0.3101, "fail"), (0.30, 0.2, "pass")],  # lower is better: a rise is the regression
)
def test_lower_is_better_metrics(baseline: float, run: float, verdict: str) -> None:
    report = gate(
        make_record("new", scores={"wer": {"en": run}}, lower_is_better=("wer",)),
        make_record("base", scores={"wer": {"en": baseline}}, lower_is_better=("wer",)),
        max_drop=1.0,
    )
    assert report.cells[0].verdict == verdict


def test_per_language_tolerances() -> None:
    # every language drops 2.5 points (0.60 -> 0.575)
    langs = ("de", "en", "zh")
    base = make_record(
        "base", scores={"exact_match": dict.fromkeys(langs, 0.60), "relaxed_accuracy": dict.fromkeys(langs, 0.60)}
    )
    run = make_record(
        "new", scores={"exact_match": dict.fromkeys(langs, 0.575), "relaxed_accuracy": dict.fromkeys(langs, 0.575)}
    )

    def verdicts(**kwargs: Any) -> dict[tuple[str, str], str]:
        return {(c.metric, c.lang): c.verdict for c in gate(run, base, **kwargs).cells}

    # zh gets 3 points for every metric; the others keep 1 point
    v = verdicts(max_drop=1.0, per_lang_tolerance={"zh": 3.0})
    assert v == {
        (m, lang): "pass" if lang == "zh" else "fail" for m in ("exact_match", "relaxed_accuracy") for lang in langs
    }
    # only exact_match in de gets 2.5 (the edge: passes)
    v = verdicts(max_drop=1.0, per_lang_tolerance={"de": {"exact_match": 2.5}})
    assert [k for k, verdict in v.items() if verdict == "pass"] == [("exact_match", "de")]
    # per-metric max_drop with a wildcard
    v = verdicts(max_drop={"relaxed_accuracy": 3.0, "*": 1.0})
    assert all(verdict == ("pass" if m == "relaxed_accuracy" else "fail") for (m, _), verdict in v.items())
    # gating one metric only
    assert {m for m, _ in verdicts(max_drop=3.0, metrics=["relaxed_accuracy"])} == {"relaxed_accuracy"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_drop": {"exact_match": 1.0}}, "no tolerance for metric 'relaxed_accuracy'"),
        ({"max_drop": {"exact_mach": 1.0, "*": 1.0}}, "Did you mean 'exact_match'?"),
        ({"per_lang_tolerance": {"dee": 1.0}}, "Did you mean 'de'?"),
        ({"per_lang_tolerance": {"de": {"cider": 1.0}}}, "names metric 'cider', which is not gated"),
        ({"max_drop": -1.0}, "must be a number >= 0"),
        ({"max_drop": float("nan")}, "must be a number >= 0"),
        ({"metrics": ["exact_mtch"]}, "unknown metric 'exact_mtch'"),
        ({"confidence": 1.0}, "confidence must lie strictly between 0 and 1"),
    ],
)
def test_bad_gate_settings(kwargs: dict[str, Any], message: str) -> None:
    scores = {"exact_match": {"de": 0.5, "en": 0.5}, "relaxed_accuracy": {"de": 0.5, "en": 0.5}}
    with pytest.raises(MvlevalError) as info:
        gate(make_record("new", scores=scores), make_record("base", scores=scores), **kwargs)
    assert message in str(info.value)


def test_missing_values_are_skipped_or_fail() -> None:
    # fidelity is null for quz in both (no detector for Quechua) -> skipped; zh lost its value in the run -> fail
    base = make_record(
        "base",
        scores={
            "exact_match": {"en": 0.5, "quz": 0.4, "zh": 0.3},
            "language_fidelity": {"en": 0.9, "quz": None, "zh": 0.8},
        },
    )
    run = make_record(
        "new",
        scores={
            "exact_match": {"en": 0.5, "quz": 0.4, "zh": 0.3},
            "language_fidelity": {"en": 0.9, "quz": None, "zh": None},
        },
    )
    report = gate(run, base, max_drop=1.0)
    verdicts = {(c.metric, c.lang): c.verdict for c in report.cells}
    assert verdicts[("language_fidelity", "quz")] == "skipped"
    assert verdicts[("language_fidelity", "zh")] == "fail"
    assert [k for k, v in verdicts.items() if v == "fail"] == [("language_fidelity", "zh")]
    assert not report.passed
    # only skipped cells: nothing was checked, which must not read as a pass
    with pytest.raises(MvlevalError, match="nothing to gate"):
        gate(
            make_record("new", scores={"language_fidelity": {"quz": None}}),
            make_record("base", scores={"language_fidelity": {"quz": None}}),
        )


# -- paired mode ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flip_down", "flip_up", "max_drop", "verdict"),
    [
        # 1000 examples, baseline 70% correct. Hand check of p: the run's per-example differences are -1 on
        # flip_down examples, +1 on flip_up, 0 elsewhere; the bootstrap mean is ~normal with sd sqrt(n_discordant)/1000.
        (100, 0, 1.0, "fail"),  # 10 points worse: z ~ 0.1/0.0095 ~ 10 -> no resample >= 0: p = 1/1001, never 0
        (0, 0, 0.0, "pass"),  # identical: every resampled delta is 0 -> p = 1
        (10, 8, 0.0, "pass"),  # noise: -0.2 points, sd 0.42 points -> p ~ 0.3, not significant, even at tolerance 0
        (100, 0, 15.0, "pass"),  # significant, but within the tolerance
        (30, 0, 2.0, "fail"),  # 3 points, sd 0.55 -> z ~ 5.5
    ],
)
def test_paired_mode(
    tmp_path: Path, bootstrap: None, flip_down: int, flip_up: int, max_drop: float, verdict: str
) -> None:
    base, run = binary_scores(1000, 700, flip_down, flip_up)
    r_path, r_rec, b_path, b_rec = paired_pair(tmp_path, base, run)
    report = gate(r_rec, b_rec, run_dir=r_path.parent, baseline_dir=b_path.parent, max_drop=max_drop, paired=True)
    cell = report.cells[0]
    assert cell.verdict == verdict, cell
    assert cell.p_value is not None and cell.interval is not None
    if flip_down == flip_up == 0:
        assert cell.p_value == 1.0
    if flip_down == 100:
        assert cell.p_value == 1 / 1001 and cell.interval[1] < 0
    md = render_markdown(report)
    assert "| delta | tolerance | p | verdict |" in md and "paired bootstrap (1000 resamples)" in md


def test_paired_mode_passes_a_drop_the_tolerance_rule_fails(tmp_path: Path, bootstrap: None) -> None:
    # 20 examples, run 5 points worse (one example flipped): over a 1-point tolerance, but one example is no evidence
    base, run = binary_scores(20, 10, flip_down=1)
    r_path, r_rec, b_path, b_rec = paired_pair(tmp_path, base, run)
    assert not gate(r_rec, b_rec, max_drop=1.0).passed
    paired = gate(r_rec, b_rec, run_dir=r_path.parent, baseline_dir=b_path.parent, max_drop=1.0, paired=True)
    # one differing example: no test can establish significance (a sign test's p is 1/2 at best), so no p is shown
    cell = paired.cells[0]
    assert paired.passed and cell.p_value is None and cell.significance == "too few examples", cell
    assert (cell.n_paired, cell.n_differing) == (20, 1)
    # 8 of 40 examples flipped against 6 gained: enough differ, and the bootstrap finds it not significant
    base, run = binary_scores(40, 20, flip_down=8, flip_up=6)
    r_path, r_rec, b_path, b_rec = paired_pair(tmp_path / "more", base, run)
    cell = gate(r_rec, b_rec, run_dir=r_path.parent, baseline_dir=b_path.parent, max_drop=1.0, paired=True).cells[0]
    assert cell.verdict == "pass" and cell.significance == "not significant" and 0.2 < cell.p_value < 0.5  # type: ignore[operator]


def test_paired_refuses_different_example_sets(tmp_path: Path, bootstrap: None) -> None:
    base, run = binary_scores(50, 25)
    r_path, r_rec, b_path, b_rec = paired_pair(tmp_path, base, run)
    rows = (r_path.parent / r_rec.samples_file).read_text(encoding="utf-8").replace('"id": "q7"', '"id": "other"')
    (r_path.parent / r_rec.samples_file).write_text(rows, encoding="utf-8")
    with pytest.raises(MvlevalError, match=r"scored different examples \(1 only in the run"):
        gate(r_rec, b_rec, run_dir=r_path.parent, baseline_dir=b_path.parent, paired=True)


def test_paired_refuses_a_samples_file_that_does_not_match(tmp_path: Path, bootstrap: None) -> None:
    base, run = binary_scores(50, 25)
    r_path, r_rec, b_path, b_rec = paired_pair(tmp_path, base, run)
    samples = r_path.parent / r_rec.samples_file
    samples.write_text("".join(samples.read_text(encoding="utf-8").splitlines(keepends=True)[:-1]), encoding="utf-8")
    with pytest.raises(MvlevalError, match="does not match the run record"):
        gate(r_rec, b_rec, run_dir=r_path.parent, baseline_dir=b_path.parent, paired=True)
    with pytest.raises(MvlevalError, match="needs the run record's folder"):
        gate(r_rec, b_rec, baseline_dir=b_path.parent, paired=True)


def test_paired_gate_with_three_examples_says_it_cannot_establish_significance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 29: 3 examples, all worse, printed "p=0.000 (significant)"; a bootstrap of 3 values proves nothing."""
    from mvleval.cli import main

    monkeypatch.setenv("COLUMNS", "400")  # the verdict on one line
    base, run = binary_scores(3, 3, flip_down=3)
    r_path, _, b_path, _ = paired_pair(tmp_path, base, run)
    with pytest.raises(SystemExit) as exc:
        main(["gate", str(r_path), "--baseline", str(b_path), "--paired"])
    text = " ".join(capsys.readouterr().out.split())
    assert exc.value.code == 0, text  # --paired fails only a significant drop, and this one cannot be shown to be
    assert "p=0.000" not in text and "significant)" not in text
    assert "3 examples of 3 scored differently: too few to establish significance" in text
    assert "at least 5 must differ" in text
    # enough examples: a p-value, never below 1/(B+1)
    base, run = binary_scores(40, 30, flip_down=20)
    r_path, _, b_path, _ = paired_pair(tmp_path / "more", base, run)
    with pytest.raises(SystemExit) as exc:
        main(["gate", str(r_path), "--baseline", str(b_path), "--paired"])
    text = " ".join(capsys.readouterr().out.split())
    assert exc.value.code == 1 and "p=0.001 (significant)" in text and "p=0.000" not in text, text


def test_paired_lower_is_better(tmp_path: Path, bootstrap: None) -> None:
    # per-sample error rates: the run's are higher on 100 of 1000 -> a significant regression
    base, run = binary_scores(1000, 300, flip_up=100)
    b_rec = make_record(
        "base", scores={"wer": {"en": sum(base) / 1000}}, n_examples={"en": 1000}, lower_is_better=("wer",)
    )
    r_rec = make_record(
        "new", scores={"wer": {"en": sum(run) / 1000}}, n_examples={"en": 1000}, lower_is_better=("wer",)
    )
    b_path = write_run(tmp_path / "b", b_rec, {"en": {"wer": base}})
    r_path = write_run(tmp_path / "r", r_rec, {"en": {"wer": run}})
    cell = gate(r_rec, b_rec, run_dir=r_path.parent, baseline_dir=b_path.parent, max_drop=1.0, paired=True).cells[0]
    assert cell.verdict == "fail" and cell.p_value == 1 / 1001
    assert cell.interval is not None and cell.interval[0] > 0  # run - baseline is positive: more errors


# -- rendering --------------------------------------------------------------------------------------------------------
def _mixed_report() -> GateReport:
    base = make_record("base", scores={"exact_match": {"de": 0.62, "en": 0.7, "quz": None}})
    run = make_record("new", scores={"exact_match": {"de": 0.6, "en": 0.705, "quz": None}}, generation={"num_beams": 1})
    return gate(run, base, max_drop=1.0)


def test_render_markdown() -> None:
    md = render_markdown(_mixed_report())
    assert md.startswith("## mvleval gate: FAILED (1 regression)\n")
    assert "| metric | language | baseline | run | delta | tolerance | verdict |" in md
    # 0.62 -> 0.60 is a 2-point drop; en improves by 0.5; quz has no value
    assert "| exact_match | de | 62.0 | 60.0 | -2.00 | 1 | **FAIL: drop 2.00 > 1** |" in md
    assert "| exact_match | en | 70.0 | 70.5 | +0.50 | 1 | pass |" in md
    assert "| exact_match | quz | – | – | – | 1 | skipped: no baseline value |" in md
    assert "generation settings differ: num_beams run 1 vs baseline 5" in md


def test_render_rich() -> None:
    console = Console(record=True, width=200, color_system=None)
    console.print(render_rich(_mixed_report()))
    text = console.export_text()
    assert "FAILED (1)" in text and "FAIL: drop 2.00 > 1" in text and "skipped" in text
    assert "xgqa v1 [test], run new vs baseline base" in text  # brackets survive (not taken as rich markup)


def test_report_json() -> None:
    payload = json.loads(report_json(_mixed_report()))
    assert payload["passed"] is False
    assert [c["verdict"] for c in payload["cells"]] == ["fail", "pass", "skipped"]


def test_write_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = _mixed_report()
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    written = write_summary(report, tmp_path / "out" / "gate.md")
    assert written == [tmp_path / "out" / "gate.md", summary]
    assert (tmp_path / "out" / "gate.md").read_text(encoding="utf-8") == render_markdown(report)
    write_summary(report, tmp_path / "out" / "gate.md")  # the file is rewritten, the summary appended to
    assert (tmp_path / "out" / "gate.md").read_text(encoding="utf-8") == render_markdown(report)
    assert summary.read_text(encoding="utf-8").startswith("earlier step\n")
    assert summary.read_text(encoding="utf-8").count("## mvleval gate: FAILED") == 2
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    assert write_summary(report, None) == []


# -- baselines --------------------------------------------------------------------------------------------------------
def test_bless_copies_record_samples_and_note(tmp_path: Path, bootstrap: None) -> None:
    base, run = binary_scores(200, 120, flip_down=40)
    r_path, r_rec, b_path, _ = paired_pair(tmp_path, base, run)
    blessed = bless(b_path, tmp_path / "baselines", note="mBLIP mT0 4-bit, main branch")
    assert blessed == tmp_path / "baselines" / "xgqa" / "main.json"
    copy = read_record(blessed)
    assert copy.samples_file == "main.samples.jsonl" and copy.run_id == "base"
    assert (blessed.parent / "main.samples.jsonl").read_bytes() == (b_path.parent / "base.samples.jsonl").read_bytes()
    note = (blessed.parent / "main.note.md").read_text(encoding="utf-8")
    assert "mBLIP mT0 4-bit, main branch" in note and "run id: base" in note and "replaces" not in note
    # the blessed baseline gates in paired mode: 20 points worse on 200 examples
    report = gate(r_rec, copy, run_dir=r_path.parent, baseline_dir=blessed.parent, paired=True)
    assert not report.passed
    # blessing again replaces it and says so
    bless(r_path, tmp_path / "baselines", note="accept the new model")
    assert read_record(blessed).run_id == "new"
    assert "replaces run id: base" in (blessed.parent / "main.note.md").read_text(encoding="utf-8")


def test_bless_errors(tmp_path: Path) -> None:
    rec = make_record("x")
    path = tmp_path / "x.json"
    write_record(rec, path)
    with pytest.raises(MvlevalError, match="per-sample file is missing"):
        bless(path, tmp_path / "baselines", note="n")
    (tmp_path / rec.samples_file).write_text("", encoding="utf-8")
    with pytest.raises(MvlevalError, match="needs a note"):
        bless(path, tmp_path / "baselines", note="  ")
    with pytest.raises(MvlevalError, match="invalid baseline name"):
        bless(path, tmp_path / "baselines", note="n", name="../main")
    with pytest.raises(MvlevalError, match="run record not found"):
        bless(tmp_path / "nope.json", tmp_path / "baselines", note="n")


# -- CLI value parsing --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (["1.0"], 1.0),
        (["0"], 0.0),
        (["0.5", "cider=2"], {"*": 0.5, "cider": 2.0}),
        (["exact_match=1", "relaxed_accuracy=1.5"], {"exact_match": 1.0, "relaxed_accuracy": 1.5}),
    ],
)
def test_parse_max_drop(specs: list[str], expected: object) -> None:
    assert parse_max_drop(specs) == expected


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (["zh=3"], {"zh": 3.0}),
        (["zh:cider=3", "zh:exact_match=2", "de=1"], {"zh": {"cider": 3.0, "exact_match": 2.0}, "de": 1.0}),
    ],
)
def test_parse_lang_tolerances(specs: list[str], expected: object) -> None:
    assert parse_lang_tolerances(specs) == expected


@pytest.mark.parametrize(
    ("parser", "specs", "message"),
    [
        ("max", ["one"], "is not a number"),
        ("max", ["-1"], "must be a number >= 0"),
        ("max", ["1", "2"], "gives '*' twice"),
        ("max", [], "needs a value"),
        ("lang", ["zh"], "is not LANG=POINTS"),
        ("lang", ["zh=1", "zh:cider=2"], "for all metrics and for cider"),
        ("lang", ["zh=x"], "is not a number"),
    ],
)
def test_parse_errors(parser: str, specs: list[str], message: str) -> None:
    with pytest.raises(MvlevalError, match=re.escape(message)):
        (parse_max_drop if parser == "max" else parse_lang_tolerances)(specs)


@pytest.mark.parametrize(("p_value", "verdict"), [(0.05, "pass"), (0.0499, "fail"), (0.0, "fail"), (0.5, "pass")])
def test_paired_significance_edge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, p_value: float, verdict: str
) -> None:
    # The decision rule alone, with the bootstrap's answer fixed: significant means p < 1 - confidence, strictly
    # (in floats 1 - 0.95 is 0.05000000000000004, which would wrongly count p = 0.05 as significant).
    module = types.ModuleType("mvleval.metrics.bootstrap")
    module.paired_bootstrap = lambda a, b, **kw: types.SimpleNamespace(  # type: ignore[attr-defined]
        delta=0.0, low=-0.1, high=-0.01, p_value=p_value, n_resamples=kw["n_resamples"], seed=kw["seed"]
    )
    monkeypatch.setitem(sys.modules, "mvleval.metrics.bootstrap", module)
    base, run = binary_scores(100, 50, flip_down=10)
    r_path, r_rec, b_path, b_rec = paired_pair(tmp_path, base, run)
    report = gate(
        r_rec, b_rec, run_dir=r_path.parent, baseline_dir=b_path.parent, max_drop=0.0, paired=True, confidence=0.95
    )
    assert report.cells[0].verdict == verdict


def test_paired_gate_resamples_the_images_its_records_name(tmp_path: Path, bootstrap: None) -> None:
    """Issue 25: the run lost 8 answers about 2 of 50 images (4 questions each). Per question that is a significant
    drop; per image it is two events, which the clustered test does not call significant. The records' signatures
    say which unit their intervals used (unit=image), and the gate resamples the same one."""
    n, per_image = 200, 4
    base = [1.0] * 120 + [0.0] * 80
    run = [0.0] * 8 + base[8:]
    sig = "exact_match|vqa|boot=1000,seed=0,unit=image|mvleval-1"
    results = {}
    for unit_sig, name in ((EM_SIG, "example"), (sig, "image")):
        b_rec = make_record(
            "base",
            scores={"exact_match": {"en": sum(base) / n}},
            n_examples={"en": n},
            signatures={"exact_match": unit_sig},
        )
        r_rec = make_record(
            "new",
            scores={"exact_match": {"en": sum(run) / n}},
            n_examples={"en": n},
            signatures={"exact_match": unit_sig},
        )
        paths = []
        for rec, scores in ((b_rec, base), (r_rec, run)):
            folder = tmp_path / name / rec.run_id
            folder.mkdir(parents=True)
            rows = [
                {
                    "id": f"q{i:03d}",
                    "lang": "en",
                    "prompt": "p",
                    "prediction": "x",
                    "references": ["x"],
                    "images": [f"img{i // per_image}.jpg"],
                    "scores": {"exact_match": scores[i]},
                }
                for i in range(n)
            ]
            (folder / rec.samples_file).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
            write_record(rec, folder / f"{rec.run_id}.json")
            paths.append(folder)
        report = gate(r_rec, b_rec, run_dir=paths[1], baseline_dir=paths[0], max_drop=1.0, paired=True)
        results[name] = report
    assert results["example"].unit == "example" and results["image"].unit == "image"
    assert results["example"].cells[0].verdict == "fail" and results["example"].cells[0].p_value < 0.05
    assert results["image"].cells[0].verdict == "pass" and results["image"].cells[0].p_value >= 0.05
    assert "1000 resamples of images" in render_markdown(results["image"])
