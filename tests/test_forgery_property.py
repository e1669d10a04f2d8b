"""Property (issue #30): random edits of a record's fields or of its per-sample file's rows never give a traceback;
`score` either refuses (exit 2) or writes the numbers the benchmark's own data gives for the file's predictions, and
`gate --paired`, `baseline bless` and `report` refuse a per-sample file edited after scoring. Every command runs
in-process through `mvleval.cli.main` (the console script's entry point)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_forgery import World, copy_run, main, world  # noqa: F401  (world: the module-scoped fixture)

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 10**6)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=4,
)


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value (containers too: replacing a whole section is an edit as well)."""
    out = [path] if path else []
    if isinstance(value, dict):
        for key, child in value.items():
            out += _leaves(child, (*path, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += _leaves(child, (*path, i))
    return out


def _edit(value: Any, path: tuple[Any, ...], new: Any, delete: bool) -> None:
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = new


def _data_scores(world: World, rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """exact_match and relaxed_accuracy per language of the rows' predictions against the task's own data."""
    from mvleval.metrics.exact_match import ExactMatch, RelaxedAccuracy
    from mvleval.run.plan import RunOptions, prepare

    prepared = prepare(
        RunOptions(
            task="xgqa", model="m", data_root=world.data_root, image_root=world.image_root, languages=("en", "ru")
        )
    )
    predictions = {(r["lang"], r["id"]): r["prediction"] for r in rows}
    out: dict[str, dict[str, float]] = {}
    for metric in (ExactMatch(bootstrap_resamples=0), RelaxedAccuracy(bootstrap_resamples=0)):
        out[metric.name] = {}
        for lang in prepared.languages:
            examples = prepared.examples[lang]
            result = metric.score(
                [predictions[(lang, e.id)] for e in examples], [list(e.references) for e in examples], lang
            )
            out[metric.name][lang] = result.value  # type: ignore[assignment]
    return out


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(target=st.sampled_from(["record", "samples"]), pick=st.integers(0, 10**6), new=JSON_VALUES, delete=st.booleans())
def test_random_edits_are_refused_or_scored_from_the_data(
    world: World, target: str, pick: int, new: Any, delete: bool
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="forgery-"))
    try:
        record = copy_run(world, folder / "run")
        data = json.loads(record.read_text(encoding="utf-8"))
        samples = record.parent / data["samples_file"]
        original_samples = samples.read_bytes()
        if target == "record":
            path = _leaves(data)[pick % len(_leaves(data))]
            _edit(data, path, new, delete)
            record.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        else:
            rows = [json.loads(line) for line in original_samples.decode("utf-8").splitlines()]
            path = _leaves(rows)[pick % len(_leaves(rows))]
            _edit(rows, path, new, delete)
            samples.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        samples_changed = samples.read_bytes() != original_samples

        # the commands that read what the record claims: never a traceback; an edited per-sample file is refused
        for args in (
            ["gate", record, "--baseline", world.run, "--paired"],
            ["gate", world.run, "--baseline", record, "--paired"],
            ["baseline", "bless", record, "--note", "n", "--dir", folder / "baselines"],
            ["report", record, "--out", folder / "r.html"],
        ):
            code, text = main(*args)
            assert code in (0, 1, 2), text
            if samples_changed:
                assert code == 2, (args, text)
        code, text = main("leaderboard", record, "--out", folder / "lb")
        assert code in (0, 2), text

        # score: refused, or the data's numbers for the file's predictions
        code, text = main("score", record, "--data-root", world.data_root, "--image-root", world.image_root)
        assert code in (0, 2), text
        if code == 0:
            scored = json.loads(record.read_text(encoding="utf-8"))
            rows = [
                json.loads(line)
                for line in (record.parent / scored["samples_file"]).read_text(encoding="utf-8").splitlines()
            ]
            expected = _data_scores(world, rows)
            for metric, per_lang in expected.items():
                assert scored["scores"][metric]["per_lang"] == pytest.approx(per_lang), (metric, text)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
