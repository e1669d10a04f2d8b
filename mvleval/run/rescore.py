"""rescore(record) -> RunRecord: a record's scores computed again from its predictions and the task's data, with the
installed metrics, without loading the model."""

from __future__ import annotations

import hashlib
import logging
import os
from datetime import datetime, timezone
from pathlib import Path

from mvleval.benchmarks.registry import load_task_of_record
from mvleval.benchmarks.task import Task
from mvleval.record.schema import RunRecord, read_record, write_json_atomic, write_record
from mvleval.record.schema import samples_path as record_samples_path
from mvleval.run.files import read_rows, samples_text
from mvleval.run.generate import sample_row
from mvleval.run.plan import PreparedRun, RunOptions, prepare
from mvleval.run.score import score_rows
from mvleval.util.errors import MvlevalError, Problems

log = logging.getLogger("mvleval.run")


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
    _check_protocol(task, record, record_path)
    root, image_root = _data_root(task, record, record_path, data_root, image_root)
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
    samples_path = record_samples_path(record, record_path.parent)
    predictions, cached_keys, n_refs_changed = _read_predictions(samples_path, prepared, data_changed)
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
            sample_row(e, predictions[(lang, e.id)], image_dir, (lang, e.id) in cached_keys)
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
    payload = samples_text(row for lang in prepared.languages for row in rows_by_lang[lang])
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


def _check_protocol(task: Task, record: RunRecord, record_path: Path) -> None:
    """Refuse a task whose version or (for a benchmark file) header changed since the run."""
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


def _data_root(
    task: Task, record: RunRecord, record_path: Path, data_root: Path | None, image_root: Path | None
) -> tuple[Path, Path | None]:
    """Where the task's data is read again: the benchmark file's folder, --data-root, MVLEVAL_DATA, or the folder the
    record says the run read (with its images); never the per-sample file's copy."""
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
    return root, image_root


def _read_predictions(
    samples_path: Path, prepared: PreparedRun, data_changed: bool
) -> tuple[dict[tuple[str, str], str], set[tuple[str, str]], int]:
    """The per-sample file's predictions by (lang, id), checked against the task's data (every disagreement at once);
    the keys of the rows answered from the response cache (they keep their mark); how many rows had references the
    changed data no longer has."""
    examples = {(lang, e.id): e for lang in prepared.languages for e in prepared.examples[lang]}
    predictions: dict[tuple[str, str], str] = {}
    n_refs_changed = 0
    cached_keys: set[tuple[str, str]] = set()
    problems = Problems()
    for i, row in enumerate(read_rows(samples_path), start=1):
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
    for lang, example_id in (key for key in examples if key not in predictions):
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
    return predictions, cached_keys, n_refs_changed
