"""Benchmark: mvleval's CIDEr pipeline against pycocoevalcap (Java PTBTokenizer + Cider) on the same captions.

Workloads (synthesised from the real captions in ../shared/data, so token statistics are realistic):

* XM3600-size: 36 languages x 3600 images, 1 prediction and 2 references per image. zh and ja use the real
  zh/ja captions, th a small Thai vocabulary (no Thai captions are shipped), every other language Latin-script
  captions (English, German, Indonesian);
* xFlickrCo-size: 7 languages x 2000 images with 1 reference, and en with 1000 images x 5 references
  (Flickr30k test, as mBLIP scored English).

pycocoevalcap does not segment zh/ja/th (it would score a Chinese caption as one token); mBLIP segmented with spaCy
first. So the reference side gets the captions segmented and NFC-normalised by mvleval's own segmentation (the same
libraries spaCy calls), untimed, and runs exactly what mBLIP ran per language: ``PTBTokenizer().tokenize`` on
references, on predictions, then ``Cider().compute_score``. mvleval's side gets the raw captions: ``Cider.score``
segments, tokenises and scores. Two ratios are printed: the CIDEr step on identical segmented input (the reference vs
Cider.score minus its own segmentation time, measured as the same two calls Cider.score makes), and the whole
pipeline with both sides paying the segmentation. Scores must agree to 1e-9; the script exits non-zero otherwise.

Run: ``OMP_NUM_THREADS=1 python bench/bench_cider.py [--quick]`` (needs Java and pycocoevalcap).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "iglue" / "datasets"

XM3600_LANGS = (
    "ar bn cs da de el en es fa fi fil fr he hi hr hu id it ja ko mi nl no pl pt quz ro ru sv sw te th tr uk vi zh"
).split()
# A few dozen common Thai caption words (hand-written): enough to give the Thai segmenter real work.
THAI_WORDS = (
    "ผู้ชาย ผู้หญิง เด็ก สุนัข แมว กำลัง ยืน นั่ง เดิน วิ่ง อยู่ บน ใน ข้าง ถนน สนาม หญ้า ต้นไม้ รถ จักรยาน "
    "บ้าน ทะเล ชายหาด ภูเขา ท้องฟ้า สีแดง สีขาว สีดำ สีน้ำเงิน ใหญ่ เล็ก สอง สาม คน กลุ่ม หนึ่ง ตัว "
    "ถือ ลูกบอล เล่น กิน อาหาร โต๊ะ ห้อง หน้าต่าง ประตู และ กับ ที่ มี"
).split()


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_pools() -> dict[str, list[str]]:
    """Real caption pools by script family."""
    ann = DATA / "xFlickrCO" / "annotations"
    latin = [s for lg in ("en", "de") for r in _jsonl(ann / lg / "test.jsonl") for s in r["sentences"]]
    latin += [s for r in _jsonl(DATA / "flickr30k" / "annotations" / "test_ann.jsonl") for s in r["sentences"]]
    latin += [r["caption"] for r in _jsonl(DATA / "marvl" / "zero_shot" / "annotations" / "marvl-id.jsonl")]
    zh = [s for r in _jsonl(ann / "zh" / "test.jsonl") for s in r["sentences"]]
    zh += [r["caption"] for r in _jsonl(DATA / "marvl" / "zero_shot" / "annotations" / "marvl-zh.jsonl")]
    ja = [s for r in _jsonl(ann / "ja" / "test.jsonl") for s in r["sentences"]]
    return {"latin": latin, "zh": zh, "ja": ja}


def _perturb(caption: str, rng: random.Random, lang: str) -> str:
    """A prediction-like variant of a caption: a span moved and a word or character dropped."""
    unit = list(caption) if lang in ("zh", "ja") else caption.split()
    if len(unit) > 3:
        del unit[rng.randrange(len(unit))]
        i = rng.randrange(len(unit) - 1)
        unit[i], unit[i + 1] = unit[i + 1], unit[i]
    return ("" if lang in ("zh", "ja") else " ").join(unit)


def _thai(rng: random.Random) -> str:
    return "".join(rng.choice(THAI_WORDS) for _ in range(rng.randint(5, 12)))


def synthesise(
    pools: dict[str, list[str]], lang: str, n_images: int, n_refs: int, seed: int
) -> tuple[list[str], list[list[str]]]:
    """Predictions and references for one language. Captions are drawn without replacement while the pool lasts
    (real corpora rarely repeat a caption across images; repeats would inflate shared n-grams)."""
    rng = random.Random(f"{seed}-{lang}")
    pool = list(dict.fromkeys(pools["zh"] if lang == "zh" else pools["ja"] if lang == "ja" else pools["latin"]))
    order: list[str] = []

    def draw() -> str:
        if not order:
            order.extend(pool)
            rng.shuffle(order)
        return order.pop()

    preds, refs = [], []
    for _ in range(n_images):
        if lang == "th":
            r = [_thai(rng) for _ in range(n_refs)]
            p = _thai(rng) if rng.random() < 0.5 else r[0][: len(r[0]) // 2] + _thai(rng)
        else:
            r = [draw() for _ in range(n_refs)]
            p = _perturb(r[0] if rng.random() < 0.6 else draw(), rng, lang)
        preds.append(p)
        refs.append(r)
    return preds, refs


def workloads(quick: bool) -> dict[str, list[tuple[str, list[str], list[list[str]]]]]:
    pools = load_pools()
    xm_langs = XM3600_LANGS[:6] + ["ja", "th", "zh"] if quick else XM3600_LANGS
    xm_n = 400 if quick else 3600
    xf_n = 300 if quick else 2000
    xm = [(lg, *synthesise(pools, lg, xm_n, 2, 0)) for lg in dict.fromkeys(xm_langs)]
    xf = [(lg, *synthesise(pools, lg, xf_n, 1, 1)) for lg in ("de", "es", "id", "ja", "ru", "tr", "zh")]
    xf.append(("en", *synthesise(pools, "en", 150 if quick else 1000, 5, 1)))
    return {"XM3600-size": xm, "xFlickrCo-size": xf}


def run_reference(preds: list[str], refs: list[list[str]]) -> float:
    """mBLIP's per-language scoring: PTBTokenizer on references and on predictions (two JVMs), then Cider."""
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": c} for c in r] for i, r in enumerate(refs)})
    res = tok.tokenize({i: [{"caption": p}] for i, p in enumerate(preds)})
    score, _ = Cider().compute_score(gts, res)
    return float(score)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller workload (9 + 8 languages, few images)")
    args = parser.parse_args()
    if shutil.which("java") is None or not DATA.is_dir():
        print("needs Java and ../shared/data", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    from mvleval.metrics import Cider
    from mvleval.metrics.segment import normalize_captions

    # Load Sudachi's dictionary, PyThaiNLP and the lexer's patterns (the caption takes every path of the tokenizer)
    # once before timing: both sides would pay this once per process, and the segmentation timed below is then the
    # same work mvleval does inside Cider.score.
    for lang in ("ja", "th", "zh", "en"):
        Cider(bootstrap_resamples=0).score(["A warm-up, isn't it? St. Louis."], [["warm up"]], lang)
    print("mvleval CIDEr vs pycocoevalcap (PTBTokenizer via Java + Cider), same inputs, one run")
    bad = 0
    for name, items in workloads(args.quick).items():
        t_seg = t_ours = t_ref = 0.0
        n_caps = 0
        for lang, preds, refs in items:
            # mvleval's own segmentation + NFC, exactly the two calls Cider.score makes (all references, then all
            # predictions); the reference pipeline gets these segmented captions, untimed
            t0 = time.perf_counter()
            refs_flat_n = normalize_captions([r for rs in refs for r in rs], lang)
            preds_n = normalize_captions(preds, lang)
            t_seg += time.perf_counter() - t0
            refs_n, i = [], 0
            for rs in refs:
                refs_n.append(refs_flat_n[i : i + len(rs)])
                i += len(rs)
            n_caps += len(preds) + sum(len(r) for r in refs)
            # mvleval gets the raw captions (it segments itself); the reference gets them pre-segmented
            t0 = time.perf_counter()
            ours = Cider(bootstrap_resamples=0).score(preds, refs, lang).value
            t_ours += time.perf_counter() - t0
            t0 = time.perf_counter()
            ref = run_reference(preds_n, refs_n)
            t_ref += time.perf_counter() - t0
            if ours is None or abs(ours - ref) > 1e-9:
                bad += 1
                print(f"  MISMATCH {name} {lang}: mvleval {ours!r} pycocoevalcap {ref!r}")
        t_cider = max(t_ours - t_seg, 1e-3)
        print(f"{name}: {len(items)} languages, {n_caps} captions")
        print(f"  zh/ja/th segmentation + NFC (mvleval's, as Cider.score runs it): {t_seg:7.2f} s")
        print(f"  pycocoevalcap PTB(Java)+Cider on the segmented captions:          {t_ref:7.2f} s")
        print(f"  mvleval Cider.score on the raw captions (incl. segmentation):     {t_ours:7.2f} s")
        print(f"    of which PTB + CIDEr (Cider.score minus its segmentation):      {t_cider:7.2f} s")
        print(f"  speed-up, CIDEr on identical segmented input (ref / PTB+CIDEr):   {t_ref / t_cider:7.1f}x")
        print(
            f"  speed-up, whole pipeline, both segmenting ((ref+seg) / Cider.score): {(t_ref + t_seg) / t_ours:7.1f}x"
        )
    if bad:
        print(f"{bad} corpus scores differ")
        return 1
    print("all corpus scores identical (|diff| <= 1e-9)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
