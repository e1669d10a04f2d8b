"""--json on tasks, run, score, gate, data check and leaderboard (issue 29): stdout is exactly one JSON document that
validates against the command's schema shipped in mvleval/schemas/; messages go to stderr; exit codes are unchanged,
and an error (exit 2) leaves stdout empty (docs/json-output.md)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import cli

SCHEMAS = ("tasks", "run", "score", "gate", "data-check", "data-fetch", "leaderboard")


def _schema_registry() -> Any:
    from referencing import Registry, Resource

    registry = Registry()
    for name in SCHEMAS:
        schema = json.loads((resources.files("mvleval") / "schemas" / f"{name}.json").read_text(encoding="utf-8"))
        registry = registry.with_resource(schema["$id"], Resource.from_contents(schema))
    return registry


def validate(command: str, stdout: str) -> dict[str, Any]:
    """stdout is one JSON document (nothing before or after it) that validates against the command's schema."""
    import jsonschema

    decoder = json.JSONDecoder()
    document, end = decoder.raw_decode(stdout.lstrip())
    assert stdout.lstrip()[end:].strip() == "", f"more than one JSON document on stdout: {stdout[end:][:200]!r}"
    registry = _schema_registry()
    schema = registry.contents(f"urn:mvleval:schema:{command}")
    jsonschema.Draft202012Validator(schema, registry=registry).validate(document)
    assert document["schema"] == f"mvleval/{command}/v1"
    return document


@dataclass(frozen=True)
class World:
    model: Path
    data_root: Path
    image_root: Path
    run: Path  # a finished xGQA run of the tiny model (en, de)
    perfect: Path  # the same examples with every prediction replaced by its reference


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_mt5_dir: Path) -> World:
    from mvleval.demo.command import build_demo_data
    from tests.helpers import invoke, perfect_copy, run_records

    root = tmp_path_factory.mktemp("json")
    data_root, image_root = build_demo_data(root / "demo", n_train=0, n_test=6)
    out = root / "runs"
    r = invoke(
        "run",
        "--task",
        "xgqa",
        "--model",
        tiny_mt5_dir,
        "--data-root",
        data_root,
        "--image-root",
        image_root,
        "--lang",
        "en",
        "--lang",
        "de",
        "--out",
        out,
        "--num-beams",
        "1",
        "--max-new-tokens",
        "3",
    )
    assert r.exit_code == 0, r.output
    [run] = run_records(out)
    perfect = perfect_copy(run, root / "baselines")
    assert invoke("score", perfect).exit_code == 0
    return World(tiny_mt5_dir, data_root, image_root, run, perfect)


def test_schemas_are_valid_and_shipped() -> None:
    import jsonschema

    for name in SCHEMAS:
        schema = json.loads((resources.files("mvleval") / "schemas" / f"{name}.json").read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert '"schemas/*.json"' in pyproject
    assert all(
        f"schemas/{name}.json" in (Path(__file__).parent.parent / "docs/json-output.md").read_text() for name in SCHEMAS
    )


def test_tasks_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "tasks", "--json")
    assert code == 0
    doc = validate("tasks", out)
    by_name = {t["name"]: t for t in doc["tasks"]}
    assert {"xgqa", "xm3600", "maxm", "marvl"} <= set(by_name)
    assert by_name["xgqa"]["metrics"][0] == "exact_match" and "language_fidelity" in by_name["xgqa"]["metrics"]
    assert by_name["xgqa"]["source"] is None


def test_gate_json_through_the_installed_console_script(world: World) -> None:
    """The installed `mvleval` script itself: exit 1 on the regression, stdout exactly the gate's JSON document."""
    import os
    import subprocess

    exe = shutil.which("mvleval")
    assert exe, "the mvleval console script is not installed (pip install -e .)"
    result = subprocess.run(
        [exe, "gate", str(world.run), "--baseline", str(world.perfect), "--max-drop", "0", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    doc = validate("gate", result.stdout)
    assert doc["passed"] is False and "Traceback" not in result.stderr


def test_run_json(capsys: pytest.CaptureFixture[str], world: World, tmp_path: Path) -> None:
    out_dir = tmp_path / "runs"
    code, out, err = cli(
        capsys,
        "run",
        "--task",
        "xgqa",
        "--model",
        world.model,
        "--data-root",
        world.data_root,
        "--image-root",
        world.image_root,
        "--lang",
        "en",
        "--out",
        out_dir,
        "--num-beams",
        "1",
        "--max-new-tokens",
        "3",
        "--json",
    )
    assert code == 0, err
    doc = validate("run", out)
    [run] = doc["runs"]
    assert Path(run["record"]).is_file() and Path(run["samples_file"]).is_file()
    assert run["status"] == "evaluated" and run["headline_metric"] == "exact_match" and doc["gate"] is None
    assert set(run["task"]["n_examples"]) == {"en"} and run["task"]["n_examples"]["en"] > 0
    assert set(run["scores"]["exact_match"]["per_lang"]) == {"en"}
    # with --gate, the verdicts come in the same document, and the exit code still says regression
    code, out, err = cli(
        capsys,
        "run",
        "--task",
        "xgqa",
        "--model",
        world.model,
        "--data-root",
        world.data_root,
        "--image-root",
        world.image_root,
        "--lang",
        "en",
        "--lang",
        "de",
        "--out",
        out_dir,
        "--num-beams",
        "1",
        "--max-new-tokens",
        "3",
        "--gate",
        world.perfect,
        "--json",
    )
    assert code == 1, err
    doc = validate("run", out)
    assert doc["gate"]["passed"] is False and "REGRESSION" not in out


def test_score_json(capsys: pytest.CaptureFixture[str], world: World, tmp_path: Path) -> None:
    record = tmp_path / world.run.name
    shutil.copy(world.run, record)
    samples = json.loads(record.read_text())["samples_file"]
    shutil.copy(world.run.parent / samples, tmp_path / samples)
    code, out, err = cli(capsys, "score", record, "--json")
    assert code == 0, err
    doc = validate("score", out)
    assert doc["runs"][0]["record"] == str(record) and doc["runs"][0]["status"] == "rescored"


def test_gate_json(capsys: pytest.CaptureFixture[str], world: World) -> None:
    code, out, err = cli(capsys, "gate", world.run, "--baseline", world.run, "--json")
    assert code == 0, err
    doc = validate("gate", out)
    assert doc["passed"] is True and all(c["verdict"] == "pass" for c in doc["cells"])
    code, out, err = cli(capsys, "gate", world.run, "--baseline", world.perfect, "--json", "--paired")
    assert code == 1, err
    doc = validate("gate", out)
    assert doc["passed"] is False and doc["paired"] is True
    assert {c["lang"] for c in doc["cells"]} == {"de", "en"}


def test_data_check_json(capsys: pytest.CaptureFixture[str], world: World, tmp_path: Path) -> None:
    code, out, err = cli(
        capsys,
        "data",
        "check",
        "--task",
        "xgqa",
        "--data-root",
        world.data_root,
        "--image-root",
        world.image_root,
        "--lang",
        "en",
        "--json",
    )
    assert code == 0, err
    doc = validate("data-check", out)
    assert doc["ok"] is True and doc["languages"][0]["n_examples"] > 0
    # problems: still one document, exit 1
    code, out, err = cli(
        capsys,
        "data",
        "check",
        "--task",
        "xgqa",
        "--data-root",
        world.data_root,
        "--image-root",
        tmp_path / "nowhere",
        "--lang",
        "en",
        "--json",
    )
    assert code == 1
    doc = validate("data-check", out)
    assert doc["ok"] is False and doc["languages"][0]["n_missing_images"] > 0


def test_leaderboard_json(capsys: pytest.CaptureFixture[str], world: World, tmp_path: Path) -> None:
    code, out, err = cli(capsys, "leaderboard", world.run, world.perfect, "--out", tmp_path / "lb", "--json")
    assert code == 0, err
    doc = validate("leaderboard", out)
    assert doc["n_records"] == 2 and all(Path(p).is_file() for p in doc["written"])
    column_ids = {c["id"] for c in doc["columns"]}
    row_ids = {r["id"] for r in doc["rows"]}
    assert doc["cells"] and all(c["row"] in row_ids and c["column"] in column_ids for c in doc["cells"])
    assert len(doc["superseded"]) == 1  # the same model and column: the newer record wins


@pytest.mark.parametrize(
    "args",
    [
        ("gate", "missing.json", "--baseline", "missing.json", "--json"),
        ("leaderboard", "no-such-folder", "--json"),
        ("tasks", "--task", "no-such-bench.jsonl", "--json"),
        ("score", "missing.json", "--json"),
    ],
)
def test_errors_with_json_leave_stdout_empty(capsys: pytest.CaptureFixture[str], args: tuple[str, ...]) -> None:
    code, out, err = cli(capsys, *args)
    assert code == 2 and out == "" and err.startswith("error:") and "Traceback" not in err


def test_a_per_sample_file_with_a_byte_order_mark_is_read(
    capsys: pytest.CaptureFixture[str], world: World, tmp_path: Path
) -> None:
    """Issue 29 (BOM): the JSON Lines reader of per-sample files reads a file re-saved by a Windows editor."""
    record = tmp_path / world.run.name
    shutil.copy(world.run, record)
    samples = json.loads(record.read_text())["samples_file"]
    (tmp_path / samples).write_bytes(b"\xef\xbb\xbf" + (world.run.parent / samples).read_bytes())
    code, out, err = cli(capsys, "score", record, "--json")
    assert code == 0, err
    assert (
        validate("score", out)["runs"][0]["scores"]
        == validate("score", cli(capsys, "score", world.run, "--json")[1])["runs"][0]["scores"]
    )
