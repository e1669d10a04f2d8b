"""`mvleval data fetch` through a local stand-in of the Hugging Face hub (tests/hubserver.py): pinned commits, hashes
refused with both named, resume after a kill, --lang, offline, terms, --dry-run, --list, `data lock`, and a fetch
followed by `mvleval run` for every built-in task."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mvleval.data.fetch import STATE_FILE, load_lock
from tests import hubmirrors as mirrors
from tests.helpers import cli, read_jsonl, run_cli
from tests.hubserver import Hub, hub_fixture

LOCK = load_lock()
#: (task, language fetched and run); maxm's Hebrew asked for as `he`, the mirror's and the task's `iw`
RUN_CASES = [("xgqa", "de"), ("xm3600", "de"), ("xflickrco", "de"), ("marvl", "id"), ("xvnli", "ar"), ("maxm", "fr")]
SMALL_LANGS = {
    "xgqa": ["de", "en", "zh"],
    "xm3600": ["de", "fr"],
    "xflickrco": ["de", "ja"],
    "marvl": ["id", "zh"],
    "xvnli": ["ar", "en"],
    "maxm": ["fr", "iw"],
}


def _serve_small(hub: Hub) -> None:
    for task, langs in SMALL_LANGS.items():
        hub.add(LOCK[task].repo, mirrors.small_repo(task, langs), LOCK[task].revision)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    """A started local hub; huggingface_hub pointed at it (endpoint, a temp cache, online)."""
    yield from hub_fixture(tmp_path, monkeypatch)


def _fetch(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, str, str]:
    return cli(capsys, "data", "fetch", "--data-root", root, *args)


def _state(root: Path) -> dict:
    return json.loads((root / STATE_FILE).read_text())


def _file_gets(hub: Hub) -> dict[str, int]:
    return {k: v for k, v in hub.gets.items() if v}


# ------------------------------------------------------------------------------------------------ fetch, then run
@pytest.mark.parametrize(("task", "lang"), RUN_CASES)
def test_fetch_then_run(
    task: str, lang: str, hub: Hub, tmp_path: Path, tiny_mt5_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _serve_small(hub)
    root = tmp_path / "data"
    code, out, err = _fetch(capsys, root, "--task", task, "--lang", lang, "--accept-terms")
    assert code == 0, out + err
    assert f"{task}: wrote {lang} from {LOCK[task].repo}@" in out
    # only this language's file(s) crossed the wire
    assert all(f"/data/{lang}" in k for k in _file_gets(hub)), hub.gets
    code, out, err = cli(
        capsys,
        "run", "--task", task, "--lang", lang, "--data-root", root, "--model", tiny_mt5_dir,
        "--out", tmp_path / "runs", "--limit", "2", "--max-new-tokens", "2", "--batch-size", "2",
    )  # fmt: skip
    assert code == 0, out + err
    from mvleval.record.schema import read_record

    records = [p for p in (tmp_path / "runs").rglob("*.json") if p.name != "manifest.json"]
    assert records, out
    # the run record says where the data came from: the mirror and its commit, per language the files' hashes
    source = read_record(records[0]).provenance.data_source
    assert source is not None and source["repo"] == LOCK[task].repo
    assert source["revision"] == hub.branches[LOCK[task].repo]["main"]
    assert set(source["languages"]) == {"iw" if lang == "he" else lang}
    # the data check the user would run agrees: every annotation and image file is there
    code, out, err = cli(capsys, "data", "check", "--task", task, "--lang", lang, "--data-root", root)
    assert code == 0, out + err


def test_fetch_records_source_and_accepts_hebrew_alias(
    hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _serve_small(hub)
    root = tmp_path / "data"
    code, out, err = _fetch(capsys, root, "--task", "maxm", "--lang", "he", "--accept-terms")
    assert code == 0, out + err
    assert "NOT PINNED BY MVLEVAL" in out  # floschne/maxm's commit is not known to mvleval: said loudly
    entry = _state(root)["tasks"]["maxm"]
    assert entry["repo"] == "floschne/maxm" and entry["revision"] == hub.branches["floschne/maxm"]["main"]
    assert entry["pinned"] == "resolved main"
    notes = " ".join(entry["languages"]["iw"]["notes"])
    assert "merged 2 yes/no questions" in notes
    release = json.loads((root / "maxm/maxm_v1_release/maxm_v1_iw.json").read_text())
    questions = [p["question"] for a in release["annotations"] for p in a["qa_pairs"]]
    assert len(questions) == 5 and sum("yes/no" in q for q in questions) == 2
    # main moves on: the data root keeps the commit it resolved (and says it is not mvleval's pin)
    hub.add("floschne/maxm", mirrors.small_repo("maxm", ["fr", "iw", "zh"]))
    code, out, err = _fetch(capsys, root, "--task", "maxm", "--lang", "fr")
    assert code == 0, out + err
    assert _state(root)["tasks"]["maxm"]["revision"] == entry["revision"]
    assert "the commit this data root resolved before" in out


def test_maxm_without_yesno_split_is_refused(hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = mirrors.small_repo("maxm", ["fr"])
    del files["data/fr_yesno-00000-of-00001.parquet"]
    hub.add("floschne/maxm", files)
    code, out, err = _fetch(capsys, tmp_path / "d", "--task", "maxm", "--lang", "fr", "--accept-terms")
    assert code == 2 and "fr_yesno" in err and "Traceback" not in err


def test_images_shared_between_tasks_are_written_once(
    hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _serve_small(hub)
    root = tmp_path / "data"
    assert _fetch(capsys, root, "--task", "xflickrco", "--lang", "de", "--accept-terms")[0] == 0
    image = root / "images/flickr30k/1007129816.jpg"
    before = image.stat().st_mtime_ns
    code, out, _ = _fetch(capsys, root, "--task", "xvnli", "--lang", "ar", "--accept-terms")
    assert code == 0
    assert image.stat().st_mtime_ns == before
    assert "already there (same bytes)" in out
    # COCO rows keep IGLUE's integer id and file name; Flickr30k rows a string id
    rows = read_jsonl(root / "iglue/datasets/xFlickrCO/annotations/de/test.jsonl")
    assert {"id": 391895, "img_path": "COCO_val2014_000000391895.jpg"}.items() <= rows[1].items()
    assert rows[0]["id"] == "1007129816"


# ---------------------------------------------------------------------------------------------- hashes refused
def test_file_not_matching_the_hubs_hash_is_refused(
    hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _serve_small(hub)
    key = "floschne/xgqa/data/de-00000-of-00001.parquet"
    good = hub.commits["floschne/xgqa"][LOCK["xgqa"].revision]["data/de-00000-of-00001.parquet"]
    hub.corrupt[key] = good[:-10] + b"0123456789"
    root = tmp_path / "data"
    code, out, err = _fetch(capsys, root, "--task", "xgqa", "--lang", "de")
    assert code == 2, out + err
    import hashlib

    text = " ".join(err.split())
    assert hashlib.sha256(good).hexdigest() in text and hashlib.sha256(hub.corrupt[key]).hexdigest() in text
    assert "Traceback" not in err
    assert not (root / "xgqa").exists()  # never used
    assert not list((tmp_path / "hf-cache").rglob("de-00000-of-00001.parquet"))  # and not kept in the cache
    # the hub serves the right bytes again: the next fetch downloads and writes them
    del hub.corrupt[key]
    assert _fetch(capsys, root, "--task", "xgqa", "--lang", "de")[0] == 0


def test_file_not_matching_the_lock_is_refused(
    hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    from mvleval.data import fetch

    _serve_small(hub)
    raw = yaml.safe_load(fetch.lock_path().read_text())
    raw["tasks"]["xgqa"]["hashes"] = {"data/de-00000-of-00001.parquet": {"sha256": "ab" * 32, "size": 1}}
    lock = tmp_path / "lock.yaml"
    lock.write_text(yaml.safe_dump(raw))
    monkeypatch.setattr(fetch, "lock_path", lambda: lock)
    code, out, err = _fetch(capsys, tmp_path / "data", "--task", "xgqa", "--lang", "de")
    assert code == 2
    assert "ab" * 32 in err.replace("\n", "") and "mvleval's lock" in " ".join(err.split())


# --------------------------------------------------------------------------------------- resume, --lang, offline
def test_killed_fetch_resumes_without_downloading_again(hub: Hub, tmp_path: Path) -> None:
    """The console script, killed while downloading the second language, resumes: the first is not fetched again."""
    _serve_small(hub)
    root = tmp_path / "data"
    second = "floschne/xgqa/data/en-00000-of-00001.parquet"
    hub.stall.add(second)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    exe = shutil.which("mvleval")
    assert exe
    args = [exe, "data", "fetch", "--task", "xgqa", "--lang", "de", "--lang", "en", "--data-root", str(root)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert hub.stalled.wait(120), "the fetch never reached the second file"
        time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert (root / "xgqa/data/few_shot/de/test.json").is_file()
    assert not (root / "xgqa/data/few_shot/en").exists()
    assert hub.gets["floschne/xgqa/data/de-00000-of-00001.parquet"] == 1
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "already in the data root from this commit: de" in result.stdout
    assert hub.gets["floschne/xgqa/data/de-00000-of-00001.parquet"] == 1  # not downloaded again
    assert (root / "xgqa/data/few_shot/en/test.json").is_file()
    assert result.stderr == ""  # quiet: no library noise, no progress bars off a terminal


def test_offline_second_fetch_does_nothing(
    hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    _serve_small(hub)
    root = tmp_path / "data"
    assert _fetch(capsys, root, "--task", "xgqa", "--lang", "de")[0] == 0
    seen = len(hub.requests)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    code, out, err = _fetch(capsys, root, "--task", "xgqa", "--lang", "de")
    assert code == 0, out + err
    assert "nothing to do" in out and len(hub.requests) == seen
    # a language never fetched cannot come from nowhere: one clear error
    code, out, err = _fetch(capsys, root, "--task", "xgqa", "--lang", "zh")
    assert code == 2 and "HF_HUB_OFFLINE" in err and "Traceback" not in err
    # a read-only data root shared by a team serves a second fetch unchanged
    os.chmod(root / ".mvleval", 0o555)
    try:
        assert _fetch(capsys, root, "--task", "xgqa", "--lang", "de")[0] == 0
    finally:
        os.chmod(root / ".mvleval", 0o755)


def test_dry_run_and_terms(hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _serve_small(hub)
    root = tmp_path / "data"
    code, out, err = _fetch(capsys, root, "--task", "xvnli", "--lang", "ar", "--dry-run")
    assert code == 0, err
    assert "floschne/xvnli@" in out and "licence:" in out and "terms:" in out and "free disk" in out
    assert not root.exists() and not _file_gets(hub)
    code, out, err = _fetch(capsys, root, "--task", "xvnli", "--lang", "ar")
    assert code == 2 and "--accept-terms" in err and "Flickr30k" in err
    assert not _file_gets(hub)
    assert _fetch(capsys, root, "--task", "xvnli", "--lang", "ar", "--accept-terms")[0] == 0
    assert "xvnli" in _state(root)["accepted_terms"]
    assert _fetch(capsys, root, "--task", "xvnli", "--lang", "en")[0] == 0  # asked once


def test_list_shows_every_source(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "data", "fetch", "--list")
    assert code == 0
    for name, src in LOCK.items():
        assert f"{name}: {src.repo}@" in out
    assert "8d3e5665526c55a5855cd6ddfbaba2032bc7cee4" in out and "CC BY-NC 4.0" in out
    assert "not pinned by mvleval" in out


def test_revision_override_is_recorded(hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _serve_small(hub)
    other = hub.add("floschne/xgqa", mirrors.small_repo("xgqa", ["de"]), "1" * 40)
    root = tmp_path / "data"
    assert _fetch(capsys, root, "--task", "xgqa", "--lang", "de")[0] == 0
    code, out, err = _fetch(capsys, root, "--task", "xgqa", "--lang", "de", "--revision", other)
    assert code == 0, err
    assert "NOT the pinned commit" in out
    entry = _state(root)["tasks"]["xgqa"]
    assert entry["revision"] == other and entry["pinned"] == "--revision"
    code, _, err = _fetch(capsys, root, "--task", "xgqa", "--revision", "main")
    assert code == 2 and "40 hex" in err


# --------------------------------------------------------------------------------------------- snapshot sources
def test_snapshot_sources_keep_the_repo_layout(hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub.add(
        "ByteDance/MTVQA",
        {f"data/test-0000{i}-of-00002.parquet": mirrors.parquet([{"id": i}]) for i in range(2)}
        | {"data/train-00000-of-00001.parquet": b"not needed"},
        LOCK["mtvqa"].revision,
    )
    hub.add("CohereLabs/kaleidoscope", {"data/train-00000-of-00001.parquet": b"meta", "data.zip": b"PK zip"})
    hub.add(
        "neulab/PangeaBench-m3exam",
        {"data/thai-00000-of-00001.parquet": b"th", "data/chinese-00000-of-00001.parquet": b"zh"},
    )
    root = tmp_path / "data"
    assert _fetch(capsys, root, "--task", "mtvqa", "--accept-terms")[0] == 0
    assert sorted(p.name for p in (root / "mtvqa/data").iterdir()) == [
        "test-00000-of-00002.parquet",
        "test-00001-of-00002.parquet",
    ]
    assert _fetch(capsys, root, "--task", "kaleidoscope", "--accept-terms")[0] == 0
    assert (root / "kaleidoscope/data.zip").read_bytes() == b"PK zip"
    assert _fetch(capsys, root, "--task", "m3exam", "--lang", "th")[0] == 0
    assert [p.name for p in (root / "m3exam/data").iterdir()] == ["thai-00000-of-00001.parquet"]
    code, out, err = _fetch(capsys, root, "--task", "kaleidoscope", "--lang", "de")
    assert code == 0 and "not split by language" in out and "nothing to do" in out


# ---------------------------------------------------------------------------------------------- the lock command
def test_data_lock_pins_commit_and_hashes(hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mvleval.data import fetch

    _serve_small(hub)
    lock = tmp_path / "sources.lock.yaml"
    lock.write_text(fetch.lock_path().read_text())
    code, out, err = cli(capsys, "data", "lock", "--task", "marvl", "--lock", lock)
    assert code == 0, err
    entry = load_lock(lock)["marvl"]
    assert entry.revision == hub.branches["floschne/marvl"]["main"]
    import hashlib

    files = hub.commits["floschne/marvl"][entry.revision]
    assert entry.hashes == {p: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for p, b in files.items()}
    assert load_lock(lock)["xgqa"] == LOCK["xgqa"]  # other tasks untouched
    assert lock.read_text().startswith("# Where `mvleval data fetch`")


# ------------------------------------------------------------------------------ same examples as ../shared/data
def _upstream_examples(task: str, root: Path, lang: str, split: str) -> list[tuple[str, tuple[str, ...], str]]:
    from mvleval.benchmarks.registry import load_task

    return [(e.id, e.references, e.prompt) for e in load_task(task).examples(root, root / "images", lang, split)]


def test_fetched_examples_equal_the_upstream_files(
    hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str], shared_data: Path
) -> None:
    """Mirrors built from the published annotation files in ../shared/data (every language shipped there) give, after fetch, the same examples
    (ids where the mirror keeps them, references, labels, prompts) as the upstream files; the xflickrco en repair
    gives Flickr30k's 1000 x 5 references."""
    iglue = shared_data / "iglue" / "datasets"
    xf = {lang: read_jsonl(iglue / f"xFlickrCO/annotations/{lang}/test.jsonl") for lang in ("de", "en", "ja", "zh")}
    hub.add(
        "floschne/xflickrco",
        {mirrors.shard(k): mirrors.parquet(mirrors.xflickrco_rows(v)) for k, v in xf.items()},
        LOCK["xflickrco"].revision,
    )
    hub.raw["/e-bug/iglue/main/datasets/flickr30k/annotations/test_ann.jsonl"] = (
        iglue / "flickr30k/annotations/test_ann.jsonl"
    ).read_bytes()
    xv = {lang: read_jsonl(iglue / f"XVNLI/annotations/{lang}/test.jsonl") for lang in ("ar", "en")}
    hub.add("floschne/xvnli", {mirrors.shard(k): mirrors.parquet(mirrors.xvnli_rows(v)) for k, v in xv.items()})
    mv = {lang: read_jsonl(iglue / f"marvl/zero_shot/annotations/marvl-{lang}.jsonl") for lang in ("id", "zh")}
    hub.add("floschne/marvl", {mirrors.shard(k): mirrors.parquet(mirrors.marvl_rows(v)) for k, v in mv.items()})
    gq = {
        lang: json.loads((shared_data / f"xgqa/data/few_shot/{lang}/dev.json").read_text())
        for lang in ("de", "en", "zh")
    }
    hub.add(
        "floschne/xgqa",
        {mirrors.shard(k): mirrors.parquet(mirrors.xgqa_rows(v)) for k, v in gq.items()},
        LOCK["xgqa"].revision,
    )
    root = tmp_path / "data"
    for task, langs in (("xflickrco", xf), ("xvnli", xv), ("marvl", mv), ("xgqa", gq)):
        args = [a for lang in langs for a in ("--lang", lang)]
        code, out, err = _fetch(capsys, root, "--task", task, "--accept-terms", *args)
        assert code == 0, out + err
        for lang in langs:
            ours = _upstream_examples(task, root, lang, "test")
            theirs = _upstream_examples(task, shared_data, lang, "dev" if task == "xgqa" else "test")
            if task in ("xgqa", "xvnli"):  # the mirror has no id column: ids are synthesized, and said so
                assert "ids are '<lang>-<row>'" in out
                ours, theirs = [e[1:] for e in ours], [e[1:] for e in theirs]
            assert ours == theirs, (task, lang)
    # the repaired English set is Flickr30k test: 1000 images with 5 references each
    en = _upstream_examples("xflickrco", root, "en", "test")
    assert len(en) == 1000 and {len(e[1]) for e in en} == {5}
    assert "REPAIRED" in " ".join(_state(root)["tasks"]["xflickrco"]["languages"]["en"]["notes"])
    # every image the fetched annotations name is on disk, as the mirror stores it
    code, out, err = cli(capsys, "data", "check", "--task", "marvl", "--data-root", root, "--lang", "zh")
    assert code == 0, out + err


def test_json_document_validates(hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import resources

    import jsonschema

    schema = json.loads((resources.files("mvleval") / "schemas" / "data-fetch.json").read_text(encoding="utf-8"))
    _serve_small(hub)
    root = tmp_path / "data"
    code, out, err = _fetch(capsys, root, "--task", "maxm", "--lang", "fr", "--accept-terms", "--json")
    assert code == 0, err
    doc = json.loads(out)  # stdout holds the one document; the plan went to stderr
    jsonschema.validate(doc, schema)
    assert doc["written"][0]["written"] == ["fr"] and doc["plan"][0]["pinned"] == "resolved main"
    assert [f["path"] for f in doc["plan"][0]["files"]] == [
        "data/fr-00000-of-00001.parquet",
        "data/fr_yesno-00000-of-00001.parquet",
    ]
    assert "floschne/maxm@" in err
    code, out, _ = cli(capsys, "data", "fetch", "--list", "--json")
    jsonschema.validate(json.loads(out), schema)
    assert {s["task"] for s in json.loads(out)["sources"]} == set(LOCK)


def test_progress_bar_per_file_on_a_terminal(
    hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal each file gets a rich bar on stderr (off a terminal stderr stays empty: the kill test)."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: treat stderr as a terminal
    monkeypatch.setenv("COLUMNS", "200")
    _serve_small(hub)
    code, out, err = _fetch(capsys, tmp_path / "d", "--task", "maxm", "--lang", "fr", "--accept-terms")
    assert code == 0, err
    assert "data/fr-00000-of-00001.parquet" in err and "data/fr_yesno-00000-of-00001.parquet" in err
    assert "━" in err  # the bar itself


def test_download_that_does_not_fit_is_refused_before_it_starts(
    hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mvleval.data import fetch

    _serve_small(hub)
    monkeypatch.setattr(fetch, "free_bytes", lambda path: 1000)
    code, out, err = _fetch(capsys, tmp_path / "d", "--task", "xgqa", "--lang", "de")
    assert code == 2 and "does not fit the free disk" in err
    assert not _file_gets(hub)


def test_xm3600_languages_fetched_one_by_one_share_one_captions_file(
    hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _serve_small(hub)
    root = tmp_path / "data"
    assert _fetch(capsys, root, "--task", "xm3600", "--lang", "de")[0] == 0
    code, out, _ = _fetch(capsys, root, "--task", "xm3600", "--lang", "fr", "--lang", "de")
    assert code == 0 and "already in the data root from this commit: de" in out
    assert all("/data/fr" in k or "/data/de" in k for k in _file_gets(hub))
    assert hub.gets["floschne/xm3600/data/de-00000-of-00001.parquet"] == 1
    lines = read_jsonl(root / "xm3600/captions.jsonl")
    assert len(lines) == 3 and all({"de", "fr"} <= set(line) for line in lines)
    assert "images: 0 written, 3 already there" in out  # the images every language embeds are written once
    code, out, err = cli(
        capsys, "data", "check", "--task", "xm3600", "--lang", "de", "--lang", "fr", "--data-root", root
    )
    assert code == 0, out + err


def test_unreachable_hub_is_one_error_paragraph(
    hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    # huggingface_hub retries a refused listing 5 times, 23 s of back-off in all: the waits are recorded, not slept
    # (the retries still happen, and the error must still come after them)
    import huggingface_hub.utils._http as hub_http

    waits: list[float] = []

    class NoSleep:
        def __getattr__(self, name: str) -> object:
            return getattr(time, name)

        def sleep(self, seconds: float) -> None:
            waits.append(seconds)

    monkeypatch.setattr(hub_http, "time", NoSleep(), raising=False)
    for task in ("xgqa", "marvl"):  # listing a pinned commit; resolving main of an unpinned source
        # answered as the console script answers (file descriptor 2 included): one paragraph, none of
        # huggingface_hub's "Retrying in 1s [Retry 1/5]" log lines
        proc = run_cli("data", "fetch", "--data-root", tmp_path / "d", "--task", task, "--lang", "id", "--accept-terms")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "could not be reached" in proc.stderr and "Traceback" not in proc.stderr
        assert "Retry" not in proc.stderr, proc.stderr
    assert waits  # the retries happened (their waits recorded), before the one error


def test_image_name_leaving_the_root_is_refused(hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    qs = {"1": {"imageId": "../../escaped", "question": "what?", "answer": "cat"}}
    hub.add("floschne/xgqa", {mirrors.shard("de"): mirrors.parquet(mirrors.xgqa_rows(qs))}, LOCK["xgqa"].revision)
    root = tmp_path / "a" / "data"
    code, out, err = _fetch(capsys, root, "--task", "xgqa", "--lang", "de")
    assert code == 2 and "would leave the image root" in err and "Traceback" not in err
    assert not list(tmp_path.rglob("escaped*"))
    hub.add("CohereLabs/kaleidoscope", {"data/../../../escaped.parquet": b"x", "data.zip": b"PK"})
    code, out, err = _fetch(capsys, root, "--task", "kaleidoscope", "--accept-terms")
    assert code == 2 and "would leave the data root" in err and "Traceback" not in err
    assert not list(tmp_path.rglob("escaped*"))


def test_all_tasks_dry_run_plans_each_tasks_language(
    hub: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _serve_small(hub)
    for task in ("mtvqa", "cvqa", "xmmmu", "m3exam", "kaleidoscope"):
        src = LOCK[task]
        paths = [p.format(lang="de", split="x").replace("*", "00000-of-00001") for p in src.files]
        hub.add(src.repo, {p: b"x" for p in paths}, src.revision)
    code, out, err = _fetch(capsys, tmp_path / "d", "--task", "all", "--lang", "de", "--dry-run")
    assert code == 0, out + err
    planned = {line.split(":")[0] for line in out.splitlines() if "@" in line and not line.startswith(" ")}
    # the tasks with German, and the sources not split by language (fetched whole)
    assert planned == {"xm3600", "xflickrco", "xgqa", "mtvqa", "cvqa", "kaleidoscope"}, out
    assert "  de: 1 file(s)" in out and not _file_gets(hub)
    assert "mtvqa: the source is not split by language" in out  # its files hold every language


def test_fetch_then_run_with_no_data_root_given(
    hub: Hub, tmp_path: Path, tiny_mt5_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's "done when", word for word: `mvleval data fetch --task xgqa --lang de && mvleval run --task xgqa
    --lang de --model M`, no other step: fetch writes the default data root, run and data check read it; before the
    fetch, run says how to get the data."""
    from mvleval.util.cachedir import default_data_root

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "user-data"))
    monkeypatch.delenv("MVLEVAL_DATA", raising=False)
    _serve_small(hub)
    run = ("run", "--task", "xgqa", "--lang", "de", "--model", tiny_mt5_dir, "--out", tmp_path / "runs", "--limit", "2")
    code, out, err = cli(capsys, *run)
    text = " ".join((out + err).split())
    assert code == 2 and "mvleval data fetch --task" in text and "Traceback" not in text, text
    code, out, err = cli(capsys, "data", "fetch", "--task", "xgqa", "--lang", "de")
    assert code == 0, out + err
    assert default_data_root().is_relative_to(tmp_path / "user-data")
    assert (default_data_root() / "xgqa").is_dir()
    code, out, err = cli(capsys, *run)
    assert code == 0, out + err
    code, out, err = cli(capsys, "data", "check", "--task", "xgqa", "--lang", "de")
    assert code == 0, out + err
