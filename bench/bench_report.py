"""Size and speed of the HTML report of an XM3600-size run (36 languages x 3600 images = 129,600 captions).

Synthetic but shaped like a real XM3600 run: 3600 distinct 640x480 JPEGs (drawn shapes + noise, so they encode like
photos) shared by every language, a ~60-character prediction and two ~55-character reference captions per sample
in the language's script, per-sample CIDEr and language fidelity (a tenth of them misses, with the detected language
stored as `mvleval run` stores it). Measured:

- generation: `write_run_report` (read record + per-sample file, make 3600 thumbnails, render, write), with and
  without thumbnails;
- file size;
- in headless Chromium (Debian's chromium through selenium): first contentful paint, the time until the first page
  of rows is on screen (the page's own performance mark), and the time a filter change takes (language, then a
  text search over all 129,600 rows).

    OMP_NUM_THREADS=1 python bench/bench_report.py [--langs 36] [--images 3600] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mvleval.record.schema import RunRecord, sample_lines, write_record

# XM3600's 36 languages, with a few words in each script so the text has the byte weight of real captions
LANGS = (
    "ar bn cs da de el en es fa fi fil fr he hi hr hu id it ja ko mi nl no pl pt quz ro ru sv sw te th tr uk vi zh"
).split()
WORDS = {
    "ar": "قطة كلب بيت شجرة سماء",
    "bn": "বিড়াল কুকুর বাড়ি গাছ আকাশ",
    "el": "γάτα σκύλος σπίτι δέντρο ουρανός",
    "fa": "گربه سگ خانه درخت آسمان",
    "he": "חתול כלב בית עץ שמיים",
    "hi": "बिल्ली कुत्ता घर पेड़ आसमान",
    "ja": "猫 犬 家 木 空 が いる",
    "ko": "고양이 개 집 나무 하늘",
    "ru": "кошка собака дом дерево небо",
    "te": "పిల్లి కుక్క ఇల్లు చెట్టు ఆకాశం",
    "th": "แมว สุนัข บ้าน ต้นไม้ ท้องฟ้า",
    "uk": "кіт собака будинок дерево небо",
    "zh": "猫 狗 房子 树 天空 一只",
}
LATIN = "a dog cat house tree sky red blue small large street people sitting standing near the"


def make_run(folder: Path, langs: list[str], n_images: int, seed: int = 0) -> tuple[Path, Path]:
    """A run record + per-sample file + image folder of the given size; returns (record path, image root)."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    image_root = folder / "images"
    (image_root / "xm3600").mkdir(parents=True, exist_ok=True)
    noise = Image.effect_noise((640, 480), 40).convert("RGB")
    for i in range(n_images):
        path = image_root / "xm3600" / f"{i:016x}.jpg"
        if path.exists():
            continue
        img = Image.new("RGB", (640, 480), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x, y = rng.randrange(600), rng.randrange(440)
            draw.ellipse(
                (x, y, x + rng.randrange(20, 200), y + rng.randrange(20, 200)),
                fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)),
            )
        Image.blend(img, noise, 0.25).save(path, quality=90)
    rows = []
    for lang in langs:
        words = (WORDS.get(lang) or LATIN).split()
        for i in range(n_images):

            def sentence(n: int, words: list[str] = words) -> str:
                return " ".join(rng.choice(words) for _ in range(n))

            fidelity = 0.0 if rng.random() < 0.1 else 1.0
            row = {
                "id": f"{i:016x}",
                "lang": lang,
                "images": [f"xm3600/{i:016x}.jpg"],
                "prompt": f"Caption in {lang}:",
                "prediction": sentence(10),
                "references": [sentence(9), sentence(9)],
                "scores": {"cider": round(rng.random() * 1.5, 4), "language_fidelity": fidelity},
            }
            if not fidelity:
                row["extra"] = {
                    "language_fidelity": {"verdict": "wrong", "requested": lang, "script": "LATIN", "detected": "en"}
                }
            rows.append(row)
    name = "xm3600-bench"
    (folder / f"{name}.samples.jsonl").write_text(sample_lines(rows), encoding="utf-8")
    per_lang = {lang: 0.5 for lang in langs}
    record = RunRecord.model_validate(
        {
            "run_id": name,
            "created_at": "2026-01-01T00:00:00+00:00",
            "task": {
                "name": "xm3600",
                "version": 1,
                "split": "test",
                "languages": langs,
                "n_examples": {lang: n_images for lang in langs},
                "protocol_hash": "p" * 16,
            },
            "model": {
                "path": "synthetic/xm3600-bench",
                "kind": "encoder-decoder",
                "bits": 4,
                "dtype": "bfloat16",
                "generation": {"num_beams": 5, "max_new_tokens": 30},
            },
            "scores": {
                "cider": {
                    "signature": "cider|bench",
                    "per_lang": per_lang,
                    "mean": 0.5,
                    "intervals": {lang: (0.45, 0.55) for lang in langs},
                },
                "language_fidelity": {
                    "signature": "language_fidelity|bench",
                    "per_lang": {lang: 0.9 for lang in langs},
                    "mean": 0.9,
                },
            },
            "provenance": {
                "mvleval_version": "0.1.0",
                "git_commit": None,
                "git_dirty": None,
                "python": "3.11",
                "packages": {},
                "device": "cpu",
                "data_fingerprint": "f" * 32,
                "annotation_files": {},
                "prompt_hash": "h",
                "seed": 0,
                "command": ["bench"],
            },
            "duration_s": 1.0,
            "samples_file": f"{name}.samples.jsonl",
        }
    )
    path = folder / f"{name}.json"
    write_record(record, path)
    return path, image_root


def measure_browser(page: Path, repeats: int) -> dict[str, list[float]]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from mvleval.testing.browser import chromium, console_errors

    out: dict[str, list[float]] = {
        "fcp_ms": [],
        "rows_ms": [],
        "load_ms": [],
        "lang_filter_ms": [],
        "search_ms": [],
        "heap_mb": [],
    }
    with chromium() as driver:
        driver.set_page_load_timeout(300)
        for _ in range(repeats):
            driver.get("about:blank")
            driver.get(page.resolve().as_uri())  # returns after the load event
            while driver.execute_script("return document.body.dataset.ready") != "1":
                time.sleep(0.05)
            timing = driver.execute_script("""
                const fcp = performance.getEntriesByName('first-contentful-paint')[0];
                const rows = performance.getEntriesByName('mvleval-rows-rendered')[0];
                const nav = performance.getEntriesByType('navigation')[0];
                return [fcp ? fcp.startTime : null, rows ? rows.startTime : null, nav.loadEventEnd,
                        performance.memory ? performance.memory.usedJSHeapSize / 1e6 : null];""")
            for key, value in zip(("fcp_ms", "rows_ms", "load_ms", "heap_mb"), timing):
                if value is not None:
                    out[key].append(float(value))
            # a filter change: measured inside the page from the change event to the end of re-rendering
            ms = driver.execute_script("""
                const s = document.getElementById('lang'); s.value = 'th';
                const t = performance.now(); s.dispatchEvent(new Event('change')); return performance.now() - t;""")
            out["lang_filter_ms"].append(float(ms))
            Select(driver.find_element(By.ID, "lang")).select_by_value("")
            # a text search over every row (the first builds the lower-cased index), after the 120 ms typing debounce
            ms = driver.execute_script("""
                const s = document.getElementById('search'), count = document.getElementById('match-count');
                const before = count.textContent; s.value = 'tree';
                const t = performance.now(); s.dispatchEvent(new Event('input'));
                return new Promise(done => { const poll = () => {
                    if (count.textContent !== before) done(performance.now() - t - 120); else setTimeout(poll, 2); }; poll(); });""")
            out["search_ms"].append(float(ms))
            errors = console_errors(driver)
            if errors:
                raise SystemExit(f"console errors: {errors}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--langs", type=int, default=36)
    parser.add_argument("--images", type=int, default=3600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (the records, images and reports)")
    args = parser.parse_args()

    from mvleval.compare.report import write_run_report

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-report-"))
    work.mkdir(parents=True, exist_ok=True)
    langs = LANGS[: args.langs]
    t = time.perf_counter()
    record, image_root = make_run(work, list(langs), args.images)
    print(
        f"workload: {len(langs)} languages x {args.images} images = {len(langs) * args.images} samples "
        f"(made in {time.perf_counter() - t:.1f} s) in {work}"
    )
    samples = work / "xm3600-bench.samples.jsonl"
    print(f"per-sample file: {samples.stat().st_size / 1e6:.1f} MB")

    results = {}
    for label, root in (("no thumbnails", None), ("thumbnails", image_root)):
        times = []
        for _ in range(2):
            t = time.perf_counter()
            summary = write_run_report(record, work / f"report-{'thumbs' if root else 'plain'}.html", image_root=root)
            times.append(time.perf_counter() - t)
        results[label] = summary
        print(
            f"generate ({label}): {min(times):.2f} s (best of 2: {', '.join(f'{x:.2f}' for x in times)}); "
            f"file {summary.size_bytes / 1e6:.1f} MB"
        )

    from mvleval.testing.browser import missing

    why = missing()
    if why:
        print(f"browser figures skipped: {why}")
    else:
        page = results["thumbnails"].path
        figures = measure_browser(page, args.repeats)
        print(f"headless Chromium, {page.name} ({args.repeats} loads; median [min-max]):")
        for key, values in figures.items():
            if values:
                print(f"  {key:15s} {statistics.median(values):8.0f}  [{min(values):.0f}-{max(values):.0f}]")
    print(
        json.dumps(
            {
                "samples": len(langs) * args.images,
                "files_mb": {k: round(v.size_bytes / 1e6, 1) for k, v in results.items()},
            }
        )
    )
    if not args.keep and args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
