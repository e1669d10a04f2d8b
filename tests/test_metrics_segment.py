"""Tests of zh/ja/th segmentation + NFC: parity with spaCy's blank tokenizers (what mBLIP used) on real captions.

Expected token lists in the table were checked by hand against spaCy 3.8's ``spacy.blank(lang)`` output.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from mvleval.metrics.segment import SEGMENTED_LANGUAGES, normalize_captions, segment, segmenter_name

from .test_metrics_ptb import THAI, real_corpora

ROWS = [
    # zh: one token per character, Latin letters and digits included (spaCy's "char" segmenter)
    ("zh", "一只狗在草地上", "一 只 狗 在 草 地 上"),
    ("zh", "我的iPhone 12很好", "我 的 i P h o n e 1 2 很 好"),
    ("zh", "  两 只猫。", "两 只 猫 。"),
    # ja: Sudachi split mode A
    ("ja", "犬が走っている。", "犬 が 走っ て いる 。"),
    # th: PyThaiNLP newmm
    ("th", "ผู้ชายกำลังขี่จักรยานบนถนน", "ผู้ชาย กำลัง ขี่ จักรยาน บน ถนน"),
    # other languages are left alone
    ("en", "A dog  runs.", "A dog  runs."),
]


@pytest.mark.parametrize(("lang", "text", "expected"), ROWS)
def test_table(lang: str, text: str, expected: str) -> None:
    assert segment([text], lang) == [expected]


def test_nfc_for_every_language() -> None:
    decomposed = unicodedata.normalize("NFD", "Ärger über Öl")
    assert normalize_captions([decomposed], "de") == ["Ärger über Öl"]
    assert unicodedata.is_normalized("NFC", normalize_captions([unicodedata.normalize("NFD", "がぎ")], "ja")[0])


def test_nfc_per_caption_equals_joined_pass() -> None:
    # normalize_captions runs NFC once over the joined captions; the expected values are per-caption NFC, computed
    # here with unicodedata directly. Captions start with combining marks (they must not compose across the caption
    # boundary), one holds a newline itself (per-caption path), and already-normalised input passes unchanged.
    texts = ["e\u0301te\u0301", "\u0301a", "\u0308", "", "Ha\u0308user", "x"]
    expected = [unicodedata.normalize("NFC", t) for t in texts]
    assert normalize_captions(texts, "de") == expected
    assert normalize_captions(texts + ["a\nu\u0308"], "fr") == expected + ["a\nü"]
    assert normalize_captions(["plain", "text"], "en") == ["plain", "text"]
    assert normalize_captions([], "en") == []


def test_segmenter_names() -> None:
    assert segmenter_name("zh") == "zh:char"
    assert segmenter_name("ja").startswith("ja:sudachipy-") and "-A-core-" in segmenter_name("ja")
    assert segmenter_name("th").startswith("th:pythainlp-") and segmenter_name("th").endswith("-newmm")
    assert segmenter_name("de") is None
    assert SEGMENTED_LANGUAGES == {"zh", "ja", "th"}


def _spacy_tokens(lang: str, texts: list[str]) -> list[list[str]]:
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank(lang)
    # mBLIP joined token texts with spaces; whitespace tokens vanish in the PTB step, so compare the split
    return [" ".join(t.text for t in nlp(x)).split() for x in texts]


@pytest.mark.parametrize("lang", ["zh", "ja"])
def test_spacy_parity_on_real_captions(shared_data: Path, lang: str) -> None:
    texts = [t for lg, ts in real_corpora(shared_data).values() if lg == lang for t in ts]
    assert len(texts) > 1000
    ours = [s.split() for s in segment(texts, lang)]
    assert ours == _spacy_tokens(lang, texts)


def test_spacy_parity_thai() -> None:
    texts = THAI + ["  ผู้หญิง  ถือ ร่ม  ", "ABC 123 แมว."]
    assert [s.split() for s in segment(texts, "th")] == _spacy_tokens("th", texts)


def test_spacy_parity_edge_cases() -> None:
    texts = ["", " ", "A B", "中文 English 123！", "\u3000全角スペース\u3000です", "…", "ｱｲｳ ＡＢＣ"]
    for lang in ("zh", "ja"):
        assert [s.split() for s in segment(texts, lang)] == _spacy_tokens(lang, texts)
