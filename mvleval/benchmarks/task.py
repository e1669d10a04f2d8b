"""Example values and the Task: a TaskSpec (spec.py) plus a reader of the benchmark's files. The registry
(registry.py) finds tasks by name or path; this module imports neither it nor the benchmark folders (filetask.py)."""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mvleval.benchmarks.kinds import Kind, get_kind
from mvleval.benchmarks.spec import CAPTION_GENERATION as CAPTION_GENERATION
from mvleval.benchmarks.spec import SHORT_ANSWER_GENERATION as SHORT_ANSWER_GENERATION
from mvleval.benchmarks.spec import GenerationSettings as GenerationSettings
from mvleval.benchmarks.spec import TaskSpec as TaskSpec
from mvleval.util.errors import MvlevalError, did_you_mean

if TYPE_CHECKING:
    from mvleval.metrics.base import Metric


@dataclass(frozen=True)
class Example:
    """One evaluation (or training) example, already formatted with the task's prompt.

    Attributes:
        id: the dataset's own id (unique within one language of one split).
        lang: the dataset's language code.
        prompt: the exact text given to the model after the image tokens.
        images: image files (1, or 2 for MaRVL), already resolved under the image root.
        references: gold answers / captions used for scoring.
        target: the training target (the label, or one caption).
        source: "file:line" the example was read from, for error messages.
        choices: a multiple-choice example's choice texts in label order (answer extraction reads them).
        cluster: the example's group key when its benchmark names one (else examples sharing an image form a cluster).
        group: the subject or category the task's authors report scores by (xMMMU's subject, M3Exam's subject
            category, ...): each metric is also given per group (the record's `by_group`); None: no breakdown.
    """

    id: str
    lang: str
    prompt: str
    images: tuple[Path, ...]
    references: tuple[str, ...]
    target: str
    source: str = ""
    meta: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    choices: tuple[str, ...] | None = None
    cluster: str | None = None
    group: str | None = None


def image_clusters(examples: Sequence[Example]) -> list[str]:
    """Each example's cluster: examples that share an image, directly or through others, form one cluster (xGQA's
    questions about one image; MaRVL pairs that reuse an image). The key is the cluster's first image in example order."""
    return shared_image_clusters([[str(p) for p in e.images] or [f"example:{e.id}"] for e in examples])


def shared_image_clusters(images: Sequence[Sequence[str]]) -> list[str]:
    """Union-find over image names: one key per entry, equal for entries linked by shared images (per-sample rows'
    relative image names give the same partition as the examples' paths)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for names in images:
        root = find(names[0])
        for other in names[1:]:
            r = find(other)
            if r != root:
                parent[r] = root
    # the root may change as later entries join clusters: read every key at the end
    return [find(names[0]) for names in images]


class Task(ABC):
    """A benchmark adapter: a TaskSpec (what the benchmark is) plus a reader of its files (annotation_path,
    read_examples; metrics where they differ from the kind's). A built-in task in tasks/<name>.py sets the class
    attribute ``spec = TaskSpec(...)``; a benchmark folder (filetask.FileTask) builds its spec from its YAML header.

    Bump the spec's `version` whenever the prompt, filtering, label mapping, generation settings or metrics change:
    tests/test_task_contract.py pins a hash of each task's protocol to its version.
    """

    spec: TaskSpec

    def __init__(self, prompt_style: str = "mblip") -> None:
        if prompt_style not in PROMPT_STYLES:
            raise MvlevalError(
                f"unknown prompt style '{prompt_style}'.{did_you_mean(prompt_style, PROMPT_STYLES)} "
                f"Prompt styles: {', '.join(PROMPT_STYLES)}.",
                fix="pass --prompt-style mblip (mBLIP's protocol, the default) or chat (instruction-tuned chat models).",
            )
        self.prompt_style = prompt_style

    @property
    def template(self) -> str:
        """The prompt template of the chosen prompt style; tasks format every example's prompt with it."""
        return self.prompt_template if self.prompt_style == "mblip" else self.chat_prompt_template

    # -- the spec's fields (read-only) ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> int:
        return self.spec.version

    @property
    def description(self) -> str:
        return self.spec.description

    @property
    def kind(self) -> Kind:
        """The task's kind (mvleval/benchmarks/kinds.py): its default decoding, metrics and reference rule."""
        return get_kind(self.spec.kind)

    @property
    def languages(self) -> tuple[str, ...]:
        return self.spec.languages

    @property
    def default_split(self) -> str:
        return self.spec.default_split

    @property
    def splits(self) -> tuple[str, ...]:
        """Split names, or regular expressions for families such as train_N (anchored)."""
        return self.spec.splits

    @property
    def images_per_example(self) -> int:
        return self.spec.images_per_example

    @property
    def images_vary(self) -> bool:
        return self.spec.images_vary

    @property
    def prompt_template(self) -> str:
        """mBLIP's prompt (prompt style "mblip", the default)."""
        return self.spec.prompt_template

    @property
    def chat_prompt_template(self) -> str:
        """The wording for instruction-tuned chat models (prompt style "chat")."""
        chat = self.spec.chat_prompt_template
        return self.spec.prompt_template if chat is None else chat

    @property
    def generation(self) -> GenerationSettings:
        """The spec's decoding settings, else the kind's."""
        return self.spec.generation if self.spec.generation is not None else self.kind.generation

    @property
    def image_subdir(self) -> str:
        return self.spec.image_subdir

    @property
    def label_vocabulary(self) -> frozenset[str] | None:
        """The closed answer vocabulary, or None for open answers."""
        return self.spec.label_vocabulary

    @property
    def source_url(self) -> str:
        return self.spec.source_url

    @property
    def licence(self) -> str:
        return self.spec.licence

    @property
    def citation(self) -> str:
        return self.spec.citation

    @property
    def size(self) -> str | None:
        """How large the default split is, in words; shown by `mvleval tasks`."""
        return self.spec.size

    # -- to implement --------------------------------------------------------------------------------------------
    @abstractmethod
    def annotation_path(self, data_root: Path, lang: str, split: str) -> Path:
        """The annotation file holding `lang`'s examples of `split` under the data root."""

    @abstractmethod
    def read_examples(self, path: Path, lang: str, split: str, image_root: Path) -> list[Example]:
        """Parse one annotation file into examples (validated; errors name file:line)."""

    def metrics(self) -> tuple[Metric, ...]:
        """The metrics scored per language, headline first: the kind's, unless the task scores otherwise (each
        built-in task scores as its paper's code does; a benchmark folder names its own or takes the kind's)."""
        from mvleval.metrics.registry import build_metric

        return tuple(build_metric(name, self.languages, None) for name in self.kind.default_metrics())

    # -- shared behaviour ----------------------------------------------------------------------------------------
    def protocol(self) -> dict[str, Any]:
        """Everything that defines how this task scores a model; hashed and pinned to `version`."""
        protocol: dict[str, Any] = {
            "name": self.name,
            "languages": list(self.languages),
            "default_split": self.default_split,
            "prompt_template": self.template,
            "generation": self.generation.to_dict(),
            "images_per_example": self.images_per_example,
            "metrics": [m.name for m in self.metrics()],
            "extra": self.protocol_extra(),
        }
        if self.prompt_style != "mblip":
            # mBLIP's style keeps the hash it always had (its records and baselines stay comparable); any other
            # style is a different protocol with a hash of its own
            protocol["prompt_style"] = self.prompt_style
        return protocol

    def cluster_unit(self) -> str:
        """What one resampling cluster of the bootstrap is: 'image' (examples sharing an image), or a benchmark's
        group field."""
        return "image"

    def cluster_keys(self, examples: Sequence[Example]) -> list[str]:
        """Each example's cluster key (see `cluster_unit`)."""
        return image_clusters(examples)

    def protocol_extra(self) -> dict[str, Any]:
        """Task-specific protocol details (label maps, filters, language names) that affect scores."""
        return {}

    def protocol_hash(self) -> str:
        blob = json.dumps(self.protocol(), sort_keys=True, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:16]

    def check_language(self, lang: str) -> None:
        if lang not in self.languages:
            raise MvlevalError(
                f"task '{self.name}' has no language '{lang}'.{_suggest_language(lang, self.languages)}"
                f" Its languages are: {' '.join(self.languages)}.",
                fix="pass one of these codes to --lang (one code per --lang; repeat the flag for several).",
            )

    def check_split(self, split: str) -> None:
        if not any(re.fullmatch(p, split) for p in self.splits):
            shown = [s for s in self.splits if re.escape(s) == s]
            raise MvlevalError(
                f"task '{self.name}' has no split '{split}'.{did_you_mean(split, shown)}"
                f" Its splits are: {', '.join(self.split_names())}.",
                fix="pass one of these to --split.",
            )

    def split_names(self) -> list[str]:
        """Human-readable split names (patterns shown as e.g. train_N)."""
        return [s.replace(r"\d+", "N") for s in self.splits]

    def examples(self, data_root: Path, image_root: Path, lang: str, split: str | None = None) -> list[Example]:
        """Validated examples of one language and split."""
        split = split or self.default_split
        self.check_language(lang)
        self.check_split(split)
        path = self.annotation_path(data_root, lang, split)
        if not path.is_file():
            present = self.splits_present(data_root, lang)
            if present:  # the data is there, of another split: say so rather than "download the benchmark"
                raise MvlevalError(
                    f"annotation file for {self.name} {lang}/{split} not found; the data root holds the "
                    f"{' and '.join(present)} split{'s' if len(present) > 1 else ''} of {self.name} {lang}.",
                    fix=f"pass --split {present[0]} to use it, or download the {split} split ({self.source_url}).",
                    where=path,
                )
            from mvleval.data.fetch import fetch_command

            command = fetch_command(self.data_task(), lang, data_root)
            raise MvlevalError(
                f"annotation file for {self.name} {lang}/{split} not found.{_what_is_there(data_root, path)}",
                fix=f"run `{command}` (pinned and verified), or download the benchmark ({self.source_url}) so the "
                "file exists under --data-root; tasks/README.md shows the layout."
                if command
                else f"download the benchmark ({self.source_url}) so the file exists under --data-root; "
                "tasks/README.md shows the layout.",
                where=path,
            )
        return self.read_examples(path, lang, split, image_root)

    def splits_present(self, data_root: Path, lang: str) -> list[str]:
        """The task's named splits (not patterns such as train_N) whose annotation file for `lang` is under data_root."""
        named = [s for s in self.splits if re.escape(s) == s]
        return [s for s in named if self.annotation_path(data_root, lang, s).is_file()]

    def requested_language(self, lang: str) -> str:
        """The language the prompt asks the model to answer in (for language fidelity)."""
        return lang

    def split_languages(self, split: str) -> tuple[str, ...]:
        """The languages a run of `split` evaluates when no --lang is given (a benchmark file: those with rows in it)."""
        return self.languages

    def data_task(self) -> str:
        """The task whose data this one reads, for `mvleval data fetch`: itself, or the task it is another regime of
        (kaleidoscope_cot reads kaleidoscope's files)."""
        return self.name

    def location(self) -> str | None:
        """Where a task read from a benchmark file lives (absolute), kept in run records so the task can be read
        again; None for a built-in task, which is found by name."""
        return None

    def data_dir(self) -> Path | None:
        """The data root a benchmark file brings along (the folder holding its rows); None: --data-root is needed."""
        return None

    def describe(self) -> dict[str, Any]:
        """What `mvleval tasks` shows, JSON-ready (`tasks --json`; mvleval/schemas/tasks.json)."""
        splits = [self.default_split] + [s for s in self.split_names() if s != self.default_split]
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "languages": list(self.languages),
            "default_split": self.default_split,
            "splits": splits,
            "metrics": [m.name for m in self.metrics()],
            "protocol_hash": self.protocol_hash(),
            "generation": self.generation.to_dict(),
            "images_per_example": self.images_per_example,
            "source": self.location(),
            "licence": self.licence,
            "size": self.size,
        }


def _suggest_language(lang: str, known: tuple[str, ...]) -> str:
    """' Did you mean ...?' for a code in the wrong case, an English language name, or several codes in one flag."""
    from mvleval.benchmarks.languages import MBLIP_LANGUAGE_NAMES, STANDARD_NAMES

    if "," in lang or " " in lang.strip():
        parts = [x for x in lang.replace(",", " ").split() if x]
        return f" One code per --lang: pass {' '.join(f'--lang {x}' for x in parts)}."
    if lang.lower() in known:
        return f" Did you mean '{lang.lower()}'? (codes are lower-case)"
    by_name = {name.lower(): code for table in (MBLIP_LANGUAGE_NAMES, STANDARD_NAMES) for code, name in table.items()}
    by_name.update(
        {"chinese": "zh", "mandarin": "zh", "deutsch": "de", "german": "de", "bangla": "bn", "persian": "fa"}
    )
    code = by_name.get(lang.lower())
    if code is not None:
        return f" '{lang}' is a language name; its code is '{code}'." + (
            "" if code in known else " (not one of this task's)"
        )
    return did_you_mean(lang, known)


def _what_is_there(data_root: Path, missing: Path) -> str:
    """What the data root holds near a missing annotation file: the files beside it (other splits and languages), and
    a data root that is one level too deep or too shallow."""
    try:
        relative = missing.relative_to(data_root)
    except ValueError:
        return ""
    first = relative.parts[0]
    if not data_root.is_dir():
        return ""
    if not (data_root / first).exists():
        if data_root.name == first and (data_root.parent / relative).is_file():
            return f" The data root looks one level too deep: pass --data-root {data_root.parent}."
        deeper = [c for c in sorted(data_root.iterdir()) if c.is_dir() and (c / first).exists()]
        if deeper:
            return f" The data root looks one level too shallow: pass --data-root {deeper[0]}."
        return f" There is no '{first}' folder under the data root."
    folder = missing.parent
    while not folder.is_dir() and folder != data_root:
        folder = folder.parent
    entries = sorted(p.name for p in folder.iterdir())[:12]
    if entries:
        return f" Found in {folder}: {', '.join(entries)}."
    return ""


#: Prompt styles every task offers: mBLIP's protocol, and the wording for instruction-tuned chat models.
PROMPT_STYLES = ("mblip", "chat")
