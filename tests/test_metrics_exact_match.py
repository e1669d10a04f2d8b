"""Tests of mBLIP's VQA answer cleaning, ExactMatch and RelaxedAccuracy.

Every expected value below was worked out by hand from the cleaning steps of LAVIS's vqa_eval as mBLIP applies
them (mBLIP's ``vqa_clean``: newline/tab removal, processPunctuation, processDigitArticle), step noted per row.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mvleval.metrics import ExactMatch, RelaxedAccuracy
from mvleval.metrics.exact_match import clean_answer, normalize_label
from mvleval.util.errors import MvlevalError

CLEAN_ROWS = [
    ("Two.", "2"),  # period not followed by a digit deleted; number word -> digit
    ("the cat", "cat"),  # article dropped
    ("An apple", "apple"),
    ("yes.", "yes"),
    ("yes!", "yes"),  # "!" has no space next to it: replaced by a space, then split away
    ("", ""),
    ("!!!", ""),  # only punctuation
    ("...", ""),
    ("dont", "don't"),  # contractions table
    ("I don't know", "i don't know"),  # the apostrophe is not in the punctuation list
    ("Im", "im"),  # table keys with capitals never match lower-cased words
    ("somebody'd", "somebodyd"),  # the table's reversed entry
    ("1,000", "1000"),  # a digit-comma-digit anywhere: every mark is deleted instead of spaced
    ("red, white", "red white"),  # ", " present: "," deleted
    ("red,white", "red white"),  # no space next to ",": replaced by a space
    ("left-hand", "left hand"),
    ("a - b", "b"),  # "- " present: "-" deleted, then the article "a" dropped
    ("3.5", "3.5"),  # a period before a digit stays
    ("Yes, it is", "yes it is"),
    ("none", "0"),
    ("ten", "10"),
    ("eleven", "eleven"),  # only zero..ten are mapped
    ("The answer is no.", "answer is no"),
    ("\tno\n", "no"),
    ("red\ncar", "redcar"),  # mBLIP deletes newlines (LAVIS would put a space)
    ("x" + "." * 40, "x" + "." * 8),  # at most 32 periods are deleted (re.UNICODE passed as count)
    ("(yes)", "yes"),
    ('"no"', "no"),
    ("yes/no", "yes no"),
    ("A: 2", "a: 2"),  # ":" is not in the list, so "a:" is not an article
    ("It's red.", "it's red"),
    ("¿sí?", "¿sí"),
]


@pytest.mark.parametrize(("prediction", "expected"), CLEAN_ROWS)
def test_clean_answer(prediction: str, expected: str) -> None:
    assert clean_answer(prediction) == expected


# (prediction, references, exact match, relaxed accuracy)
SCORE_ROWS = [
    ("Two.", ["2"], 1.0, 1.0),
    ("two dogs", ["2"], 0.0, 1.0),  # starts with the label
    ("The answer is no.", ["no"], 0.0, 1.0),  # ends with the label
    ("yesterday", ["yes"], 0.0, 1.0),  # a string test, as in mBLIP: "yesterday" starts with "yes"
    ("yes.", ["Yes "], 1.0, 1.0),  # the label is only lower-cased and stripped
    ("", ["no"], 0.0, 0.0),
    ("!!!", ["yes"], 0.0, 0.0),
    ("dog", ["cat", "dog"], 1.0, 1.0),  # any reference
    ("the cat", ["the cat"], 0.0, 0.0),  # the label keeps its article, the prediction loses it: no match at all
    ("left", ["right"], 0.0, 0.0),
]


@pytest.mark.parametrize(("prediction", "refs", "em", "relaxed"), SCORE_ROWS)
def test_scores(prediction: str, refs: list[str], em: float, relaxed: float) -> None:
    assert ExactMatch(bootstrap_resamples=0).score([prediction], [refs], "en").per_example == [em]
    assert RelaxedAccuracy(bootstrap_resamples=0).score([prediction], [refs], "en").per_example == [relaxed]


def test_corpus_result() -> None:
    preds = [r[0] for r in SCORE_ROWS]
    refs = [r[1] for r in SCORE_ROWS]
    em = ExactMatch().score(preds, refs, "de")
    rel = RelaxedAccuracy().score(preds, refs, "de")
    assert em.value == pytest.approx(sum(r[2] for r in SCORE_ROWS) / len(SCORE_ROWS))
    assert rel.value == pytest.approx(sum(r[3] for r in SCORE_ROWS) / len(SCORE_ROWS))
    assert em.interval is not None and em.interval[0] <= em.value <= em.interval[1]
    assert em.interval == ExactMatch().score(preds, refs, "de").interval  # seeded
    assert em.signature.startswith("exact_match|clean=vqa-lavis-mblip-1|label=lower+strip|")
    assert "boot=1000,seed=0" in em.signature
    assert (ExactMatch.name, RelaxedAccuracy.name) == ("exact_match", "relaxed_accuracy")


def test_empty_corpus() -> None:
    result = ExactMatch().score([], [], "en")
    assert result.value is None and result.note


@pytest.mark.parametrize(("preds", "refs"), [(["a"], []), (["a"], [[]]), ([None], [["a"]]), (["a"], ["a"])])
def test_bad_input(preds: list, refs: list) -> None:
    with pytest.raises(MvlevalError):
        ExactMatch().score(preds, refs, "en")


_ALPHABET = st.sampled_from(
    list("abcdeyson tTwhA .,;:!?-/()[]\"'`_+=<>@\\{}0123456789\n\t")
    + ["two", "none", "the ", "an ", "dont", "yall", "é", "İ", "ß", "中", "\u3000", "..."]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=30).map("".join))
def test_cleaning_is_idempotent(text: str) -> None:
    # LAVIS's cleaning is idempotent except past its 32-period limit
    if text.count(".") <= 32:
        once = clean_answer(text)
        assert clean_answer(once) == once


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text())
def test_never_crashes_and_em_le_relaxed(prediction: str, label: str) -> None:
    cleaned = clean_answer(prediction)
    assert isinstance(cleaned, str)
    em = ExactMatch(bootstrap_resamples=0).score([prediction], [[label]], "xx").per_example
    rel = RelaxedAccuracy(bootstrap_resamples=0).score([prediction], [[label]], "xx").per_example
    assert em is not None and rel is not None and em[0] <= rel[0]
    assert (em[0] == 1.0) == (cleaned == normalize_label(label))
