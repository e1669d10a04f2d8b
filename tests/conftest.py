"""Shared test fixtures: thread limits, the ../shared data (skipped cleanly when absent)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import atexit
import shutil
import tempfile

# mvleval's caches (served answers, lingua's rankings, weight-file digests) of this test session only, shared by its
# module-scoped fixtures and the subprocesses they start: no test reads what another session, or the user's own runs,
# left in ~/.cache/mvleval; every test then gets a fresh one (below), so a test that expects requests to reach its
# server gets them
_SESSION_CACHE = tempfile.mkdtemp(prefix="mvleval-test-cache-")
os.environ["MVLEVAL_CACHE_DIR"] = _SESSION_CACHE
atexit.register(shutil.rmtree, _SESSION_CACHE, ignore_errors=True)
# the Hugging Face hub cache of this test session only (each pytest-xdist worker is a session of its own): no test sees
# the models a developer downloaded (a hub id "in the local cache" is then never one by accident), and two workers
# never write one cache folder at once
_SESSION_HF_HOME = tempfile.mkdtemp(prefix="mvleval-test-hf-home-")
os.environ["HF_HOME"] = _SESSION_HF_HOME
for _name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_DATASETS_CACHE"):
    os.environ.pop(_name, None)
atexit.register(shutil.rmtree, _SESSION_HF_HOME, ignore_errors=True)
# the user data folder (where `mvleval data fetch` writes without --data-root) of this session only, and no data root
# from the developer's environment: a test that gives no --data-root sees no benchmarks unless it fetched them
_SESSION_DATA_HOME = tempfile.mkdtemp(prefix="mvleval-test-data-home-")
os.environ["XDG_DATA_HOME"] = _SESSION_DATA_HOME
os.environ.pop("MVLEVAL_DATA", None)
atexit.register(shutil.rmtree, _SESSION_DATA_HOME, ignore_errors=True)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MVLEVAL_SHARED", REPO.parent / "shared")) / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real benchmark annotation files in ../shared/data; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real annotation files not found at {SHARED_DATA} (../shared is absent)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _fresh_response_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test starts with an empty response cache of its own ($MVLEVAL_CACHE_DIR, inherited by subprocesses)."""
    folder = tmp_path_factory.mktemp("response-cache")
    monkeypatch.setenv("MVLEVAL_CACHE_DIR", str(folder))
    return folder


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files with the most `slow` tests first, then the others with the most tests first (the order within a file
    is kept): pytest-xdist (`-n auto --dist loadfile --no-loadscope-reorder`, pyproject.toml) hands files to its
    workers in this order, each worker taking the next file when it is almost done, so the long files start at once
    and the workers finish together on short ones instead of one waiting for the other's last long file. (Without
    --no-loadscope-reorder xdist would sort the files by their number of tests alone, and the demo's few long tests
    would start last.)"""
    slow: dict[Path, int] = {}
    tests: dict[Path, int] = {}
    for item in items:
        tests[item.path] = tests.get(item.path, 0) + 1
        slow[item.path] = slow.get(item.path, 0) + (item.get_closest_marker("slow") is not None)
    items.sort(key=lambda item: (-slow[item.path], -tests[item.path]))  # stable: the order within a file is kept


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


@pytest.fixture(scope="session")
def tiny_mt5_dir() -> Path:
    """A tiny mBLIP-shaped checkpoint with an mT5 LLM (like mblip-mt0-xl), built once per test session."""
    from tests.helpers import tiny_model

    return tiny_model("mblip", "mt5", seed=0)


@pytest.fixture(scope="session")
def tiny_bloom_dir() -> Path:
    """A tiny mBLIP-shaped checkpoint with a BLOOM LLM (like mblip-bloomz-7b), built once per test session."""
    from tests.helpers import tiny_model

    return tiny_model("mblip", "bloom", seed=0)
