"""The worked example of docs/custom-benchmark.md, end to end through the `mvleval` console script (issue 14 item 2):
a chart-captioning benchmark drawn with matplotlib and captioned in English, German and Chinese, fine-tuned with
`mvleval train` on its train split, evaluated with `mvleval run`, blessed, gated and put on a leaderboard.

The header is read from the docs page itself, so the page and this test cannot drift apart. CIDEr is tested here;
BLEU and chrF join the header's metrics when the installed mvleval registers them (mvleval.metrics.registry).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mvleval.record.schema import read_record, read_samples
from tests.test_file_task import cli, record_path

DOC = Path(__file__).resolve().parents[1] / "docs" / "custom-benchmark.md"

FRUIT = {"en": ("apples", "pears", "plums"), "de": ("Äpfeln", "Birnen", "Pflaumen"), "zh": ("苹果", "梨", "李子")}
CHARTS = [  # (id, chart kind, values for the three fruits, split)
    ("bar_0", "bar", (3, 5, 9), "test"),
    ("bar_1", "bar", (8, 2, 4), "test"),
    ("line_0", "line", (1, 4, 7), "test"),
    ("pie_0", "pie", (6, 3, 1), "test"),
    ("bar_2", "bar", (2, 7, 3), "train"),
    ("line_1", "line", (9, 5, 2), "train"),
    ("pie_1", "pie", (2, 2, 6), "train"),
    ("line_2", "line", (5, 5, 8), "train"),
]


def doc_header() -> str:
    """The YAML header shown in docs/custom-benchmark.md (its first ```yaml block)."""
    match = re.search(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert match, "docs/custom-benchmark.md lost its header example"
    return match.group(1)


def captions(kind: str, values: tuple[int, int, int], lang: str) -> list[str]:
    """Captions a person would write for the chart: what is shown and which fruit leads."""
    names = FRUIT[lang]
    top = names[values.index(max(values))]
    if lang == "en":
        what = {"bar": "a bar chart", "line": "a line chart", "pie": "a pie chart"}[kind]
        return [
            f"{what} of apples, pears and plums in which {top} are highest",
            f"{what}: {top} lead with {max(values)}",
        ]
    if lang == "de":
        what = {"bar": "ein Balkendiagramm", "line": "ein Liniendiagramm", "pie": "ein Kreisdiagramm"}[kind]
        return [f"{what} von Äpfeln, Birnen und Pflaumen, in dem {top} am höchsten sind"]
    what = {"bar": "柱状图", "line": "折线图", "pie": "饼图"}[kind]
    return [f"苹果、梨和李子的{what}，{top}最高", f"{what}：{top}最多，有{max(values)}个"]


def make_chart_benchmark(folder: Path, metrics_extra: list[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = folder / "images"
    images.mkdir(parents=True)
    rows = []
    for chart_id, kind, values, split in CHARTS:
        fig, ax = plt.subplots(figsize=(1.6, 1.6), dpi=40)
        if kind == "bar":
            ax.bar(["a", "p", "q"], values, color=["tab:red", "tab:green", "tab:purple"])
        elif kind == "line":
            ax.plot([0, 1, 2], values, marker="o")
        else:
            ax.pie(values)
        fig.savefig(images / f"{chart_id}.png")
        plt.close(fig)
        for lang in ("en", "de", "zh"):
            rows.append(
                {
                    "id": chart_id,
                    "lang": lang,
                    "split": split,
                    "images": [f"{chart_id}.png"],
                    "answers": captions(kind, values, lang),
                }
            )
    header = doc_header()
    if metrics_extra:
        header = header.replace(
            "metrics: [cider, language_fidelity]", f"metrics: [cider, language_fidelity, {', '.join(metrics_extra)}]"
        )
    (folder / "benchmark.yaml").write_text(header, encoding="utf-8")
    (folder / "data.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return folder


def test_docs_rows_are_the_ones_the_example_writes() -> None:
    shown = [
        json.loads(line)
        for line in re.search(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL).group(1).splitlines()
    ]
    expected = [
        {
            "id": "bar_0",
            "lang": lang,
            "split": "test",
            "images": ["bar_0.png"],
            "answers": captions("bar", (3, 5, 9), lang),
        }
        for lang in ("en", "de", "zh")
    ]
    assert shown == expected


def test_chart_benchmark_end_to_end(tmp_path: Path, tiny_mt5_dir: Path) -> None:
    make_chart_benchmark(tmp_path / "charts", [])  # the header as the docs show it: CIDEr, BLEU, chrF++, fidelity

    proc = cli("tasks", "--task", "./charts", cwd=tmp_path)
    assert (
        proc.returncode == 0 and "test: 12 rows (de 4, en 4, zh 4)" in proc.stdout and "train: 12 rows" in proc.stdout
    ), proc.stdout + proc.stderr
    proc = cli("data", "check", "--task", "./charts", cwd=tmp_path)
    assert proc.returncode == 0 and "All annotation and image files are present." in proc.stdout, (
        proc.stdout + proc.stderr
    )

    # fine-tune a few steps on the benchmark's train split
    proc = cli(
        "train",
        "--model",
        tiny_mt5_dir,
        "--task",
        "./charts",
        "--split",
        "train",
        "--out",
        "ft",
        "--max-steps",
        "3",
        "--batch-size",
        "4",
        "--set",
        "save_every=3",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    saved = json.loads((tmp_path / "ft" / "train_config.json").read_text(encoding="utf-8"))
    assert saved["task"] == str(tmp_path / "charts") and saved["split"] == "train"
    log = [json.loads(line) for line in (tmp_path / "ft" / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    # training on the split that is evaluated is refused (it would leak the test set)
    proc = cli(
        "train",
        "--model",
        tiny_mt5_dir,
        "--task",
        "./charts",
        "--split",
        "test",
        "--out",
        "ft2",
        "--max-steps",
        "1",
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "leaks the test set" in proc.stderr

    # evaluate base model and fine-tuned adapter
    base = cli("run", "--task", "./charts", "--model", tiny_mt5_dir, "--out", "runs", cwd=tmp_path)
    assert base.returncode == 0, base.stdout + base.stderr
    tuned = cli("run", "--task", "./charts", "--model", tiny_mt5_dir, "--adapter", "ft", "--out", "runs", cwd=tmp_path)
    assert tuned.returncode == 0, tuned.stdout + tuned.stderr
    base_path, tuned_path = (tmp_path / record_path(base), tmp_path / record_path(tuned))
    record = read_record(tuned_path)
    assert record.task.name == "charts" and record.task.version == 1 and record.task.split == "test"
    assert record.task.source == str((tmp_path / "charts").resolve())
    assert record.task.n_examples == {"de": 4, "en": 4, "zh": 4}
    assert list(record.scores) == ["cider", "bleu", "chrfpp", "language_fidelity"]
    assert "sacrebleu" in record.scores["bleu"].signature and "zh:" in record.scores["chrfpp"].signature
    assert record.model.generation["num_beams"] == 3 and record.model.generation["max_new_tokens"] == 24
    assert (
        record.model.adapter is not None
        and record.provenance.data_fingerprint == read_record(base_path).provenance.data_fingerprint
    )
    assert record.scores["cider"].signature.startswith("cider|") and "zh:char" in record.scores["cider"].signature
    rows = list(read_samples(tuned_path.parent / record.samples_file))
    assert {r["prompt"] for r in rows} == {"Caption in English: ", "Caption in German: ", "Caption in Chinese: "}
    assert all(r["scores"]["cider"] >= 0 for r in rows)

    # bless the fine-tuned run, gate against it, and a leaderboard with both runs
    proc = cli("baseline", "bless", tuned_path, "--note", "first fine-tuned model", "--dir", "baselines", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    blessed = tmp_path / "baselines" / "charts" / "main.json"
    assert read_record(blessed).task.source == record.task.source
    proc = cli("gate", tuned_path, "--baseline", blessed, cwd=tmp_path)
    assert proc.returncode == 0 and "PASS" in proc.stdout, proc.stdout + proc.stderr
    proc = cli("leaderboard", "runs", "--out", "board", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    board = (tmp_path / "board" / "leaderboard.md").read_text(encoding="utf-8")
    assert "charts v1 [test] cider" in board and board.count(str(tiny_mt5_dir.name)) >= 2
    # rescoring reads the benchmark again from the path in the record
    proc = cli("score", blessed, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert read_record(blessed).scores["cider"].mean == pytest.approx(record.scores["cider"].mean)
