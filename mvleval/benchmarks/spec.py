"""The one task model's data: a TaskSpec says what a benchmark is (names, languages, splits, prompts, decoding, images,
source) for a built-in task (tasks/*.py: ``spec = TaskSpec(...)``) and a benchmark folder (its YAML header) alike.

This module imports nothing of mvleval; the task (task.py), the kinds (kinds.py) and the benchmark folders
(filetask.py) import it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings; tasks carry mBLIP's, flags may override them, records store them."""

    num_beams: int = 5
    max_new_tokens: int = 10
    min_new_tokens: int = 1
    length_penalty: float = 1.0
    do_sample: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **overrides: Any) -> GenerationSettings:
        """A copy with the given fields changed (None values are ignored)."""
        values = self.to_dict()
        values.update({k: v for k, v in overrides.items() if v is not None})
        return GenerationSettings(**values)


#: mBLIP's decoding settings (its public code), the one place they are written: captions (XM3600, xFlickrCo, caption
#: benchmark folders) and short answers (xGQA, MaRVL, XVNLI, MaXM, and VQA / yes-no / multiple-choice folders)
CAPTION_GENERATION = GenerationSettings(num_beams=5, max_new_tokens=50, min_new_tokens=1, length_penalty=1.0)
SHORT_ANSWER_GENERATION = GenerationSettings(num_beams=5, max_new_tokens=10, min_new_tokens=1, length_penalty=-1.0)


@dataclass(frozen=True)
class TaskSpec:
    """Everything that says what a task is, apart from how its files are read (that is the task's reader).

    Bump `version` whenever the prompt, filtering, label mapping, generation settings or metrics change:
    tests/test_task_contract.py pins a hash of each built-in task's protocol to its version.

    Attributes:
        name: the task name (a built-in task's file stem; a benchmark folder's folder or .jsonl stem).
        version: the protocol's version.
        description: one line shown by `mvleval tasks`.
        kind: the task kind (mvleval/benchmarks/kinds.py): caption, vqa, yesno, multiple_choice; it gives the
            defaults below that are left out (decoding settings, metrics of a benchmark folder, reference rule).
        languages: the language codes.
        default_split: the split a run uses without --split (one of `splits`).
        splits: split names, or regular expressions for families such as train_N (anchored).
        prompt_template: mBLIP's prompt: the protocol every published mBLIP number was made with (prompt style
            "mblip", the default).
        chat_prompt_template: the wording instruction-tuned chat models are evaluated with (lmms-eval / PangeaBench
            style; prompt style "chat"); None: the same as `prompt_template`.
        generation: the decoding settings; None: the kind's (mBLIP's for captions and short answers).
        images_per_example: images of one example (2 for MaRVL), or the most an example has when `images_vary`.
        images_vary: True for a task whose examples have 0..images_per_example images each (text-only questions,
            MMMU's interleaved `<image k>` images, images as options); the backends place images where `<image k>`
            markers stand.
        image_subdir: the folder under the image root holding the task's images.
        label_vocabulary: the answers a closed-vocabulary task allows (a frozenset), None for open answers.
        source_url, licence, citation: where the benchmark is published, under which terms, and how to cite it.
        size: how large the default split is, in words ("6,778 questions on 2,116 images"); shown by `mvleval tasks`.
    """

    name: str
    version: int
    description: str
    kind: str
    languages: tuple[str, ...]
    default_split: str
    splits: tuple[str, ...]
    prompt_template: str
    chat_prompt_template: str | None = None
    generation: GenerationSettings | None = None
    images_per_example: int = 1
    images_vary: bool = False
    image_subdir: str = ""
    label_vocabulary: frozenset[str] | None = None
    source_url: str = ""
    licence: str = ""
    citation: str = ""
    size: str | None = None
