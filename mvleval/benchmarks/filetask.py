"""A benchmark of one's own as data, not code: a YAML header (BenchmarkSpec) + JSON Lines rows, read into a FileTask.

Two forms, both named by a path given to ``--task`` (a value with a '/' or ending in .jsonl/.yaml):

- a folder ``my-bench/`` holding ``benchmark.yaml`` (the header) and ``data.jsonl`` (the rows); task name ``my-bench``;
- a file ``bench.jsonl`` with its header beside it as ``bench.yaml``; task name ``bench``.

The header is read into a pydantic model (unknown keys refused), the rows are checked one by one, and every problem
of the header and of every row is reported in ONE MvlevalError, each line starting with file:line. A row:

    {"id": "c1", "lang": "de", "images": ["bar1.png"], "question"?: str, "answers": [str, ...],
     "choices"?: [str, ...], "answer_lang"?: "en", "split"?: "test"}

`images` are relative to ``<image-root>/<image_subdir>`` (the image root defaults, as for every task, to
``<data-root>/images``, and a benchmark file's data root is the folder holding it). A FileTask is a Task like the
built-in ones: it has a version and a protocol hash (the header's prompts, metrics, generation settings, labels and
version; the examples themselves are covered by the run's data fingerprint), and runs record where the benchmark
was (``task.source``) so `mvleval score` and the leaderboard can read it again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, TypeGuard

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from mvleval.benchmarks.annotations import image_path_escapes
from mvleval.benchmarks.builtin import task_names
from mvleval.benchmarks.kinds import KINDS, format_choices
from mvleval.benchmarks.spec import TaskSpec
from mvleval.benchmarks.task import Example, Task
from mvleval.metrics.base import Metric, MetricResult
from mvleval.metrics.choice import DEFAULT_LABELS
from mvleval.metrics.language_fidelity import LanguageFidelity
from mvleval.util.errors import MvlevalError, Problem, Problems, did_you_mean
from mvleval.util.jsonl import BadLine, parse_lines
from mvleval.util.yamlio import read_yaml

HEADER_NAMES = ("benchmark.yaml", "benchmark.yml")
DATA_NAME = "data.jsonl"
ROW_FIELDS = ("id", "lang", "images", "question", "answers", "choices", "answer_lang", "split")
TEMPLATE_FIELDS = ("question", "language", "choices")

_LANG_CODE = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*")
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_]+")
_TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_FORMAT_FIX = "correct the rows above (docs/custom-benchmark.md describes the header and the rows), then rerun."


def default_metrics(spec: BenchmarkSpec) -> tuple[str, ...]:
    """The header's metrics, else the kind's (mvleval/benchmarks/kinds.py)."""
    if spec.metrics is not None:
        return tuple(spec.metrics)
    return KINDS[spec.kind].default_metrics(spec.answer_with)


def _known_kind(value: Any) -> Any:
    """A header's kind must be one of kinds.py's (reported as pydantic reports a Literal it does not match)."""
    if isinstance(value, str) and value in KINDS:
        return value
    names = tuple(KINDS)
    expected = ", ".join(f"'{k}'" for k in names[:-1]) + f" or '{names[-1]}'"
    raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})


class GenerationSpec(BaseModel):
    """Decoding settings of a benchmark file (each left out: the kind's default)."""

    model_config = ConfigDict(extra="forbid")

    num_beams: int | None = Field(default=None, ge=1)
    max_new_tokens: int | None = Field(default=None, ge=1)
    min_new_tokens: int | None = Field(default=None, ge=0)
    length_penalty: float | None = None


class BenchmarkSpec(BaseModel):
    """The header of a benchmark file (benchmark.yaml); docs/custom-benchmark.md documents every key."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="Must equal the folder (or .jsonl file) stem when given.")
    version: int = Field(
        ge=1, description="Bump it whenever prompts, labels, metrics, generation or the examples change."
    )
    description: str = Field(min_length=1)
    kind: Annotated[str, BeforeValidator(_known_kind)] = Field(
        description="A task kind of mvleval/benchmarks/kinds.py."
    )
    prompt: str = Field(min_length=1, description="mBLIP-style prompt: {question}, {language}, {choices}.")
    chat_prompt: str | None = Field(default=None, description="Prompt for --prompt-style chat (default: prompt).")
    metrics: list[str] | None = Field(default=None, description="Metric names, headline first (default: per kind).")
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    languages: list[str] | None = Field(default=None, description="Language codes (default: those in the data).")
    default_split: str = "test"
    answer_language: str | None = Field(default=None, description="Language every answer is asked in (e.g. en).")
    language_names: dict[str, str] = Field(default_factory=dict, description="{language} names beyond mBLIP's table.")
    label_vocabulary: list[str] | None = Field(default=None, description="Allowed answers (yesno default: yes, no).")
    choices_format: str = "{label}. {choice}"
    choices_separator: str = "\n"
    answer_with: Literal["label", "choice"] = "label"
    labels: list[str] | None = Field(
        default=None,
        description="multiple_choice labels in order (default A, B, C, ...), "
        "e.g. M3Exam's Thai [ก, ข, ค, ง] or [一, 二, 三, 四].",
    )
    cluster: str | None = Field(
        default=None,
        description="A row field holding each example's group key: examples with "
        "the same key are resampled together in every interval (default: examples sharing an image).",
    )
    image_subdir: str = ""
    source_url: str = ""
    licence: str = ""
    citation: str = ""


@dataclass(frozen=True)
class BenchmarkFiles:
    """Where a benchmark's header and rows are; `location` (absolute) is what run records keep."""

    location: Path
    header: Path
    data: Path
    name: str

    @property
    def data_dir(self) -> Path:
        """The benchmark's data root: the folder holding its rows (images default to <data_dir>/images)."""
        return self.data.parent


@dataclass(frozen=True)
class Row:
    """One validated row of a benchmark file."""

    line: int
    id: str
    lang: str
    split: str
    images: tuple[str, ...]
    answers: tuple[str, ...]
    question: str | None = None
    choices: tuple[str, ...] | None = None
    answer_lang: str | None = None
    cluster: str | None = None


def is_task_path(value: str) -> bool:
    """Whether a --task value names a benchmark file or folder rather than a built-in task."""
    return "/" in value or os.sep in value or value in (".", "..") or value.endswith((".jsonl", ".yaml", ".yml"))


def locate(value: str | Path) -> BenchmarkFiles:
    """The header and data file a --task path names (a folder, its benchmark.yaml, a .jsonl, or that file's .yaml).

    Raises:
        MvlevalError: nothing there, or the header or the rows are missing.
    """
    path = Path(value).expanduser()
    if path.suffix in (".yaml", ".yml"):
        path = path.parent if path.name in HEADER_NAMES else path.with_suffix(".jsonl")
    if path.is_dir():
        location = path.absolute()
        header = next((path / n for n in HEADER_NAMES if (path / n).is_file()), path / HEADER_NAMES[0])
        data = path / DATA_NAME
        name = location.resolve().name
    elif path.suffix == ".jsonl" or path.is_file():
        location = path.absolute()
        header = next(
            (path.with_suffix(s) for s in (".yaml", ".yml") if path.with_suffix(s).is_file()), path.with_suffix(".yaml")
        )
        data = path
        name = path.stem
    else:
        raise MvlevalError(
            f"no benchmark at '{value}'.",
            fix=f"pass a folder holding {HEADER_NAMES[0]} and {DATA_NAME}, or a .jsonl file with its header beside it "
            "(bench.jsonl + bench.yaml); docs/custom-benchmark.md shows both.",
            where=str(path),
        )
    missing = [p for p in (header, data) if not p.is_file()]
    if missing:
        there = sorted(p.name for p in data.parent.iterdir())[:12] if data.parent.is_dir() else []
        raise MvlevalError(
            f"the benchmark at '{value}' lacks {' and '.join(str(p) for p in missing)}."
            + (f" Found there: {', '.join(there)}." if there else ""),
            fix=f"a benchmark folder holds {HEADER_NAMES[0]} (the header) and {DATA_NAME} (one example per line); a single "
            ".jsonl file needs its header beside it with the same stem (.yaml). docs/custom-benchmark.md shows both.",
        )
    return BenchmarkFiles(location=location.resolve(), header=header.absolute(), data=data.absolute(), name=name)


# -- the header -------------------------------------------------------------------------------------------------------
def _keep_vocabulary_as_written(values: dict[str, Any], node: Any) -> None:
    """label_vocabulary as the user wrote it: YAML 1.1 reads unquoted yes/no (and on/off, true/false) as booleans,
    so `label_vocabulary: [yes, no]` would arrive as [True, False]; the labels are the words written."""
    import yaml

    for key_node, value_node in node.value:
        if key_node.value == "label_vocabulary" and isinstance(value_node, yaml.SequenceNode):
            parsed = values.get("label_vocabulary")
            if isinstance(parsed, list) and len(parsed) == len(value_node.value):
                values["label_vocabulary"] = [
                    item.value if isinstance(value, bool) and isinstance(item, yaml.ScalarNode) else value
                    for value, item in zip(parsed, value_node.value)
                ]


def _read_header(path: Path) -> tuple[Any, dict[str, int], list[str]]:
    """(values, line of each key as 'key' or 'key.sub', problems) of a YAML header; duplicate keys are problems."""
    import yaml

    node, values = read_yaml(path, "the benchmark header", "save it as UTF-8 text.")
    lines: dict[str, int] = {}
    problems: list[str] = []
    if isinstance(values, dict) and isinstance(node, yaml.MappingNode):
        _keep_vocabulary_as_written(values, node)

    def walk(mapping: Any, prefix: str) -> None:
        if not isinstance(mapping, yaml.MappingNode):
            return
        for key_node, value_node in mapping.value:
            key = f"{prefix}{key_node.value}"
            if key in lines:
                problems.append(
                    f"{path}:{key_node.start_mark.line + 1}: '{key}' is given twice (first on line {lines[key]})."
                )
            lines.setdefault(key, key_node.start_mark.line + 1)
            if not prefix:
                walk(value_node, f"{key}.")

    walk(node, "")
    return values, lines, problems


def _template_problems(template: str, label: str) -> list[str]:
    """Problems of a prompt template: only {question}, {language} and {choices} may be filled in."""
    try:
        fields = [f for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return [f"'{label}' is not a valid template ({exc}); write a literal brace as {{{{ or }}}}."]
    problems = []
    for field in fields:
        if field not in TEMPLATE_FIELDS:
            hint = did_you_mean(field, TEMPLATE_FIELDS) if field else " (an empty {} is not allowed)"
            problems.append(
                f"'{label}' uses the placeholder {{{field}}}.{hint} Placeholders: "
                + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
                + "; write a literal brace as {{ or }}."
            )
    for _, placeholder, spec, conv in parsed:
        if placeholder in TEMPLATE_FIELDS and (spec or conv):
            problems.append(f"'{label}': write {{{placeholder}}} without a conversion or format spec.")
    return problems


def template_fields(template: str) -> set[str]:
    """The placeholders of a template; none for a template that does not parse (_template_problems reports it)."""
    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f}
    except ValueError:
        return set()


def _header_problems(spec: BenchmarkSpec, files: BenchmarkFiles, lines: dict[str, int]) -> list[str]:
    """Checks across the header's keys, after pydantic accepted each of them."""
    from mvleval.metrics.registry import check_metric_name

    out: list[str] = []

    def at(key: str, message: str) -> None:
        out.append(f"{files.header}:{lines.get(key, lines.get(key.split('.')[0], 1))}: {message}")

    if not _TASK_NAME.fullmatch(files.name):
        at(
            "name",
            f"the benchmark's name '{files.name}' (its folder or file stem) may hold only letters, digits, '.', '_' "
            "and '-'; rename the folder or file.",
        )
    if spec.name is not None and spec.name != files.name:
        at(
            "name",
            f"name '{spec.name}' differs from the folder/file stem '{files.name}' (the task name is the stem, as for "
            "built-in tasks); rename one of them or drop 'name'.",
        )
    if files.name in task_names():
        at(
            "name",
            f"'{files.name}' is the name of a built-in task; rename the benchmark's folder or file so records, "
            "baselines and leaderboard columns cannot be mistaken for it.",
        )
    kind = KINDS[spec.kind]
    for key, template in (("prompt", spec.prompt), ("chat_prompt", spec.chat_prompt)):
        if template is None:
            continue
        for problem in _template_problems(template, key):
            at(key, problem)
        if kind.choices and "choices" not in template_fields(template):
            at(key, f"a {spec.kind} prompt must show the choices: add {{choices}} to '{key}'.")
        if not kind.choices and "choices" in template_fields(template):
            at(key, f"{{choices}} only applies to kind {_kinds_with('choices')} (this benchmark is '{spec.kind}').")
        if kind.question and "question" not in template_fields(template) and not _template_problems(template, key):
            # the model would never see the question: every answer would be a guess, and the scores would measure nothing
            at(key, f"a {spec.kind} prompt must show the question: add {{question}} to '{key}'.")
    try:
        bad = {f for _, f, _, _ in string.Formatter().parse(spec.choices_format) if f} - {"label", "choice"}
    except ValueError as exc:
        bad = {str(exc)}
    if bad:
        at("choices_format", f"choices_format may use only {{label}} and {{choice}}, found {', '.join(sorted(bad))}.")
    for i, name in enumerate(spec.metrics or ()):
        name_problem = check_metric_name(name)
        if name_problem:
            at("metrics", f"metrics[{i}]: {name_problem}")
    if spec.metrics is not None:
        if not spec.metrics:
            at("metrics", "an empty metrics list scores nothing; list at least one metric or leave the key out.")
        dup = sorted({m for m in spec.metrics if spec.metrics.count(m) > 1})
        if dup:
            at("metrics", f"metrics lists {', '.join(dup)} more than once.")
    if not _SPLIT_NAME.fullmatch(spec.default_split):
        at("default_split", f"split names may hold only letters, digits and '_', got {spec.default_split!r}.")
    for code in [
        *(spec.languages or ()),
        *([spec.answer_language] if spec.answer_language else []),
        *spec.language_names,
    ]:
        if not _LANG_CODE.fullmatch(code):
            at("languages", f"'{code}' is not a language code (e.g. de, fil, zh-Hant).")
    if spec.languages is not None and len(set(spec.languages)) != len(spec.languages):
        at("languages", "a language is listed twice.")
    if spec.languages is not None and not spec.languages:
        at("languages", "an empty languages list allows no row; list the codes or leave the key out.")
    if spec.label_vocabulary is not None and not kind.takes_vocabulary:
        at("label_vocabulary", f"label_vocabulary applies to kinds {_kinds_with('takes_vocabulary')}, not {spec.kind}.")
    if kind.choices and spec.answer_with == "label":
        for name in {"exact_match", "relaxed_accuracy"} & set(spec.metrics or ()):
            # found by this module's own test: VQA cleaning deletes the article "a", so a correct "A" scores 0
            at(
                "metrics",
                f"{name} cannot score letter labels (mBLIP's VQA cleaning deletes the article 'a', so a correct "
                "'A' never matches); use choice_accuracy, or answer_with: choice.",
            )
    if kind.choices and spec.answer_with == "choice" and "choice_accuracy" in (spec.metrics or ()):
        # choice_accuracy reads the letter a prediction starts with: answers given as the choice's text would all score 0
        at(
            "metrics",
            "choice_accuracy scores letter labels, but answers are the choices' text (answer_with: choice), so "
            "every answer would score 0; use exact_match or relaxed_accuracy (the default), or answer_with: label.",
        )
    if spec.labels is not None:
        if not kind.choices:
            at("labels", f"labels apply to kind {_kinds_with('choices')}, not {spec.kind}.")
        elif len(spec.labels) < 2 or not all(isinstance(x, str) and x.strip() == x and x for x in spec.labels):
            at(
                "labels",
                "labels must be a list of at least 2 non-empty labels without surrounding spaces, e.g. [ก, ข, ค, ง].",
            )
        elif len(set(spec.labels)) != len(spec.labels):
            at("labels", "a label is listed twice.")
    if spec.cluster is not None and (
        spec.cluster in ROW_FIELDS or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", spec.cluster)
    ):
        at(
            "cluster",
            f"cluster names the row field holding each example's group key (e.g. cluster: image_id); "
            f"{spec.cluster!r} is {'a field with another meaning' if spec.cluster in ROW_FIELDS else 'not a field name'}.",
        )
    if kind.choices and spec.answer_with == "label" and "label" not in template_fields(spec.choices_format):
        at("choices_format", "answers are labels (answer_with: label), so choices_format must show {label}.")
    if spec.image_subdir and (spec.image_subdir.startswith(("/", "\\")) or ".." in Path(spec.image_subdir).parts):
        at("image_subdir", f"image_subdir must be a relative folder inside the image root, got {spec.image_subdir!r}.")
    return out


def _kinds_with(flag: str) -> str:
    """The kinds with a flag of kinds.Kind set, in words ("vqa and yesno")."""
    names = [k.name for k in KINDS.values() if getattr(k, flag)]
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _pydantic_problems(exc: ValidationError, path: Path, lines: dict[str, int]) -> list[str]:
    known = list(BenchmarkSpec.model_fields)
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc) or "?"
        line = lines.get(".".join(loc[:2]), lines.get(loc[0] if loc else "", 1))
        if err["type"] == "extra_forbidden":
            choices = list(GenerationSpec.model_fields) if len(loc) > 1 and loc[0] == "generation" else known
            out.append(
                f"{path}:{line}: unknown key '{key}'.{did_you_mean(loc[-1], choices)} Known keys: {', '.join(choices)}."
            )
        elif err["type"] == "missing":
            out.append(f"{path}:{line}: the key '{key}' is required.")
        elif err["type"] == "literal_error":
            out.append(
                f"{path}:{line}: '{key}' must be one of {err['ctx']['expected']}, got {err.get('input')!r}."
                + (did_you_mean(str(err.get("input")), tuple(KINDS)) if loc == ["kind"] else "")
            )
        else:
            out.append(f"{path}:{line}: '{key}': {err['msg']} (got {err.get('input')!r}).")
    return out


# -- the rows ---------------------------------------------------------------------------------------------------------
def _str_list(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class _RowReader:
    """Checks rows one at a time against the header, collecting every problem with its file:line."""

    def __init__(self, spec: BenchmarkSpec, files: BenchmarkFiles) -> None:
        self.spec, self.files = spec, files
        self.templates = [spec.prompt] + ([spec.chat_prompt] if spec.chat_prompt else [])
        self.fields = set().union(*(template_fields(t) for t in self.templates))
        self.fidelity = "language_fidelity" in default_metrics(spec)
        self.vocabulary = _vocabulary(spec)
        self.seen: dict[tuple[str, str, str], int] = {}
        self.requested: dict[str, tuple[str, int]] = {}  # lang -> (requested language, first line asking it)
        self._lingua: dict[str, bool] = {}

    def _lingua_knows(self, code: str) -> bool:
        if code not in self._lingua:
            from mvleval.metrics.language_fidelity import lingua_names

            try:
                self._lingua[code] = lingua_names(code) is not None
            except ImportError:  # lingua missing: the metric itself names the install command when it runs
                self._lingua[code] = True
        return self._lingua[code]

    def read(self, lineno: int, obj: Any) -> tuple[Row | None, list[Problem]]:
        where = f"{self.files.data}:{lineno}"
        if not isinstance(obj, dict):
            return None, [Problem("expected a JSON object", where, f"found {type(obj).__name__}")]
        problems: list[Problem] = []
        spec_cluster = self.spec.cluster

        def bad(what: str, detail: str | None = None, fix: str | None = None) -> None:
            problems.append(Problem(what, where, detail, fix))

        for key in obj:
            if key not in ROW_FIELDS and key != spec_cluster:
                bad(
                    "unknown field",
                    f"'{key}'" + did_you_mean(key, ROW_FIELDS).replace(" Did you", ", did you"),
                    fix=f"row fields are {', '.join(ROW_FIELDS)}.",
                )
        for key in ("id", "lang", "images", "answers"):
            if key not in obj:
                bad(f"the field '{key}' is missing")
        spec = self.spec
        rid = obj.get("id")
        if "id" in obj and (isinstance(rid, bool) or not isinstance(rid, (str, int)) or str(rid).strip() == ""):
            bad("'id' must be a non-empty string or an integer", f"got {rid!r}")
            rid = None
        lang = obj.get("lang")
        if "lang" in obj and (not isinstance(lang, str) or not _LANG_CODE.fullmatch(lang)):
            bad("'lang' must be a language code such as de or zh", f"got {lang!r}")
            lang = None
        elif isinstance(lang, str) and spec.languages is not None and lang not in spec.languages:
            bad(
                "language not in the header's languages",
                f"'{lang}'" + did_you_mean(lang, spec.languages).replace(" Did you", ", did you"),
                fix=f"correct the row's lang or add the language to the header's languages ({' '.join(spec.languages)}).",
            )
        split = obj.get("split", spec.default_split)
        if not isinstance(split, str) or not _SPLIT_NAME.fullmatch(split):
            bad("'split' must be a name of letters, digits and '_' (e.g. test, train)", f"got {split!r}")
            split = None
        images = obj.get("images")
        if "images" in obj:
            if isinstance(images, str):
                bad(
                    "'images' must be a list of paths, even for one image",
                    f"write [{json.dumps(images, ensure_ascii=False)}]",
                )
                images = None
            elif not _str_list(images) or not images or not all(i.strip() for i in images):
                bad("'images' must be a non-empty list of image paths", f"got {images!r}")
                images = None
            else:
                for image in images:
                    if image_path_escapes(image):
                        bad(
                            "image path escapes the image root",
                            repr(image),
                            fix="image paths must be relative and stay inside the image root (no '..', no absolute "
                            "path); link images kept elsewhere into it.",
                        )
        answers = obj.get("answers")
        if "answers" in obj:
            if isinstance(answers, str):
                bad(
                    "'answers' must be a list, even for one answer",
                    f"write [{json.dumps(answers, ensure_ascii=False)}]",
                )
                answers = None
            elif not _str_list(answers) or not answers:
                bad("'answers' must be a non-empty list of strings", f"got {answers!r}")
                answers = None
            elif not all(a.strip() for a in answers):
                bad("'answers' holds an empty string; every reference must have text")
                answers = None
        question = obj.get("question")
        if "question" in obj and (not isinstance(question, str) or not question.strip()):
            bad("'question' must be a non-empty string", f"got {question!r}")
            question = None
        elif "question" in self.fields and "question" not in obj:
            bad("the prompt uses {question} but the row has no 'question'")
        choices = obj.get("choices")
        choice_kind = KINDS[spec.kind].choices
        if "choices" in obj and not choice_kind:
            bad(f"'choices' only applies to kind {_kinds_with('choices')} (this benchmark is '{spec.kind}')")
        elif choice_kind:
            if "choices" not in obj:
                bad(f"a {spec.kind} row needs 'choices'")
            elif (
                not _str_list(choices)
                or not 2 <= len(choices) <= len(spec.labels or DEFAULT_LABELS)
                or not all(c.strip() for c in choices)
            ):
                bad(
                    f"'choices' must be a list of 2 to {len(spec.labels or DEFAULT_LABELS)} non-empty strings"
                    + (" (one per label of the header)" if spec.labels else ""),
                    f"got {choices!r}",
                )
                choices = None
            elif len(set(choices)) != len(choices):
                bad("'choices' lists the same choice twice")
                choices = None
        answer_lang = obj.get("answer_lang")
        if "answer_lang" in obj and (not isinstance(answer_lang, str) or not _LANG_CODE.fullmatch(answer_lang)):
            bad("'answer_lang' must be a language code such as en", f"got {answer_lang!r}")
            answer_lang = None
        cluster = obj.get(spec_cluster) if spec_cluster else None
        if spec_cluster and (
            isinstance(cluster, bool) or not isinstance(cluster, (str, int)) or str(cluster).strip() == ""
        ):
            bad(
                f"the header names '{spec_cluster}' as the cluster field, so every row needs it as a non-empty string or integer",
                f"got {cluster!r}" if spec_cluster in obj else "missing",
            )
            cluster = None
        if answers is not None:
            problems += self._answer_problems(where, answers, choices)
        if isinstance(lang, str) and "lang" in obj:
            problems += self._language_problems(where, lineno, lang, answer_lang or spec.answer_language or lang)
        if rid is not None and isinstance(lang, str) and split is not None:
            key = (split, lang, str(rid))
            if key in self.seen:
                bad(
                    "id already used in this language and split (ids must be unique within a language and split)",
                    f"{str(rid)!r}, first on line {self.seen[key]}",
                )
            else:
                self.seen[key] = lineno
        if problems:
            return None, problems
        return Row(
            line=lineno,
            id=str(rid),
            lang=str(lang),
            split=str(split),
            images=tuple(images or ()),
            answers=tuple(answers or ()),
            question=question,
            choices=tuple(choices) if choices else None,
            answer_lang=answer_lang,
            cluster=str(cluster) if cluster is not None else None,
        ), []

    def _answer_problems(self, where: str, answers: list[str], choices: Any) -> list[Problem]:
        spec = self.spec
        if KINDS[spec.kind].choices and _str_list(choices):
            wrong = [a for a in answers if a not in choices]
            if wrong:
                return [
                    Problem(
                        "answers not among the row's choices; write the correct choice's text",
                        where,
                        f"{', '.join(repr(a) for a in wrong)} not in {', '.join(repr(c) for c in choices)}",
                    )
                ]
        if self.vocabulary is not None:
            wrong = [a for a in answers if a.strip().lower() not in self.vocabulary]
            if wrong:
                return [
                    Problem(
                        f"answers not in the label vocabulary ({', '.join(sorted(self.vocabulary))})",
                        where,
                        ", ".join(repr(a) for a in wrong),
                    )
                ]
        return []

    def _language_problems(self, where: str, lineno: int, lang: str, requested: str) -> list[Problem]:
        from mvleval.benchmarks.languages import MBLIP_LANGUAGE_NAMES

        out = []
        if (
            "language" in self.fields
            and requested not in self.spec.language_names
            and requested not in MBLIP_LANGUAGE_NAMES
        ):
            out.append(
                Problem(
                    f"the prompt's {{language}} needs a name for '{requested}', which mBLIP's table lacks"
                    f"{did_you_mean(requested, MBLIP_LANGUAGE_NAMES).replace(' Did you', ', did you')}",
                    where,
                    fix=f"add it under language_names in the header (e.g. language_names: {{{requested}: ...}}).",
                )
            )
        if self.fidelity:
            if not self._lingua_knows(requested):
                out.append(
                    Problem(
                        f"language_fidelity is asked for, but lingua cannot check '{requested}' (it has no "
                        "model for it)",
                        where,
                        fix="drop language_fidelity from the header's metrics or use a code lingua knows.",
                    )
                )
            first = self.requested.setdefault(lang, (requested, lineno))
            if first[0] != requested:
                out.append(
                    Problem(
                        f"this {lang} row asks for answers in '{requested}', line {first[1]} in '{first[0]}'; "
                        "all rows of a language must agree (answer_lang)",
                        where,
                        fix="language fidelity scores each language against one requested language; set "
                        "answer_lang alike for all rows of a language.",
                    )
                )
        return out


def _vocabulary(spec: BenchmarkSpec) -> frozenset[str] | None:
    if spec.label_vocabulary is not None:
        return frozenset(v.strip().lower() for v in spec.label_vocabulary)
    return KINDS[spec.kind].vocabulary


def _read_rows(files: BenchmarkFiles, spec: BenchmarkSpec) -> tuple[list[Row], list[Problem]]:
    try:
        text = files.data.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], [Problem(f"the file is not UTF-8 text ({exc.reason}); save it as UTF-8", str(files.data))]
    reader = _RowReader(spec, files)
    rows: list[Row] = []
    problems: list[Problem] = []
    for lineno, obj in parse_lines(text):
        if isinstance(obj, BadLine):
            problems.append(Problem("the line is not valid JSON", f"{files.data}:{lineno}", obj.reason))
            continue
        row, found = reader.read(lineno, obj)
        problems += found
        if row is not None:
            rows.append(row)
    if not rows and not problems:
        problems.append(Problem("the file holds no rows; write one JSON object per line", str(files.data)))
    return rows, problems


_PLACE = re.compile(r"(.+?:\d+): (.*)", re.DOTALL)


def _as_problems(messages: Sequence[str | Problem]) -> list[Problem]:
    """Header problems are written as 'file:line: message' (each one of a kind); rows' come as Problems already."""
    out = []
    for m in messages:
        if isinstance(m, Problem):
            out.append(m)
            continue
        match = _PLACE.fullmatch(m)
        out.append(Problem(match.group(2), match.group(1)) if match else Problem(m))
    return out


def _raise(problems: Sequence[str | Problem], files: BenchmarkFiles) -> None:
    base = files.data.parent
    raise Problems(_as_problems(problems)).error(
        f"the benchmark '{files.name}' ({base}) cannot be used:", fix=_FORMAT_FIX, base=base
    )


def load_file_task(value: str | Path, prompt_style: str = "mblip") -> FileTask:
    """Read and validate a benchmark file (header and every row) into a FileTask; all problems in one MvlevalError."""
    files = locate(value)
    values, lines, header_problems = _read_header(files.header)
    problems: list[str | Problem] = list(header_problems)
    spec: BenchmarkSpec | None = None
    if not isinstance(values, dict):
        problems.append(
            f"{files.header}:1: the header must be a mapping of keys to values (kind: caption, prompt: ...), "
            f"found {type(values).__name__}."
        )
    else:
        try:
            spec = BenchmarkSpec.model_validate(values)
        except ValidationError as exc:
            problems += _pydantic_problems(exc, files.header, lines)
            # the keys that did validate are still checked, and the rows against them, so one run lists everything
            partial = _partial_spec(values, exc)
            problems += [p for p in _header_problems(partial, files, lines) if p not in problems]
            problems += _read_rows(files, partial)[1]
    if spec is not None:
        problems += _header_problems(spec, files, lines)
    if spec is None or problems:
        if spec is not None:
            problems += _read_rows(files, spec)[1]
        _raise(problems, files)
    assert spec is not None
    rows, row_problems = _read_rows(files, spec)
    if row_problems:
        _raise(row_problems, files)
    return FileTask(files, spec, rows, prompt_style)


_PLACEHOLDERS: dict[str, Any] = {"version": 1, "description": "-", "kind": "caption", "prompt": "-"}


def _partial_spec(values: dict[str, Any], exc: ValidationError) -> BenchmarkSpec:
    """The header without its invalid keys (required ones replaced by neutral placeholders), to check the rest against."""
    bad = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
    kept = {k: v for k, v in values.items() if k in BenchmarkSpec.model_fields and k not in bad}
    try:
        return BenchmarkSpec.model_validate({**_PLACEHOLDERS, **kept})
    except ValidationError:  # cannot happen for fields that validated alone; be safe rather than hide the real problems
        return BenchmarkSpec.model_validate(_PLACEHOLDERS)


# -- the task ---------------------------------------------------------------------------------------------------------
class _PerLanguageFidelity(LanguageFidelity):
    """Language fidelity where each corpus language asks for answers in a language of its own (rows' answer_lang)."""

    def __init__(self, languages: Sequence[str], requested: dict[str, str]) -> None:
        super().__init__(languages=languages, answer_language=None)
        self.requested = dict(sorted(requested.items()))

    def signature(self) -> str:
        per_lang = ",".join(f"{k}>{v}" for k, v in self.requested.items())
        return super().signature().replace("answer=corpus", f"answer={per_lang}")

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]], lang: str) -> MetricResult:
        one = LanguageFidelity(
            self.languages,
            answer_language=self.requested.get(lang, lang),
            bootstrap_resamples=self.bootstrap_resamples,
            seed=self.seed,
        )
        return dataclasses.replace(one.score(predictions, references, lang), signature=self.signature())


class FileTask(Task):
    """A task read from a benchmark file: its TaskSpec is built from the header (`self.header`, the YAML as read) and
    the rows; the rows are its reader's data. Kind rules (references, choices, vocabulary) come from kinds.py."""

    def __init__(
        self, files: BenchmarkFiles, header: BenchmarkSpec, rows: Sequence[Row], prompt_style: str = "mblip"
    ) -> None:
        super().__init__(prompt_style)
        self.files, self.header, self.rows = files, header, tuple(rows)
        kind = KINDS[header.kind]
        self.spec = TaskSpec(
            name=files.name,
            version=header.version,
            description=header.description,
            kind=header.kind,
            languages=tuple(header.languages or sorted({r.lang for r in rows})),
            default_split=header.default_split,
            splits=(header.default_split, *sorted({r.split for r in rows} - {header.default_split})),
            prompt_template=header.prompt,
            chat_prompt_template=header.chat_prompt or header.prompt,
            generation=kind.generation.replace(**header.generation.model_dump()),
            images_per_example=max(len(r.images) for r in rows),
            image_subdir=header.image_subdir,
            label_vocabulary=_vocabulary(header),
            source_url=header.source_url,
            licence=header.licence,
            citation=header.citation,
        )
        self.metric_names = default_metrics(header)
        requested: dict[str, str] = {}
        for r in rows:
            requested.setdefault(r.lang, r.answer_lang or header.answer_language or r.lang)
        self._requested = requested

    # -- Task -----------------------------------------------------------------------------------------------------
    def annotation_path(self, data_root: Path, lang: str, split: str) -> Path:
        return self.files.data  # a benchmark file holds every language and split

    def split_names(self) -> list[str]:
        return list(self.splits)

    def split_languages(self, split: str) -> tuple[str, ...]:
        present = {r.lang for r in self.rows if r.split == split}
        return tuple(lang for lang in self.languages if lang in present)

    def location(self) -> str | None:
        return str(self.files.location)

    def data_dir(self) -> Path | None:
        return self.files.data_dir

    def read_examples(self, path: Path, lang: str, split: str, image_root: Path) -> list[Example]:
        from mvleval.benchmarks.annotations import safe_image_path

        examples: list[Example] = []
        problems: list[Problem] = []
        for row in self.rows:
            if row.lang != lang or row.split != split:
                continue
            where = f"{self.files.data}:{row.line}"
            images = []
            for image in row.images:
                try:
                    images.append(
                        safe_image_path(
                            image_root,
                            posixpath.join(self.image_subdir, image) if self.image_subdir else image,
                            where=where,
                        )
                    )
                except MvlevalError as exc:
                    problems.append(Problem(exc.what, where, fix=exc.fix))
            if len(images) != len(row.images):
                continue
            references = self.references(row)
            examples.append(
                Example(
                    id=row.id,
                    lang=lang,
                    prompt=self.format_prompt(row),
                    images=tuple(images),
                    references=references,
                    target=references[0],
                    source=where,
                    meta=(("line", str(row.line)),),
                    choices=row.choices,
                    cluster=row.cluster,
                )
            )
        if problems:
            _raise(problems, self.files)
        return examples

    def metrics(self) -> tuple[Metric, ...]:
        return self._metrics

    @cached_property
    def _metrics(self) -> tuple[Metric, ...]:
        from mvleval.metrics.registry import build_metric

        requested = self._requested
        values = set(requested.values())
        if all(k == v for k, v in requested.items()):
            answer_language = None
        elif len(values) == 1:
            answer_language = next(iter(values))
        else:
            answer_language = "per-language"
        out: list[Metric] = []
        for name in self.metric_names:
            if name == "language_fidelity" and answer_language == "per-language":
                out.append(_PerLanguageFidelity(self.languages, requested))
            elif name in ("exact_match", "relaxed_accuracy"):
                # a benchmark file's answers are compared as words after NFKC and markdown emphasis are removed: "**Yes**"
                # and full-width answers count, "not sure" is not "no" (built-in tasks keep mBLIP's character rule)
                from mvleval.metrics.exact_match import ExactMatch, RelaxedAccuracy

                out.append((ExactMatch if name == "exact_match" else RelaxedAccuracy)(match="words"))
            elif name == "choice_accuracy":
                from mvleval.metrics.choice import ChoiceAccuracy

                out.append(ChoiceAccuracy(labels=self.labels))
            else:
                out.append(build_metric(name, self.languages, answer_language))
        return tuple(out)

    @property
    def labels(self) -> tuple[str, ...]:
        """The multiple-choice labels, in order: the header's, else A, B, C, ..."""
        return tuple(self.header.labels) if self.header.labels else DEFAULT_LABELS

    def cluster_unit(self) -> str:
        return self.header.cluster or "image"

    def cluster_keys(self, examples: Sequence[Example]) -> list[str]:
        if self.header.cluster is None:
            return super().cluster_keys(examples)
        return [e.cluster or f"example:{e.id}" for e in examples]

    def requested_language(self, lang: str) -> str:
        return self._requested.get(lang, lang)

    def protocol(self) -> dict[str, Any]:
        protocol = super().protocol()
        if self.header.languages is None:
            # languages taken from the data: the data fingerprint covers them, so the header alone defines the hash
            protocol["languages"] = "from the data file"
        protocol.pop("images_per_example")  # the same: a property of the rows, which the data fingerprint covers
        return protocol

    def protocol_extra(self) -> dict[str, Any]:
        spec = self.header
        extra: dict[str, Any] = {
            "source": "benchmark file",
            "version": spec.version,
            "kind": spec.kind,
            "answer_language": spec.answer_language or "the row's answer_lang, else its language",
            "language_names": "mBLIP's table"
            + (f" + {dict(sorted(spec.language_names.items()))}" if spec.language_names else ""),
            "label_vocabulary": sorted(self.label_vocabulary) if self.label_vocabulary is not None else None,
            "image_subdir": spec.image_subdir,
            "references": self._reference_rule(),
        }
        if self.kind.choices:
            extra["choices"] = {
                "format": spec.choices_format,
                "separator": spec.choices_separator,
                "labels": list(spec.labels) if spec.labels else "A-Z",
                "answer_with": spec.answer_with,
            }
        if spec.cluster:
            extra["cluster"] = spec.cluster
        return extra

    # -- rows to prompts and references ---------------------------------------------------------------------------
    def _reference_rule(self) -> str:
        return self.kind.reference_rule(self.header.answer_with)

    def language_name(self, code: str) -> str:
        from mvleval.benchmarks.languages import MBLIP_LANGUAGE_NAMES

        return self.header.language_names.get(code) or MBLIP_LANGUAGE_NAMES[code]

    def format_prompt(self, row: Row) -> str:
        fields = template_fields(self.template)
        values: dict[str, str] = {}
        if "question" in fields:
            values["question"] = row.question or ""
        if "language" in fields:
            values["language"] = self.language_name(row.answer_lang or self.header.answer_language or row.lang)
        if "choices" in fields:
            values["choices"] = format_choices(
                row.choices or (), self.labels, self.header.choices_format, self.header.choices_separator
            )
        return self.template.format(**values)

    def references(self, row: Row) -> tuple[str, ...]:
        return self.kind.references(row.answers, row.choices, self.labels, self.header.answer_with)

    def row_counts(self) -> dict[str, dict[str, int]]:
        """Rows per split and language, for `mvleval tasks --task PATH`."""
        counts: dict[str, dict[str, int]] = {}
        for r in self.rows:
            counts.setdefault(r.split, {}).setdefault(r.lang, 0)
            counts[r.split][r.lang] += 1
        return counts
