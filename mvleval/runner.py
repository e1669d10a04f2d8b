"""evaluate(options) -> RunRecord: load data, batch generation with progress, append samples, score, write the record."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import mvleval
from mvleval import provenance
from mvleval.annotations import check_data_root
from mvleval.errors import MvlevalError, Problems, ProblemsError, plural
from mvleval.images import MAX_PIXELS
from mvleval.record import (
    MetricScores,
    Provenance,
    RunRecord,
    SampleWriter,
    TaskInfo,
    read_record,
    read_samples,
    sample_lines,
    write_json_atomic,
    write_record,
)
from mvleval.record import (
    samples_path as record_samples_path,
)
from mvleval.task import Example, GenerationSettings, Task, load_task, load_task_of_record

if TYPE_CHECKING:
    from mvleval.backends.base import Backend, EndpointOptions
    from mvleval.backends.spec import ModelOptions
    from mvleval.gate import Comparable
    from mvleval.metrics.base import Metric

log = logging.getLogger(__name__)


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
class DistInfo:
    """This process's place in a data-parallel run (torchrun / accelerate launch set RANK and WORLD_SIZE)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> DistInfo:
        return cls(
            rank=int(os.environ.get("RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _init_distributed(dist_info: DistInfo) -> None:
    import torch
    import torch.distributed as dist

    if dist_info.world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)


def _barrier(dist_info: DistInfo) -> None:
    if dist_info.world_size > 1:
        import torch.distributed as dist

        dist.barrier()


class Progress(Protocol):
    """How the runner reports progress; the CLI renders it with rich, tests pass NullProgress."""

    def start(self, label: str, total: int, done: int) -> None: ...

    def advance(self, n: int, status: str = "") -> None: ...

    def finish(self) -> None: ...

    def note(self, message: str) -> None:
        """A one-line status message (what is loading, where a run resumed, the batch size picked)."""
        ...


class NullProgress:
    def start(self, label: str, total: int, done: int) -> None:
        pass

    def advance(self, n: int, status: str = "") -> None:
        pass

    def finish(self) -> None:
        pass

    def note(self, message: str) -> None:
        log.info(message)


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


# -- preparation (no model) ----------------------------------------------------------------------------------------
def prepare(options: RunOptions) -> PreparedRun:
    """Load and validate every language's examples; report all problems at once before a model is loaded."""
    task = load_task(options.task, prompt_style=options.prompt_style)
    split = options.split or task.default_split
    task.check_split(split)
    check_generation(task.generation.replace(**options.generation))
    data_root = options.data_root
    check_data_root(data_root)
    languages = tuple(options.languages) if options.languages else task.split_languages(split)
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

    image_root = options.resolved_image_root
    examples: dict[str, list[Example]] = {}
    problems = Problems()
    grouped: list[ProblemsError] = []  # errors that came as grouped problems (a benchmark's rows)
    annotation_files: dict[str, str] = {}
    for lang in languages:
        try:
            exs = task.examples(data_root, image_root, lang, split)
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
            problems.add(
                f"no {lang} examples in the {split} split (a language without examples cannot be scored, nor "
                "blessed as a baseline)",
                path,
                unit="file",
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
    generation = task.generation.replace(**options.generation)
    # Each image by name and by content: the file a symbolic link resolves to is read, so relinking an image (or
    # replacing it) gives another fingerprint, and the gate refuses to compare runs on different pixels.
    image_digests: dict[Path, str] = {}

    def digest(path: Path) -> str:
        if path not in image_digests:
            image_digests[path] = provenance.file_sha256(path)
        return image_digests[path]

    from mvleval.hubdata import image_dir, image_name

    hub = image_dir()  # images a dataset file embeds are named by content, the same on every machine
    fingerprint_rows = (
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
    return PreparedRun(
        task=task,
        split=split,
        languages=languages,
        examples=examples,
        generation=generation,
        annotation_files=annotation_files,
        data_fingerprint=provenance.examples_fingerprint(fingerprint_rows),
    )


def _data_source(data_root: Path, task: str, languages: Sequence[str]) -> dict[str, Any] | None:
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


# -- run identity and resume ----------------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class RunPaths:
    record: Path
    samples: Path
    partial: Path
    manifest: Path

    @classmethod
    def for_name(cls, out_dir: Path, name: str, rank: int = 0, world_size: int = 1) -> RunPaths:
        """Paths of a run; in a data-parallel run each rank appends to its own partial file."""
        partial = f"{name}.partial.jsonl" if world_size == 1 else f"{name}.rank{rank}of{world_size}.partial.jsonl"
        return cls(
            record=out_dir / f"{name}.json",
            samples=out_dir / f"{name}.samples.jsonl",
            partial=out_dir / partial,
            manifest=out_dir / f"{name}.manifest.json",
        )

    def rank_partials(self, world_size: int) -> list[Path]:
        if world_size == 1:
            return [self.partial]
        stem = self.record.name[: -len(".json")]
        return [self.record.parent / f"{stem}.rank{r}of{world_size}.partial.jsonl" for r in range(world_size)]


def _describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    diffs = [
        f"{k}: interrupted run had {old.get(k)!r}, this run has {new.get(k)!r}"
        for k in sorted(new)
        if old.get(k) != new.get(k)
    ]
    return "; ".join(diffs)


def _find_resumable(out_dir: Path, paths: RunPaths, identity: dict[str, Any]) -> None:
    """Refuse a --resume that does not match the interrupted run, saying what differs."""
    if paths.manifest.is_file():
        return
    candidates = []
    for manifest in sorted(out_dir.glob("*.manifest.json")):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if data.get("identity", {}).get("task") == identity["task"]:
            candidates.append((manifest.stat().st_mtime, manifest, data["identity"]))
    if not candidates:
        raise MvlevalError(
            f"--resume was given but there is no interrupted {identity['task']} run in {out_dir}.",
            fix="run without --resume, or pass the same --out as the interrupted run.",
        )
    _, manifest, old = max(candidates, key=lambda c: c[0])
    raise MvlevalError(
        f"cannot resume: the interrupted run ({manifest}) was made with different settings — {_describe_difference(old, identity)}.",
        fix="rerun with exactly the interrupted run's flags, or without --resume to start a new run.",
    )


def _load_done(partials: Sequence[Path], prepared: PreparedRun) -> dict[tuple[str, str], dict[str, Any]]:
    """Rows already generated by an interrupted run (or by the other ranks), keyed by (lang, id)."""
    done: dict[tuple[str, str], dict[str, Any]] = {}
    valid = {(lang, e.id) for lang, exs in prepared.examples.items() for e in exs}
    for partial in partials:
        if not partial.is_file():
            continue
        for row in read_samples(partial):
            key = (row["lang"], row["id"])
            if key in valid:
                done[key] = row
    return done


def _rewrite_partial(paths: RunPaths, rows: list[dict[str, Any]]) -> None:
    """Drop a torn last line left by a kill, so appends continue on a clean line boundary."""
    write_json_atomic(paths.partial, sample_lines(rows))


# -- the run ---------------------------------------------------------------------------------------------------------
def _batches(examples: Sequence[Example], batch_size: int) -> list[list[Example]]:
    """Length-aware batches: examples sorted by prompt length (stable) so padding is small; a batch never mixes
    numbers of images (a backend batches one image count at a time), so fewer images come first (a task with one
    count per example batches exactly as before)."""
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i].images), len(examples[i].prompt), i))
    batches: list[list[Example]] = []
    for i in order:
        e = examples[i]
        if not batches or len(batches[-1]) == batch_size or len(batches[-1][0].images) != len(e.images):
            batches.append([])
        batches[-1].append(e)
    return batches


def _sample_row(example: Example, prediction: str, image_root: Path, cached: bool = False) -> dict[str, Any]:
    from mvleval.hubdata import image_name

    row: dict[str, Any] = {
        "id": example.id,
        "lang": example.lang,
        "prompt": example.prompt,
        "prediction": prediction,
        "references": list(example.references),
        # relative to the image root, as in the data fingerprint: `mvleval report --image-root` shows them
        "images": [Path(image_name(p, image_root)).as_posix() for p in example.images],
    }
    if cached:  # answered from the response cache (mvleval/cache.py), not generated by this run; absent otherwise
        row["cached"] = True
    return row


def _chat_clean(task: Task) -> bool:
    """Chat-style prompts of open-answer tasks (scored by exact match) get rule chat-clean-1 (metrics/answer.py)."""
    return task.prompt_style == "chat" and any(m.name in ("exact_match", "relaxed_accuracy") for m in task.metrics())


def task_signature(task: Task, metric: Metric) -> str:
    """A metric's signature as the task's records carry it: with the task's resampling unit (unit=image, ...) and the
    rule that took the answer from the output (answer=think-1, ...)."""
    from mvleval.metrics.answer import answer_rule
    from mvleval.metrics.bootstrap import clustered

    with clustered(None, task.cluster_unit()):
        return f"{metric.signature()}|{answer_rule(_chat_clean(task))}"


def score_rows(
    task: Task,
    languages: Sequence[str],
    rows_by_lang: dict[str, list[dict[str, Any]]],
    examples_by_lang: Mapping[str, Sequence[Example]] | None = None,
    thinking_tags: Sequence[Sequence[str]] = (),
) -> dict[str, MetricScores]:
    """Score each language's corpus with each of the task's metrics; fills each row's per-sample scores in place.

    Every interval resamples the task's clusters (`Task.cluster_keys` of each language's examples, in row order: the
    image, or a benchmark's group field); a row whose example names a cluster of its own keeps it under "cluster",
    so the gate's paired test draws the same clusters. Multiple-choice metrics get each example's choice texts.
    Metrics score each row's answer (metrics/answer.py: thinking removed with the default tags and `thinking_tags`,
    the model's chat template's; chat-style open answers cleaned); a row whose answer differs from its raw prediction
    keeps it under "answer".
    """
    from mvleval.metrics.answer import DEFAULT_THINKING_TAGS, scored_answer
    from mvleval.metrics.bootstrap import clustered

    tags = list(DEFAULT_THINKING_TAGS) + [
        (str(t[0]), str(t[1])) for t in thinking_tags if tuple(t) not in DEFAULT_THINKING_TAGS
    ]
    chat = _chat_clean(task)
    answers: dict[str, list[str]] = {}
    for lang in languages:
        answers[lang] = []
        for row in rows_by_lang[lang]:
            answer = scored_answer(row["prediction"], tags, chat)
            if answer != row["prediction"]:
                row["answer"] = answer
            else:
                row.pop("answer", None)
            answers[lang].append(answer)

    unit = task.cluster_unit()
    clusters: dict[str, list[str] | None] = {}
    choices: dict[str, list[tuple[str, ...] | None] | None] = {}
    for lang in languages:
        examples = examples_by_lang.get(lang) if examples_by_lang is not None else None
        if examples is None:
            clusters[lang], choices[lang] = None, None
            continue
        if [e.id for e in examples] != [r["id"] for r in rows_by_lang[lang]]:
            raise RuntimeError(f"score_rows: rows and examples of {lang} are not in the same order")
        clusters[lang] = task.cluster_keys(examples)
        choices[lang] = [e.choices for e in examples]
        for row, example in zip(rows_by_lang[lang], examples, strict=True):
            if example.cluster is not None:
                row["cluster"] = example.cluster
    scores: dict[str, MetricScores] = {}
    for metric in task.metrics():
        per_lang: dict[str, float | None] = {}
        intervals: dict[str, tuple[float, float] | None] = {}
        notes: dict[str, str] = {}
        extra: dict[str, dict[str, float | None]] = {}
        with clustered(None, unit if examples_by_lang is not None else "example"):
            signature = task_signature(task, metric) if examples_by_lang is not None else metric.signature()
        for lang in languages:
            rows = rows_by_lang[lang]
            kwargs: dict[str, Any] = {}
            if getattr(metric, "needs_choices", False) and choices[lang] is not None:
                kwargs["choices"] = choices[lang]
            with clustered(clusters[lang], unit if clusters[lang] is not None else "example"):
                result = metric.score(answers[lang], [r["references"] for r in rows], lang, **kwargs)
            per_lang[lang] = result.value
            intervals[lang] = result.interval
            if result.note:
                notes[lang] = result.note
            if result.extra:
                extra[lang] = dict(result.extra)
            if result.per_example is not None:
                for row, value in zip(rows, result.per_example, strict=True):
                    row.setdefault("scores", {})[metric.name] = value
            if result.per_example_extra is not None:
                # per-sample facts behind a score (e.g. the language detected for a language-fidelity miss)
                for row, facts in zip(rows, result.per_example_extra, strict=True):
                    if facts:
                        row.setdefault("extra", {})[metric.name] = facts
        values = [v for v in per_lang.values() if v is not None]
        scores[metric.name] = MetricScores(
            signature=signature,
            per_lang=per_lang,
            mean=sum(values) / len(values) if values else None,
            intervals=intervals,
            notes=notes,
            extra=extra,
            higher_is_better=metric.higher_is_better,
        )
    return scores


def _task_info(options: RunOptions, prepared: PreparedRun) -> TaskInfo:
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
    from mvleval.gate import Comparable

    return Comparable(
        run_id=run_name(options, run_identity(options, prepared)),
        task=_task_info(options, prepared),
        data_fingerprint=prepared.data_fingerprint,
        mvleval_version=mvleval.__version__,
        metrics={m.name: (task_signature(prepared.task, m), m.higher_is_better) for m in prepared.task.metrics()},
        max_new_tokens=prepared.generation.max_new_tokens,
    )


def evaluate(
    options: RunOptions,
    *,
    progress: Progress | None = None,
    backend_factory: Callable[[], Backend] | None = None,
    prepared: PreparedRun | None = None,
) -> tuple[RunRecord, Path]:
    """Run one task on one model and write its record and per-sample file; returns (record, record path).

    A crash loses at most the batch in flight: predictions are appended (and fsynced) as batches finish, and
    `options.resume` continues an interrupted run with identical settings.
    """
    started = time.monotonic()
    progress = progress or NullProgress()
    dist_info = DistInfo.from_env()
    prepared = prepared or prepare(options)  # a caller that validated several tasks first passes its result
    task = prepared.task
    identity = run_identity(options, prepared)
    name = run_name(options, identity)
    out_dir = options.out_dir
    # the folders this run creates: removed again (when still empty) if it stops before generating anything
    created = [p for p in (out_dir, *out_dir.parents) if not p.exists()]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".{name}.{dist_info.rank}.write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise MvlevalError(
            f"the output folder is not writable ({exc.strerror}).", fix="pass a writable --out.", where=out_dir
        ) from None
    paths = RunPaths.for_name(out_dir, name, dist_info.rank, dist_info.world_size)

    try:
        if paths.record.is_file() and not paths.manifest.exists() and not options.overwrite:
            raise MvlevalError(
                f"a finished run with exactly these settings already exists ({paths.record}); mvleval does not replace a "
                "finished record silently.",
                fix="pass --overwrite to replace it, or --out another folder to keep both.",
            )
        if options.resume:
            _find_resumable(out_dir, paths, identity)
        elif paths.partial.exists() or paths.manifest.exists():
            raise MvlevalError(
                f"an interrupted run with the same settings exists ({paths.manifest}).",
                fix=f"pass --resume to continue it, or delete {out_dir}/{name}.*partial.jsonl and {paths.manifest} to start over.",
            )
        done = _load_done([paths.partial], prepared) if options.resume else {}
        total = sum(len(exs) for exs in prepared.examples.values())
        if options.resume:
            progress.note(f"resuming {name}: {len(done)} of {total} examples already done, in {paths.partial}")
            _rewrite_partial(paths, list(done.values()))
        from mvleval.backends.registry import is_served

        if not is_served(options.model, options.backend):
            _init_distributed(dist_info)
            torch_seed(options.seed)  # a served model needs no torch here (API-only machines may not have it)
        elif dist_info.world_size > 1:
            raise MvlevalError(
                "a served model is evaluated by one process: several processes (torchrun) would each send every request.",
                fix="run `mvleval run` once, without torchrun, and raise --concurrency to keep more requests in flight.",
            )
        if backend_factory is None:
            progress.note(
                f"loading {options.model}" + (f" with adapter {options.adapter}" if options.adapter else "") + " ..."
            )
        backend = backend_factory() if backend_factory else _load_backend(options, dist_info)
        backend.check_settings(prepared.generation, task.images_per_example)
        model_info = backend.info(prepared.generation)
        if options.model_options is not None:  # the spec's options as given (no credentials), only where there are any
            model_info = model_info.model_copy(update={"options": options.model_options.recorded()})
        backend = _with_local_cache(backend, options, prepared)
        if dist_info.is_main:
            # written once the model loaded and accepted the settings: a run refused before that leaves nothing behind
            write_json_atomic(
                paths.manifest, json.dumps({"identity": identity, "name": name}, indent=2, sort_keys=True) + "\n"
            )
    except BaseException:  # a refusal, a model that does not load, Ctrl-C: no empty folder left behind either
        _remove_created(created)
        raise

    batch_size = options.batch_size or _auto_batch_size(backend, prepared)
    if options.batch_size is None:
        progress.note(f"--batch-size auto: {batch_size}")
    owner = _image_owner(prepared, dist_info.world_size)
    already = len(done)
    try:
        _generate_all(
            prepared, backend, paths, done, owner, dist_info, batch_size, progress, options.resolved_image_root
        )
    except Exception as exc:  # not KeyboardInterrupt: an interrupted run stays resumable, as the CLI's hint says
        if isinstance(exc, RunStopped):
            raise  # it already says where the run stands and how to --resume
        if len(done) == already == 0 and dist_info.world_size == 1:
            # nothing was generated: leave nothing behind, so the same command runs again once the cause is fixed
            paths.partial.unlink(missing_ok=True)
            paths.manifest.unlink(missing_ok=True)
            _remove_created(created)
        elif isinstance(exc, MvlevalError):
            kept = len(done)
            raise MvlevalError(
                exc.what,
                fix=f"{(exc.fix or 'fix the cause').rstrip('.')}; then rerun the same command with --resume: the {kept} "
                f"examples generated so far are kept in {paths.partial}.",
                where=exc.where,
            ) from None
        raise
    backend.close()
    run_details = backend.run_details()
    if run_details:
        model_info = model_info.model_copy(update={"details": {**model_info.details, **run_details}})

    _barrier(dist_info)
    if not dist_info.is_main:
        _barrier(dist_info)  # wait until rank 0 has merged, scored and written the record
        return read_record(paths.record), paths.record
    if dist_info.world_size > 1:
        done = _load_done(paths.rank_partials(dist_info.world_size), prepared)
        missing = [
            (lang, e.id) for lang in prepared.languages for e in prepared.examples[lang] if (lang, e.id) not in done
        ]
        if missing:
            raise RuntimeError(f"{len(missing)} samples missing after merging the ranks' files, e.g. {missing[:3]}")

    rows_by_lang = {lang: [dict(done[(lang, e.id)]) for e in prepared.examples[lang]] for lang in prepared.languages}
    scores = score_rows(
        task,
        prepared.languages,
        rows_by_lang,
        prepared.examples,
        thinking_tags=model_info.details.get("thinking_tags") or (),
    )
    commit, dirty = provenance.git_state()
    record = RunRecord(
        run_id=name,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        task=_task_info(options, prepared),
        model=model_info,
        scores=scores,
        provenance=Provenance(
            mvleval_version=mvleval.__version__,
            git_commit=commit,
            git_dirty=dirty,
            python=platform.python_version(),
            packages=provenance.package_versions(),
            device=provenance.device_description(backend.device),
            data_fingerprint=prepared.data_fingerprint,
            annotation_files=prepared.annotation_files,
            prompt_hash=task.protocol_hash(),
            seed=options.seed,
            command=list(options.command or sys.argv),
            hostname=provenance.hostname(),
            batch_size=batch_size,
            image_root=str(options.resolved_image_root.resolve()),
            data_root=str(options.data_root.resolve()),
            max_image_pixels=MAX_PIXELS,
            data_source=_data_source(options.data_root, task.name, prepared.languages),
        ),
        duration_s=round(time.monotonic() - started, 3),
        samples_file=paths.samples.name,
    )
    samples_payload = sample_lines(row for lang in prepared.languages for row in rows_by_lang[lang])
    # the record vouches for its samples: the gate and `baseline bless` refuse a per-sample file edited afterwards
    record.samples_sha256 = hashlib.sha256(samples_payload.encode("utf-8")).hexdigest()
    try:
        write_json_atomic(paths.samples, samples_payload)
    except OSError as exc:
        raise MvlevalError(
            f"could not write the per-sample file ({exc.strerror}).",
            fix="free disk space or choose another --out, then rerun with --resume (no generation is repeated).",
            where=paths.samples,
        ) from None
    try:
        write_record(record, paths.record)
    except MvlevalError:
        # no half-finished result: without its record the samples file is removed; the partial file stays for --resume
        paths.samples.unlink(missing_ok=True)
        raise
    for partial in paths.rank_partials(dist_info.world_size):
        partial.unlink(missing_ok=True)
    paths.manifest.unlink(missing_ok=True)
    if options.overwrite and dist_info.rank == 0:
        from mvleval.record import report_paths

        # the replaced run's HTML pages describe predictions that are gone: never left beside the new record
        for page in report_paths(paths.record):
            if page.is_file():
                page.unlink()
                progress.note(
                    f"removed {page}, the report of the replaced run (`mvleval report {paths.record}` writes a new one)"
                )
    _barrier(dist_info)
    return record, paths.record


def _remove_created(created: Sequence[Path]) -> None:
    """Remove the folders a run created (deepest first) while they are empty: a run that wrote nothing leaves nothing."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:  # not empty (another rank's or task's files), or already gone
            return


class RunStopped(MvlevalError):
    """Generation stopped part-way on purpose (a served model's request failed after its retries): what arrived is
    saved for --resume, nothing is scored."""


def _generate_all(
    prepared: PreparedRun,
    backend: Backend,
    paths: RunPaths,
    done: dict[tuple[str, str], dict[str, Any]],
    owner: dict[tuple[Path, ...], int],
    dist_info: DistInfo,
    batch_size: int,
    progress: Progress,
    image_root: Path,
) -> None:
    """Generate every example not in `done`, appending (and fsyncing) each batch to the partial file and to `done`."""
    from mvleval.backends.base import BatchFailed, GenerationRequest

    task = prepared.task
    with SampleWriter(paths.partial) as writer:
        for lang in prepared.languages:
            # Data-parallel: each rank takes the examples of its images (so no image is encoded on two ranks);
            # predictions do not depend on batch composition, so the merged result equals a single-process run.
            shard = [e for e in prepared.examples[lang] if owner[e.images] == dist_info.rank]
            todo = [e for e in shard if (lang, e.id) not in done]
            progress.start(f"{task.name} {lang}", len(shard), len(shard) - len(todo))
            batches = _batches(todo, batch_size)
            # decode + preprocess this language's images in worker threads, ahead of use
            backend.prefetch([GenerationRequest(e.prompt, e.images) for b in batches for e in b])
            for batch in batches:
                try:
                    preds = backend.generate(
                        [GenerationRequest(e.prompt, e.images) for e in batch], prepared.generation
                    )
                except BatchFailed as exc:
                    # keep what arrived (a resume does not ask again), score nothing, and say where the run stands
                    cached = backend.from_cache()
                    kept = [_sample_row(batch[i], p, image_root, i in cached) for i, p in sorted(exc.answered.items())]
                    writer.write_batch(kept)
                    done.update({(lang, row["id"]): row for row in kept})
                    total = sum(len(exs) for exs in prepared.examples.values())
                    raise RunStopped(
                        f"{exc.what} The run stopped without scoring: {len(done)} of {total} {task.name} examples are done "
                        f"and saved in {paths.partial}.",
                        fix=exc.fix,
                    ) from None
                cached = backend.from_cache()
                rows = [
                    _sample_row(e, p, image_root, i in cached)
                    for i, (e, p) in enumerate(zip(batch, preds, strict=True))
                ]
                writer.write_batch(rows)
                for row in rows:
                    done[(lang, row["id"])] = row
                progress.advance(len(batch), backend.progress_note())
            progress.finish()


def _with_local_cache(backend: Backend, options: RunOptions, prepared: PreparedRun) -> Backend:
    """`backend` answering from the response cache where the run asks for it and the backend says what its answers
    depend on (a local model; a served one caches its own requests); else `backend` itself."""
    if options.cache == "off":
        return backend
    from mvleval.cache import ResponseCache, check_mode

    identity = backend.cache_identity(prepared.generation)
    if identity is None:
        return backend
    from mvleval.backends.local_cache import CachedBackend

    return CachedBackend(
        backend, prepared.generation, identity, options.model, ResponseCache(check_mode(options.cache))
    )


def _image_owner(prepared: PreparedRun, world_size: int) -> dict[tuple[Path, ...], int]:
    """Assign each distinct image (tuple) to a rank, round-robin in order of first appearance, the same in every language."""
    owner: dict[tuple[Path, ...], int] = {}
    for lang in prepared.languages:
        for e in prepared.examples[lang]:
            if e.images not in owner:
                owner[e.images] = len(owner) % world_size
    return owner


def _auto_batch_size(backend: Backend, prepared: PreparedRun) -> int:
    """The largest batch that fits, probed with the run's longest prompts (--batch-size auto)."""
    from mvleval.backends.base import GenerationRequest

    examples = sorted((e for exs in prepared.examples.values() for e in exs), key=lambda e: -len(e.prompt))[:32]
    size = backend.pick_batch_size([GenerationRequest(e.prompt, e.images) for e in examples], prepared.generation)
    log.info("--batch-size auto: using %d", size)
    return size


def torch_seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def finished_record(options: RunOptions, prepared: PreparedRun | None = None) -> Path | None:
    """The record of a finished run with exactly these settings in options.out_dir, if there is one."""
    prepared = prepared or prepare(options)
    paths = RunPaths.for_name(options.out_dir, run_name(options, run_identity(options, prepared)))
    return paths.record if paths.record.is_file() and not paths.manifest.exists() else None


def interrupted_run(options: RunOptions, prepared: PreparedRun) -> Path | None:
    """The manifest of an interrupted run with exactly these settings in options.out_dir (what --resume continues),
    or None when there is none (nothing of it was written)."""
    dist_info = DistInfo.from_env()
    paths = RunPaths.for_name(
        options.out_dir, run_name(options, run_identity(options, prepared)), dist_info.rank, dist_info.world_size
    )
    return paths.manifest if paths.manifest.is_file() else None


def load_run_backend(options: RunOptions) -> Backend:
    """The backend a run of `options` uses (on this process's GPU in a data-parallel run); load once, reuse for tasks."""
    return _load_backend(options, DistInfo.from_env())


def _load_backend(options: RunOptions, dist_info: DistInfo) -> Backend:
    from mvleval.backends import BackendOptions, load_backend
    from mvleval.backends.registry import is_served

    device = None
    if not is_served(options.model, options.backend):
        from mvleval.extras import require_hf

        require_hf(f"a model run on this machine (--model {options.model})")
        import torch

        device = f"cuda:{dist_info.local_rank}" if torch.cuda.is_available() else "cpu"
    return load_backend(
        BackendOptions(
            model=options.model,
            adapter=options.adapter,
            bits=options.bits,
            allow_pickle=options.allow_pickle,
            device=device,
            shared_prefix=options.shared_prefix,
            backend=options.backend,
            trust_remote_code=options.trust_remote_code,
            image_handling=options.image_handling,
            endpoint=options.endpoint,
            model_options=options.model_options,
        )
    )


def options_summary(options: RunOptions) -> dict[str, Any]:
    d = asdict(options)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


def rescore(record_path: Path, data_root: Path | None = None, image_root: Path | None = None) -> tuple[RunRecord, Path]:
    """Recompute a record's scores from its predictions and the task's data, with the installed metrics, without
    loading the model.

    Only the predictions come from the per-sample file: ids, prompts and references are read from the task's data
    again (a benchmark file from the path the record keeps; a built-in task from `data_root`) and the data
    fingerprint is recomputed. A per-sample file whose ids or prompts disagree with the data, or whose references
    disagree with unchanged data, is refused, naming the rows. When the data changed since the run (a label fixed),
    the references are the data's and the record gets the new fingerprint. The record and samples file are
    rewritten atomically; `rescored_at` says that the scores were recomputed, `samples_sha256` which samples they
    were computed from.
    """
    record = read_record(record_path, verify_scores=False)  # the scores are recomputed here
    task = load_task_of_record(record.task.name, record.task.prompt_style, record.task.source, where=record_path)
    installed = "installed task" if record.task.source is None else f"benchmark file at {record.task.source}"
    if task.version != record.task.version:
        raise MvlevalError(
            f"the record was made with {task.name} v{record.task.version}, but the {installed} is v{task.version}: "
            "its prompts or filtering changed, so the stored predictions no longer match the protocol.",
            fix="rerun the evaluation with `mvleval run`.",
            where=record_path,
        )
    if record.task.source is not None and task.protocol_hash() != record.task.protocol_hash:
        # nobody pins a benchmark file's protocol to its version (tests do for built-ins): a header edited without a
        # version bump is caught here
        raise MvlevalError(
            f"the header of the {installed} changed since the run (prompts, metrics, labels or generation settings: "
            f"protocol {task.protocol_hash()} now, {record.task.protocol_hash} in the record) while its version stayed "
            f"v{task.version}.",
            fix="bump `version` in the benchmark's header and rerun the evaluation, or restore the header the run was made with.",
            where=record_path,
        )
    root = task.data_dir()
    if root is None:
        root = data_root
    elif data_root is not None:
        raise MvlevalError(
            f"--data-root does not apply to the benchmark file {record.task.source}: the record keeps where it is.",
            fix="drop --data-root.",
        )
    if root is None:
        env = os.environ.get("MVLEVAL_DATA")
        root = Path(env) if env else None
    recorded = record.provenance.data_root
    if root is None and recorded is not None and Path(recorded).is_dir():
        # the record says where the data is: read it there again (and the images where the run read them)
        root = Path(recorded)
        if image_root is None and record.provenance.image_root is not None:
            image_root = Path(record.provenance.image_root)
    if root is None:
        # never score from what the per-sample file claims: its references and labels are only a copy of the data
        where_it_was = f" (the run read {recorded}, which no longer exists)" if recorded else ""
        raise MvlevalError(
            f"`mvleval score` reads the references and labels of {task.name} from its data again, and no data root "
            f"was given{where_it_was}.",
            fix="pass --data-root DIR (the folder the run read; images from --image-root, default DIR/images) or set MVLEVAL_DATA.",
            where=record_path,
        )
    options = RunOptions(
        task=record.task.source or record.task.name,
        model=record.model.path,
        data_root=root,
        image_root=image_root,
        languages=tuple(record.task.languages),
        split=record.task.split,
        limit=record.task.limit,
        prompt_style=record.task.prompt_style,
    )
    prepared = prepare(options)
    data_changed = prepared.data_fingerprint != record.provenance.data_fingerprint
    examples = {(lang, e.id): e for lang in prepared.languages for e in prepared.examples[lang]}
    samples_path = record_samples_path(record, record_path.parent)
    predictions: dict[tuple[str, str], str] = {}
    cached_keys: set[tuple[str, str]] = set()  # rows answered from the response cache keep their mark
    problems = Problems()
    n_refs_changed = 0
    for i, row in enumerate(read_samples(samples_path), start=1):
        where = f"{samples_path}:{i}"
        lang, example_id, prediction = row.get("lang"), row.get("id"), row.get("prediction")
        if not isinstance(lang, str) or not isinstance(example_id, str):
            problems.add("the row has no string 'lang' and 'id'", where)
            continue
        if not isinstance(prediction, str):
            problems.add("the row's 'prediction' is not a string", where, repr(prediction)[:40])
            continue
        example = examples.get((lang, example_id))
        if example is None:
            problems.add(
                "the row's language and id are not among the examples the task's data gives this run",
                where,
                f"{lang} {example_id}",
            )
            continue
        if (lang, example_id) in predictions:
            problems.add("the example occurs twice in the per-sample file", where, f"{lang} {example_id}")
            continue
        predictions[(lang, example_id)] = prediction
        if row.get("cached") is True:
            cached_keys.add((lang, example_id))
        if row.get("prompt") != example.prompt:
            problems.add("the row's prompt differs from the one the task's data gives", where, f"{lang} {example_id}")
        if row.get("references") != list(example.references):
            if data_changed:
                n_refs_changed += 1  # the data changed since the run (a label fixed): the data's references count
            else:
                problems.add(
                    "the row's references differ from the task's data (which is unchanged since the run)",
                    where,
                    f"{lang} {example_id}",
                )
    missing = [key for key in examples if key not in predictions]
    for lang, example_id in missing:
        problems.add(
            "an example of the task's data has no row in the per-sample file",
            samples_path,
            f"{lang} {example_id}",
            unit="example",
        )
    problems.raise_if_any(
        "the per-sample file does not agree with the task's data, so its predictions cannot be scored against it:",
        fix="rescore only the file `mvleval run` wrote for this record (change predictions, nothing else), or rerun the evaluation.",
    )
    if data_changed:
        log.warning(
            "%s: the task's data changed since the run (data fingerprint %s, the record had %s)%s; scored against the data as it is now.",
            record_path,
            prepared.data_fingerprint,
            record.provenance.data_fingerprint,
            f", {n_refs_changed} row(s) with other references" if n_refs_changed else "",
        )
    image_dir = options.resolved_image_root
    rows_by_lang = {
        lang: [
            _sample_row(e, predictions[(lang, e.id)], image_dir, (lang, e.id) in cached_keys)
            for e in prepared.examples[lang]
        ]
        for lang in prepared.languages
    }
    scores = score_rows(
        task,
        record.task.languages,
        rows_by_lang,
        prepared.examples,
        thinking_tags=record.model.details.get("thinking_tags") or (),
    )
    payload = sample_lines(row for lang in prepared.languages for row in rows_by_lang[lang])
    provenance_now = record.provenance.model_copy(
        update={"data_fingerprint": prepared.data_fingerprint, "annotation_files": prepared.annotation_files}
    )
    updated = record.model_copy(
        update={
            "scores": scores,
            "rescored_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "provenance": provenance_now if data_changed else record.provenance,
            "samples_sha256": hashlib.sha256(payload.encode("utf-8")).hexdigest(),
        }
    )
    write_json_atomic(samples_path, payload)
    write_record(updated, record_path)
    return updated, record_path
