"""Language fidelity with lingua's rankings kept on disk (mvleval.metrics.ranking_cache): the verdicts are the ones
lingua's own detectors give, whether a ranking is made now or read back, and a text ranked before loads no model.

The table holds real-looking captions, questions and answers across scripts, wrong-language captions and random
letters; its rows that lingua's *unrestricted* detector decides (restricted top-1 is the requested language, but it
is not among the full top 3) are counted, so that a cache that handed one detector's ranking to the other (a key
without the detector's languages), or a ranking that dropped a language that matters, fails here.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from mvleval.benchmarks.registry import load_task
from mvleval.metrics import LanguageFidelity, ranking_cache
from mvleval.metrics import language_fidelity as lf
from mvleval.metrics.language_fidelity import Verdict, detector_verdict, judge
from mvleval.testing.gibberish import HANDWRITTEN

# the detector languages of the two caption tasks, as their runs build them
XFLICKRCO = tuple(load_task("xflickrco").languages)
XM3600 = tuple(load_task("xm3600").languages)

# (text, requested): captions and questions in their language (short and long, 120+ characters: trigrams only),
# captions in a neighbour of the requested language (won by the requested one only by elimination in a task's set),
# answers, and random letters
TABLE = [(t, lang) for lang, texts in HANDWRITTEN.items() for t in texts] + [
    ("A black and white dog is running in a grassy garden surrounded by a white fence.", "en"),
    ("The man with pierced ears is wearing glasses and an orange hat.", "en"),
    (
        "Five snowmobile riders all wearing helmets and goggles line up in a snowy clearing in a forest in front of their "
        "snowmobiles; they are about to start a race.",
        "en",
    ),
    ("Ein Mann mit einer orangefarbenen Mütze starrt auf etwas, während hinter ihm Menschen vorbeigehen.", "de"),
    ("Zwei Hunde spielen im Schnee.", "de"),
    ("Een man met een oranje hoed kijkt naar iets in de verte.", "de"),  # Dutch requested in German
    ("Un uomo con un cappello arancione guarda qualcosa.", "es"),  # Italian requested in Spanish
    ("Um homem com um chapéu laranja olha para algo.", "es"),  # Portuguese requested in Spanish
    ("En mand med en orange hat kigger på noget.", "de"),  # Danish requested in German
    ("A man with an orange hat looks at something.", "de"),  # English requested in German
    ("Seorang pria dengan topi oranye sedang melihat sesuatu.", "id"),
    ("Bir adam turuncu şapkayla bir şeye bakıyor.", "tr"),
    ("Мужчина в оранжевой шапке смотрит на что-то вдали.", "ru"),
    ("Чоловік у помаранчевому капелюсі дивиться на щось.", "ru"),  # Ukrainian requested in Russian
    ("一个戴着橙色帽子的男人正在看着什么东西。", "zh"),
    ("オレンジ色の帽子をかぶった男性が何かを見ている。", "ja"),
    ("What color is the car parked near the house?", "en"),
    ("yes", "en"),
    ("two", "en"),
    ("Ja", "de"),
    ("xkqvz pwlmt rrbnq zvtk", "de"),
    ("ыяшоб йкшеде огша эінье оркьмц", "ru"),
    ("vorbelin kastu mirelon sabetra", "es"),
    ("qwe rty uiop asdf ghjkl zxcvb", "en"),
    ("Lorem ipsum dolor sit amet, consectetur adipiscing elit.", "en"),
]


def _lingua_verdicts(metric: LanguageFidelity, rows: list[tuple[str, str]]) -> tuple[list[str], int]:
    """The rule applied to lingua's own detectors, built here (no cache, no model-loading steps of mvleval's): the
    verdicts, and how many rows the unrestricted detector decided."""
    from lingua import Language, LanguageDetectorBuilder

    full_detector = LanguageDetectorBuilder.from_all_languages().build()
    verdicts, decided_by_full = [], 0
    for text, requested in rows:
        names = metric._detector_names(requested)
        restricted = LanguageDetectorBuilder.from_languages(*(getattr(Language, n) for n in names)).build()
        ranking = [(c.language.name, c.value) for c in restricted.compute_language_confidence_values(text)]
        full = [(c.language.name, c.value) for c in full_detector.compute_language_confidence_values(text)]
        verdict = judge(text, requested, ranking, full)
        if verdict == Verdict.WRONG and judge(text, requested, ranking) == Verdict.FAITHFUL:
            decided_by_full += 1
        verdicts.append(verdict)
    return verdicts, decided_by_full


def _verdicts(metric: LanguageFidelity, rows: list[tuple[str, str]]) -> list[str]:
    by_lang: dict[str, list[int]] = {}
    for i, (_, requested) in enumerate(rows):
        by_lang.setdefault(requested, []).append(i)
    out = [""] * len(rows)
    for requested, idx in by_lang.items():
        for i, verdict in zip(idx, metric.verdicts([rows[i][0] for i in idx], requested), strict=True):
            out[i] = verdict
    return out


# XM3600's 36 languages hold most neighbours already: fewer rows are left to the unrestricted detector there
@pytest.mark.parametrize(
    ("task_langs", "min_decided_by_full"), [(XFLICKRCO, 3), (XM3600, 1)], ids=["xflickrco", "xm3600"]
)
def test_cached_rankings_give_lingua_verdicts(
    task_langs: tuple[str, ...], min_decided_by_full: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MVLEVAL_CACHE_DIR", str(tmp_path))
    metric = LanguageFidelity(task_langs, bootstrap_resamples=0)
    rows = [(t, lang) for t, lang in TABLE if lang in task_langs]
    expected, decided_by_full = _lingua_verdicts(metric, rows)
    # the table must exercise what a wrong cache would break: rows the unrestricted detector turns to "wrong"
    assert decided_by_full >= min_decided_by_full, (decided_by_full, Counter(expected))
    assert Counter(expected)[Verdict.FAITHFUL] >= len(rows) // 2

    made_now = _verdicts(metric, rows)  # ranked by lingua, kept on disk
    assert made_now == expected
    stored = sqlite3.connect(tmp_path / ranking_cache.FILE_NAME).execute("SELECT count(*) FROM rankings").fetchone()[0]
    assert stored >= len(rows)

    # a fresh process's view: the file only, and lingua never asked (no model may load)
    monkeypatch.setattr(ranking_cache, "_CACHES", {})

    def no_loading(*args: object) -> None:
        raise AssertionError(f"a ranking was made although it is on disk: {args}")

    monkeypatch.setattr(lf, "_load_models", no_loading)
    assert _verdicts(LanguageFidelity(task_langs, bootstrap_resamples=0), rows) == expected


def test_each_detector_has_its_own_rankings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same text ranked by the restricted and the unrestricted detector, and by another lingua version, is kept
    under different keys."""
    monkeypatch.setenv("MVLEVAL_CACHE_DIR", str(tmp_path))
    text = "Een man met een oranje hoed kijkt naar iets in de verte."  # Dutch: German wins only among xFlickrCO's
    names = LanguageFidelity(XFLICKRCO)._detector_names("de")
    restricted, full = lf._ranking(names, text), lf._ranking((), text)
    assert restricted[0][0] == "GERMAN" and full[0][0] == "DUTCH"
    assert detector_verdict(text, "de", restricted, full) == Verdict.WRONG
    assert len(restricted) == len(full) == ranking_cache.RANKS_KEPT
    keys = {ranking_cache.ranking_key(v, n, text) for v in ("2.1.1", "2.2.0") for n in (names, ())}
    assert len(keys) == 4
    ranking_cache.flush_all()
    monkeypatch.setattr(ranking_cache, "_CACHES", {})
    # read back from the file, to the last bit (lingua's own confidences vary in the last bits from call to call)
    assert lf._ranking(names, text) == restricted and lf._ranking((), text) == full


def test_a_cache_that_cannot_be_written_is_said_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x", encoding="utf-8")
    monkeypatch.setenv("MVLEVAL_CACHE_DIR", str(blocker))
    metric = LanguageFidelity(XFLICKRCO, bootstrap_resamples=0)
    texts = ["A black and white dog is running in a grassy garden.", "Zwei Hunde spielen im Schnee."]
    with caplog.at_level("WARNING", logger="mvleval.metrics.language_fidelity"):
        first = metric.verdicts(texts[:1], "en") + metric.verdicts(texts[1:], "de")
    warnings = [r.getMessage() for r in caplog.records if "cannot be cached" in r.getMessage()]
    assert len(warnings) == 1 and str(blocker / ranking_cache.FILE_NAME) in warnings[0], caplog.text
    assert "MVLEVAL_CACHE_DIR" in warnings[0]
    assert first == [Verdict.FAITHFUL, Verdict.FAITHFUL]


def test_a_damaged_cache_file_is_said_and_scoring_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MVLEVAL_CACHE_DIR", str(tmp_path))
    (tmp_path / ranking_cache.FILE_NAME).write_bytes(b"this is not a database" * 100)
    with caplog.at_level("WARNING", logger="mvleval.metrics.language_fidelity"):
        verdicts = LanguageFidelity(XFLICKRCO, bootstrap_resamples=0).verdicts(["Zwei Hunde spielen im Schnee."], "de")
    assert verdicts == [Verdict.FAITHFUL]
    assert "delete the file" in caplog.text and ranking_cache.FILE_NAME in caplog.text
