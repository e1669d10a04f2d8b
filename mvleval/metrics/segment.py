"""Word segmentation of zh/ja/th captions before CIDEr, as mBLIP did it with spaCy's blank tokenizers, plus NFC.

mBLIP segmented predictions and references with ``spacy.blank(lang)`` and joined the token texts with spaces,
then applied NFC (``unicodedata.normalize("NFC", ...)``) to every caption of every language. spaCy's defaults are:

* zh: the "char" segmenter, one token per character: every non-whitespace character (Han, Latin letters and
  digits alike: "iPhone" becomes "i P h o n e") is its own token;
* ja: SudachiPy with the sudachidict_core dictionary in split mode A (spaCy's default when no mode is given);
* th: PyThaiNLP's ``word_tokenize`` with its default engine, "newmm".

We call the same libraries directly (no spaCy at run time); tests check parity with spaCy itself. Whitespace
tokens that spaCy keeps are dropped here: the PTB tokenizer splits on whitespace anyway, so the tokens are equal.
Segmenters load on first use and are cached (Sudachi's dictionary takes about a second).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib import metadata

from mvleval.util.errors import MissingDependencyError

__all__ = ["SEGMENTED_LANGUAGES", "normalize_captions", "segment", "segmenter_name"]

#: Languages whose captions are segmented before tokenisation (dataset codes).
SEGMENTED_LANGUAGES = frozenset({"zh", "ja", "th"})


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "missing"


def segmenter_name(lang: str) -> str | None:
    """The segmenter used for `lang` with its library version (for signatures), or None when there is none.

    Reads package metadata only: no segmenter is loaded.
    """
    if lang == "zh":
        return "zh:char"
    if lang == "ja":
        return f"ja:sudachipy-{_version('sudachipy')}-A-core-{_version('sudachidict_core')}"
    if lang == "th":
        return f"th:pythainlp-{_version('pythainlp')}-newmm"
    return None


@lru_cache(maxsize=1)
def _sudachi() -> Callable[[str], list[str]]:
    try:
        from sudachipy import dictionary, tokenizer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "sudachipy", "Segmenting Japanese captions for CIDEr", "pip install sudachipy sudachidict_core"
        ) from exc
    try:
        tok = dictionary.Dictionary().create(mode=tokenizer.Tokenizer.SplitMode.A)
    except Exception as exc:  # sudachipy raises its own error type when the dictionary package is missing
        raise MissingDependencyError("sudachidict_core", "Segmenting Japanese captions for CIDEr") from exc
    mode = tokenizer.Tokenizer.SplitMode.A

    def run(text: str) -> list[str]:
        # spaCy drops empty surfaces (Sudachi produces them for some normalised characters, e.g. "…")
        return [m.surface() for m in tok.tokenize(text, mode) if m.surface()]

    return run


@lru_cache(maxsize=1)
def _thai() -> Callable[[str], list[str]]:
    try:
        from pythainlp.tokenize import word_tokenize
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("pythainlp", "Segmenting Thai captions for CIDEr") from exc

    def run(text: str) -> list[str]:
        return list(word_tokenize(text, engine="newmm"))

    return run


def _chars(text: str) -> list[str]:
    return [ch for ch in text if not ch.isspace()]


def _segmenter(lang: str) -> Callable[[str], list[str]] | None:
    if lang == "zh":
        return _chars
    if lang == "ja":
        return _sudachi()
    if lang == "th":
        return _thai()
    return None


def segment(texts: Sequence[str], lang: str) -> list[str]:
    """Segment captions of language `lang` into space-separated words (unchanged for other languages).

    Args:
        texts: captions.
        lang: dataset language code; only zh, ja and th are segmented.

    Returns:
        One string per caption, tokens joined by single spaces (not yet NFC-normalised).
    """
    seg = _segmenter(lang)
    if seg is None:
        return list(texts)
    cache: dict[str, str] = {}
    out = []
    for text in texts:
        done = cache.get(text)
        if done is None:
            done = " ".join(w for w in seg(text) if not w.isspace())
            cache[text] = done
        out.append(done)
    return out


def normalize_captions(texts: Sequence[str], lang: str) -> list[str]:
    """mBLIP's caption preprocessing before the PTB tokenizer: segmentation (zh/ja/th), then NFC for all.

    Args:
        texts: raw captions (predictions or references).
        lang: dataset language code.

    Returns:
        The captions, segmented where the language needs it and NFC-normalised.
    """
    texts = segment(texts, lang)
    if not texts:
        return texts
    # One NFC pass over the joined corpus, with a separator no caption holds: NFC never composes across a control
    # character (a starter that combines with nothing). The common already-normalised case is one quick check.
    for sep in ("\n", "\x00", "\x1f"):
        joined = sep.join(texts)
        if joined.count(sep) == len(texts) - 1:
            if unicodedata.is_normalized("NFC", joined):
                return texts
            return unicodedata.normalize("NFC", joined).split(sep)
    return [unicodedata.normalize("NFC", t) for t in texts]
