"""Choice accuracy: the label a multiple-choice answer names, extracted by one deterministic cascade, vs the gold label.

exact_match cannot score letter labels: mBLIP's VQA cleaning deletes the article "a", so a correct "A" becomes "".
Chat models answer "The answer is (B).", "答案：B", "Jibu ni B" or "Ｂ"; reading the first letter would score them as
"T", nothing and nothing. Every prediction goes through Unicode NFKC (full-width letters and digits become ASCII), then
the first of these rules that finds a label decides (``extract_choice``; the rule is kept per sample):

1. ``label``: the prediction is a label alone, or starts with one followed by punctuation or that choice's text
   ("B", "(B)", "B.", "B)", "**B**", "B: Katze", "B Katze"; not "A or B");
2. ``answer-phrase``: an answer phrase followed by a label ("The answer is B", "Answer: (B)", "option B", "答案是B",
   "正解はB", "정답은 B", "Antwort: B", "réponse : B", "respuesta: B", "jibu ni B", "उत्तर: B", "cevap: B", "ответ: B",
   "\\boxed{B}", ... in the languages of ANSWER_PHRASES); when there are several, the **last** one wins ("The answer is
   not A. The answer is B.");
3. ``choice-text``: the text of exactly one choice appears in the prediction (NFKC, case-folded, whitespace collapsed;
   a choice whose every occurrence lies inside a longer matching choice's text does not count: "dark red" is not
   also "red");
4. ``lone-label``: exactly one label stands alone as a word (a capital "A" followed by a lower-case word is the English
   article, not a label);
5. ``format-error``: nothing. The sample scores 0 and counts in ``format_error_rate``. Never a random guess.

With ``script_letters`` (Kaleidoscope, whose authors' parser does the same), a label written in another script's
letters counts as the Latin one before the cascade runs: Б->B, Ц->C, Д->D, Г->D (Cyrillic), أ->A, ب->B, ج->C, د->D
(Arabic), each only where it stands alone (not inside a word). The signature says so (``script-letters=kaleidoscope``);
the metric then also reports ``valid_accuracy``, the accuracy over the answers that name a label.

With ``answer_tags`` (Kaleidoscope's chain-of-thought regime, which asks for the final answer between ``<ANSWER>`` and
``</ANSWER>``), only the text inside the last such pair is read, by the same cascade; an answer without the tags counts
only when it is nothing but a label ("B", "(B)", "B.") or the direct regime's JSON (``{"choice": "B"}``), as the
authors' strict reading allows; anything else is a format error (reasoning names many letters before its answer). The
signature says ``answer-tags``.

Labels are A, B, C, ... by default (as many as the example has choices) or the benchmark's own (``labels`` in a
benchmark folder's header, e.g. Thai ก ข ค ง). ASCII labels match case-insensitively where a label cannot be a word
(after an answer phrase, a lower-case label counts only before punctuation or the end). The cascade's version is part
of the signature (``extract=cascade-1``): change a rule, bump it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

from mvleval.metrics.base import MeanMetric, MetricResult, check_inputs
from mvleval.metrics.bootstrap import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    bootstrap_signature,
)

CASCADE_VERSION = "cascade-1"
DEFAULT_LABELS: tuple[str, ...] = tuple(chr(ord("A") + i) for i in range(26))
RULES = ("label", "answer-phrase", "choice-text", "lone-label", "format-error")

# Answer phrases, each a regex (matched case-insensitively after NFKC) that ends where the label may start: separators
# (spaces, colons, dashes, brackets, quotes, markdown) between phrase and label are skipped by the extractor. Latin
# phrases are matched as whole words. Add a language here and a row to tests/test_metrics_choice.py.
ANSWER_PHRASES: tuple[str, ...] = (
    # English
    r"(?:final |correct |right |best )?answer(?: choice| option)?(?: is| would be| should be| will be| must be)?",
    r"(?:correct |right |best )?(?:option|choice)(?: is)?",
    r"(?:i (?:would )?(?:choose|pick|select))",
    r"\\boxed\{",
    # German, Dutch
    r"(?:richtige |korrekte )?antwort(?: ist| lautet)?",
    r"antwoord(?: is)?",
    # French, Spanish, Portuguese, Italian, Romanian
    r"(?:bonne )?r[ée]ponse(?: correcte)?(?: est)?",
    r"respuesta(?: correcta)?(?: es)?",
    r"resposta(?: correta)?(?: é)?",
    r"risposta(?: corretta)?(?: è)?",
    r"răspuns(?:ul)?(?: corect)?(?: este)?",
    # Swahili, Indonesian, Filipino, Turkish, Vietnamese
    r"jibu(?: sahihi| lake)?(?: ni)?",
    r"jawaban(?:nya)?(?: yang benar)?(?: adalah| ialah)?",
    r"(?:ang )?sagot(?: ay)?",
    r"(?:doğru )?(?:cevap|yanıt)(?:ım)?(?: şudur)?",
    r"(?:câu trả lời|đáp án)(?: đúng)?(?: là)?",
    # Polish, Czech, Finnish, Swedish/Norwegian/Danish, Hungarian, Greek
    r"(?:poprawna )?odpowiedź(?: to)?",
    r"(?:správná )?odpověď(?: je)?",
    r"vastaus(?: on)?",
    r"svar(?:et)?(?: är| er)?",
    r"(?:a )?(?:helyes )?válasz(?: a| az)?",
    r"(?:σωστή )?απάντηση(?: είναι)?",
    # Russian, Ukrainian
    r"(?:правильный )?(?:ответ|вариант)(?: —| -)?",
    r"(?:правильна )?(?:відповідь|варіант)(?: —| -)?",
    # Arabic, Hebrew, Persian
    r"(?:ال)?(?:إجابة|اجابة)(?: الصحيحة)?(?: هي)?",
    r"(?:ال)?جواب(?: الصحيح)?(?: هو)?",
    r"(?:ה)?תשובה(?: הנכונה)?(?: היא)?",
    r"پاسخ(?: درست)?(?: است)?",
    # Hindi, Bengali, Tamil, Telugu, Thai
    r"(?:सही )?उत्तर(?: है)?",
    r"(?:সঠিক )?উত্তর(?: হল| হলো)?",
    r"(?:சரியான )?பதில்",
    r"(?:సరైన )?సమాధానం",
    r"คำตอบ(?:ที่ถูกต้อง)?(?:คือ)?",
    # Chinese, Japanese, Korean
    r"答案(?:是|为|為|應該是|应该是)?",
    r"选项|選項|选择|選擇",
    r"正解(?:は)?",
    r"答え(?:は)?",
    r"回答(?:は)?",
    r"정답(?:은|는)?",
    r"답(?:은|는)?",
    r"선택지",
)

# what may sit between an answer phrase and its label, or around a label
_SEP = r"[\s:：\-–—=*_\"'“”‘’«»「」『』\[(（【]*"
_LATIN = r"A-Za-z0-9\u00C0-\u024F"
# combining marks (not \w in Python's re): a Thai consonant followed by a vowel sign is a syllable, not a label
_MARKS = r"\u0300-\u036F\u0900-\u0903\u093A-\u094F\u0E31\u0E33-\u0E3A\u0E47-\u0E4E"
# a capital A before a lower-case word is the English article ("A cat sits..."), unless the word is a conjunction
_CONJUNCTIONS = {
    "or",
    "and",
    "nor",
    "vs",
    "versus",
    "and/or",
    "oder",
    "und",
    "ou",
    "et",
    "o",
    "y",
    "e",
    "of",
    "en",
    "veya",
    "ya",
    "ve",
    "atau",
    "dan",
    "au",
    "na",
    "hoặc",
    "và",
    "eller",
    "och",
    "tai",
    "ja",
    "lub",
    "i",
    "nebo",
    "sau",
    "vagy",
    "или",
    "и",
    "або",
    "ή",
    "και",
    "أو",
    "או",
    "या",
    "और",
    "অথবা",
    "அல்லது",
}
_ARTICLE_LIKE = {"A", "I", "O", "E", "Y", "U"}


#: letters of other scripts that Kaleidoscope's authors read as A-D (israfelsr/kaleidoscope; see the module docstring)
SCRIPT_LETTERS: dict[str, str] = {"Б": "B", "Ц": "C", "Д": "D", "Г": "D", "أ": "A", "ب": "B", "ج": "C", "د": "D"}
_SCRIPT_LETTER = re.compile(rf"(?<![\w{_MARKS}])([{''.join(SCRIPT_LETTERS)}])(?![\w{_MARKS}])")


def map_script_letters(text: str) -> str:
    """`text` with each standalone letter of SCRIPT_LETTERS replaced by its Latin label."""
    return _SCRIPT_LETTER.sub(lambda m: SCRIPT_LETTERS[m.group(1)], text)


@dataclass(frozen=True)
class Extraction:
    """What the cascade found: the label (None for a format error) and the rule that found it (one of RULES)."""

    label: str | None
    rule: str


def _norm_text(text: str) -> str:
    """NFKC, case-folded, markdown emphasis removed, whitespace collapsed: how choice texts are compared."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("*", "").replace("`", "")
    return " ".join(text.split())


def _is_ascii_label(label: str) -> bool:
    return label.isascii() and label.isalpha()


@lru_cache(maxsize=64)
def _patterns(labels: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """(rule-1 start, rule-2 phrase + label, rule-4 lone label) regexes for one label set."""
    alternation = "|".join(re.escape(lbl) for lbl in sorted(labels, key=len, reverse=True))
    # a label ends where no letter of its own script follows (ASCII labels: no Latin letter or digit; others: no
    # word character, but "ข" may be followed by Thai politeness particles)
    after = (
        rf"(?![{_LATIN}])" if all(_is_ascii_label(lbl) for lbl in labels) else rf"(?:(?![\w{_MARKS}])|(?=ครับ|ค่ะ|คะ|นะ))"
    )
    start = re.compile(
        rf"^[\s*_\"'“‘(\[（【「]*(?P<label>{alternation}){after}(?P<rest>.*)$", re.IGNORECASE | re.DOTALL
    )
    phrases = "|".join(f"(?:{unicodedata.normalize('NFKC', p)})" for p in ANSWER_PHRASES)
    # Latin phrases start at a word boundary: "unanswerable" holds no "answer"
    phrase = re.compile(
        rf"(?<![{_LATIN}])(?:{phrases}){_SEP}(?P<label>{alternation}){after}(?=(?P<rest>.{{0,40}}))",
        re.IGNORECASE | re.DOTALL,
    )
    before = rf"(?<![{_LATIN}])" if all(_is_ascii_label(lbl) for lbl in labels) else rf"(?<![\w{_MARKS}])"
    lone = re.compile(rf"{before}(?P<label>{alternation}){after}(?=(?P<rest>.{{0,40}}))", re.DOTALL)
    return start, phrase, lone


def _canonical(found: str, labels: Sequence[str]) -> str | None:
    for label in labels:
        if found == label or (_is_ascii_label(label) and found.upper() == label.upper()):
            return label
    return None


def _first_word(rest: str) -> str:
    match = re.match(r"\s+([^\s.,;:!?()]+)", rest)
    return match.group(1) if match else ""


def _rest_names_choice(rest: str, choice: str | None) -> bool:
    """True when `rest` (the text after a label) begins with the label's choice text, after separators."""
    if not choice:
        return False
    body = _norm_text(re.sub(rf"^{_SEP}", "", rest.lstrip(".)]）】」:：")))
    text = _norm_text(choice)
    return bool(text) and body.startswith(text)


def _choice_for(label: str, labels: Sequence[str], choices: Sequence[str] | None) -> str | None:
    if not choices:
        return None
    i = list(labels).index(label)
    return choices[i] if i < len(choices) else None


def extract_choice(
    prediction: str, choices: Sequence[str] | None = None, labels: Sequence[str] = DEFAULT_LABELS
) -> Extraction:
    """The label a multiple-choice prediction names, by the cascade of the module docstring.

    Args:
        prediction: the model's answer (thinking already removed).
        choices: the example's choice texts in label order (rules 1 and 3 use them); None when unknown.
        labels: the benchmark's labels; only the first len(choices) count when choices are given.

    Returns:
        Extraction(label, rule); label None and rule 'format-error' when no rule finds one.
    """
    labels = tuple(labels[: len(choices)] if choices else labels)
    text = unicodedata.normalize("NFKC", prediction).strip()
    start, phrase, lone = _patterns(labels)

    # 1. a label alone, or at the start followed by punctuation or its choice's text
    m = start.match(text)
    if m:
        label = _canonical(m.group("label"), labels)
        rest = m.group("rest")
        tail = rest.strip().strip("*_\"'”’)]）】」")
        if label is not None and (
            not tail
            or re.match(r"^[\s*_\"'”’)\]）】」]*[.:：)\]）】」,;!、。\-–—]", rest)
            # "B Katze"; but "A cat is..." starts with the English article, not with label A
            or (
                _rest_names_choice(rest, _choice_for(label, labels, choices))
                and not (m.group("label") in _ARTICLE_LIKE and re.match(r"^\s+[a-zà-ÿ]", rest))
            )
        ):
            return Extraction(label, "label")

    # 2. an answer phrase followed by a label; the last one wins
    found: str | None = None
    for m in phrase.finditer(text):
        label = _canonical(m.group("label"), labels)
        if label is None:
            continue
        raw, rest = m.group("label"), m.group("rest")
        if re.match(r"^\s+[a-zà-ÿ]", rest) and not _rest_names_choice(rest, _choice_for(label, labels, choices)):
            # a label followed by a lower-case word: "answer is a cat" names no label; "answer is B because" does
            if raw.islower() or raw in _ARTICLE_LIKE:
                continue
        found = label
    if found is not None:
        return Extraction(found, "answer-phrase")

    # 3. the text of exactly one choice (the longest when one choice's text contains another's)
    if choices:
        body = _norm_text(text)
        spans: dict[int, list[tuple[int, int]]] = {}
        for i, choice in enumerate(choices):
            needle = _norm_text(choice)
            if not needle:
                continue
            ascii_word = needle[0].isalnum() and needle[0].isascii()
            pattern = (
                rf"(?<![{_LATIN}]){re.escape(needle)}(?![{_LATIN}])"
                if ascii_word or needle[-1].isascii()
                else re.escape(needle)
            )
            hits = [(h.start(), h.end()) for h in re.finditer(pattern, body)]
            if hits:
                spans[i] = hits
        kept = [
            i
            for i, hits in spans.items()
            if not all(
                any(
                    j != i and len(_norm_text(choices[j])) > len(_norm_text(choices[i])) and s <= a and b <= e
                    for j, other in spans.items()
                    for s, e in other
                )
                for a, b in hits
            )
        ]
        if len(kept) == 1:
            return Extraction(labels[kept[0]], "choice-text")

    # 4. exactly one label standing alone as a word
    alone: set[str] = set()
    for m in lone.finditer(text):
        raw = m.group("label")
        label = _canonical(raw, labels)
        if label is None or (_is_ascii_label(raw) and not raw.isupper()):
            continue  # lower-case "a", "e", "y" are words, not labels
        word = _first_word(m.group("rest"))
        if raw in _ARTICLE_LIKE and word[:1].islower() and word.lower() not in _CONJUNCTIONS:
            continue  # "A cat", "I think": a word, not a label
        alone.add(label)
    if len(alone) == 1:
        return Extraction(alone.pop(), "lone-label")
    return Extraction(None, "format-error")


_ANSWER_TAGS = re.compile(r"<\s*ANSWER\s*>(.*?)<\s*/\s*ANSWER\s*>", re.S | re.I)


def answer_in_tags(prediction: str) -> str | None:
    """The text between the last <ANSWER> and </ANSWER> of a prediction; None when it has no such pair."""
    found = _ANSWER_TAGS.findall(unicodedata.normalize("NFKC", prediction))
    return found[-1].strip() if found else None


_BARE_ANSWER = re.compile(
    r'\{\s*"choice"\s*:\s*"\s*(?P<json>[^"\s]+)\s*"\s*\}|[\s(\[*_]*(?P<label>[^\s()\[\]*_.:])[\s)\]*_.:]*'
)


def strict_answer(prediction: str) -> str | None:
    """What the chain-of-thought regime reads: the text between the last <ANSWER> tags; else the prediction when it
    is nothing but a label or the JSON {"choice": "B"}; None otherwise (a format error)."""
    inner = answer_in_tags(prediction)
    if inner is not None:
        return inner
    m = _BARE_ANSWER.fullmatch(unicodedata.normalize("NFKC", prediction).strip())
    return (m.group("json") or m.group("label")) if m else None


def predicted_label(prediction: str) -> str | None:
    """The label a prediction names by the cascade (A-Z labels, no choice texts); None for a format error."""
    return extract_choice(prediction).label


class ChoiceAccuracy(MeanMetric):
    """Share of examples whose extracted label equals a gold label (see the module docstring).

    Per language it also reports ``format_error_rate`` (the share of predictions naming no label); per sample, the
    extracted label and the rule that found it.
    """

    name: ClassVar[str] = "choice_accuracy"
    needs_choices: ClassVar[bool] = True

    def __init__(
        self,
        bootstrap_resamples: int = DEFAULT_RESAMPLES,
        seed: int = DEFAULT_SEED,
        labels: Sequence[str] | None = None,
        script_letters: bool = False,
        answer_tags: bool = False,
    ) -> None:
        super().__init__(bootstrap_resamples, seed)
        self.labels = tuple(labels) if labels else DEFAULT_LABELS
        self.script_letters = script_letters
        self.answer_tags = answer_tags

    def signature(self) -> str:
        labels = "A-Z" if self.labels == DEFAULT_LABELS else ",".join(self.labels)
        scripts = "script-letters=kaleidoscope|" if self.script_letters else ""
        tags = "answer-tags|" if self.answer_tags else ""
        return (
            f"choice_accuracy|extract={CASCADE_VERSION}|nfkc|{scripts}{tags}labels={labels}|case-insensitive|any-ref|"
            f"{bootstrap_signature(self.bootstrap_resamples, self.seed)}|mvleval-2"
        )

    def score(
        self,
        predictions: Sequence[str],
        references: Sequence[Sequence[str]],
        lang: str,
        choices: Sequence[Sequence[str] | None] | None = None,
    ) -> MetricResult:
        """Score one language; `choices` gives each example's choice texts in label order (rules 1 and 3)."""
        check_inputs(self.name, predictions, references, lang)
        if not predictions:
            return self.no_examples(lang)
        per_example: list[float] = []
        facts: list[dict[str, str] | None] = []
        errors = 0
        for i, (pred, refs) in enumerate(zip(predictions, references)):
            if self.script_letters:
                pred = map_script_letters(pred)
            inner = strict_answer(pred) if self.answer_tags else pred
            found = (
                Extraction(None, "format-error")
                if inner is None
                else extract_choice(inner, choices[i] if choices is not None else None, self.labels)
            )
            gold = {_canonical(unicodedata.normalize("NFKC", r).strip(), self.labels) or r.strip() for r in refs}
            per_example.append(1.0 if found.label is not None and found.label in gold else 0.0)
            facts.append({"label": found.label or "", "rule": found.rule})
            errors += found.label is None
        extra: dict[str, float | None] = {"format_error_rate": errors / len(per_example)}
        if self.script_letters:  # Kaleidoscope's authors also report the accuracy over the answers naming a label
            extra["valid_accuracy"] = (
                sum(per_example) / (len(per_example) - errors) if errors < len(per_example) else None
            )
        return self.mean_result(per_example, extra=extra, per_example_extra=facts)
