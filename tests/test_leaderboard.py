"""Leaderboard: comparable records share a column, newer records replace older ones, output is golden-tested."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mvleval.compare.leaderboard import (
    build_leaderboard,
    find_records,
    format_points,
    render_markdown,
    to_points,
)
from mvleval.compare.leaderboard_files import write_leaderboard
from mvleval.record.schema import RunRecord, write_record
from mvleval.util.errors import MvlevalError
from tests.helpers import stub_provenance

DATA = Path(__file__).parent / "data" / "leaderboard"
UPDATE_GOLDEN = os.environ.get("MVLEVAL_UPDATE_GOLDEN") == "1"

EM_SIG = "exact_match|vqa-clean=lavis|v=1"
CIDER_SIG = "cider|n=4|sigma=6|tok=ptb-py|seg=zh:char|v=1"


def make_record(
    run_id: str,
    *,
    created_at: str = "2024-01-01T00:00:00+00:00",
    task: str = "xgqa",
    version: int = 1,
    split: str = "test",
    metric: str = "exact_match",
    signature: str = EM_SIG,
    fingerprint: str = "f" * 32,
    protocol_hash: str = "p" * 16,
    model: str = "ckpt/mblip-mt0-xl",
    adapter: str | None = None,
    bits: int = 4,
    generation: dict[str, Any] | None = None,
    per_lang: dict[str, float | None] | None = None,
    intervals: dict[str, tuple[float, float] | None] | None = None,
    mean: float | None = None,
    higher_is_better: bool = True,
    weights: str | None = None,
    family: str | None = None,
) -> RunRecord:
    """A hand-built run record: only the fields the leaderboard reads carry meaning."""
    per_lang = per_lang if per_lang is not None else {"de": 0.5, "en": 0.6}
    values = [v for v in per_lang.values() if v is not None]
    return RunRecord.model_validate(
        {
            "run_id": run_id,
            "created_at": created_at,
            "task": {
                "name": task,
                "version": version,
                "split": split,
                "languages": list(per_lang),
                "n_examples": {lang: 100 for lang in per_lang},
                "protocol_hash": protocol_hash,
            },
            "model": {
                "path": model,
                "kind": "encoder-decoder",
                "bits": bits,
                "dtype": "bfloat16",
                "adapter": adapter,
                "generation": generation or {"num_beams": 5, "max_new_tokens": 10},
                "num_query_tokens": 32,
                "fingerprint": weights,
                **({"backend": "hf", "family": family} if family else {}),
            },
            "scores": {
                metric: {
                    "signature": signature,
                    "per_lang": per_lang,
                    "mean": mean if mean is not None else (sum(values) / len(values) if values else None),
                    "intervals": intervals or {},
                    "higher_is_better": higher_is_better,
                }
            },
            "provenance": stub_provenance(fingerprint),
            "duration_s": 1.0,
            "samples_file": f"{run_id}.samples.jsonl",
        }
    )


def golden_records() -> list[tuple[Path, RunRecord]]:
    """The scenario behind expected.md / expected.csv (values chosen to exercise rounding and every label rule)."""
    xgqa = {"de": 0.4525, "en": 0.6, "zh": 0.38}
    return [
        # model A: an older and a newer run of the same column -> the newer wins, the older is listed as superseded
        (
            Path("runs/a-old.json"),
            make_record("a-old", created_at="2024-01-01T10:00:00+00:00", per_lang={"de": 0.1, "en": 0.1, "zh": 0.1}),
        ),
        (Path("runs/a-new.json"), make_record("a-new", created_at="2024-02-01T10:00:00+00:00", per_lang=xgqa)),
        # model B (LoRA adapter, 16-bit), with per-language intervals and a mean interval
        (
            Path("runs/b.json"),
            make_record(
                "b",
                model="ckpt/mblip-bloomz-7b",
                adapter="lora/xgqa-r8",
                bits=16,
                per_lang={"de": 0.5, "en": 0.65, "zh": 0.41},
                intervals={"de": (0.48, 0.52), "en": (0.63, 0.67), "zh": (0.39, 0.43), "mean": (0.5, 0.54)},
            ),
        ),
        # model A on xgqa v2 dev: a different version and split -> its own column
        (Path("runs/a-v2.json"), make_record("a-v2", version=2, split="dev", per_lang={"de": 0.7, "en": 0.8})),
        # model B on a 200-example subset (other fingerprint) -> its own column, labelled with the data hash
        (
            Path("runs/b-limit.json"),
            make_record(
                "b-limit",
                model="ckpt/mblip-bloomz-7b",
                adapter="lora/xgqa-r8",
                bits=16,
                fingerprint="0123456789abcdef" * 2,
                per_lang=xgqa,
            ),
        ),
        # model A with greedy decoding: its own row, labelled with the setting that differs
        (
            Path("runs/a-greedy.json"),
            make_record(
                "a-greedy",
                generation={"num_beams": 1, "max_new_tokens": 10},
                per_lang={"de": 0.44, "en": 0.59, "zh": 0.37},
            ),
        ),
        # captioning: CIDEr x100, a language without a value
        (
            Path("runs/a-xm.json"),
            make_record(
                "a-xm",
                task="xm3600",
                metric="cider",
                signature=CIDER_SIG,
                per_lang={"en": 0.7834, "quz": None, "zh": 0.25},
            ),
        ),
    ]


def test_golden_markdown_and_csv(tmp_path: Path) -> None:
    lb = build_leaderboard(golden_records())
    written = write_leaderboard(lb, tmp_path)
    md = (tmp_path / "leaderboard.md").read_text(encoding="utf-8")
    csv = (tmp_path / "leaderboard.csv").read_text(encoding="utf-8")
    if UPDATE_GOLDEN:
        (DATA / "expected.md").write_text(md, encoding="utf-8")
        (DATA / "expected.csv").write_text(csv, encoding="utf-8")
    assert md == (DATA / "expected.md").read_text(encoding="utf-8"), (
        "regenerate with MVLEVAL_UPDATE_GOLDEN=1 if intended"
    )
    assert csv == (DATA / "expected.csv").read_text(encoding="utf-8"), (
        "regenerate with MVLEVAL_UPDATE_GOLDEN=1 if intended"
    )
    # 4 columns -> 4 heatmaps, each a PNG referenced from the Markdown
    pngs = [p for p in written if p.suffix == ".png"]
    assert len(pngs) == len(lb.columns) == 4
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png.name})" in md


def test_golden_content_by_hand() -> None:
    """Spot checks of the golden scenario, independent of the golden files (values worked out by hand)."""
    lb = build_leaderboard(golden_records())
    # columns sort by label; the two xgqa v1 columns differ only in the example set, so their labels show it
    assert [c.label for c in lb.columns] == [
        "xgqa v1 [test] exact_match (data:01234567 n=300)",
        "xgqa v1 [test] exact_match (data:ffffffff n=300)",
        "xgqa v2 [dev] exact_match",
        "xm3600 v1 [test] cider",
    ]
    assert [r.label for r in lb.rows] == [
        "ckpt/mblip-bloomz-7b + lora/xgqa-r8 (16-bit)",
        "ckpt/mblip-mt0-xl (4-bit) {num_beams=1}",
        "ckpt/mblip-mt0-xl (4-bit) {num_beams=5}",
    ]
    md = render_markdown(lb)
    # model A, xgqa: mean of 45.25, 60, 38 = 47.75 -> 47.8 (half-up); its de value 0.4525 -> 45.3
    assert "| ckpt/mblip-mt0-xl (4-bit) {num_beams=5} | 45.3 | 60.0 | 38.0 | 47.8 | r" in md
    # model B carries intervals: de 50.0 [48.0, 52.0]; mean (0.5+0.65+0.41)/3 = 0.52 -> 52.0 with the record's mean interval
    assert "50.0 [48.0, 52.0]" in md and "**52.0 [50.0, 54.0]**" in md
    # CIDEr 0.7834 -> 78.3, quz missing -> '–', mean (0.7834 + 0.25)/2 = 0.5167 -> 51.7
    assert "| 78.3 | – | 25.0 | 51.7 |" in md
    assert "a-old" in md.split("## Superseded records")[1]


def test_csv_is_tidy_and_parses(tmp_path: Path) -> None:
    lb = build_leaderboard(golden_records())
    write_leaderboard(lb, tmp_path)
    frame = pd.read_csv(tmp_path / "leaderboard.csv", keep_default_na=False, na_values=[""])
    # 6 cells, each with its languages + 'mean': a-new 4, a-greedy 4, b 4, b-limit 4, a-v2 3 (de en), a-xm 4
    assert len(frame) == 4 + 4 + 4 + 4 + 3 + 4
    row = frame[(frame.run_id == "b") & (frame.lang == "mean")].iloc[0]
    assert (row.value, row.low, row.high) == (52.0, 50.0, 54.0)
    quz = frame[(frame.run_id == "a-xm") & (frame.lang == "quz")].iloc[0]
    assert pd.isna(quz.value)
    assert set(frame.run_id) == {"a-new", "a-greedy", "b", "b-limit", "a-v2", "a-xm"}  # a-old was replaced


def test_output_does_not_depend_on_input_order() -> None:
    records = golden_records()
    expected = render_markdown(build_leaderboard(records))
    for perm in itertools.islice(itertools.permutations(records), 0, 720, 97):
        assert render_markdown(build_leaderboard(list(perm))) == expected


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("2024-01-01T10:00:00+00:00", "2024-01-01T10:00:01+00:00"),
        # different offsets: 10:00+02:00 is 08:00 UTC, earlier than 09:00 UTC
        ("2024-01-01T10:00:00+02:00", "2024-01-01T09:00:00+00:00"),
        # a naive stamp is read as UTC
        ("2024-01-01T10:00:00", "2024-01-01T10:30:00+00:00"),
    ],
)
def test_newer_record_replaces_older(older: str, newer: str) -> None:
    old = make_record("old", created_at=older, per_lang={"en": 0.1})
    new = make_record("new", created_at=newer, per_lang={"en": 0.9})
    lb = build_leaderboard([(Path("new.json"), new), (Path("old.json"), old)])
    assert len(lb.columns) == 1 and len(lb.rows) == 1
    cell = lb.cell(lb.rows[0], lb.columns[0])
    assert cell is not None and cell.run_id == "new" and cell.mean == 0.9
    assert [(s.run_id, s.replaced_by) for s in lb.superseded] == [("old", cell.ref)]


@pytest.mark.parametrize(
    ("change", "label_part"),
    [
        ({"version": 2}, "xgqa v2 [test]"),
        ({"split": "dev"}, "xgqa v1 [dev]"),
        ({"fingerprint": "e" * 32}, "data:eeeeeeee n=200"),
        ({"signature": "exact_match|vqa-clean=none|v=1"}, "sig:"),
        ({"protocol_hash": "q" * 16}, "protocol:qqqqqqqq"),
        ({"metric": "relaxed_accuracy"}, "xgqa v1 [test] relaxed_accuracy"),
    ],
)
def test_incomparable_records_get_their_own_column(change: dict[str, Any], label_part: str) -> None:
    # Same model: without the comparability key the newer record would silently replace the older one.
    base = make_record("base", created_at="2024-01-01T00:00:00+00:00")
    other = make_record("other", created_at="2024-06-01T00:00:00+00:00", **change)
    lb = build_leaderboard([(Path("base.json"), base), (Path("other.json"), other)])
    assert len(lb.columns) == 2 and len(lb.rows) == 1 and not lb.superseded
    assert len({c.label for c in lb.columns}) == 2
    other_col = next(c for c in lb.columns if lb.cell(lb.rows[0], c).run_id == "other")  # type: ignore[union-attr]
    assert label_part in other_col.label


def test_rows_are_model_adapter_bits() -> None:
    records = [
        (Path("1.json"), make_record("1")),
        (Path("2.json"), make_record("2", bits=8)),
        (Path("3.json"), make_record("3", adapter="lora/a")),
        (Path("4.json"), make_record("4", model="ckpt/other")),
    ]
    lb = build_leaderboard(records)
    assert [r.label for r in lb.rows] == [
        "ckpt/mblip-mt0-xl (4-bit)",
        "ckpt/mblip-mt0-xl (8-bit)",
        "ckpt/mblip-mt0-xl + lora/a (4-bit)",
        "ckpt/other (4-bit)",
    ]
    assert len(lb.columns) == 1 and not lb.superseded


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        # hand-computed: x100 then round half-up on the decimal value as written
        (0.4525, "45.3"),
        (0.45249999, "45.2"),
        (0.0, "0.0"),
        (1.0, "100.0"),
        (0.0005, "0.1"),
        (0.00049, "0.0"),
        (1.2345, "123.5"),  # CIDEr above 1
        (None, "–"),
    ],
)
def test_rounding(value: float | None, shown: str) -> None:
    assert format_points(value) == shown


def test_heatmaps_are_deterministic(tmp_path: Path) -> None:
    lb = build_leaderboard(golden_records())
    first = [p.read_bytes() for p in write_leaderboard(lb, tmp_path / "a")]
    second = [p.read_bytes() for p in write_leaderboard(lb, tmp_path / "b")]
    assert first == second


def test_lower_is_better_column_marks_the_minimum_best() -> None:
    records = [
        (
            Path("1.json"),
            make_record("1", metric="wer", signature="wer|v=1", per_lang={"en": 0.2}, higher_is_better=False),
        ),
        (
            Path("2.json"),
            make_record(
                "2", model="ckpt/b", metric="wer", signature="wer|v=1", per_lang={"en": 0.3}, higher_is_better=False
            ),
        ),
    ]
    md = render_markdown(build_leaderboard(records))
    assert "(lower is better)" in md
    # rows sort by label: ckpt/b (0.3) is r1, ckpt/mblip-mt0-xl (0.2) is r2 and the best
    assert "| ckpt/b (4-bit) | 30.0 (r1) |" in md and "| ckpt/mblip-mt0-xl (4-bit) | **20.0** (r2) |" in md


def test_find_records_reads_a_tree(tmp_path: Path) -> None:
    write_record(make_record("x"), tmp_path / "runs" / "x.json")
    write_record(make_record("y", model="ckpt/y"), tmp_path / "runs" / "sub" / "y.json")
    (tmp_path / "runs" / "x.samples.jsonl").write_text("", encoding="utf-8")
    (tmp_path / "runs" / "z.manifest.json").write_text('{"identity": {}}', encoding="utf-8")  # an interrupted run
    found = find_records([tmp_path / "runs"])
    # sorted by path: runs/sub/y.json < runs/x.json
    assert [(p.relative_to(tmp_path).as_posix(), r.run_id) for p, r in found] == [
        ("runs/sub/y.json", "y"),
        ("runs/x.json", "x"),
    ]
    (tmp_path / "runs" / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(MvlevalError, match="broken.json"):
        find_records([tmp_path / "runs"])
    with pytest.raises(MvlevalError, match="no such file"):
        find_records([tmp_path / "missing"])


def test_errors() -> None:
    with pytest.raises(MvlevalError, match="no run records"):
        build_leaderboard([])
    with pytest.raises(MvlevalError, match="not an ISO-8601"):
        build_leaderboard([(Path("r.json"), make_record("r", created_at="yesterday"))])


def test_to_points_is_exact_decimal() -> None:
    # 0.285 * 100 is 28.499999999999996 in binary floating point; the stored decimal 0.285 rounds half-up to 28.5
    assert 0.285 * 100 < 28.5
    assert str(to_points(0.285)) == "28.5"


def test_tasks_run_with_their_own_protocol_settings_share_one_model_row() -> None:
    """Captioning (50 tokens, length_penalty 1) and VQA (10 tokens, -1) are each task's protocol, not overrides:
    the same checkpoint is one row. A real override (greedy on xgqa) gets a row of its own, labelled by what differs."""
    from mvleval.benchmarks.registry import load_task

    def protocol_record(
        run_id: str, task: str, metric: str, signature: str, **generation: Any
    ) -> tuple[Path, RunRecord]:
        t = load_task(task)
        settings = {**t.generation.to_dict(), **generation}
        return Path(f"{run_id}.json"), make_record(
            run_id,
            task=task,
            metric=metric,
            signature=signature,
            protocol_hash=t.protocol_hash(),
            version=t.version,
            generation=settings,
        )

    lb = build_leaderboard(
        [
            protocol_record("a", "xgqa", "exact_match", EM_SIG),
            protocol_record("b", "xflickrco", "cider", "cider|x"),
            protocol_record("c", "xgqa", "exact_match", EM_SIG, num_beams=1),
        ]
    )
    text = render_markdown(lb)
    rows = [line for line in text.splitlines() if line.startswith("| ckpt/mblip-mt0-xl")]
    overview = rows[: len(lb.rows)]
    assert len(lb.rows) == 2, overview
    assert any("{num_beams=1}" in r for r in overview)


def test_one_relative_path_two_checkpoints_are_two_rows() -> None:
    """Two different checkpoints, each run as `--model ckpt` from its own folder: two rows, told apart by weights."""
    board = build_leaderboard(
        [
            (Path("a/run.json"), make_record("a", model="ckpt", weights="4d38aaaa", per_lang={"en": 0.0})),
            (Path("b/run.json"), make_record("b", model="ckpt", weights="7fd2bbbb", per_lang={"en": 0.25})),
        ]
    )
    assert len(board.rows) == 2 and not board.superseded
    assert sorted(r.label for r in board.rows) == ["ckpt (4-bit) weights 4d38aaaa", "ckpt (4-bit) weights 7fd2bbbb"]


def test_a_protocol_row_shows_the_protocol_value_not_none() -> None:
    from mvleval.benchmarks.registry import load_task

    task = load_task("xgqa")
    protocol = task.generation.to_dict()
    greedy = {**protocol, "num_beams": 1}
    board = build_leaderboard(
        [
            (
                Path("a.json"),
                make_record("a", generation=protocol, protocol_hash=task.protocol_hash(), version=task.version),
            ),
            (
                Path("b.json"),
                make_record("b", generation=greedy, protocol_hash=task.protocol_hash(), version=task.version),
            ),
        ]
    )
    labels = sorted(r.label for r in board.rows)
    assert labels == ["ckpt/mblip-mt0-xl (4-bit) {num_beams=1}", "ckpt/mblip-mt0-xl (4-bit) {num_beams=5}"], labels


def test_families_side_by_side() -> None:
    board = build_leaderboard(
        [
            (Path("a.json"), make_record("a", model="mblip-mt0-xl")),
            (Path("b.json"), make_record("b", model="Qwen2.5-VL-7B-Instruct", family="qwen2_5_vl")),
        ]
    )
    assert sorted(r.label for r in board.rows) == [
        "Qwen2.5-VL-7B-Instruct (4-bit) [qwen2_5_vl]",
        "mblip-mt0-xl (4-bit)",
    ]
    assert len(board.columns) == 1


def test_heatmap_names_do_not_depend_on_other_records(tmp_path: Path) -> None:
    from mvleval.compare.leaderboard import heatmap_name

    alone = build_leaderboard([(Path("a.json"), make_record("a"))])
    crowded = build_leaderboard(
        [(Path("a.json"), make_record("a")), (Path("b.json"), make_record("b", fingerprint="0" * 32))]
    )
    [name] = [heatmap_name(c) for c in alone.columns]
    assert name in [heatmap_name(c) for c in crowded.columns] and len(crowded.columns) == 2
    written = write_leaderboard(crowded, tmp_path)
    assert (tmp_path / name) in written


def test_heatmap_labels_keep_the_model_folder_and_the_settings() -> None:
    """Item 13: a long row label loses its path's folders, then the middle of the model's name; the folder name's end,
    the bits and the settings stay, and rows never become alike."""
    from mvleval.compare.leaderboard_files import MAX_LABEL_CHARS, _short_labels

    long = "/data/team/very/long/path/to/checkpoints/mblip-mt0-xl-finetuned-on-xgqa-2024-0{} (32-bit) {{num_beams=1}}"
    labels = _short_labels([long.format(6), long.format(7), "ckpt (4-bit)"])
    assert labels[2] == "ckpt (4-bit)" and len(set(labels)) == 3
    for label, month in zip(labels, "67"):
        assert len(label) <= MAX_LABEL_CHARS and label.startswith("…/mblip-mt0"), label
        assert label.endswith(f"2024-0{month} (32-bit) {{num_beams=1}}"), label
    # two checkpoints whose labels differ only in their folders: cut in the middle, never both "…/ckpt"
    twins = [f"/very/long/shared/prefix/of/the/experiment/folders/{x}/ckpt (32-bit) {{num_beams=1}}" for x in "ab"]
    short = _short_labels(twins)
    assert len(set(short)) == 2 and all(len(s) <= MAX_LABEL_CHARS for s in short), short


# -- issue 29: labels in words, short model names, simultaneous records -------------------------------------------
def _board(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, records: list[RunRecord]
) -> tuple[str, str, str, dict[str, Any]]:
    """Write the records, run `mvleval leaderboard --json` on them: (markdown, html, csv, json document)."""
    import json

    from tests.helpers import cli

    folder = tmp_path / "runs"
    for record in records:
        write_record(record, folder / f"{record.run_id}.json")
    out = tmp_path / "lb"
    code, stdout, stderr = cli(capsys, "leaderboard", folder, "--out", out, "--json")
    assert code == 0, stderr
    return (
        (out / "leaderboard.md").read_text(encoding="utf-8"),
        (out / "leaderboard.html").read_text(encoding="utf-8"),
        (out / "leaderboard.csv").read_text(encoding="utf-8"),
        json.loads(stdout),
    )


def test_columns_of_two_prompt_styles_are_labelled_in_words(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    mblip = make_record("m", protocol_hash="a" * 16)
    chat = make_record("c", protocol_hash="b" * 16).model_copy(deep=True)
    chat.task.prompt_style = "chat"
    md, _, _, doc = _board(capsys, tmp_path, [mblip, chat])
    labels = sorted(c["label"] for c in doc["columns"])
    assert labels == ["xgqa v1 [test] exact_match (chat prompts)", "xgqa v1 [test] exact_match (mBLIP prompts)"], labels
    assert "protocol:" not in md


def test_rows_show_a_short_model_name_and_keep_the_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a = make_record("a", model="/home/user/experiments/2024-06/checkpoints/mblip-mt0-xl", weights="1" * 16)
    b = make_record("b", model="/data/other/checkpoints/mblip-bloomz-7b", weights="2" * 16)
    twin = make_record("t", model="/data/run-2/checkpoints/mblip-mt0-xl", weights="3" * 16)
    md, html, csv, doc = _board(capsys, tmp_path, [a, b, twin])
    labels = sorted(r["label"] for r in doc["rows"])
    # the folder's own name; two folders named alike get the parents that tell them apart
    assert labels == [
        "2024-06/checkpoints/mblip-mt0-xl (4-bit)",
        "mblip-bloomz-7b (4-bit)",
        "run-2/checkpoints/mblip-mt0-xl (4-bit)",
    ]
    assert "/home/user" not in md.split("## Records")[0]
    assert 'title="/home/user/experiments/2024-06/checkpoints/mblip-mt0-xl"' in html
    assert "/home/user/experiments/2024-06/checkpoints/mblip-mt0-xl" in csv


def test_records_made_at_the_same_moment_are_not_called_older(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first = make_record("run-a", per_lang={"de": 0.5, "en": 0.6})
    second = make_record("run-b", per_lang={"de": 0.1, "en": 0.2})  # same created_at, other scores
    md, html, _, doc = _board(capsys, tmp_path, [first, second])
    [s] = doc["superseded"]
    assert s["run_id"] == "run-a" and s["simultaneous"] is True
    assert "(same time: neither is older)" in md and "(same time: neither is older)" in html
    assert "Older records of the same model" not in md
    # an older record is still called older: no note on its row
    old = make_record("run-old", created_at="2023-01-01T00:00:00+00:00")
    md, _, _, doc = _board(capsys, tmp_path / "2", [old, second])
    assert (
        doc["superseded"][0]["simultaneous"] is False
        and "neither is older" not in md.split("## Superseded records")[1].split("|", 1)[1]
    )


def test_heatmap_title_is_not_clipped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Issue 29: a column label with its hashes made the heatmap's title run off both edges of the image."""
    from PIL import Image

    long_a = make_record(
        "a", task="xm3600", metric="cider", signature=CIDER_SIG, per_lang={"en": 0.5}, fingerprint="a" * 32
    )
    long_b = make_record(
        "b",
        task="xm3600",
        metric="cider",
        signature=CIDER_SIG + "|x",
        per_lang={"en": 0.4},
        fingerprint="b" * 32,
        protocol_hash="q" * 16,
    )
    _, _, _, doc = _board(capsys, tmp_path, [long_a, long_b])
    pngs = [Path(p) for p in doc["written"] if p.endswith(".png")]
    assert len(pngs) == 2
    for png in pngs:
        image = Image.open(png).convert("L")
        width, height = image.size
        # the title band: no ink in the outermost pixel columns (text cut by the edge touches them)
        edges = [image.getpixel((x, y)) for y in range(height // 5) for x in (0, 1, width - 2, width - 1)]
        assert min(edges) > 200, png
