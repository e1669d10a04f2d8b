"""One JSON Lines reader (mvleval/util/jsonl.py) behind every JSONL file mvleval reads: lines split at newlines only,
so the line and paragraph separators that JSON strings may hold unescaped do not cut a row in two."""

from __future__ import annotations

import json
from pathlib import Path

from mvleval.record.schema import read_samples
from mvleval.run.files import SampleRow, samples_text
from mvleval.util.jsonl import BadLine, jsonl_text, parse_lines
from tests.test_file_task import YESNO_HEADER, YESNO_ROWS, cli, write_benchmark

#: characters str.splitlines() breaks on that json.dumps(ensure_ascii=False) leaves unescaped inside a string
SEPARATORS = "\u2028\u2029\x85"


def test_lines_are_numbered_split_at_newlines_only_and_a_torn_last_line_is_marked() -> None:
    rows = [{"q": f"a{SEPARATORS}b"}, {"q": "zwei"}]
    text = jsonl_text(rows)
    assert text.count("\n") == 2 and SEPARATORS in text  # written unescaped, one line each
    assert list(parse_lines(text)) == [(1, rows[0]), (2, rows[1])]
    parsed = list(parse_lines('{"a": 1}\n\n  \n{"a": \n{"a": 2}\n{"a": 3'))
    assert [n for n, _ in parsed] == [1, 4, 5, 6]
    bad_middle, torn = parsed[1][1], parsed[3][1]
    assert isinstance(bad_middle, BadLine) and not bad_middle.last and "column" in bad_middle.reason
    assert isinstance(torn, BadLine) and torn.last
    assert parsed[2] == (5, {"a": 2})


def test_a_benchmark_row_holding_a_line_separator_is_one_row(tmp_path: Path) -> None:
    rows = [dict(r) for r in YESNO_ROWS]
    rows[0]["question"] = f"Beide Bilder{SEPARATORS[0]}sind rot."
    bench = write_benchmark(tmp_path / "sep-bench", YESNO_HEADER, rows)
    assert SEPARATORS[0] in (bench / "data.jsonl").read_text(encoding="utf-8")
    proc = cli("tasks", "--task", bench, "--json")
    assert proc.returncode == 0, proc.stderr
    assert "not valid JSON" not in proc.stderr
    (task,) = json.loads(proc.stdout)["tasks"]
    assert task["languages"] == ["de", "tr"]


def test_a_per_sample_row_holding_a_line_separator_reads_back(tmp_path: Path) -> None:
    row = SampleRow(
        id="1",
        lang="de",
        prompt="p",
        prediction=f"ja{SEPARATORS}nein",
        references=["ja"],
        images=["a.png"],
    )
    path = tmp_path / "run.samples.jsonl"
    path.write_text(samples_text([row, row]), encoding="utf-8")
    assert list(read_samples(path)) == [row.to_json(), row.to_json()]
