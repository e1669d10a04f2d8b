"""Task kinds, in one place for built-in tasks and benchmark folders alike: per kind, the decoding settings and metrics
used when a task names none, the reference rule (answers -> the references scored against), whether the prompt must
show the question and the choices, and the closed vocabulary it implies.

A new kind is one `Kind(...)` added to KINDS below (tasks/README.md, "Adding a task kind"): benchmark folders accept
it as `kind:` at once (filetask.py's header checks read the flags here), and a built-in task names it in its TaskSpec.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mvleval.benchmarks.spec import CAPTION_GENERATION, SHORT_ANSWER_GENERATION, GenerationSettings
from mvleval.util.errors import MvlevalError, did_you_mean


@dataclass(frozen=True)
class Kind:
    """One task kind.

    Attributes:
        name: the kind's name (a benchmark header's `kind:`, a TaskSpec's `kind`).
        generation: the decoding settings of a task that names none.
        metrics: the metrics (headline first) of a benchmark folder that names none.
        question: whether the prompt must show the question (``{question}``): without it every answer is a guess.
        choices: whether examples carry choices the prompt shows (``{choices}``) and answers are one of them.
        lower_answers: whether references are the answers lower-cased and stripped (yes/no labels).
        vocabulary: the closed answer vocabulary a task of this kind has unless it names one (None: open).
        takes_vocabulary: whether a task of this kind may name a closed answer vocabulary (label_vocabulary).
        choice_metrics: the metrics when answers are the choices' text rather than their labels (choice kinds only).
    """

    name: str
    generation: GenerationSettings
    metrics: tuple[str, ...]
    question: bool = False
    choices: bool = False
    lower_answers: bool = False
    vocabulary: frozenset[str] | None = None
    takes_vocabulary: bool = False
    choice_metrics: tuple[str, ...] = ()

    def default_metrics(self, answer_with: str = "label") -> tuple[str, ...]:
        """The metrics of a task that names none (multiple choice answered with the choice's text: as VQA answers)."""
        if self.choices and answer_with == "choice":
            return self.choice_metrics
        return self.metrics

    def reference_rule(self, answer_with: str = "label") -> str:
        """The reference rule in words (a benchmark folder's protocol records it)."""
        if self.lower_answers:
            return "answers lower-cased and stripped"
        if self.choices:
            return "the correct choices' labels" if answer_with == "label" else "the correct choices' text"
        return "answers as written"

    def references(
        self,
        answers: Sequence[str],
        choices: Sequence[str] | None = None,
        labels: Sequence[str] = (),
        answer_with: str = "label",
    ) -> tuple[str, ...]:
        """The references an example is scored against, from its answers (for a choice kind: the correct choices'
        texts, turned into their labels when answers are labels)."""
        if self.lower_answers:
            return tuple(a.strip().lower() for a in answers)
        if self.choices and answer_with == "label":
            if choices is None:
                raise ValueError(f"a {self.name} example needs its choices to name the references' labels")
            return tuple(labels[list(choices).index(a)] for a in answers)
        return tuple(answers)


def format_choices(choices: Sequence[str], labels: Sequence[str], template: str, separator: str) -> str:
    """The choices as the prompt's {choices} shows them: `template` ({label}, {choice}) per choice, joined."""
    return separator.join(template.format(label=labels[i], choice=c) for i, c in enumerate(choices))


#: every task kind, by name (the order is the one error messages and docs list them in)
KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("caption", CAPTION_GENERATION, ("cider", "language_fidelity")),
        Kind(
            "vqa",
            SHORT_ANSWER_GENERATION,
            ("exact_match", "relaxed_accuracy", "language_fidelity"),
            question=True,
            takes_vocabulary=True,
        ),
        Kind(
            "yesno",
            SHORT_ANSWER_GENERATION,
            ("exact_match", "relaxed_accuracy"),
            lower_answers=True,
            vocabulary=frozenset({"yes", "no"}),
            takes_vocabulary=True,
        ),
        Kind(
            "multiple_choice",
            SHORT_ANSWER_GENERATION,
            ("choice_accuracy",),
            question=True,
            choices=True,
            choice_metrics=("exact_match", "relaxed_accuracy"),
        ),
    )
}


def get_kind(name: str) -> Kind:
    """The kind named `name`.

    Raises:
        MvlevalError: no such kind (with a suggestion).
    """
    kind = KINDS.get(name)
    if kind is None:
        raise MvlevalError(
            f"unknown task kind '{name}'.{did_you_mean(name, tuple(KINDS))} Kinds: {', '.join(KINDS)}.",
            fix="name one of these kinds (mvleval/benchmarks/kinds.py defines them).",
        )
    return kind
