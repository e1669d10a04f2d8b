"""MMMU accuracy: multiple-choice and open answers parsed as MMMU's own evaluation does (MMMU-Benchmark/MMMU
``eval/eval_utils.py``: parse_multi_choice_response, parse_open_response, eval_multi_choice, eval_open), re-implemented
here from reading it; xMMMU (PangeaBench) scores its translations the same way.

Multiple choice (the example has choices): punctuation stripped from the ends, then ``(B)`` anywhere, else `` B ``
as a word, else (only in answers of more than five words) an option's text; several candidates: the one that occurs
last. Open (no choices): the response's key sub-responses (the text after "could be", "so", "is", "thus",
"therefore", "final", "answer", "result", and "=" in the last sentence), plus every number in them, normalised (numbers
rounded to 2 decimals, strings lower-cased, a one-character string padded with a space); correct when a normalised
gold number equals one of them or a normalised gold string is contained in one.

One deviation, on purpose: where MMMU's parser finds no candidate it answers ``random.choice(all_choices)`` (seeded
42 at import, so the guess depends on the order examples are scored in); here that answer is wrong and is counted in
``format_error_rate``. On every answer the parser reads, the two agree (tests/test_tasks_hub.py holds the parity table).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from typing import ClassVar

from mvleval.metrics.base import MeanMetric, MetricResult, check_inputs
from mvleval.metrics.bootstrap import (
    bootstrap_signature,
)

_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")


def parse_multi_choice(response: str, choices: Sequence[str]) -> str | None:
    """The letter MMMU's parser reads from a multiple-choice response; None where it would guess at random."""
    letters = [chr(ord("A") + i) for i in range(len(choices))]
    for char in (",", ".", "!", "?", ";", ":", "'"):
        response = response.strip(char)
    response = f" {response} "
    by_text = False
    bracketed = False
    candidates = [c for c in letters if f"({c})" in response]
    if candidates:
        bracketed = True
    else:
        candidates = [c for c in letters if f" {c} " in response]
    if not candidates and len(response.split()) > 5:
        candidates = [c for c, text in zip(letters, choices) if text.lower() in response.lower()]
        by_text = True
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    if by_text:
        starts = [response.lower().rfind(choices[letters.index(c)].lower()) for c in candidates]
    elif bracketed:
        starts = [response.rfind(f"({c})") for c in candidates]
    else:
        starts = [response.rfind(f" {c} ") for c in candidates]
    return candidates[starts.index(max(starts))]  # the first of equal maxima, as numpy's argmax


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def normalise(text: str) -> list[str | float]:
    """MMMU's normalize_str: a number rounded to 2 decimals, else the lower-cased string (one character: padded)."""
    text = text.strip()
    if _is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


def extract_numbers(text: str) -> list[str]:
    """Every number in `text`: with thousands commas, in scientific notation, and plain (MMMU's extract_numbers)."""
    commas = re.findall(r"-?\b\d{1,3}(?:,\d{3})+\b", text)
    scientific = re.findall(r"-?\d+(?:\.\d+)?[eE][+-]?\d+", text)
    simple = re.findall(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])", text)
    return commas + scientific + simple


def parse_open(response: str) -> list[str | float]:
    """The normalised candidate answers MMMU's parse_open_response reads from an open answer."""
    text = response.strip().strip(".").lower()
    sentences = re.split(r"\.\s(?=[A-Z])|\n", text)
    keys: list[str] = []
    for i, sentence in enumerate(sentences):
        indicators = [*_INDICATORS, "="] if i == len(sentences) - 1 else list(_INDICATORS)
        shortest: str | None = None
        for indicator in indicators:
            if indicator in sentence:
                tail = sentence.split(indicator)[-1].strip()
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in (":", ",", ".", "!", "?", ";", "'"):
            keys.append(shortest)
    if not keys:
        keys = [text]
    found: list[str] = list(keys)
    for key in keys:
        found.extend(extract_numbers(key))
    normalised: list[str | float] = []
    for item in found:
        normalised.extend(normalise(item))
    return list(dict.fromkeys(normalised))


def open_correct(golds: Sequence[str], parsed: Sequence[str | float]) -> bool:
    """MMMU's eval_open: a gold number among the parsed numbers, or a gold string inside a parsed string."""
    norm: list[str | float] = [n for g in golds for n in normalise(g)]
    for pred in parsed:
        if isinstance(pred, str):
            if any(isinstance(n, str) and n in pred for n in norm):
                return True
        elif pred in norm:
            return True
    return False


def gold_answers(answer: str) -> list[str]:
    """An open question's gold answers: MMMU stores several as the string of a Python list ("['24/7', '3.429']")."""
    text = answer.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return [answer]
        if isinstance(value, list) and value and all(isinstance(v, (str, int, float)) for v in value):
            return [str(v) for v in value]
    return [answer]


class MmmuAccuracy(MeanMetric):
    """Share of questions answered correctly by MMMU's parsing (see the module docstring); ``format_error_rate`` is
    the share of multiple-choice answers the parser reads no letter from (MMMU would guess)."""

    name: ClassVar[str] = "mmmu_accuracy"
    needs_choices: ClassVar[bool] = True

    def signature(self) -> str:
        return (
            "mmmu_accuracy|parse=mmmu-eval_utils|no-random-guess|"
            f"{bootstrap_signature(self.bootstrap_resamples, self.seed)}|mvleval-1"
        )

    def score(
        self,
        predictions: Sequence[str],
        references: Sequence[Sequence[str]],
        lang: str,
        choices: Sequence[Sequence[str] | None] | None = None,
    ) -> MetricResult:
        check_inputs(self.name, predictions, references, lang)
        if not predictions:
            return self.no_examples(lang)
        per_example: list[float] = []
        facts: list[dict[str, str] | None] = []
        errors = 0
        for i, (pred, refs) in enumerate(zip(predictions, references)):
            options = choices[i] if choices is not None else None
            if options:
                letter = parse_multi_choice(pred, options)
                errors += letter is None
                per_example.append(1.0 if letter is not None and letter in refs else 0.0)
                facts.append({"label": letter or "", "rule": "mmmu-choice" if letter else "format-error"})
            else:
                parsed = parse_open(pred)
                golds = [g for r in refs for g in gold_answers(r)]
                per_example.append(1.0 if open_correct(golds, parsed) else 0.0)
                facts.append({"parsed": repr(parsed[:5])})
        return self.mean_result(
            per_example, extra={"format_error_rate": errors / len(per_example)}, per_example_extra=facts
        )
