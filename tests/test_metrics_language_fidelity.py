"""Tests of LanguageFidelity: real references detected as their own language, the short-text and script rules,
nonsense never credited (tables per script and the seeded generator's false-credit rate), languages lingua does not
know, the reference ceiling and the warning when a language's references are not in it (also through
`mvleval data check`).

Rule rows were checked by hand against the rules in the module docstring (the detector rankings they rely on are
lingua 2.1.1's, restricted to the listed languages). Detectors are built once per module (model loading is slow).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from mvleval.metrics import LanguageFidelity
from mvleval.metrics.language_fidelity import (
    Verdict,
    detector_verdict,
    foreign_share,
    judge,
    lingua_names,
    repeat_share,
    script_verdict,
)
from mvleval.testing.gibberish import HANDWRITTEN, gibberish
from mvleval.util.errors import MvlevalError
from tests.helpers import placeholder_images, run_cli

from .test_metrics_ptb import real_corpora

TASK_LANGS = ["ar", "de", "en", "id", "ja", "zh"]


@pytest.fixture(scope="module")
def metric() -> LanguageFidelity:
    return LanguageFidelity(TASK_LANGS, bootstrap_resamples=0)


@pytest.mark.slow  # ~40 s on 2 cores: lingua ranks every real reference
def test_real_references_are_detected_as_their_language(shared_data: Path, metric: LanguageFidelity) -> None:
    """Each language's own references: >= 98% faithful (xFlickrCO de/en/ja/zh, Flickr30k, XVNLI en/ar, MaRVL id/zh)."""
    for name, (lang, texts) in real_corpora(shared_data).items():
        result = metric.score(texts, [[t] for t in texts], lang)
        assert result.value is not None and result.value >= 0.98, (name, result.value)
        assert result.extra["reference_fidelity"] == pytest.approx(result.value)


@pytest.mark.parametrize(
    ("code", "names"),
    [
        ("no", ("BOKMAL", "NYNORSK")),
        ("nb", ("BOKMAL",)),
        ("nn", ("NYNORSK",)),
        ("fil", ("TAGALOG",)),
        ("tl", ("TAGALOG",)),
        ("he", ("HEBREW",)),
        ("zh", ("CHINESE",)),
        ("fa", ("PERSIAN",)),
        ("mi", ("MAORI",)),
        ("quz", None),
        ("xx", None),
    ],
)
def test_language_mapping(code: str, names: tuple[str, ...] | None) -> None:
    assert lingua_names(code) == names


# (text, requested language, verdict of the letter/script checks: None = the detector decides)
SCRIPT_ROWS = [
    ("", "en", Verdict.UNDETERMINED),  # no letters
    ("2", "en", Verdict.UNDETERMINED),
    ("...!", "de", Verdict.UNDETERMINED),
    ("a man", "hi", Verdict.WRONG),  # Latin for Hindi: wrong at any length
    ("एक आदमी", "hi", None),
    ("Мужчина", "en", Verdict.WRONG),
    ("猫", "ja", Verdict.UNDETERMINED),  # Han only: cannot tell Japanese from Chinese
    ("猫がいる", "ja", None),
    ("a cat", "ja", Verdict.WRONG),
    ("一只猫", "zh", None),
    ("a cat", "zh", Verdict.WRONG),
    ("dog", "quz", None),  # Latin-script language: the script is fine
]


@pytest.mark.parametrize(("text", "requested", "expected"), SCRIPT_ROWS)
def test_script_rules(text: str, requested: str, expected: str | None) -> None:
    assert script_verdict(text, requested) == expected


# (text, requested, detector ranking best first, verdict)
DETECTOR_ROWS = [
    ("Ein Hund läuft über die Wiese am Fluss", "de", [("GERMAN", 0.9), ("ENGLISH", 0.1)], Verdict.FAITHFUL),
    ("Ein Hund läuft über die Wiese am Fluss", "de", [("ENGLISH", 0.6), ("GERMAN", 0.4)], Verdict.WRONG),  # long
    ("Hund", "de", [("INDONESIAN", 0.5), ("GERMAN", 0.3), ("ENGLISH", 0.2)], Verdict.FAITHFUL),  # short, top 3
    ("Hund", "de", [("ENGLISH", 0.5), ("GERMAN", 0.3), ("INDONESIAN", 0.2)], Verdict.WRONG),  # English top-1
    ("Hund", "de", [("INDONESIAN", 0.5), ("ENGLISH", 0.3), ("ARABIC", 0.1), ("GERMAN", 0.1)], Verdict.WRONG),
    ("yes", "en", [("INDONESIAN", 0.5), ("ENGLISH", 0.4), ("GERMAN", 0.1)], Verdict.FAITHFUL),
    ("Hund", "de", [("GERMAN", 0.0), ("ENGLISH", 0.0)], Verdict.UNDETERMINED),  # the detector has no opinion
    ("Mann", "no", [("NYNORSK", 0.7), ("BOKMAL", 0.3)], Verdict.FAITHFUL),  # either Norwegian counts
]


@pytest.mark.parametrize(("text", "requested", "ranking", "expected"), DETECTOR_ROWS)
def test_detector_rules(text: str, requested: str, ranking: list[tuple[str, float]], expected: str) -> None:
    assert detector_verdict(text, requested, ranking) == expected
    assert judge(text, requested, ranking) == expected


def test_answers_in_english(metric: LanguageFidelity) -> None:
    """xGQA-style: answers are requested in English whatever the corpus language; digits are undetermined."""
    fidelity = LanguageFidelity(TASK_LANGS, answer_language="en", bootstrap_resamples=0)
    preds = ["yes", "a red car parked on the street", "ein rotes Auto steht auf der Straße", "2", ""]
    refs = [["yes"], ["car"], ["car"], ["2"], ["no"]]
    result = fidelity.score(preds, refs, "de")
    assert result.per_example == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert result.value == pytest.approx(0.4)
    assert result.extra["undetermined"] == pytest.approx(0.4)
    # gold answers yes/car/car/2/no: "2" is undetermined even as a gold answer, the others are English
    assert result.extra["reference_fidelity"] == pytest.approx(0.8)
    assert "answer=en" in result.signature and "lingua-2.1.1" in result.signature


def test_captions_in_corpus_language(metric: LanguageFidelity) -> None:
    preds = ["Ein Hund läuft über eine grüne Wiese.", "A dog runs across a green meadow.", "一只狗在草地上奔跑。"]
    result = metric.score(preds, [["Ein Hund."]] * 3, "de")
    assert result.per_example == [1.0, 0.0, 0.0]
    assert result.interval is None  # bootstrap_resamples=0


def test_unknown_language_is_none_not_zero() -> None:
    fidelity = LanguageFidelity(["en", "quz"])
    result = fidelity.score(["Huk runam"], [["Huk runam"]], "quz")
    assert result.value is None and result.per_example is None
    assert result.note and "quz" in result.note
    assert fidelity.score(["A dog runs on the grass."], [["A dog."]], "en").value == 1.0


def test_interval_and_errors() -> None:
    fidelity = LanguageFidelity(["de", "en"], bootstrap_resamples=100)
    preds = ["Ein Hund läuft über die Wiese."] * 5 + ["A dog runs across the meadow."] * 5
    result = fidelity.score(preds, [["Ein Hund"]] * 10, "de")
    assert result.value == 0.5 and result.interval is not None and result.interval[0] < 0.5 < result.interval[1]
    with pytest.raises(MvlevalError):
        fidelity.score(["a"], [], "de")
    with pytest.raises(MvlevalError):
        LanguageFidelity("en")
    with pytest.raises(MvlevalError):
        LanguageFidelity([])


# -- nonsense ------------------------------------------------------------------------------------------------------
XFLICKRCO = ("de", "en", "es", "id", "ja", "ru", "tr", "zh")
XM3600 = (
    "ar",
    "bn",
    "cs",
    "da",
    "de",
    "el",
    "en",
    "es",
    "fa",
    "fi",
    "fil",
    "fr",
    "he",
    "hi",
    "hr",
    "hu",
    "id",
    "it",
    "ja",
    "ko",
    "mi",
    "nl",
    "no",
    "pl",
    "pt",
    "quz",
    "ro",
    "ru",
    "sv",
    "sw",
    "te",
    "th",
    "tr",
    "uk",
    "vi",
    "zh",
)


@pytest.fixture(scope="module")
def xflickrco() -> LanguageFidelity:
    return LanguageFidelity(XFLICKRCO, bootstrap_resamples=0)


@pytest.fixture(scope="module")
def xm3600() -> LanguageFidelity:
    return LanguageFidelity(XM3600, bootstrap_resamples=0)


# (text, requested, verdict): every row was credited as faithful before rule 2 (rule 1 of lingua 2.1.1, checked with
# bench/bench_fidelity_gibberish.py --rule old); the verdicts follow the module docstring's rules 3a, 3b and 4
NONSENSE_ROWS = [
    ("glglglglglglglglglglglglglglglgl", "tr", Verdict.NOT_LANGUAGE),  # issue 16: the tiny BLOOM model's Turkish
    ("glglgl", "tr", Verdict.NOT_LANGUAGE),
    ("nanananana nanananana", "id", Verdict.NOT_LANGUAGE),
    ("und und und und und und und", "de", Verdict.NOT_LANGUAGE),  # one token repeated
    ("мымымымымымымым", "ru", Verdict.NOT_LANGUAGE),
    ("ти ти ти ти ти ти ти ти", "ru", Verdict.NOT_LANGUAGE),
    ("一个一个一个一个一个", "zh", Verdict.NOT_LANGUAGE),
    ("スポーツスポーツスポーツ", "ja", Verdict.NOT_LANGUAGE),
    ("青iz\ufffd一つ\ufffdblanco", "es", Verdict.NOT_LANGUAGE),  # multi-script soup
    ("<row_2_col_1>Kreisьvierา", "de", Verdict.NOT_LANGUAGE),  # a special token, Cyrillic and Thai in German
    ("Kreis</s><pad>das", "de", Verdict.NOT_LANGUAGE),
    ("der Hund 그리고 사람 läuft", "de", Verdict.NOT_LANGUAGE),
    ("Собака 跑 бежит по траве 草地 的", "ru", Verdict.NOT_LANGUAGE),
    ("xkqvz pwlmt rrbnq zvtk", "de", Verdict.WRONG),  # random Latin letters: German won only by elimination
    ("ыяшоб йкшеде огша эінье оркьмц", "ru", Verdict.WRONG),  # random Cyrillic: far from Russian in the full set
]
NONSENSE_MORE = [  # the same in the other scripts the tasks use
    ("ลาลาลาลาลาลาลาลา", "th"),
    ("λα λα λα λα λα λα", "el"),
    ("ما ما ما ما ما ما ما", "ar"),
    ("נא נא נא נא נא", "he"),
    ("लालालालालालाला", "hi"),
    ("একটি একটি একটি একটি", "bn"),
    ("மாமாமாமாமாமா", "ta"),
    ("నానానానానానా", "te"),
    ("하하하하하하하하", "ko"),
    ("사람 사람 사람 사람", "ko"),
    ("ναυόναναυόναναυ", "el"),
    ("ครับ 没有 ครับ ครับ 什么 ", "th"),
    ("한국 да 사람 ▁ 이", "ko"),
    ("हिंदी भाषा में ελλ", "hi"),
]


@pytest.mark.parametrize(("text", "requested", "expected"), NONSENSE_ROWS)
def test_nonsense_is_not_credited(text: str, requested: str, expected: str, xflickrco: LanguageFidelity) -> None:
    assert xflickrco.verdicts([text], requested) == [expected]
    assert xflickrco.score([text], [["x"]], requested).per_example == [0.0]


@pytest.mark.parametrize(("text", "requested"), NONSENSE_MORE)
def test_nonsense_in_other_scripts(text: str, requested: str, xm3600: LanguageFidelity) -> None:
    assert xm3600.verdicts([text], requested) == [Verdict.NOT_LANGUAGE]


# real text that the new checks must keep crediting: hand-written captions in 20 languages, reduplication that is not
# a loop (banana, Ananas, anak-anak), Latin brand names in zh/ja captions (the most Latin one in xFlickrCO zh: 44%),
# katakana words with the long-vowel mark
REAL_ROWS = [(t, lang) for lang, texts in HANDWRITTEN.items() for t in texts] + [
    ("A large banana tree filled with lots of bananas.", "en"),
    ("banana", "en"),
    ("Ein Handy mit einer Ananas.", "de"),
    ("Anak-anak bermain di taman.", "id"),
    ("一个Sprint的老式按键式手机，他的小屏幕上显示着UpStage", "zh"),
    ("庆祝Kate和Luke回归的彩色蛋糕。", "zh"),
    ("ミスタードーナツのドーナツとコーヒーである", "ja"),
    ("Wie dick ist die Person, hinter der der Tisch steht?", "de"),
    ("A close up of dozens of of oranges stacked.", "en"),
    ("Crosstown行きの白いバスが停車している", "ja"),
    ("人々が公園を歩いている", "ja"),
    ("เด็ก ๆ เล่นฟุตบอล ABC 123.", "th"),
]


TASK_SETS = (XFLICKRCO, ("ar", "en", "es", "fr", "ru"), ("id", "sw", "ta", "tr", "zh"), XM3600)  # +XVNLI, MaRVL


@cache
def _smallest_task_metric(lang: str) -> LanguageFidelity:
    return LanguageFidelity(min((s for s in TASK_SETS if lang in s), key=len), bootstrap_resamples=0)


@pytest.mark.parametrize(("text", "requested"), REAL_ROWS)
def test_real_text_stays_faithful(text: str, requested: str) -> None:
    # judged with the smallest task set that holds the language (restricted to XM3600's 36 languages, "evet",
    # "banana" and the French row are not credited by either rule: lingua's restricted top-1 is another language)
    assert _smallest_task_metric(requested).verdicts([text], requested) == [Verdict.FAITHFUL]


# (text, share of letters in tandem repeats), counted by hand: units repeated 3 times (2.5 from 4 characters on)
REPEAT_ROWS = [
    ("glglgl", 1.0),
    ("banana", 0.0),
    ("dress shirt", 0.0),
    ("ab ab ab xyzw", 6 / 10),
    ("ναυόναναυόναναυ", 1.0),
    ("abcabc", 0.0),
    ("", 0.0),
    ("123 123 123", 0.0),
]


@pytest.mark.parametrize(("text", "share"), REPEAT_ROWS)
def test_repeat_share(text: str, share: float) -> None:
    assert repeat_share(text) == pytest.approx(share)


@pytest.mark.parametrize(
    ("text", "requested", "share"),
    [
        ("Ein Hund", "de", 0.0),
        ("Hundсобака", "de", 6 / 10),
        ("一个Sprint", "zh", 0.0),
        ("<pad>ab", "en", 5 / 7),
        ("猫がいる", "ja", 0.0),
        ("人々", "ja", 0.0),
        ("スーパー", "ja", 0.0),
        ("한국語", "ko", 0.0),
        ("ab\ufffd", "en", 1 / 3),
    ],
)
def test_foreign_share(text: str, requested: str, share: float) -> None:
    assert foreign_share(text, requested) == pytest.approx(share)


#: measured with bench/bench_fidelity_gibberish.py (seed 0, 40 per kind and script: 19.2% overall; rule 1: 84.6%).
#: What is left is random letters of one script (kinds "letters"), which lingua cannot refute where it knows one
#: language of the script (Greek, Hebrew, Thai, Korean, the Indic scripts, Han/kana for zh/ja): 100% there without
#: references (rule 3c, the references' letter model, is tested in tests/test_fidelity_letter_model.py). The bounds
#: leave ~5 points for the smaller sample below; repetitions must never be credited.
FALSE_CREDIT_BOUNDS = {"syllable": 0.0, "token": 0.0, "tiny": 0.10, "mixture": 0.10, "letters": 1.0, "all": 0.25}


def test_false_credit_on_seeded_nonsense_is_bounded() -> None:
    rows = gibberish(seed=0, n_per_kind=12)
    credited: Counter[str] = Counter()
    metrics: dict[str, LanguageFidelity] = {}
    for r in rows:
        langs = XFLICKRCO if r.requested in XFLICKRCO else XM3600  # the smaller task set: fewer rivals
        metric = metrics.setdefault(langs[0] + str(len(langs)), LanguageFidelity(langs, bootstrap_resamples=0))
        if metric.verdicts([r.text], r.requested) == [Verdict.FAITHFUL]:
            credited[r.kind] += 1
            credited["all"] += 1
    total = Counter(r.kind for r in rows)
    total["all"] = len(rows)
    rates = {k: credited[k] / total[k] for k in total}
    for kind, bound in FALSE_CREDIT_BOUNDS.items():
        assert rates[kind] <= bound, (kind, rates[kind], bound)

    # random Latin and Cyrillic letters: the unrestricted top-3 check refuses about a third of what the restricted
    # detector credits (measured on these 80 texts: 20 credited; 30 without that check)
    letters = [r for r in gibberish(seed=0, n_per_kind=40) if r.kind == "letters" and r.script in ("Latin", "Cyrillic")]
    n = sum(
        metrics.setdefault(
            str(r.requested in XFLICKRCO),
            LanguageFidelity(XFLICKRCO if r.requested in XFLICKRCO else XM3600, bootstrap_resamples=0),
        ).verdicts([r.text], r.requested)
        == [Verdict.FAITHFUL]
        for r in letters
    )
    assert n <= 24, n


# -- references that are not in their language ---------------------------------------------------------------------
EN_CAPTIONS = [
    "A dog runs across the green grass.",
    "A man in a red shirt rides a bicycle.",
    "Two children are playing on the beach.",
    "A woman holds a blue umbrella near a car.",
]


def test_score_warns_when_references_are_not_in_the_language(
    xm3600: LanguageFidelity, caplog: pytest.LogCaptureFixture
) -> None:
    bn = HANDWRITTEN["bn"][:3]
    with caplog.at_level(logging.WARNING, logger="mvleval"):
        result = xm3600.score(bn, [[c] for c in EN_CAPTIONS[:3]], "bn")
    assert result.value == 1.0 and result.extra["reference_fidelity"] == 0.0
    [record] = [r for r in caplog.records if r.name.startswith("mvleval")]
    assert record.levelno == logging.WARNING and "'bn' references are not in bn" in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mvleval"):
        xm3600.score(bn, [[c] for c in bn], "bn")
    assert not caplog.records
    assert xm3600.check_references([[c] for c in EN_CAPTIONS], "bn") is not None
    assert xm3600.check_references([[c] for c in EN_CAPTIONS], "en") is None
    # answers requested in English: the references say nothing about the corpus language
    assert LanguageFidelity(XM3600, answer_language="en").check_references([["ja"]], "bn") is None


def test_data_check_warns_about_references_not_in_their_language(tmp_path: Path) -> None:
    """`mvleval data check` on an XM3600 root whose 'bn' captions are English: a warning for bn only, exit 0."""
    data, images = tmp_path / "data", tmp_path / "images"
    (data / "xm3600").mkdir(parents=True)
    (images / "xm3600").mkdir(parents=True)
    rows = []
    for i, en in enumerate(EN_CAPTIONS):
        key = f"{i:016x}"
        placeholder_images([images / "xm3600" / f"{key}.jpg"], size=16)  # data check opens every image
        rows.append(
            {
                "image/key": key,
                "image/locale": "en",
                "en": {"caption": [en]},
                "bn": {"caption": [en]},
                "de": {
                    "caption": [
                        [
                            "Ein Hund läuft über das grüne Gras.",
                            "Ein Mann fährt Fahrrad.",
                            "Zwei Kinder spielen am Strand.",
                            "Eine Frau hält einen Schirm.",
                        ][i]
                    ]
                },
            }
        )
    (data / "xm3600" / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    proc = run_cli(  # in-process, as the console script answers (tests/test_cli_inprocess.py)
        "data",
        "check",
        "--task",
        "xm3600",
        "--data-root",
        str(data),
        "--image-root",
        str(images),
        "-l",
        "en",
        "-l",
        "bn",
        "-l",
        "de",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Warnings:" in out and "bn: the 'bn' references are not in bn" in out, out
    assert "'en' references" not in out and "'de' references" not in out, out
