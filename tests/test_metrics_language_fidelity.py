"""Tests of LanguageFidelity: real references detected as their own language, the short-text and script rules,
languages lingua does not know, and the reference ceiling.

Rule rows were checked by hand against the rules in the module docstring (the detector rankings they rely on are
lingua 2.1.1's, restricted to the listed languages). Detectors are built once per module (model loading is slow).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mvleval.errors import MvlevalError
from mvleval.metrics import LanguageFidelity
from mvleval.metrics.language_fidelity import Verdict, detector_verdict, judge, lingua_names, script_verdict

from .test_metrics_ptb import real_corpora

TASK_LANGS = ["ar", "de", "en", "id", "ja", "zh"]


@pytest.fixture(scope="module")
def metric() -> LanguageFidelity:
    return LanguageFidelity(TASK_LANGS, bootstrap_resamples=0)


def test_real_references_are_detected_as_their_language(shared_data: Path, metric: LanguageFidelity) -> None:
    """Each language's own references: >= 98% faithful (xFlickrCO de/en/ja/zh, Flickr30k, XVNLI en/ar, MaRVL id/zh)."""
    for name, (lang, texts) in real_corpora(shared_data).items():
        result = metric.score(texts, [[t] for t in texts], lang)
        assert result.value is not None and result.value >= 0.98, (name, result.value)
        assert result.extra["reference_fidelity"] == pytest.approx(result.value)


@pytest.mark.parametrize(
    ("code", "names"),
    [("no", ("BOKMAL", "NYNORSK")), ("nb", ("BOKMAL",)), ("nn", ("NYNORSK",)), ("fil", ("TAGALOG",)),
     ("tl", ("TAGALOG",)), ("he", ("HEBREW",)), ("zh", ("CHINESE",)), ("fa", ("PERSIAN",)), ("mi", ("MAORI",)),
     ("quz", None), ("xx", None)],
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
