"""The run's rooms (mvleval/run/, issue 22 item 2): one job a module, short functions, one module that reads and
writes the per-sample row, imports only forwards. The byte-identity of what they write is proved by the golden
tests (test_model_spec's baselines, test_reliability's resume and data-parallel runs, test_demo)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from mvleval.run.files import SampleRow, samples_text

RUN = Path(__file__).resolve().parent.parent / "mvleval" / "run"
ROOMS = sorted(p for p in RUN.glob("*.py") if p.name != "__init__.py")


def _functions(path: Path) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


@pytest.mark.parametrize("path", ROOMS, ids=lambda p: p.name)
def test_no_function_is_longer_than_80_lines_or_takes_more_than_12_parameters(path: Path) -> None:
    assert _functions(path), f"{path} has no functions"
    for fn in _functions(path):
        n_lines = fn.end_lineno - fn.lineno + 1
        n_params = len(fn.args.posonlyargs) + len(fn.args.args) + len(fn.args.kwonlyargs)
        assert n_lines <= 80, f"{path.name}:{fn.lineno} {fn.name} has {n_lines} lines"
        assert n_params <= 12, f"{path.name}:{fn.lineno} {fn.name} takes {n_params} parameters"


def test_evaluate_reads_in_one_screen() -> None:
    (fn,) = [f for f in _functions(RUN / "evaluate.py") if f.name == "evaluate"]
    assert fn.end_lineno - fn.lineno + 1 <= 60


def _imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{a.name}" for a in node.names)
            names.add(node.module)
    return names


def test_only_files_py_reads_and_writes_sample_rows() -> None:
    row_io = {
        "mvleval.record.schema.sample_lines",
        "mvleval.record.schema.read_samples",
        "mvleval.record.schema.SampleWriter",
    }
    users = sorted(p.name for p in ROOMS if _imported_names(p) & row_io)
    assert users == ["files.py"]


# each room imports only the rooms before it on a run's path (no circle; files and score know nothing of the run)
ORDER = ["files", "score", "plan", "generate", "rank_ahead", "rescore", "evaluate"]


@pytest.mark.parametrize("room", ORDER)
def test_rooms_import_only_forwards(room: str) -> None:
    imported = {n.split(".")[2] for n in _imported_names(RUN / f"{room}.py") if n.startswith("mvleval.run.")}
    later = set(ORDER[ORDER.index(room) :])
    assert not imported & later, f"run/{room}.py imports {sorted(imported & later)}"


def test_a_sample_row_writes_only_the_fields_it_has_and_reads_back() -> None:
    row = SampleRow(
        id="7", lang="de", prompt="Q?", prediction="<think>x</think>ja", references=["ja"], images=["a.jpg"]
    )
    plain = json.loads(samples_text([row]))
    assert sorted(plain) == ["id", "images", "lang", "prediction", "prompt", "references"]
    assert SampleRow.from_json(plain) == row
    row.cached, row.answer, row.cluster = True, "ja", "g1"
    row.scores["exact_match"] = 1.0
    text = samples_text([row])
    assert text == (
        '{"answer": "ja", "cached": true, "cluster": "g1", "id": "7", "images": ["a.jpg"], "lang": "de", '
        '"prediction": "<think>x</think>ja", "prompt": "Q?", "references": ["ja"], "scores": {"exact_match": 1.0}}\n'
    )
    # a resumed row keeps what generation wrote (the cache mark); its answer and scores are computed again
    again = SampleRow.from_json(json.loads(text))
    assert (again.cached, again.answer, again.scores) == (True, None, {})


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mvleval.demo.command import build_demo_data

    data_root, _ = build_demo_data(tmp_path_factory.mktemp("demo"))
    return data_root


@pytest.mark.parametrize("task", sorted(p.name for p in (RUN.parents[1] / "results" / "baselines").iterdir()))
def test_score_writes_a_committed_baseline_back_byte_for_byte(
    task: str, demo_data: Path, tmp_path: Path, capsys
) -> None:
    """`mvleval score` on a committed baseline (written by the run before the split) re-reads the demo data, scores
    through run/score.py and writes the per-sample file through run/files.py: the same bytes and the same scores."""
    from tests.helpers import cli

    committed = RUN.parents[1] / "results" / "baselines" / task
    for name in ("demo.json", "demo.samples.jsonl"):
        (tmp_path / name).write_bytes((committed / name).read_bytes())
    code, out, err = cli(capsys, "score", tmp_path / "demo.json", "--data-root", demo_data)
    assert code == 0, out + err
    assert (tmp_path / "demo.samples.jsonl").read_bytes() == (committed / "demo.samples.jsonl").read_bytes()
    old, new = (json.loads((d / "demo.json").read_text(encoding="utf-8")) for d in (committed, tmp_path))
    assert new["scores"] == old["scores"] and new["samples_sha256"] == old["samples_sha256"]
