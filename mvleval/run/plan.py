"""What a run evaluates, before any model loads: the options, each language's validated examples, the run's identity
(what a resume must match) and the record's task section."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mvleval
from mvleval.benchmarks.annotations import check_data_root
from mvleval.benchmarks.registry import load_task
from mvleval.benchmarks.task import Example, GenerationSettings, Task
from mvleval.record import provenance
from mvleval.record.schema import TaskInfo
from mvleval.util.errors import MvlevalError, Problems, ProblemsError, plural

if TYPE_CHECKING:
    from mvleval.backends.base import EndpointOptions
    from mvleval.backends.spec import ModelOptions
    from mvleval.compare.gate import Comparable


@dataclass(frozen=True)
class RunOptions:
    """Everything that defines a run; frozen once the CLI has parsed the flags."""

    task: str
    model: str
    data_root: Path
    image_root: Path | None = None  # default: <data_root>/images
    adapter: str | None = None
    languages: tuple[str, ...] | None = None  # None: all of the task's languages
    split: str | None = None  # None: the task's default split
    limit: int | None = None  # first N examples per language
    batch_size: int | None = 8  # None: find the largest batch that fits (--batch-size auto)
    bits: int | None = None
    out_dir: Path = Path("results/runs")
    seed: int = 0
    generation: dict[str, Any] = field(default_factory=dict)  # overrides of the task's settings
    allow_pickle: bool = False
    resume: bool = False
    command: tuple[str, ...] = ()
    # beam search computes the prompt once per sample (the same token ids; not part of the run's identity)
    shared_prefix: bool = True
    prompt_style: str = "mblip"  # "mblip" (mBLIP's protocol) or "chat" (instruction-tuned chat models)
    backend: str | None = None  # None: chosen from the checkpoint's config.json
    trust_remote_code: bool = False
    image_handling: str = "native"  # several images per example: "native" or "side-by-side"
    overwrite: bool = False  # replace a finished record with the same settings (refused otherwise)
    endpoint: EndpointOptions | None = None  # a served model's endpoint (--model openai:NAME)
    # the response cache for a model run here (mvleval/backends/local_cache.py): read-write, read or off. Off unless
    # asked: `mvleval run` asks for read-write by default; the demo and library calls always generate. Not part of the
    # run's identity (cached answers are the answers generation gives).
    cache: str = "off"
    # the backend's own options (-M KEY=VALUE, or the old flags that alias them), validated by the backend; None when
    # none were given: the record and the identity of such a run are what they were before options existed
    model_options: ModelOptions | None = None

    @property
    def resolved_image_root(self) -> Path:
        return self.image_root if self.image_root is not None else self.data_root / "images"


@dataclass(frozen=True)
class PreparedRun:
    """The validated inputs of a run, before any model is loaded."""

    task: Task
    split: str
    languages: tuple[str, ...]
    examples: dict[str, list[Example]]
    generation: GenerationSettings
    annotation_files: dict[str, str]
    data_fingerprint: str


def prepare(options: RunOptions) -> PreparedRun:
    """Load and validate every language's examples; report all problems at once before a model is loaded."""
    task = load_task(options.task, prompt_style=options.prompt_style)
    split = options.split or task.default_split
    task.check_split(split)
    check_generation(task.generation.replace(**options.generation))
    check_data_root(options.data_root)
    languages = tuple(options.languages) if options.languages else task.split_languages(split)
    _check_options(options, task, languages)
    examples, annotation_files = _load_examples(options, task, languages, split)
    _check_images(task, languages, examples, options.resolved_image_root)
    return PreparedRun(
        task=task,
        split=split,
        languages=languages,
        examples=examples,
        generation=task.generation.replace(**options.generation),
        annotation_files=annotation_files,
        data_fingerprint=provenance.examples_fingerprint(
            _fingerprint_rows(languages, examples, options.resolved_image_root)
        ),
    )


def _check_options(options: RunOptions, task: Task, languages: tuple[str, ...]) -> None:
    for lang in languages:
        task.check_language(lang)
    if len(set(languages)) != len(languages):
        raise MvlevalError(f"a language is given twice in --lang ({' '.join(languages)}).", fix="list each once.")
    if options.limit is not None and options.limit < 1:
        raise MvlevalError(
            f"--limit must be at least 1, got {options.limit}.", fix="pass a positive number or leave it out."
        )
    if options.batch_size is not None and options.batch_size < 1:
        raise MvlevalError(f"--batch-size must be at least 1, got {options.batch_size}.", fix="pass a positive number.")


def _load_examples(
    options: RunOptions, task: Task, languages: tuple[str, ...], split: str
) -> tuple[dict[str, list[Example]], dict[str, str]]:
    """Each language's examples (first --limit) and the sha256 of each annotation file; every problem at once."""
    data_root = options.data_root
    examples: dict[str, list[Example]] = {}
    problems = Problems()
    grouped: list[ProblemsError] = []  # errors that came as grouped problems (a benchmark's rows)
    annotation_files: dict[str, str] = {}
    for lang in languages:
        try:
            exs = task.examples(data_root, options.resolved_image_root, lang, split)
        except MvlevalError as exc:
            problems.add_error(exc)  # a benchmark's grouped problems are grouped again with the other languages'
            if isinstance(exc, ProblemsError):
                grouped.append(exc)
            continue
        path = task.annotation_path(data_root, lang, split)
        rel = os.path.relpath(path, data_root)
        annotation_files[rel] = provenance.file_sha256(path)
        ids = [e.id for e in exs]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            problems.add(
                "an example id occurs more than once; ids must be unique per language", path, repr(dup), unit="file"
            )
            continue
        if not exs:
            problems.add(  # one kind for every language without examples: counted, its first places named
                f"no examples of the language in the {split} split (a language without examples cannot be scored, "
                "nor blessed as a baseline)",
                path,
                lang,
                fix="pass --lang with the languages the data holds (`mvleval data check` lists them), or add the "
                "language's rows.",
                unit="language",
            )
            continue
        if options.limit is not None:
            exs = exs[: options.limit]
        examples[lang] = exs
    if grouped and sum(len(e.problems) for e in grouped) == len(problems) and len({e.heading for e in grouped}) == 1:
        # every problem is the benchmark's own (its rows, over several languages): one report under its heading
        raise ProblemsError(grouped[0].heading, problems, fix=grouped[0].fix, base=grouped[0].base)
    problems.raise_if_any(
        f"the data of task '{task.name}' cannot be used:",
        fix=f"correct each problem listed (in the file it names); `mvleval data check --task {task.location() or task.name}` "
        "lists everything that is missing.",
        base=task.data_dir(),
    )
    return examples, annotation_files


def _check_images(task: Task, languages: Sequence[str], examples: dict[str, list[Example]], image_root: Path) -> None:
    missing: dict[Path, str] = {}  # each missing file once (xGQA asks ~30 questions of one image), with its first row
    for lang in languages:
        for e in examples[lang]:
            for p in e.images:
                if p not in missing and not p.is_file():
                    missing[p] = e.source
    if missing:
        shown = "; ".join(f"{p} (from {src})" for p, src in list(missing.items())[:3])
        raise MvlevalError(
            f"{plural(len(missing), 'image file')} referenced by the annotations {'is' if len(missing) == 1 else 'are'} "
            f"missing under the image root {image_root}, e.g. {shown}.",
            fix=f"download the images into --image-root (see tasks/README.md), or run `mvleval data check --task {task.location() or task.name}` for the full list.",
        )


def _fingerprint_rows(
    languages: Sequence[str], examples: dict[str, list[Example]], image_root: Path
) -> Iterator[dict[str, Any]]:
    """Each image by name and by content: the file a symbolic link resolves to is read, so relinking an image (or
    replacing it) gives another fingerprint, and the gate refuses to compare runs on different pixels."""
    from mvleval.benchmarks.hubdata import image_dir, image_name

    image_digests: dict[Path, str] = {}

    def digest(path: Path) -> str:
        if path not in image_digests:
            image_digests[path] = provenance.file_sha256(path)
        return image_digests[path]

    hub = image_dir()  # images a dataset file embeds are named by content, the same on every machine
    return (
        {
            "lang": e.lang,
            "id": e.id,
            "prompt": e.prompt,
            "references": list(e.references),
            "images": [image_name(p, image_root, hub) for p in e.images],
            "image_sha256": [digest(p) for p in e.images],
        }
        for lang in languages
        for e in examples[lang]
    )


def check_generation(settings: GenerationSettings) -> None:
    """Refuse decoding settings generate() cannot run, before any data or model is loaded (all problems at once)."""
    problems = []
    if settings.num_beams < 1:
        problems.append(f"--num-beams must be at least 1, got {settings.num_beams}")
    if settings.max_new_tokens < 1:
        problems.append(f"--max-new-tokens must be at least 1, got {settings.max_new_tokens}")
    if settings.min_new_tokens < 0:
        problems.append(f"--min-new-tokens cannot be negative, got {settings.min_new_tokens}")
    elif settings.min_new_tokens > settings.max_new_tokens:
        problems.append(
            f"--min-new-tokens ({settings.min_new_tokens}) is above --max-new-tokens ({settings.max_new_tokens})"
        )
    if problems:
        raise MvlevalError(
            "; ".join(problems) + ".", fix="correct the generation flags (or leave them out for the task's protocol)."
        )


def data_source(data_root: Path, task: str, languages: Sequence[str]) -> dict[str, Any] | None:
    """Where `mvleval data fetch` got this task's data (repo, commit, how it was pinned, the files' sha256 and the
    notes on the mirror, for the languages run); None for a data root assembled by hand."""
    from mvleval.data.fetch import source_record

    record = source_record(data_root, task)
    if not record:
        return None
    langs = record.get("languages", {})
    return {
        "repo": record.get("repo"),
        "revision": record.get("revision"),
        "pinned": record.get("pinned"),
        "languages": {lang: langs[lang] for lang in languages if lang in langs},
    }


# -- run identity ----------------------------------------------------------------------------------------------------
def _model_label(model: str) -> str:
    p = Path(model)
    name = p.name if p.exists() else model.replace("/", "_")
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"


def run_identity(options: RunOptions, prepared: PreparedRun) -> dict[str, Any]:
    """What must be equal for a run to be resumed: task version/protocol, data, model, adapter, bits, generation."""
    identity: dict[str, Any] = {
        "task": prepared.task.name,
        "task_version": prepared.task.version,
        "protocol_hash": prepared.task.protocol_hash(),
        "split": prepared.split,
        "languages": list(prepared.languages),
        "limit": options.limit,
        "data_fingerprint": prepared.data_fingerprint,
        "model": str(Path(options.model).resolve()) if Path(options.model).exists() else options.model,
        "adapter": str(Path(options.adapter).resolve()) if options.adapter else None,
        "bits": options.bits,
        "generation": prepared.generation.to_dict(),
        "seed": options.seed,
    }
    # settings added with the generic backend: part of the identity only when not the default, so the names of runs
    # made before them (and resumes of those) stay the same
    for key, default in (
        ("prompt_style", "mblip"),
        ("backend", None),
        ("trust_remote_code", False),
        ("image_handling", "native"),
    ):
        if getattr(options, key) != default:
            identity[key] = getattr(options, key)
    if options.endpoint is not None:
        identity["endpoint"] = options.endpoint.identity()
    if options.model_options is not None and options.model_options.identity():
        identity["model_options"] = options.model_options.identity()
    return identity


def run_name(options: RunOptions, identity: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    return f"{identity['task']}-{identity['split']}-{_model_label(options.model)}-{digest}"


def task_info(options: RunOptions, prepared: PreparedRun) -> TaskInfo:
    """The record's task section: known before the model loads."""
    task = prepared.task
    return TaskInfo(
        name=task.name,
        version=task.version,
        split=prepared.split,
        languages=list(prepared.languages),
        n_examples={lang: len(prepared.examples[lang]) for lang in prepared.languages},
        limit=options.limit,
        protocol_hash=task.protocol_hash(),
        prompt_style=task.prompt_style,
        source=task.location(),
    )


def planned_comparable(options: RunOptions, prepared: PreparedRun) -> Comparable:
    """What the gate will compare of this run's record, known before any model loads (everything but the scores):
    `mvleval run --gate` refuses an incomparable baseline with it in a second instead of after the whole run."""
    from mvleval.compare.gate import Comparable
    from mvleval.run.score import task_signature

    return Comparable(
        run_id=run_name(options, run_identity(options, prepared)),
        task=task_info(options, prepared),
        data_fingerprint=prepared.data_fingerprint,
        mvleval_version=mvleval.__version__,
        metrics={m.name: (task_signature(prepared.task, m), m.higher_is_better) for m in prepared.task.metrics()},
        max_new_tokens=prepared.generation.max_new_tokens,
    )
