"""evaluate(options) -> RunRecord: one run through the rooms of mvleval/run — plan, generate, score, files."""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import mvleval
from mvleval.benchmarks.images import MAX_PIXELS
from mvleval.record import provenance
from mvleval.record.schema import MetricScores, ModelInfo, Provenance, RunRecord, read_record
from mvleval.run import files
from mvleval.run.files import RunPaths, SampleRow
from mvleval.run.generate import (
    DistInfo,
    Generation,
    NullProgress,
    Progress,
    RunStopped,
    auto_batch_size,
    barrier,
    generate_all,
    init_distributed,
    load_backend,
    torch_seed,
    with_local_cache,
)
from mvleval.run.plan import PreparedRun, RunOptions, data_source, prepare, run_identity, run_name, task_info
from mvleval.run.rank_ahead import RankAhead
from mvleval.run.score import answer_rule_of, score_rows
from mvleval.util.errors import MvlevalError

if TYPE_CHECKING:
    from mvleval.backends.base import Backend

Done = dict[tuple[str, str], SampleRow]


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
    identity = run_identity(options, prepared)
    name = run_name(options, identity)
    created = files.make_out_dir(options.out_dir, name, dist_info.rank)
    paths = RunPaths.for_name(options.out_dir, name, dist_info.rank, dist_info.world_size)
    try:  # a refusal, a model that does not load, Ctrl-C: no empty folder left behind either
        files.check_start(paths, name, identity, options.resume, options.overwrite)
        done = _resume_state(options, prepared, paths, name, progress)
        backend, model_info = _start_backend(options, prepared, dist_info, backend_factory, progress)
        if dist_info.is_main:  # once the model accepted the settings: a run refused before leaves nothing behind
            files.write_manifest(paths, identity, name)
    except BaseException:
        files.remove_created(created)
        raise
    batch_size = options.batch_size or auto_batch_size(backend, prepared)
    if options.batch_size is None:
        progress.note(f"--batch-size auto: {batch_size}")
    # generation: length-sorted batches, image prefetch, progress; each batch appended to the partial file
    gen = Generation(prepared, backend, paths, dist_info, batch_size, progress, options.resolved_image_root)
    _generate_and_rank(gen, done, created, model_info)
    run_details = backend.run_details()
    if run_details:
        model_info = model_info.model_copy(update={"details": {**model_info.details, **run_details}})
    barrier(dist_info)
    if not dist_info.is_main:
        barrier(dist_info)  # wait until rank 0 has merged, scored and written the record
        return read_record(paths.record), paths.record
    rows = _merged_rows(prepared, paths, dist_info, done)
    scores = score_rows(prepared.task, prepared.languages, rows, prepared.examples, _thinking_tags(model_info))
    record = _record(options, prepared, model_info, scores, gen, name, started)
    files.write_outputs(record, [row for lang in prepared.languages for row in rows[lang]], paths)
    files.remove_unfinished(paths, dist_info.world_size)
    if options.overwrite:
        for page in files.remove_replaced_reports(paths):
            progress.note(
                f"removed {page}, the report of the replaced run (`mvleval report {paths.record}` writes a new one)"
            )
    barrier(dist_info)
    return record, paths.record


def _thinking_tags(model_info: ModelInfo) -> list[list[str]]:
    """The model's chat template's thinking tags (scoring removes the thinking they delimit)."""
    return model_info.details.get("thinking_tags") or []


def _resume_state(options: RunOptions, prepared: PreparedRun, paths: RunPaths, name: str, progress: Progress) -> Done:
    """The rows an interrupted run already generated (none without --resume); its partial file rewritten clean."""
    if not options.resume:
        return {}
    valid = {(lang, e.id) for lang, exs in prepared.examples.items() for e in exs}
    done = files.load_done([paths.partial], valid)
    total = sum(len(exs) for exs in prepared.examples.values())
    progress.note(f"resuming {name}: {len(done)} of {total} examples already done, in {paths.partial}")
    files.rewrite_partial(paths, done.values())
    return done


def _start_backend(
    options: RunOptions,
    prepared: PreparedRun,
    dist_info: DistInfo,
    backend_factory: Callable[[], Backend] | None,
    progress: Progress,
) -> tuple[Backend, ModelInfo]:
    """The loaded backend (behind the response cache where asked), having accepted the run's settings, and the
    record's model section."""
    from mvleval.backends.registry import is_served

    if not is_served(options.model, options.backend):
        init_distributed(dist_info)
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
    backend = backend_factory() if backend_factory else load_backend(options, dist_info)
    backend.check_settings(prepared.generation, prepared.task.images_per_example)
    model_info = backend.info(prepared.generation)
    if options.model_options is not None:  # the spec's options as given (no credentials), only where there are any
        model_info = model_info.model_copy(update={"options": options.model_options.recorded()})
    return with_local_cache(backend, options, prepared), model_info


def _generate(gen: Generation, done: Done, created: list[Path]) -> None:
    """Generate what is not done; a failure before anything was generated leaves nothing behind, a later one says
    how to --resume (an interrupted run, KeyboardInterrupt included, stays resumable)."""
    already = len(done)
    try:
        generate_all(gen, done)
    except Exception as exc:
        if isinstance(exc, RunStopped):
            raise  # it already says where the run stands and how to --resume
        if len(done) == already == 0 and gen.dist_info.world_size == 1:
            # nothing was generated: leave nothing behind, so the same command runs again once the cause is fixed
            gen.paths.partial.unlink(missing_ok=True)
            gen.paths.manifest.unlink(missing_ok=True)
            files.remove_created(created)
        elif isinstance(exc, MvlevalError):
            raise MvlevalError(
                exc.what,
                fix=f"{(exc.fix or 'fix the cause').rstrip('.')}; then rerun the same command with --resume: the "
                f"{len(done)} examples generated so far are kept in {gen.paths.partial}.",
                where=exc.where,
            ) from None
        raise


def _generate_and_rank(gen: Generation, done: Done, created: list[Path], model_info: ModelInfo) -> None:
    """Generation, then the backend closed; language fidelity's lingua rankings are made meanwhile by a worker process
    (run/rank_ahead.py), so that scoring loads none of lingua's models (the same scores)."""
    prepared = gen.prepared
    answer_of = answer_rule_of(prepared.task, _thinking_tags(model_info))
    ahead = RankAhead.for_run(prepared, answer_of, gen.dist_info.world_size, gen.backend.device)
    if ahead is None:
        _generate(gen, done, created)
        gen.backend.close()
        return
    try:
        ahead.feed(done.values())  # resumed rows
        _generate(replace(gen, on_rows=ahead.feed), done, created)
        gen.backend.close()
        ahead.finish()
    finally:
        ahead.close()


def _merged_rows(prepared: PreparedRun, paths: RunPaths, dist_info: DistInfo, done: Done) -> dict[str, list[SampleRow]]:
    """Every example's row in the data's order (in a data-parallel run, merged from every rank's partial file)."""
    if dist_info.world_size > 1:
        valid = {(lang, e.id) for lang, exs in prepared.examples.items() for e in exs}
        done = files.load_done(paths.rank_partials(dist_info.world_size), valid)
        missing = [
            (lang, e.id) for lang in prepared.languages for e in prepared.examples[lang] if (lang, e.id) not in done
        ]
        if missing:
            raise RuntimeError(f"{len(missing)} samples missing after merging the ranks' files, e.g. {missing[:3]}")
    return {lang: [done[(lang, e.id)] for e in prepared.examples[lang]] for lang in prepared.languages}


def _record(
    options: RunOptions,
    prepared: PreparedRun,
    model_info: ModelInfo,
    scores: dict[str, MetricScores],
    gen: Generation,
    name: str,
    started: float,
) -> RunRecord:
    """The run's record (its samples_sha256 is set when the per-sample file is written)."""
    commit, dirty = provenance.git_state()
    return RunRecord(
        run_id=name,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        task=task_info(options, prepared),
        model=model_info,
        scores=scores,
        provenance=Provenance(
            mvleval_version=mvleval.__version__,
            git_commit=commit,
            git_dirty=dirty,
            python=platform.python_version(),
            packages=provenance.package_versions(),
            device=provenance.device_description(gen.backend.device),
            data_fingerprint=prepared.data_fingerprint,
            annotation_files=prepared.annotation_files,
            prompt_hash=prepared.task.protocol_hash(),
            seed=options.seed,
            command=list(options.command or sys.argv),
            hostname=provenance.hostname(),
            batch_size=gen.batch_size,
            image_root=str(options.resolved_image_root.resolve()),
            data_root=str(options.data_root.resolve()),
            max_image_pixels=MAX_PIXELS,
            data_source=data_source(options.data_root, prepared.task.name, prepared.languages),
        ),
        duration_s=round(time.monotonic() - started, 3),
        samples_file=gen.paths.samples.name,
    )


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
