"""RunRecord (pydantic, versioned) and its per-sample JSONL: reading, writing atomically, appending safely."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mvleval.util.errors import MvlevalError
from mvleval.util.fileperms import follow_umask
from mvleval.util.jsonl import BadLine, jsonl_text, parse_lines

#: 2: the model section names its backend and family and no longer assumes BLIP-2 (version 1 records still read).
SCHEMA_VERSION = 2


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskInfo(_Model):
    name: str
    version: int
    split: str
    languages: list[str]
    n_examples: dict[str, int]
    limit: int | None = None
    protocol_hash: str
    prompt_style: str = (
        "mblip"  # "mblip" (mBLIP's protocol) or "chat" (instruction-tuned wording); hashed into protocol_hash
    )
    # a task read from a benchmark file: where the file (or folder) was, absolute, so `mvleval score` and the leaderboard
    # read it again; None (and left out of the JSON, so built-in records stay as they were) for a built-in task
    source: str | None = None


class ModelInfo(_Model):
    path: str
    kind: str  # "encoder-decoder" | "decoder-only" | "served" (not known here)
    bits: int  # 0: not known here (a served model: the server chose the precision)
    dtype: str
    quantization: str | None = None  # e.g. "bitsandbytes nf4 (compute bfloat16)", "pre-quantised (nf4)"
    adapter: str | None = None
    generation: dict[str, Any]
    num_query_tokens: int | None = None  # BLIP-2 only: query tokens per image
    fingerprint: str | None = (
        None  # hash of the weight files' names and contents (and the adapter's): the model's identity
    )
    # which code path generated: transformers' generate, or beam search computing the prompt once per sample
    generation_path: str | None = None
    # schema 2: what ran, for any family (None in version 1 records, which were all BLIP-2 through the mBLIP backend)
    backend: str | None = None  # "mblip", "hf", ...
    family: str | None = None  # config.json model_type, e.g. "qwen2_5_vl"
    model_class: str | None = None  # e.g. "Qwen2_5_VLForConditionalGeneration"
    processor_class: str | None = None
    processor_sha: str | None = None  # sha256 over the tokenizer/processor/chat-template files
    chat_template_sha: str | None = None  # sha256 of the chat template the prompts went through (None: no template)
    image_handling: str | None = None  # "native" (every image given to the model) or "side-by-side" (pasted into one)
    trust_remote_code: bool | None = None
    # backend-specific facts that are not comparable across backends (e.g. a served model's endpoint and token counts)
    details: dict[str, Any] = Field(default_factory=dict)
    # the model spec's options as given (-M KEY=VALUE, a config file's `options:`, or the old flags aliasing them),
    # without credentials; None (and left out of the JSON, so records of runs without options stay as they were)
    options: dict[str, Any] | None = None


class GroupScore(_Model):
    """A metric on the examples of one group (a subject, a category) of one language."""

    n: int
    value: float | None


class MetricScores(_Model):
    signature: str
    per_lang: dict[str, float | None]
    mean: float | None
    intervals: dict[str, tuple[float, float] | None] = Field(default_factory=dict)
    notes: dict[str, str] = Field(default_factory=dict)
    extra: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    higher_is_better: bool = True
    #: per language, the metric on each group of examples (xMMMU's subjects, M3Exam's subject categories, ...): the
    #: mean of the per-sample scores of the group's examples; in the JSON only for a task whose examples name groups
    by_group: dict[str, dict[str, GroupScore]] = Field(default_factory=dict)


class Provenance(_Model):
    mvleval_version: str
    git_commit: str | None
    git_dirty: bool | None
    python: str
    packages: dict[str, str | None]
    device: str
    data_fingerprint: str
    annotation_files: dict[str, str]  # path -> sha256
    prompt_hash: str
    seed: int
    command: list[str]
    hostname: str | None = None
    batch_size: int | None = (
        None  # samples per generate call (what --batch-size auto picked); predictions do not depend on it
    )
    image_root: str | None = None  # the folder the run read its images from, absolute: `mvleval report`'s default
    data_root: str | None = None  # the data root the run read, absolute: where `mvleval score` reads the data again
    max_image_pixels: int | None = (
        None  # the pixel limit images were opened under (mvleval.benchmarks.images.MAX_PIXELS); None: not recorded
    )
    #: where `mvleval data fetch` got the data: repo, commit, pinned ("lock" | "recorded" | "--revision" |
    #: "resolved main"), per language the files' sha256 and the notes on the mirror; None: a hand-assembled data root
    data_source: dict[str, Any] | None = None


class RunRecord(_Model):
    """One evaluation run: what ran, on what, how it was scored, and the scores."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    created_at: str
    task: TaskInfo
    model: ModelInfo
    scores: dict[str, MetricScores]
    provenance: Provenance
    duration_s: float
    samples_file: str
    rescored_at: str | None = None  # set by `mvleval score` when scores were recomputed from the samples file
    # sha256 of the per-sample file as blessed (`mvleval baseline bless`) or rescored: the gate refuses a baseline whose
    # samples changed since; None (and left out of the JSON) in a record that does not vouch for its samples
    samples_sha256: str | None = None
    # sha256 of the canonical JSON of `scores`, written with every record: a number edited by hand afterwards is refused
    # wherever records are read for their numbers (gate, leaderboard, bless, report); None in records of mvleval < 0.2
    scores_sha256: str | None = None

    @field_validator("samples_file")
    @classmethod
    def _plain_file_name(cls, value: str) -> str:
        # a record's per-sample file lies beside it: a path elsewhere would score (or show) another run's samples
        if not is_plain_file_name(value):
            raise ValueError(f"{value!r} is not a plain file name beside the record (no folders, no '..')")
        return value

    def headline(self) -> str:
        return next(iter(self.scores))

    def recorded_image_root(self) -> Path | None:
        """The folder the run read its images from: as recorded (absolute), else, for records written before it was
        recorded, an absolute --image-root (or --data-root, whose images/ is the default) of the recorded command."""
        if self.provenance.image_root:
            return Path(self.provenance.image_root)
        command = self.provenance.command
        given: dict[str, str] = {}
        for i, arg in enumerate(command):
            for flag in ("--image-root", "--data-root"):
                if arg == flag and i + 1 < len(command):
                    given[flag] = command[i + 1]
                elif arg.startswith(flag + "="):
                    given[flag] = arg.split("=", 1)[1]
        if "--image-root" in given:
            root = Path(given["--image-root"])
        elif "--data-root" in given:
            root = Path(given["--data-root"]) / "images"
        else:
            return None
        return root if root.is_absolute() else None  # relative to a working directory that is not recorded

    def summary(self, path: Path) -> dict[str, Any]:
        """The run at a glance, JSON-ready (`mvleval run --json` / `score --json`; mvleval/schemas/run.json): where the
        record is, what ran, and every metric's mean and per-language scores on the record's native scale."""
        return {
            "record": str(path),
            "samples_file": str(path.parent / self.samples_file),
            "run_id": self.run_id,
            "created_at": self.created_at,
            "rescored_at": self.rescored_at,
            "task": {
                "name": self.task.name,
                "version": self.task.version,
                "split": self.task.split,
                "prompt_style": self.task.prompt_style,
                "languages": list(self.task.languages),
                "n_examples": dict(self.task.n_examples),
            },
            "model": {
                "path": self.model.path,
                "adapter": self.model.adapter,
                "bits": self.model.bits,
                "backend": self.model.backend,
                "family": self.model.family,
                "generation": dict(self.model.generation),
            },
            "headline_metric": self.headline(),
            "scores": {
                name: {
                    "mean": s.mean,
                    "per_lang": dict(s.per_lang),
                    "higher_is_better": s.higher_is_better,
                    "signature": s.signature,
                    "mean_interval": list(mean_iv) if (mean_iv := s.intervals.get("mean")) else None,
                }
                | (
                    {"by_group": {lang: {g: c.model_dump() for g, c in gs.items()} for lang, gs in s.by_group.items()}}
                    if s.by_group
                    else {}
                )
                for name, s in self.scores.items()
            },
        }


def report_paths(record_path: Path) -> tuple[Path, Path]:
    """Where `mvleval report` writes a record's pages by default: RUN.html and RUN.compare.html beside it."""
    return record_path.with_suffix(".html"), record_path.with_suffix(".compare.html")


def score_changes(before: RunRecord, after: RunRecord) -> list[str]:
    """What rescoring changed, one line per metric whose scores differ (points x100, 1 decimal, as in the tables):
    'exact_match: mean 45.0 -> 100.0; en 40.0 -> 100.0, de 50.0 -> 100.0'; metrics added or removed are named too."""

    def pts(value: float | None) -> str:
        return "–" if value is None else f"{value * 100:.1f}"

    lines: list[str] = []
    for name in list(after.scores) + [m for m in before.scores if m not in after.scores]:
        old, new = before.scores.get(name), after.scores.get(name)
        if old is None or new is None:
            lines.append(f"{name}: {'new metric' if old is None else 'no longer scored'}")
            continue
        if old.per_lang == new.per_lang and old.mean == new.mean and old.signature == new.signature:
            continue
        parts = [f"mean {pts(old.mean)} -> {pts(new.mean)}"]
        langs = [lang for lang in new.per_lang if old.per_lang.get(lang) != new.per_lang.get(lang)]
        if langs:
            parts.append(
                ", ".join(f"{lang} {pts(old.per_lang.get(lang))} -> {pts(new.per_lang.get(lang))}" for lang in langs)
            )
        if old.signature != new.signature:
            parts.append(f"signature {old.signature} -> {new.signature}")
        lines.append(f"{name}: " + "; ".join(parts))
    return lines


def is_plain_file_name(name: str) -> bool:
    """True for a file name without folders: no separator, not '.' or '..', no NUL, not empty."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in ("/", "\\", "\0"))


def samples_path(record: RunRecord, folder: Path) -> Path:
    """The per-sample file of a record in `folder`: the file named `samples_file` beside the record, refused (before
    anything is read) when it is a link that leads out of the record's folder."""
    path = folder / record.samples_file
    if path.is_symlink() and path.resolve().parent != folder.resolve():
        raise MvlevalError(
            f"the record's per-sample file {record.samples_file} is a link to a file outside the record's folder "
            f"({path.resolve()}); a record's files must lie beside it.",
            fix="copy the per-sample file next to the record instead of linking it.",
            where=path,
        )
    return path


def check_samples_hash(record: RunRecord, folder: Path, what: str, *, missing_ok: bool = False) -> bool:
    """Refuse a record whose per-sample file changed since the record vouched for it (`samples_sha256`, written by
    `run`, `score` and `baseline bless`); False for a record that has no hash (written before records kept one), or
    whose per-sample file is absent when the caller does not need it (`missing_ok`: a gate without --paired)."""
    if record.samples_sha256 is None:
        return False
    from mvleval.record.provenance import file_sha256

    path = samples_path(record, folder)
    if missing_ok and not path.exists():
        return False
    if not path.is_file():
        raise MvlevalError(
            f"the per-sample file of {what} is missing.",
            fix="keep each record next to its per-sample file.",
            where=path,
        )
    try:
        found = file_sha256(path)
    except OSError as exc:
        raise MvlevalError(
            f"cannot read the per-sample file of {what} ({exc.strerror}).",
            fix="check the file's permissions.",
            where=path,
        ) from None
    if found != record.samples_sha256:
        raise MvlevalError(
            f"the per-sample file of {what} changed after its scores were computed (sha256 {found[:12]}..., the record "
            f"says {record.samples_sha256[:12]}...), so its numbers no longer follow from its samples.",
            fix="restore the file, or rescore it against the task's data with `mvleval score RECORD --data-root DIR` "
            "(and bless the result again if it is a baseline).",
            where=path,
        )
    return True


def check_scores_follow_samples(record: RunRecord, rows: Iterable[tuple[str, Any]], where: Path, what: str) -> None:
    """Refuse a record whose accuracy-type score (every per-sample value 0 or 1, so the score is their mean) differs
    from the mean of its per-sample scores: the record's numbers were edited after scoring. `rows`: (language, the
    row's per-sample scores) pairs."""
    values: dict[tuple[str, str], list[Any]] = {}
    for lang, scores in rows:
        for metric in record.scores:
            values.setdefault((metric, lang), []).append(scores.get(metric) if isinstance(scores, dict) else None)
    for (metric, lang), found in values.items():
        claimed = record.scores[metric].per_lang.get(lang)
        if claimed is None or not found or not all(type(v) in (int, float) and v in (0, 1) for v in found):
            continue
        mean = sum(found) / len(found)
        if abs(mean - claimed) > 1e-9:
            raise MvlevalError(
                f"{what}'s {metric} for {lang} is {claimed!r}, but its per-sample scores give {mean!r}: the record's numbers "
                "do not follow from its samples (edited after scoring?).",
                fix="rescore it against the task's data with `mvleval score RECORD --data-root DIR`, or restore it.",
                where=where,
            )


def write_json_atomic(path: Path, payload: str) -> None:
    """Write text to `path` via a temp file in the same folder + fsync + rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        follow_umask([Path(tmp)])  # mkstemp makes 0600; the result must be readable as any other written file
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def record_json(record: RunRecord) -> str:
    """A record as pretty JSON; task.source, model.options, provenance.data_source and each metric's by_group only
    when there are some (a built-in task's record on a hand-assembled data root is unchanged by them)."""
    exclude: dict[str, Any] = {}
    if record.task.source is None:
        exclude["task"] = {"source"}
    if record.samples_sha256 is None:
        exclude["samples_sha256"] = True
    if record.model.options is None:
        exclude["model"] = {"options"}
    if record.provenance.data_source is None:  # a hand-assembled data root: the record is as before data fetch
        exclude["provenance"] = {"data_source"}
    if no_groups := _scores_without_groups(record):
        exclude["scores"] = no_groups
    record = record.model_copy(update={"scores_sha256": scores_digest(record)})
    return record.model_dump_json(indent=2, exclude=exclude or None) + "\n"


def _scores_without_groups(record: RunRecord) -> dict[str, Any]:
    """The `exclude` of the metrics with no per-group scores: their JSON (and digest) is what it was before groups."""
    return {name: {"by_group"} for name, scores in record.scores.items() if not scores.by_group}


def scores_digest(record: RunRecord) -> str:
    """sha256 of the record's scores as canonical JSON (sorted keys, no spaces): what `scores_sha256` vouches for."""
    scores = record.model_dump(mode="json", include={"scores"}, exclude={"scores": _scores_without_groups(record)})[
        "scores"
    ]
    return hashlib.sha256(
        json.dumps(scores, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


def write_record(record: RunRecord, path: Path) -> None:
    """Atomically write a run record as pretty JSON."""
    try:
        write_json_atomic(path, record_json(record))
    except OSError as exc:
        raise MvlevalError(
            f"could not write the run record ({exc.strerror}).",
            fix="check that the output folder is writable and the disk has space (--out).",
            where=path,
        ) from None


def read_record(path: Path, *, verify_scores: bool = True) -> RunRecord:
    """Read and validate a run record; errors name the file and the bad field.

    With `verify_scores` (all but `mvleval score`, which recomputes them), scores that no longer match the record's
    `scores_sha256` (edited by hand after mvleval wrote them) are refused.
    """
    record = _read_record(path)
    if verify_scores and record.scores_sha256 is not None and record.scores_sha256 != scores_digest(record):
        raise MvlevalError(
            "the record's scores were changed after mvleval wrote them (they no longer match its scores_sha256), so its "
            "numbers are not the run's.",
            fix="restore the record, or recompute its scores from its predictions and the task's data with `mvleval score`.",
            where=path,
        )
    return record


def _read_record(path: Path) -> RunRecord:
    if not path.is_file():
        raise MvlevalError(
            "run record not found.", fix="pass the path printed at the end of `mvleval run`.", where=path
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
        data = json.loads(text)
    except OSError as exc:
        raise MvlevalError(
            f"cannot read the run record ({exc.strerror}).", fix="check the file's permissions.", where=path
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise MvlevalError(
            f"not a valid run record JSON ({exc}).", fix="pass a record written by `mvleval run`.", where=path
        ) from None
    if not isinstance(data, dict):
        raise MvlevalError(
            f"not a valid run record: a JSON {type(data).__name__}, not an object.",
            fix="pass a record written by `mvleval run`.",
            where=path,
        )
    version = data.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise MvlevalError(
            f"not a valid run record: field 'schema_version' must be a whole number, got {version!r}.",
            fix="pass a record written by `mvleval run` (schema_version is written as a number, e.g. 2).",
            where=path,
        )
    if version > SCHEMA_VERSION:
        raise MvlevalError(
            f"record has schema_version {data['schema_version']}, newer than this mvleval understands ({SCHEMA_VERSION}).",
            fix="upgrade mvleval.",
            where=path,
        )
    try:
        # strict: every field has the type a record is written with ("2" is not schema_version 2, "0.5" not a score)
        return RunRecord.model_validate_json(text, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        got = f" (got {_cut_value(first.get('input'))})" if first.get("type") != "missing" else ""
        raise MvlevalError(
            f"not a valid run record: field '{loc}': {first['msg']}{got}.",
            fix="pass a record written by `mvleval run`.",
            where=path,
        ) from None


def _cut_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def sample_lines(rows: Iterable[dict[str, Any]]) -> str:
    """Per-sample rows as JSON Lines text (sorted keys, UTF-8 kept): one canonical form, so reruns are byte-identical."""
    return jsonl_text(rows, sort_keys=True)


class SampleWriter:
    """Appends per-sample rows to a JSONL file, flushed and fsynced per batch so a crash loses at most one batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fh = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise MvlevalError(
                f"cannot write the per-sample file ({exc.strerror}).", fix="choose a writable --out folder.", where=path
            ) from None

    def write_batch(self, rows: Iterable[dict[str, Any]]) -> None:
        try:
            self._fh.write(sample_lines(rows))
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise MvlevalError(
                f"writing the per-sample file failed ({exc.strerror}).",
                fix="free disk space or choose another --out; rerun with --resume to continue.",
                where=self.path,
            ) from None

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> SampleWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_samples(path: Path) -> Iterator[dict[str, Any]]:
    """Read per-sample rows; a torn last line (from a killed run) is ignored, any other bad line is an error."""
    if not path.is_file():
        raise MvlevalError("per-sample file not found.", fix="it is written next to the run record.", where=path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise MvlevalError(
            f"cannot read the per-sample file ({exc.strerror}).", fix="check the file's permissions.", where=path
        ) from None
    except UnicodeDecodeError as exc:
        raise MvlevalError(
            f"the per-sample file is not UTF-8 text ({exc.reason}).",
            fix="pass the file written by `mvleval run`.",
            where=path,
        ) from None
    for i, row in parse_lines(text):
        if isinstance(row, BadLine):
            if row.last:
                return  # a run killed mid-write leaves a torn final line; it is redone on resume
            raise MvlevalError(
                "corrupt per-sample line.", fix="delete the line or rerun without --resume.", where=f"{path}:{i}"
            )
        if not isinstance(row, dict):
            raise MvlevalError(
                f"a per-sample line must be a JSON object, got a {type(row).__name__}.",
                fix="use the file written by `mvleval run`.",
                where=f"{path}:{i}",
            )
        yield row


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


#: the per-sample row's fields, as `run` writes them, and the test of each one's type
SAMPLE_FIELDS: dict[str, tuple[str, Any]] = {
    "id": ("a string", lambda v: isinstance(v, str)),
    "lang": ("a string", lambda v: isinstance(v, str)),
    "prompt": ("a string", lambda v: isinstance(v, str)),
    "prediction": ("a string", lambda v: isinstance(v, str)),
    "references": ("a list of strings", _str_list),
    "images": ("a list of strings", _str_list),
    "scores": (
        "an object of numbers (or null) by metric",
        lambda v: isinstance(v, dict) and all(x is None or _is_number(x) for x in v.values()),
    ),
    "extra": ("an object by metric", lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values())),
    "cluster": ("a string", lambda v: isinstance(v, str)),
    "group": ("a string", lambda v: isinstance(v, str)),
    "answer": ("a string", lambda v: isinstance(v, str)),
}


def check_sample_row(row: dict[str, Any], where: str, required: Iterable[str]) -> None:
    """Refuse a per-sample row that lacks a required field or holds a field of the wrong type (file:line named)."""
    for name in required:
        if name not in row:
            raise MvlevalError(
                f"the per-sample row has no '{name}'.", fix="use the file written by `mvleval run`.", where=where
            )
    for name, (kind, ok) in SAMPLE_FIELDS.items():
        if name in row and not ok(row[name]):
            raise MvlevalError(
                f"the per-sample row's '{name}' must be {kind}, got {_cut_value(row[name])}.",
                fix="use the file written by `mvleval run` (or rescore it with `mvleval score`).",
                where=where,
            )


def check_sample_counts(langs: Iterable[str], record: RunRecord, path: Path, what: str, fix: str) -> None:
    """Refuse a per-sample file whose examples per language (`langs`: one entry per row) differ from the record's
    (a report or paired gate of the wrong file would mislead). `what` names the record in the message."""
    counts: dict[str, int] = {}
    for lang in langs:
        counts[lang] = counts.get(lang, 0) + 1
    expected = {lang: n for lang, n in record.task.n_examples.items() if n}
    if counts != expected:
        raise MvlevalError(
            f"the per-sample file does not match {what}: it holds {counts}, the record says {expected}.",
            fix=fix,
            where=path,
        )
