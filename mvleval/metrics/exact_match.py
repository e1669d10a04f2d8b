"""Exact match and relaxed accuracy of short answers after mBLIP's VQA cleaning of the prediction.

mBLIP (``vqa_clean`` in its evaluation code, adapted from LAVIS's ``vqa_eval.py``, itself the official VQA
evaluation) cleans each *prediction* and compares it with the *label*, which is only lower-cased and stripped:

1. remove "\\n" and "\\t" (mBLIP deletes them; LAVIS would replace them with a space), strip;
2. processPunctuation: for each of ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`` in turn: if the *original*
   text has that mark followed or preceded by a space, or contains a digit-comma-digit anywhere, the mark is
   deleted, otherwise it is replaced by a space; then periods not followed by a digit are deleted, at most 32 of
   them (LAVIS passes ``re.UNICODE``, 32, as ``re.sub``'s count argument);
3. processDigitArticle: lower-case, split on whitespace, map number words "none"/"zero".."ten" to digits, drop the
   articles a/an/the, then expand the words listed in the VQA contractions table ("dont" -> "don't"; entries with
   capitals never match, since the text is lower-cased first), join with single spaces;
4. strip and lower-case again.

ExactMatch: cleaned prediction == label. RelaxedAccuracy: the cleaned prediction starts or ends with the label.
With several references an example is correct if any of them matches.

``match="words"`` (benchmark files; the built-in tasks keep mBLIP's rule above, so their published numbers and
signatures stay as they are): the prediction and the label are first NFKC-normalised (full-width "ｙｅｓ" is "yes")
and markdown emphasis is removed from the prediction ("**Yes**" is "Yes"); relaxed accuracy then compares words, not
characters: the cleaned prediction's first or last words equal the label's words ("not sure" no longer counts as
"no", "yesterday" not as "yes"). The signature says so (``clean=...+nfkc+md``, ``rule=first-words|last-words``).

``prediction="strip+lower"`` replaces the VQA cleaning by ``prediction.strip().lower()`` alone: mBLIP's MaXM scoring
(``vqa_maxm_classification_evaluation`` with ``vqa_process: False``), whose answers are in seven languages and whose
labels are MaXM's ``processed_answers``. The signature names the processing (``clean=strip+lower``); the default
keeps the signature the xGQA/MaRVL/XVNLI records were made with.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

from mvleval.metrics.base import Metric, MetricResult, check_inputs
from mvleval.metrics.bootstrap import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    bootstrap_mean_interval,
    bootstrap_signature,
    check_resamples,
)
from mvleval.util.errors import MvlevalError

__all__ = [
    "MATCHING",
    "PREDICTION_PROCESSING",
    "ExactMatch",
    "RelaxedAccuracy",
    "clean_answer",
    "normalize_label",
    "normalize_text",
    "strip_lower",
]

CLEANING_VERSION = "vqa-lavis-mblip-1"

_NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = frozenset({"a", "an", "the"})
_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
# LAVIS's periodStrip is "(?!<=\d)(\.)(?!\d)": its first group is a look-*ahead* (a typo for a look-behind) that
# can never fail right before a ".", so the pattern is exactly "a period not followed by a digit".
_PERIOD = re.compile(r"\.(?!\d)")
_PERIOD_LIMIT = 32  # re.UNICODE's value, passed by LAVIS as the count argument of sub()
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")

# The VQA evaluation's contractions table (key -> expansion), as used by LAVIS and mBLIP; "=" separates the two
# sides. Its oddities are kept: "somebody'd" maps to "somebodyd", keys with capitals never match lower-cased text.
_CONTRACTIONS_TABLE = """
aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've couldnt've=couldn't've
didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've hadn'tve=hadn't've hasnt=hasn't
havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's howd=how'd howll=how'll hows=how's Id've=I'd've
I'dve=I'd've Im=I'm Ive=I've isnt=isn't itd=it'd itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am
mightnt=mightn't mightnt've=mightn't've mightn'tve=mightn't've mightve=might've mustnt=mustn't mustve=must've
neednt=needn't notve=not've oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at 'ows'at='ow's'at 'ow'sat='ow's'at
shant=shan't shed've=she'd've she'dve=she'd've she's=she's shouldve=should've shouldnt=shouldn't
shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd somebodyd've=somebody'd've
somebody'dve=somebody'd've somebodyll=somebody'll somebodys=somebody's someoned=someone'd someoned've=someone'd've
someone'dve=someone'd've someonell=someone'll someones=someone's somethingd=something'd
somethingd've=something'd've something'dve=something'd've somethingll=something'll thats=that's thered=there'd
thered've=there'd've there'dve=there'd've therere=there're theres=there's theyd=they'd theyd've=they'd've
they'dve=they'd've theyll=they'll theyre=they're theyve=they've twas='twas wasnt=wasn't wed've=we'd've
we'dve=we'd've weve=we've werent=weren't whatll=what'll whatre=what're whats=what's whatve=what've whens=when's
whered=where'd wheres=where's whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll
whos=who's whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't
wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll yall'd've=y'all'd've
y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've you'dve=you'd've youll=you'll
youre=you're youve=you've
"""
_CONTRACTIONS = dict(item.split("=", 1) for item in _CONTRACTIONS_TABLE.split())


def _process_punctuation(text: str) -> str:
    # The decision for every mark looks at the text as it came in, not at the text being edited (as LAVIS does).
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for p in _PUNCT:
        if delete_all or (p + " ") in text or (" " + p) in text:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out, count=_PERIOD_LIMIT)


def _process_digit_article(text: str) -> str:
    words = []
    for word in text.lower().split():
        word = _NUMBER_WORDS.get(word, word)
        if word not in _ARTICLES:
            words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def clean_answer(prediction: str) -> str:
    """mBLIP's VQA cleaning of a predicted answer (see the module docstring), then strip + lower-case."""
    text = prediction.replace("\n", "").replace("\t", "").strip()
    return _process_digit_article(_process_punctuation(text)).strip().lower()


def normalize_label(label: str) -> str:
    """mBLIP's processing of a gold label: lower-case and strip only."""
    return label.lower().strip()


def strip_lower(prediction: str) -> str:
    """mBLIP's MaXM processing of a predicted answer: ``prediction.strip().lower()``, nothing else."""
    return prediction.strip().lower()


_EMPHASIS = re.compile(r"(\*{1,3}|_{1,3}|~~|`)(?=\S)(.+?)(?<=\S)\1")


def normalize_text(text: str) -> str:
    """NFKC (full-width letters and digits become ASCII) and markdown emphasis removed: **Yes** -> Yes, `no` -> no."""
    import unicodedata

    text = unicodedata.normalize("NFKC", text)
    previous = None
    while previous != text:  # nested emphasis: ***yes*** or **_yes_**
        previous, text = text, _EMPHASIS.sub(r"\2", text)
    return text.strip().strip("*_`~").strip()


#: How answers are compared: "mblip" (mBLIP's protocol, the built-in tasks) or "words" (benchmark files).
MATCHING = ("mblip", "words")

#: How a prediction is processed before the comparison: name (as in the signature) -> function.
PREDICTION_PROCESSING: dict[str, Callable[[str], str]] = {"vqa": clean_answer, "strip+lower": strip_lower}


class _AnswerMetric(Metric):
    """Shared scoring loop: per-example 0/1 after processing the prediction, corpus mean, bootstrap interval of the mean.

    Args:
        bootstrap_resamples: resamples for the 95% interval (0: none).
        seed: seed of the bootstrap.
        prediction: "vqa" (mBLIP's VQA cleaning, the default) or "strip+lower" (MaXM: strip and lower-case only).
    """

    _rule: ClassVar[str]

    def __init__(
        self,
        bootstrap_resamples: int = DEFAULT_RESAMPLES,
        seed: int = DEFAULT_SEED,
        prediction: str = "vqa",
        match: str = "mblip",
    ) -> None:
        check_resamples(bootstrap_resamples, seed)
        if match not in MATCHING:
            raise MvlevalError(
                f"unknown answer matching {match!r} for {self.name}.", fix=f"use one of: {', '.join(MATCHING)}."
            )
        self.match = match
        if prediction not in PREDICTION_PROCESSING:
            raise MvlevalError(
                f"unknown prediction processing {prediction!r} for {self.name}.",
                fix=f"use one of: {', '.join(PREDICTION_PROCESSING)}.",
            )
        self.bootstrap_resamples = bootstrap_resamples
        self.seed = seed
        self.prediction = prediction
        self._process = PREDICTION_PROCESSING[prediction]

    def signature(self) -> str:
        clean = CLEANING_VERSION if self.prediction == "vqa" else self.prediction
        rule = self._rule
        if self.match == "words":
            clean += "+nfkc+md"
            rule = self._word_rule
        return (
            f"{self.name}|clean={clean}|label=lower+strip|rule={rule}|any-ref|"
            f"{bootstrap_signature(self.bootstrap_resamples, self.seed)}|mvleval-1"
        )

    @staticmethod
    @abstractmethod
    def _correct(cleaned: str, label: str) -> bool:
        """Whether a cleaned prediction counts as matching the (lower-cased, stripped) label."""

    _word_rule: ClassVar[str]

    @staticmethod
    @abstractmethod
    def _correct_words(cleaned: str, label: str) -> bool:
        """The same, comparing whole words (match="words")."""

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]], lang: str) -> MetricResult:
        """Score one language: one prediction and at least one acceptable answer per example.

        Raises:
            MvlevalError: when the lists differ in length, an example has no reference, or an entry is not a string.
        """
        check_inputs(self.name, predictions, references, lang)
        if not predictions:
            return MetricResult(
                value=None, per_example=[], signature=self.signature(), note=f"no examples for language '{lang}'"
            )
        per_example = []
        words = self.match == "words"
        correct = self._correct_words if words else self._correct
        for pred, refs in zip(predictions, references):
            cleaned = self._process(normalize_text(pred) if words else pred)
            ok = any(correct(cleaned, normalize_label(normalize_text(r) if words else r)) for r in refs)
            per_example.append(1.0 if ok else 0.0)
        value = sum(per_example) / len(per_example)
        interval = bootstrap_mean_interval(per_example, self.bootstrap_resamples, self.seed)
        return MetricResult(value=value, per_example=per_example, signature=self.signature(), interval=interval)


class ExactMatch(_AnswerMetric):
    """Share of examples whose cleaned prediction equals a (lower-cased, stripped) reference answer."""

    name: ClassVar[str] = "exact_match"
    _rule: ClassVar[str] = "equal"

    @staticmethod
    def _correct(cleaned: str, label: str) -> bool:
        return cleaned == label

    _word_rule: ClassVar[str] = "equal"

    @staticmethod
    def _correct_words(cleaned: str, label: str) -> bool:
        return cleaned.split() == label.split()


class RelaxedAccuracy(_AnswerMetric):
    """Share of examples whose cleaned prediction starts or ends with a reference answer (mBLIP's relaxed accuracy).

    Note: as in mBLIP, this is a string test, not a word test: "yesterday" starts with "yes".
    """

    name: ClassVar[str] = "relaxed_accuracy"
    _rule: ClassVar[str] = "startswith|endswith"

    @staticmethod
    def _correct(cleaned: str, label: str) -> bool:
        return cleaned.startswith(label) or cleaned.endswith(label)

    _word_rule: ClassVar[str] = "first-words|last-words"

    @staticmethod
    def _correct_words(cleaned: str, label: str) -> bool:
        pred, want = cleaned.split(), label.split()
        if not want:
            return not pred
        return pred[: len(want)] == want or pred[-len(want) :] == want
