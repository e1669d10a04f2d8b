"""HTML reports (`mvleval report`, `gate --report-html`, leaderboard.html), opened in a real headless Chromium.

Records come from the real CLI: the tiny model's xGQA run through the console script, and hand-edited copies of it
(hostile strings, flipped verdicts) rescored with `mvleval score`. Every page check goes through the browser's DOM.
Screenshots of each page type are written to tests/artifacts/ (gitignored; $MVLEVAL_TEST_ARTIFACTS to move it).
Without chromium, chromedriver or selenium the browser tests skip, saying what to install; CI sets
MVLEVAL_REQUIRE_BROWSER=1 so that there they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mvleval.testing import browser
from tests.helpers import run_cli, sample_rows

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("MVLEVAL_TEST_ARTIFACTS", REPO / "tests" / "artifacts"))

HOSTILE = [
    "<script>window.__pwned = 1</script>",
    "</script><script>window.__pwned = 2</script>",
    '<img src=x onerror="window.__pwned = 3">',
    "</table></div></section><h1 id=broken>broken</h1>",
    "<!-- an unterminated comment <script>",
    "\"double\" 'single' `back` &amp; &lt;b&gt; \\u003c",
    "\u202eRTL override \u200fעברית\u200e mixed مرحبا",
    "line\u2028separator\u2029paragraph",
    "A" * 10240 + "<b>bold?</b>",
]
HOSTILE_ID = 'x"><script>window.__pwned = 4</script>'


def _cli(*args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # in-process, answered as the console script answers (tests/test_cli_inprocess.py)
    return run_cli(*args, drop_env=("GITHUB_STEP_SUMMARY",))


def _edited_copy(
    run: Path, folder: Path, edit: Callable[[int, dict[str, Any]], None], data_root: Path | None = None
) -> Path:
    """A copy of a run record and its per-sample file with rows edited: rescored by the CLI against the data in
    `data_root` (predictions edited), or else (references and ids edited too, which `score` refuses) a record that
    vouches for the edited file by its hash, as a hand-made shared record could."""
    folder.mkdir(parents=True)
    copy = folder / run.name
    shutil.copy(run, copy)
    rows = sample_rows(run)
    for i, row in enumerate(rows):
        edit(i, row)
    (folder / json.loads(run.read_text())["samples_file"]).write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    if data_root is None:
        import hashlib

        record = json.loads(copy.read_text())
        record["samples_sha256"] = hashlib.sha256((folder / record["samples_file"]).read_bytes()).hexdigest()
        copy.write_text(json.dumps(record), encoding="utf-8")
        return copy
    scored = _cli("score", copy, "--data-root", data_root)
    assert scored.returncode == 0, scored.stdout + scored.stderr
    return copy


@dataclass(frozen=True)
class World:
    image_root: Path
    run: Path  # the tiny model's real run (en, de; 6 each)
    baseline: Path  # rows 0, 2, 4, ... answered with their reference
    changed: Path  # rows 0, 1, 2 and 6, 7 answered with their reference: flips both ways against `baseline`
    hostile: Path  # hostile predictions, references and one id
    other_version: Path  # the run claiming another task version: not comparable


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_mt5_dir: Path) -> World:
    from mvleval.demo.command import build_demo_data

    root = tmp_path_factory.mktemp("report")
    data_root, image_root = build_demo_data(root / "demo", n_train=0, n_test=6)
    out = root / "runs"
    r = _cli(
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
        "--limit",
        "6",
        "--out",
        out,
        "--num-beams",
        "1",
        "--max-new-tokens",
        "3",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    [run] = list(out.glob("*.json"))

    def answer(rows: set[int]) -> Callable[[int, dict[str, Any]], None]:
        def edit(i: int, row: dict[str, Any]) -> None:
            if i in rows:
                row["prediction"] = row["references"][0]

        return edit

    baseline = _edited_copy(run, root / "baseline", answer({0, 2, 4, 6, 8, 10}), data_root)
    changed = _edited_copy(run, root / "changed", answer({0, 1, 2, 6, 7}), data_root)

    def hostile(i: int, row: dict[str, Any]) -> None:
        if i < len(HOSTILE):
            row["prediction"] = HOSTILE[i]
        if i == 1:
            row["references"] = [HOSTILE[0], HOSTILE[3]]
        if i == 11:
            row["id"] = HOSTILE_ID

    hostile_run = _edited_copy(run, root / "hostile", hostile)
    other = root / "other" / run.name
    other.parent.mkdir()
    record = json.loads(run.read_text())
    record["task"]["version"] += 1
    other.write_text(json.dumps(record))
    shutil.copy(run.parent / record["samples_file"], other.parent / record["samples_file"])
    return World(image_root, run, baseline, changed, hostile_run, other)


# -- the browser ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chrome() -> Iterator[Any]:
    why = browser.missing()
    if why:
        if os.environ.get("MVLEVAL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"MVLEVAL_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    with browser.chromium() as driver:
        yield driver


def _open(driver: Any, page: Path) -> None:
    browser.console_errors(driver)  # drop what earlier pages logged
    driver.get(page.resolve().as_uri())
    _until(driver, lambda: driver.execute_script("return document.body.dataset.ready") == "1", "page script ran")


def _until(driver: Any, check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}; console: {browser.console_errors(driver)}")
        time.sleep(0.05)


def _count(driver: Any) -> int:
    return int(driver.execute_script("return document.getElementById('match-count').dataset.count"))


def _shown(driver: Any) -> list[tuple[str, str]]:
    """(lang, id) of the sample cards on the page, in order."""
    return [
        tuple(x)
        for x in driver.execute_script(
            "return Array.from(document.querySelectorAll('#rows .sample')).map(e => [e.dataset.lang, e.dataset.id])"
        )
    ]


def _choose(driver: Any, element_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, element_id)).select_by_value(value)


def _screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(int(height), 600), 4000))
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)
    print(f"screenshot: {path}")
    return path


def _no_errors(driver: Any) -> None:
    errors = browser.console_errors(driver)
    assert errors == [], errors


# -- pure parts -----------------------------------------------------------------------------------------------------
def test_json_island_cannot_end_its_script_element() -> None:
    from mvleval.compare.report import script_json

    data = {"rows": HOSTILE + [HOSTILE_ID, "<!--", "</SCRIPT >", "]]>"], "n": float("nan")}
    text = script_json(data)
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == {**data, "n": None}  # the same strings once parsed; NaN is not JSON: shown as missing


def test_language_fidelity_misses_store_the_detected_language(world: World) -> None:
    rows = sample_rows(world.run)
    misses = [r for r in rows if r["scores"]["language_fidelity"] == 0.0]
    assert misses, "the tiny model is expected to miss the language somewhere"
    for row in rows:
        facts = row.get("extra", {}).get("language_fidelity")
        if row["scores"]["language_fidelity"] == 1.0:
            assert facts is None
        else:
            assert facts["verdict"] in ("wrong", "undetermined", "not_language") and facts["requested"] == "en"
    assert all(r["images"] and r["images"][0].startswith("gqa/") for r in rows)
    # storing them changes no score: an untouched copy rescored by `mvleval score` gives the same record scores
    copy = _edited_copy(
        world.run, world.run.parent.parent / "rescored-copy", lambda i, r: None, world.image_root.parent
    )
    assert json.loads(copy.read_text())["scores"] == json.loads(world.run.read_text())["scores"]
    assert sample_rows(copy) == rows


def test_report_refuses_runs_the_gate_refuses(world: World, tmp_path: Path) -> None:
    gate = _cli("gate", world.run, "--baseline", world.other_version)
    report = _cli("report", world.run, "--compare", world.other_version, "--out", tmp_path / "x.html")
    assert gate.returncode == report.returncode == 2, report.stdout + report.stderr
    for text in (gate.stderr, report.stderr):
        assert "cannot be gated against baseline" in text and "task version: run 1, baseline 2" in text
    assert not (tmp_path / "x.html").exists()
    html = _cli("gate", world.run, "--baseline", world.other_version, "--report-html", tmp_path / "g.html")
    assert html.returncode == 2 and not (tmp_path / "g.html").exists()


def test_report_defaults_to_the_runs_image_root(world: World, tmp_path: Path) -> None:
    """Issue 29: `report` asked for --image-root although the record keeps it."""
    page = tmp_path / "run.html"
    r = _cli("report", world.run, "--out", page)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No thumbnails" not in r.stdout and "Images from the run's image folder" in r.stdout
    assert str(world.image_root.resolve()) in " ".join(r.stdout.split())
    given = _cli("report", world.run, "--out", tmp_path / "given.html", "--image-root", world.image_root)
    assert given.returncode == 0 and "Images from the run's" not in given.stdout
    # the same thumbnails as with the flag
    embedded = (tmp_path / "given.html").read_text(encoding="utf-8").count("data:image/")
    assert embedded > 0 and page.read_text(encoding="utf-8").count("data:image/") == embedded
    # a record written before the image root was recorded: an absolute --image-root of its command is used
    old = tmp_path / "old" / world.run.name
    old.parent.mkdir()
    record = json.loads(world.run.read_text())
    del record["provenance"]["image_root"]
    old.write_text(json.dumps(record))
    shutil.copy(world.run.parent / record["samples_file"], old.parent / record["samples_file"])
    r = _cli("report", old, "--out", tmp_path / "old.html")
    assert r.returncode == 0 and "No thumbnails" not in r.stdout, r.stdout + r.stderr


# -- in the browser -------------------------------------------------------------------------------------------------
def test_run_report_shows_every_sample_and_filters(world: World, chrome: Any, tmp_path: Path) -> None:
    page = tmp_path / "run.html"
    r = _cli("report", world.run, "--out", page, "--image-root", world.image_root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "12 samples" in r.stdout
    rows = sample_rows(world.run)
    _open(chrome, page)
    _no_errors(chrome)
    assert _count(chrome) == 12 and len(_shown(chrome)) == 12
    assert _shown(chrome) == [(r["lang"], r["id"]) for r in rows]  # file order
    # thumbnails: each distinct image embedded once, decoded by the browser, linked to the full file
    images = chrome.execute_script(
        "return Array.from(document.querySelectorAll('#rows .sample img')).map(i => [i.src, i.naturalWidth, i.parentNode.href])"
    )
    assert len(images) == 12 and all(width > 0 for _, width, _ in images)
    assert len({src for src, _, _ in images}) == len({r["images"][0] for r in rows})
    assert all(href.startswith("file:///") and href.endswith(".jpg") for _, _, href in images)
    header = chrome.execute_script("return document.getElementById('run').innerText")
    for text in ("xgqa v1", "test", "mblip", "num_beams=1", "max_new_tokens=3"):
        assert text in header

    # language filter
    _choose(chrome, "lang", "de")
    assert _count(chrome) == 6 and {lang for lang, _ in _shown(chrome)} == {"de"}
    _choose(chrome, "lang", "")
    assert _count(chrome) == 12

    # right/wrong on language fidelity; the detected language of a miss is shown
    metrics = list(json.loads(world.run.read_text())["scores"])
    _choose(chrome, "metric", str(metrics.index("language_fidelity")))
    wrong = [(r["lang"], r["id"]) for r in rows if r["scores"]["language_fidelity"] == 0.0]
    _choose(chrome, "verdict", "wrong")
    assert _shown(chrome) == wrong and _count(chrome) == len(wrong)
    facts = chrome.execute_script(
        "return Array.from(document.querySelectorAll('#rows .facts-line')).map(e => e.textContent)"
    )
    assert len(facts) == len(wrong) and all(f.startswith("language_fidelity: ") and "asked for en" in f for f in facts)
    _choose(chrome, "verdict", "right")
    assert _count(chrome) == 12 - len(wrong)
    _choose(chrome, "verdict", "")

    # text search over predictions and references (case-insensitive)
    word = rows[0]["references"][0]
    expected = [
        (r["lang"], r["id"])
        for r in rows
        if word.lower() in (r["prediction"] + "\n" + "\n".join(r["references"])).lower()
    ]
    from selenium.webdriver.common.by import By

    chrome.find_element(By.ID, "search").send_keys(word.upper())
    _until(chrome, lambda: _count(chrome) == len(expected), f"search for {word!r} to match {len(expected)}")
    assert _shown(chrome) == expected
    _no_errors(chrome)
    chrome.find_element(By.ID, "search").clear()
    chrome.execute_script("document.getElementById('search').dispatchEvent(new Event('input'))")
    _until(chrome, lambda: _count(chrome) == 12, "search cleared")
    _screenshot(chrome, "report-run.png")


def test_report_pages_and_sorts_a_large_run(chrome: Any, tmp_path: Path) -> None:
    from mvleval.compare.report import ImageStore, render_run_report
    from tests.test_leaderboard import make_record

    record = make_record("big", per_lang={"de": 0.5, "en": 0.25})
    rows = [
        {
            "id": f"q{i:03d}",
            "lang": lang,
            "prompt": "p",
            "prediction": f"answer {i}",
            "references": [f"answer {i}"],
            "scores": {"exact_match": float(i % 4 == 0 if lang == "en" else i % 2)},
        }
        for lang in ("de", "en")
        for i in range(130)
    ]
    page = tmp_path / "big.html"
    page.write_text(render_run_report(record, rows, ImageStore(None)), encoding="utf-8")
    _open(chrome, page)
    _no_errors(chrome)
    assert _count(chrome) == 260 and len(_shown(chrome)) == 50
    chrome.execute_script("document.querySelector('.pager .next').click()")
    assert _shown(chrome) == [("de", f"q{i:03d}") for i in range(50, 100)]
    _choose(chrome, "sort", "desc")  # right first, file order among equals; back to page 1
    shown = _shown(chrome)
    assert len(shown) == 50 and shown[0] == ("de", "q001") and ("de", "q000") not in shown
    _choose(chrome, "page-size", "250")
    assert len(_shown(chrome)) == 250
    _no_errors(chrome)


def test_hostile_strings_display_as_text(world: World, chrome: Any, tmp_path: Path) -> None:
    page = tmp_path / "hostile.html"
    r = _cli("report", world.hostile, "--out", page, "--image-root", world.image_root)
    assert r.returncode == 0, r.stdout + r.stderr
    _open(chrome, page)
    _no_errors(chrome)  # a blocked inline script or handler would log a CSP violation here
    assert chrome.execute_script("return typeof window.__pwned") == "undefined"
    assert chrome.execute_script("return document.querySelectorAll('script').length") == 2  # the data island + ours
    assert (
        chrome.execute_script("return document.querySelectorAll('#rows img:not([src^=\"data:image/jpeg\"])').length")
        == 0
    )
    assert chrome.execute_script("return document.getElementById('broken')") is None
    assert _count(chrome) == 12
    predictions = chrome.execute_script(
        "return Array.from(document.querySelectorAll('#rows .prediction')).map(e => e.textContent)"
    )
    assert predictions[: len(HOSTILE)] == HOSTILE  # exactly the text, 10 kB answer included
    refs = chrome.execute_script(
        "return Array.from(document.querySelectorAll('#rows .sample')[1].querySelectorAll('.refs li')).map(e => e.textContent)"
    )
    assert refs == [HOSTILE[0], HOSTILE[3]]
    assert _shown(chrome)[11] == ("de", HOSTILE_ID)
    assert chrome.execute_script("return document.querySelectorAll('#rows .prediction')[6].dir") == "auto"
    # the long answer scrolls inside its box instead of stretching the page
    height = chrome.execute_script(
        "return document.querySelectorAll('#rows .prediction')[8].getBoundingClientRect().height"
    )
    assert height < 300
    _screenshot(chrome, "report-hostile.png")


def test_comparison_lists_exactly_the_flipped_samples(world: World, chrome: Any, tmp_path: Path) -> None:
    page = tmp_path / "compare.html"
    r = _cli("report", world.changed, "--compare", world.baseline, "--out", page, "--image-root", world.image_root)
    assert r.returncode == 0, r.stdout + r.stderr
    run_rows, base_rows = sample_rows(world.changed), sample_rows(world.baseline)
    flips = {"right→wrong": [], "wrong→right": []}
    for run, base in zip(run_rows, base_rows, strict=True):
        a, b = run["scores"]["exact_match"], base["scores"]["exact_match"]
        if a != b:
            flips["wrong→right" if a > b else "right→wrong"].append((run["lang"], run["id"]))
    assert flips["right→wrong"] and flips["wrong→right"], "the edited copies must flip both ways"
    n_flips = len(flips["right→wrong"]) + len(flips["wrong→right"])
    assert f"{n_flips} flipped verdict(s)" in r.stdout
    _open(chrome, page)
    _no_errors(chrome)
    # per language (the record's order), right→wrong first
    expected = [
        key for lang in ("en", "de") for kind in ("right→wrong", "wrong→right") for key in flips[kind] if key[0] == lang
    ]
    assert _shown(chrome) == expected and _count(chrome) == n_flips
    kinds = chrome.execute_script(
        "return Array.from(document.querySelectorAll('#rows .sample')).map(e => e.querySelector('.flip').dataset.flip)"
    )
    assert kinds == ["right→wrong" if key in flips["right→wrong"] else "wrong→right" for key in expected]
    summary = chrome.execute_script(
        "return Array.from(document.querySelectorAll('#flip-summary tbody tr')).map(r => Array.from(r.children).map(c => c.textContent))"
    )
    for lang in ("en", "de"):
        rw = sum(1 for key in flips["right→wrong"] if key[0] == lang)
        wr = sum(1 for key in flips["wrong→right"] if key[0] == lang)
        assert [lang, str(rw), str(wr), str(wr - rw)] in summary
    _screenshot(chrome, "report-compare.png")
    # then the largest drops: for a right/wrong metric, exactly the right→wrong flips
    _choose(chrome, "view", "drops")
    assert sorted(_shown(chrome)) == sorted(flips["right→wrong"])
    _choose(chrome, "view", "all")
    assert _count(chrome) == 12
    baseline_texts = chrome.execute_script(
        "return Array.from(document.querySelectorAll('#rows .baseline-prediction')).map(e => e.textContent)"
    )
    assert baseline_texts == [r["prediction"] for r in base_rows]
    _no_errors(chrome)


def test_gate_writes_the_comparison(world: World, chrome: Any, tmp_path: Path) -> None:
    page, md = tmp_path / "gate.html", tmp_path / "gate.md"
    r = _cli(
        "gate",
        world.changed,
        "--baseline",
        world.baseline,
        "--max-drop",
        "0",
        "--report",
        md,
        "--report-html",
        page,
        "--image-root",
        world.image_root,
    )
    assert r.returncode == 1, r.stdout + r.stderr  # a regression: and the page is written all the same
    assert md.is_file() and page.is_file() and "HTML report:" in r.stdout
    _open(chrome, page)
    _no_errors(chrome)
    assert "Gate: FAILED" in chrome.execute_script("return document.getElementById('gate').innerText")
    assert _count(chrome) > 0
    _screenshot(chrome, "report-gate.png")


def test_leaderboard_html_is_sortable_with_heatmaps(chrome: Any, tmp_path: Path) -> None:
    from mvleval.record.schema import write_record
    from tests.test_leaderboard import golden_records

    for path, record in golden_records():
        write_record(record, tmp_path / "runs" / path.name)
    r = _cli("leaderboard", tmp_path / "runs", "--out", tmp_path / "lb")
    assert r.returncode == 0, r.stdout + r.stderr
    page = tmp_path / "lb" / "leaderboard.html"
    _open(chrome, page)
    _no_errors(chrome)
    widths = chrome.execute_script(
        "return Array.from(document.querySelectorAll('img.heatmap-img')).map(i => i.naturalWidth)"
    )
    assert len(widths) == 4 and all(w > 0 for w in widths)
    script = (
        "return Array.from(document.querySelectorAll('#leaderboard tbody tr'))"
        ".map(r => r.children[COL].getAttribute('data-sort'))"
    )
    before = chrome.execute_script(script.replace("COL", "0"))
    # column 2, "xgqa v1 [test] exact_match (data:ffffffff n=300)": every model has it
    header = chrome.find_elements("css selector", "#leaderboard thead th")[2]
    header.click()
    values = chrome.execute_script(script.replace("COL", "2"))
    numbers = [float(v) for v in values if v is not None]
    assert numbers == sorted(numbers) and values[len(numbers) :] == [None] * (len(values) - len(numbers))
    assert len(numbers) == 3
    header.click()
    values = chrome.execute_script(script.replace("COL", "2"))
    numbers = [float(v) for v in values if v is not None]
    assert numbers == sorted(numbers, reverse=True)
    # column 1 (the 200-example subset): one model has it; the missing cells sort last either way
    for _ in range(2):
        chrome.find_elements("css selector", "#leaderboard thead th")[1].click()
        values = chrome.execute_script(script.replace("COL", "1"))
        assert values[0] is not None and values[1:] == [None, None]
    assert sorted(chrome.execute_script(script.replace("COL", "0"))) == sorted(before)  # rows moved, none lost
    _no_errors(chrome)
    _screenshot(chrome, "leaderboard.png")
