"""Every task runs through `mvleval run` on a tiny real checkpoint against the real annotation files (placeholder images)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mvleval.benchmarks.registry import load_task
from mvleval.record.schema import read_record, read_samples
from tests.helpers import invoke_run, placeholder_images

FIXTURES = Path(__file__).parent / "data" / "tasks"

# (task, languages present in ../shared/data, data root) — XM3600's captions file is not shipped, so a fixture in its
# published format stands in; everything else is the real published files.
CASES = [
    ("xgqa", ["de", "en", "zh"], "dev"),
    ("xflickrco", ["de", "en", "ja", "zh"], "test"),
    ("marvl", ["id", "zh"], "test"),
    ("xvnli", ["ar", "en"], "test"),
]
#: metrics whose corpus value is computed from summed statistics, not as the mean of the per-sample scores
CORPUS_STATISTIC_METRICS = {"bleu", "chrfpp"}


def _run_task(
    task_name: str, langs: list[str], split: str, data_root: Path, tmp_path: Path, model: Path, limit: int
) -> Path:
    task = load_task(task_name)
    image_root = tmp_path / "images"
    examples = {lang: task.examples(data_root, image_root, lang, split)[:limit] for lang in langs}
    placeholder_images(sorted({p for exs in examples.values() for e in exs for p in e.images}))
    out = tmp_path / "runs"
    args = [
        "run",
        "--task",
        task_name,
        "--model",
        model,
        "--data-root",
        data_root,
        "--image-root",
        image_root,
        "--split",
        split,
        "--limit",
        str(limit),
        "--out",
        out,
        "--batch-size",
        "8",
        "--max-new-tokens",
        "4",
    ]
    record_path = invoke_run(args, langs)
    record = read_record(record_path)
    assert record.task.name == task_name and record.task.languages == langs
    assert record.task.n_examples == {lang: min(limit, len(examples[lang])) for lang in langs}
    metric_names = [m.name for m in task.metrics()]
    assert list(record.scores) == metric_names
    rows = list(read_samples(record_path.parent / record.samples_file))
    assert len(rows) == sum(record.task.n_examples.values())
    for lang in langs:
        lang_rows = [r for r in rows if r["lang"] == lang]
        assert [r["id"] for r in lang_rows] == [e.id for e in examples[lang]]
        assert [r["prompt"] for r in lang_rows] == [e.prompt for e in examples[lang]]
        for name in metric_names:
            value = record.scores[name].per_lang[lang]
            if value is None:  # only with a recorded reason (e.g. no language identifier for quz)
                assert record.scores[name].notes.get(lang)
                continue
            if name in CORPUS_STATISTIC_METRICS:
                # corpus BLEU / chrF++ sum n-gram statistics over the corpus: not the mean of the sentence scores
                # stored per sample, which are checked against the metric itself
                preds, refs = [r["prediction"] for r in lang_rows], [r["references"] for r in lang_rows]
                direct = next(m for m in task.metrics() if m.name == name).score(preds, refs, lang)
                assert value == direct.value and [r["scores"][name] for r in lang_rows] == direct.per_example
            elif name != "cider":  # CIDEr's corpus value is the mean of its per-sample scores too
                assert value == pytest.approx(sum(r["scores"][name] for r in lang_rows) / len(lang_rows))
            else:
                assert value == pytest.approx(sum(r["scores"][name] for r in lang_rows) / len(lang_rows), abs=1e-9)
    return record_path


@pytest.mark.parametrize(("task_name", "langs", "split"), CASES, ids=[c[0] for c in CASES])
def test_task_runs_on_real_files(
    task_name: str, langs: list[str], split: str, shared_data: Path, tmp_path: Path, tiny_mt5_dir: Path
) -> None:
    _run_task(task_name, langs, split, shared_data, tmp_path, tiny_mt5_dir, limit=20)


def test_marvl_two_image_run_on_decoder_only_model(shared_data: Path, tmp_path: Path, tiny_bloom_dir: Path) -> None:
    record_path = _run_task("marvl", ["zh"], "test", shared_data, tmp_path, tiny_bloom_dir, limit=12)
    assert read_record(record_path).model.kind == "decoder-only"


def test_xm3600_runs_on_its_published_format(tmp_path: Path, tiny_bloom_dir: Path) -> None:
    task = load_task("xm3600")
    data_root = FIXTURES
    langs = [lang for lang in task.languages if lang in ("en", "zh", "quz")]
    record_path = _run_task("xm3600", langs, "test", data_root, tmp_path, tiny_bloom_dir, limit=3)
    record = read_record(record_path)
    # lingua does not know Quechua: fidelity is null with a reason, never 0, and left out of the mean
    assert record.scores["language_fidelity"].per_lang["quz"] is None
    assert "quz" in record.scores["language_fidelity"].notes
    values = [v for k, v in record.scores["language_fidelity"].per_lang.items() if k != "quz"]
    assert record.scores["language_fidelity"].mean == pytest.approx(sum(values) / len(values))


def test_maxm_runs_on_its_published_format(tmp_path: Path, tiny_mt5_dir: Path) -> None:
    """No copy of MaXM here: the hand-made fixture in the release's schema (tests/data/tasks/maxm) stands in."""
    record_path = _run_task("maxm", ["fr", "iw", "zh"], "test", FIXTURES, tmp_path, tiny_mt5_dir, limit=3)
    record = read_record(record_path)
    assert record.scores["exact_match"].signature.startswith("exact_match|clean=strip+lower|")
    assert record.task.n_examples == {"fr": 3, "iw": 2, "zh": 2}
