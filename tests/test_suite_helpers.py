"""The suite's own plumbing for speed (issue 26): tiny checkpoints built once per session, keyed by the builder's
inputs, and the files holding the most `slow` tests handed to pytest-xdist's workers first."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests import helpers
from tests.conftest import pytest_collection_modifyitems


def test_a_tiny_model_is_built_once_per_set_of_builder_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    import mvleval.testing.factory

    monkeypatch.setattr(helpers, "_TINY_MODELS", {})
    built: list[tuple[str, dict[str, Any]]] = []
    real = mvleval.testing.factory.build_tiny_checkpoint

    def counting(out_dir: Path, kind: str, **options: Any) -> Path:
        built.append((kind, options))
        return real(out_dir, kind, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(mvleval.testing.factory, "build_tiny_checkpoint", counting)
    first = helpers.tiny_model("mblip", "bloom", seed=0)
    assert helpers.tiny_model("mblip", "bloom", seed=0) == first  # the same inputs: the same folder, not rebuilt
    other = helpers.tiny_model("mblip", "bloom", seed=1)
    assert other != first and built == [("bloom", {"seed": 0}), ("bloom", {"seed": 1})]
    weights = sorted(p.name for p in first.glob("*.safetensors"))
    assert weights and all((first / w).read_bytes() != (other / w).read_bytes() for w in weights)
    with pytest.raises(ValueError, match="unknown builder"):
        helpers.tiny_model("gguf", "bloom")


def _item(path: str, slow: bool) -> Any:
    return SimpleNamespace(path=Path(path), name=f"{path}-{slow}", get_closest_marker=lambda name: slow or None)


def test_files_with_the_most_slow_tests_are_handed_out_first_and_keep_their_order() -> None:
    """Files by their number of `slow` tests, then by their number of tests (the longest first: pytest-xdist's workers
    take the next file as they finish one); a file's own tests keep their order, and ties keep the collected order."""
    items = [  # as pytest collects them: a file's tests together, in the file's order
        _item("tests/test_a.py", False),
        _item("tests/test_b.py", False),
        _item("tests/test_b.py", True),
        _item("tests/test_b.py", False),
        _item("tests/test_c.py", False),
        _item("tests/test_d.py", True),
        _item("tests/test_e.py", True),
        _item("tests/test_e.py", True),
        _item("tests/test_f.py", False),
        _item("tests/test_f.py", False),
        _item("tests/test_f.py", False),
    ]
    e, b, d, f, a, c = items[6:8], items[1:4], items[5:6], items[8:11], items[0:1], items[4:5]
    expected = [*e, *b, *d, *f, *a, *c]
    pytest_collection_modifyitems(None, None, items)  # type: ignore[arg-type]
    assert [i.name for i in items] == [i.name for i in expected]
