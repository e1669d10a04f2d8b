"""Language fidelity: false credit on seeded nonsense per script, next to the accuracy on real text, old vs new rule.

    OMP_NUM_THREADS=1 python bench/bench_fidelity_gibberish.py [--seed 0] [--per-kind 40] [--rule both|old|new]

Nonsense: mvleval.testing.gibberish (5 kinds x 13 scripts x --per-kind texts, seeded); each text is requested in a
language written in its script (a mixture: in the language of its most frequent script), with the detector
restricted to the smallest task's languages that contain it (the fewest rivals, so the easiest false win). The
false-credit rate is the share judged *faithful*.

Real text: every caption, hypothesis and translated question in ../shared/data (xFlickrCO de/en/ja/zh, Flickr30k,
XVNLI en/ar, MaRVL id/zh, xGQA dev questions de/en/zh; distinct texts) judged against its own language with its task's
language set, xGQA's distinct gold answers judged as English, and the hand-written rows of
mvleval.testing.gibberish.HANDWRITTEN (20 languages without data in ../shared). Accuracy = share judged faithful.

The old rule (mvleval <= rule 1): script check, then the restricted detector only. The new one: LanguageFidelity as
shipped (not-language checks, unrestricted top-3 for texts of 20 characters or more), without references.

The last section measures the letter model (rule 3c), which needs a language's own references: for each language
with 2,000 or more caption-like texts in ../shared (xFlickrCO de/en/ja/zh, XVNLI ar), a model of the first 1,000
(xFlickrCO: its Flickr30k half), then every nonsense text of the language's script requested in that language
(false credit without -> with the model), and the held-out real text (xFlickrCO: its COCO half, another domain;
xGQA questions) judged without -> with it. ~1 minute on one core.

``--cldr`` adds a stand-in for the scripts ../shared has no captions in (Greek, Hebrew, Devanagari, Bengali, Tamil,
Telugu, Persian, Cyrillic, Thai, Hangul): a letter model of Unicode CLDR's localised names in the language (language,
country, month and unit names from the ``babel`` package: 15,000-50,000 letters, not captions), the script's
nonsense requested in the language, and the hand-written captions of mvleval.testing.gibberish.HANDWRITTEN as the
real text. Needs ``pip install babel``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mvleval.metrics.language_fidelity import (
    LanguageFidelity,
    Verdict,
    _detector,
    detector_verdict,
    script_verdict,
)
from mvleval.metrics.letter_model import LetterModel
from mvleval.testing.gibberish import HANDWRITTEN, KINDS, SCRIPTS, gibberish

TASK_LANGS = {
    "xflickrco": ("de", "en", "es", "id", "ja", "ru", "tr", "zh"),
    "xvnli": ("ar", "en", "es", "fr", "ru"),
    "xgqa": ("bn", "de", "en", "id", "ko", "pt", "ru", "zh"),
    "marvl": ("id", "sw", "ta", "tr", "zh"),
    "xm3600": ("ar", "bn", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fil", "fr", "he", "hi", "hr", "hu", "id",
               "it", "ja", "ko", "mi", "nl", "no", "pl", "pt", "quz", "ro", "ru", "sv", "sw", "te", "th", "tr", "uk",
               "vi", "zh"),
}  # fmt: skip


def smallest_task_langs(lang: str) -> tuple[str, ...]:
    return min((langs for langs in TASK_LANGS.values() if lang in langs), key=len)


def old_verdicts(metric: LanguageFidelity, texts: list[str], requested: str) -> list[str]:
    """Rule 1 (before this change): script check, then the restricted detector's ranking alone."""
    detector = _detector(metric._detector_names(requested))
    out = []
    for text in texts:
        v = script_verdict(text, requested)
        if v is None:
            ranking = [(c.language.name, c.value) for c in detector.compute_language_confidence_values(text)]
            v = detector_verdict(text, requested, ranking)
        out.append(v)
    return out


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def real_corpora(data: Path) -> list[tuple[str, str, str, tuple[str, ...], list[str]]]:
    """(name, kind, language, task languages, distinct texts) for the real text in ../shared/data and the hand rows."""
    out: list[tuple[str, str, str, tuple[str, ...], list[str]]] = []
    d = data / "iglue" / "datasets"
    if d.is_dir():
        for lg in ("de", "en", "ja", "zh"):
            texts = [s for r in _jsonl(d / "xFlickrCO/annotations" / lg / "test.jsonl") for s in r["sentences"]]
            out.append((f"xFlickrCO {lg}", "caption", lg, TASK_LANGS["xflickrco"], texts))
        texts = [s for r in _jsonl(d / "flickr30k/annotations/test_ann.jsonl") for s in r["sentences"]]
        out.append(("Flickr30k en", "caption", "en", TASK_LANGS["xflickrco"], texts))
        for lg in ("en", "ar"):
            rows = _jsonl(d / "XVNLI/annotations" / lg / "test.jsonl")
            texts = [r["sentence1"] for r in rows] + [r["sentence2"] for r in rows]
            out.append((f"XVNLI {lg}", "hypothesis", lg, TASK_LANGS["xvnli"], texts))
        for lg in ("id", "zh"):
            rows = _jsonl(d / "marvl/zero_shot/annotations" / f"marvl-{lg}.jsonl")
            out.append((f"MaRVL {lg}", "caption", lg, TASK_LANGS["marvl"], [r["caption"] for r in rows]))
    g = data / "xgqa" / "data" / "few_shot"
    if g.is_dir():
        for lg in ("de", "en", "zh"):
            q = json.loads((g / lg / "dev.json").read_text(encoding="utf-8"))
            out.append(
                (f"xGQA questions {lg}", "question", lg, TASK_LANGS["xgqa"], [v["question"] for v in q.values()])
            )
        q = json.loads((g / "en" / "dev.json").read_text(encoding="utf-8"))
        out.append(("xGQA answers (as en)", "answer", "en", TASK_LANGS["xgqa"], [v["answer"] for v in q.values()]))
    for lg, texts in HANDWRITTEN.items():
        out.append((f"hand-written {lg}", "hand", lg, smallest_task_langs(lg), texts))
    return [(n, k, lg, langs, list(dict.fromkeys(t))) for n, k, lg, langs, t in out]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-kind", type=int, default=40, help="texts per kind and script (default 40: 2600 texts)")
    ap.add_argument("--rule", choices=("both", "old", "new"), default="both")
    ap.add_argument(
        "--data", type=Path, default=Path(os.environ.get("MVLEVAL_SHARED", REPO.parent / "shared")) / "data"
    )
    ap.add_argument("--show", type=int, default=0, help="print up to N credited nonsense texts per script (new rule)")
    ap.add_argument(
        "--cldr",
        action="store_true",
        help="also measure the letter model with CLDR names (babel) as "
        "stand-in references in the scripts ../shared has no captions in",
    )
    args = ap.parse_args()
    rules = ("old", "new") if args.rule == "both" else (args.rule,)
    t0 = time.perf_counter()

    def judge_all(texts: list[str], requested: str, langs: tuple[str, ...]) -> dict[str, list[str]]:
        metric = LanguageFidelity(langs, bootstrap_resamples=0)
        out = {}
        if "old" in rules:
            out["old"] = old_verdicts(metric, texts, requested)
        if "new" in rules:
            out["new"] = metric.verdicts(texts, requested)
        return out

    # -- nonsense ------------------------------------------------------------------------------------------------
    rows = gibberish(args.seed, args.per_kind)
    groups: dict[tuple[str, tuple[str, ...]], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[(r.requested, smallest_task_langs(r.requested))].append(i)
    verdicts: dict[str, list[str]] = {rule: [""] * len(rows) for rule in rules}
    for (req, langs), idx in groups.items():
        got = judge_all([rows[i].text for i in idx], req, langs)
        for rule, vs in got.items():
            for i, v in zip(idx, vs):
                verdicts[rule][i] = v
    print(f"# language fidelity on nonsense: seed {args.seed}, {args.per_kind} per kind and script, {len(rows)} texts")
    print(
        "# false credit = share judged faithful (old -> new); the detector is restricted to the smallest task's languages"
    )
    print()
    head = "| script | " + " | ".join(KINDS) + " | all |"
    print(head)
    print("|" + "---|" * (len(KINDS) + 2))
    tot = {rule: [0, 0] for rule in rules}
    for script in SCRIPTS:
        cells = []
        for kind in (*KINDS, None):
            idx = [i for i, r in enumerate(rows) if r.script == script and (kind is None or r.kind == kind)]
            vals = []
            for rule in rules:
                n = sum(verdicts[rule][i] == Verdict.FAITHFUL for i in idx)
                vals.append(f"{100 * n / len(idx):.0f}%")
                if kind is None:
                    tot[rule][0] += n
                    tot[rule][1] += len(idx)
            cells.append(" -> ".join(vals))
        print(f"| {script} | " + " | ".join(cells) + " |")
    print(
        "| **all** | "
        + " | ".join("" for _ in KINDS)
        + " | "
        + " -> ".join(f"**{100 * a / b:.1f}%**" for a, b in tot.values())
        + " |"
    )
    if args.show and "new" in rules:
        print()
        for script in SCRIPTS:
            left = [r for i, r in enumerate(rows) if r.script == script and verdicts["new"][i] == Verdict.FAITHFUL]
            for r in left[: args.show]:
                print(f"  credited ({script}, {r.kind}, {r.requested}): {r.text!r}")

    # -- real text -----------------------------------------------------------------------------------------------
    print()
    print("# accuracy on real text = share judged faithful to its own language (old -> new)")
    print()
    print("| corpus | kind | lang | texts | accuracy | lost (new rule) |")
    print("|---|---|---|---|---|---|")
    corpora = real_corpora(args.data)
    if not any(k != "hand" for _, k, *_ in corpora):
        print(f"(no real data at {args.data}: hand-written rows only)")
    for name, kind, lang, langs, texts in corpora:
        got = judge_all(texts, lang, langs)
        accs = [f"{100 * sum(v == Verdict.FAITHFUL for v in got[rule]) / len(texts):.2f}%" for rule in rules]
        lost = ""
        if set(rules) == {"old", "new"}:
            lost_texts = [t for t, a, b in zip(texts, got["old"], got["new"]) if a == Verdict.FAITHFUL != b]
            lost = "; ".join(repr(t[:40]) for t in lost_texts[:3]) + (
                f" (+{len(lost_texts) - 3})" if len(lost_texts) > 3 else ""
            )
        print(f"| {name} | {kind} | {lang} | {len(texts)} | {' -> '.join(accs)} | {lost} |")
    letter_model_section(args.data, rows)
    if args.cldr:
        cldr_section(rows)
    print()
    print(f"# {time.perf_counter() - t0:.0f} s, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    return 0


#: language -> (script of its nonsense rows, task languages of its detector)
MODELLED = {
    "de": ("Latin", "xflickrco"),
    "en": ("Latin", "xflickrco"),
    "ja": ("Kana", "xflickrco"),
    "zh": ("Han", "xflickrco"),
    "ar": ("Arabic", "xvnli"),
}


def letter_model_section(data: Path, rows: list) -> None:
    """Rule 3c: false credit and real-text accuracy without -> with a letter model of 1,000 references."""
    d = data / "iglue" / "datasets"
    if not d.is_dir():
        print()
        print(f"(no real data at {data}: the letter model cannot be measured)")
        return
    refs: dict[str, list[str]] = {}
    for lg in ("de", "en", "ja", "zh"):
        refs[lg] = [s for r in _jsonl(d / "xFlickrCO/annotations" / lg / "test.jsonl") for s in r["sentences"]]
    refs["ar"] = [r["sentence2"] for r in _jsonl(d / "XVNLI/annotations/ar/test.jsonl")]
    questions: dict[str, list[str]] = {}
    g = data / "xgqa" / "data" / "few_shot"
    for lg in ("de", "en", "zh"):
        if (g / lg / "dev.json").is_file():
            questions[lg] = [
                v["question"] for v in json.loads((g / lg / "dev.json").read_text(encoding="utf-8")).values()
            ]
    print()
    print(
        "# letter model (rule 3c): a model of 1,000 distinct references; false credit and accuracy without -> with it"
    )
    print()
    print("| lang | threshold | nonsense: " + " | ".join(KINDS) + " | all | held-out references | questions |")
    print("|---|---|" + "---|" * (len(KINDS) + 3))
    for lang, (script, task) in MODELLED.items():
        texts = [t for t in dict.fromkeys(refs[lang]) if t.strip()]
        model = LetterModel(texts[:1000])
        metric = LanguageFidelity(TASK_LANGS[task], bootstrap_resamples=0)
        cells = []
        mine = [r for r in rows if r.script == script]
        got = {m: metric.verdicts([r.text for r in mine], lang, m) for m in (None, model)}
        for kind in (*KINDS, None):
            idx = [i for i, r in enumerate(mine) if kind is None or r.kind == kind]
            cells.append(
                " -> ".join(
                    f"{100 * sum(got[m][i] == Verdict.FAITHFUL for i in idx) / len(idx):.0f}%" for m in (None, model)
                )
            )
        for held in (texts[1000:], [q for q in dict.fromkeys(questions.get(lang, []))]):
            if not held:
                cells.append("")
                continue
            acc = [
                sum(v == Verdict.FAITHFUL for v in metric.verdicts(held, lang, m)) / len(held) for m in (None, model)
            ]
            cells.append(f"{100 * acc[0]:.2f}% -> {100 * acc[1]:.2f}% (n={len(held)})")
        print(f"| {lang} | {model.min_gain} | " + " | ".join(cells) + " |")


#: language -> script of its nonsense rows, for the CLDR stand-in
CLDR_LANGS = {
    "el": "Greek",
    "he": "Hebrew",
    "hi": "Devanagari",
    "bn": "Bengali",
    "ta": "Tamil",
    "te": "Telugu",
    "fa": "Arabic",
    "ru": "Cyrillic",
    "uk": "Cyrillic",
    "th": "Thai",
    "ko": "Hangul",
}


def _cldr_strings(lang: str) -> list[str]:
    from babel import Locale

    out: list[str] = []

    def walk(obj: object) -> None:
        if isinstance(obj, str):
            out.append(obj)
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v)
        else:
            try:
                for k in obj:  # type: ignore[attr-defined]
                    walk(obj[k])  # type: ignore[index]
            except Exception:
                pass

    walk(dict(Locale.parse(lang)._data))
    return [t for t in out if sum(ch.isalpha() for ch in t) >= 2]


def cldr_section(rows: list) -> None:
    """The letter model with CLDR's localised names as stand-in references (no captions in these scripts here)."""
    try:
        import babel  # noqa: F401
    except ImportError:
        print()
        print("(--cldr needs the babel package: pip install babel)")
        return
    print()
    print("# letter model with stand-in references: CLDR names (babel), not captions; real = hand-written captions")
    print()
    print(
        "| lang | letters in CLDR | threshold | random letters credited | all nonsense credited | hand-written kept |"
    )
    print("|---|---|---|---|---|---|")
    for lang, script in CLDR_LANGS.items():
        names = _cldr_strings(lang)
        model = LetterModel(names)
        metric = LanguageFidelity(smallest_task_langs(lang), bootstrap_resamples=0)
        mine = [r for r in rows if r.script == script]
        got = {m: metric.verdicts([r.text for r in mine], lang, m) for m in (None, model)}
        letters = [i for i, r in enumerate(mine) if r.kind == "letters"]
        cells = []
        for idx in (letters, list(range(len(mine)))):
            cells.append(
                " -> ".join(
                    f"{100 * sum(got[m][i] == Verdict.FAITHFUL for i in idx) / len(idx):.0f}%" for m in (None, model)
                )
            )
        hand = HANDWRITTEN.get(lang, [])
        kept = [sum(v == Verdict.FAITHFUL for v in metric.verdicts(hand, lang, m)) for m in (None, model)]
        n_letters = sum(ch.isalpha() for t in dict.fromkeys(names) for ch in t)
        print(
            f"| {lang} | {n_letters} | {model.min_gain} | "
            + " | ".join(cells)
            + f" | {kept[0]}/{len(hand)} -> {kept[1]}/{len(hand)} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
