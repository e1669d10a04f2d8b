"""Blessing baselines: copy a run record and its per-sample file into results/baselines/<task>/<name>.* with a note.

Layout written by bless() (all three files are meant to be committed):
  <baselines_dir>/<task>/<name>.json           the record, unchanged except samples_file, which points at the copy
  <baselines_dir>/<task>/<name>.samples.jsonl  the per-sample scores, so `--paired` gating works against it
  <baselines_dir>/<task>/<name>.note.md        why it was blessed, when, from which record (the RunRecord model
                                               forbids extra fields, so the note lives beside it)
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from mvleval.record.provenance import file_sha256
from mvleval.record.schema import (
    check_samples_hash,
    check_scores_follow_samples,
    read_record,
    read_samples,
    record_json,
    samples_path,
    write_json_atomic,
)
from mvleval.util.errors import MvlevalError
from mvleval.util.fileperms import follow_umask

log = logging.getLogger(__name__)

DEFAULT_BASELINES_DIR = Path("results/baselines")
DEFAULT_NAME = "main"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def baseline_path(task: str, name: str = DEFAULT_NAME, baselines_dir: Path = DEFAULT_BASELINES_DIR) -> Path:
    """Where the baseline `name` of `task` lives, e.g. results/baselines/xgqa/main.json."""
    return baselines_dir / task / f"{name}.json"


def _copy_atomic(source: Path, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        follow_umask([Path(tmp)])
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def bless(
    run_record_path: Path,
    baselines_dir: Path = DEFAULT_BASELINES_DIR,
    *,
    note: str,
    name: str = DEFAULT_NAME,
    now: datetime | None = None,
) -> Path:
    """Make a run the baseline `name` of its task, replacing any previous one of that name.

    Args:
        run_record_path: the record written by `mvleval run` (its per-sample file must sit where samples_file says).
        baselines_dir: root of the committed baselines.
        note: why this run is the new baseline (required: a baseline without a reason cannot be reviewed).
        name: baseline name, e.g. "main" (letters, digits, '.', '_', '-').
        now: the blessing time (for tests); defaults to the current UTC time.

    Returns:
        The path of the copied record, e.g. results/baselines/xgqa/main.json.

    Raises:
        MvlevalError: invalid record, missing per-sample file, empty note, bad name, or unwritable folder.
    """
    if not note.strip():
        raise MvlevalError("a baseline needs a note saying why it was blessed.", fix='pass --note "...".')
    if not _SAFE_NAME.fullmatch(name):
        raise MvlevalError(f"invalid baseline name {name!r}.", fix="use letters, digits, '.', '_' or '-', e.g. main.")
    record = read_record(run_record_path)
    if not _SAFE_NAME.fullmatch(record.task.name):
        raise MvlevalError(
            f"record has an invalid task name {record.task.name!r}.",
            fix="pass a record written by `mvleval run`.",
            where=run_record_path,
        )
    samples = samples_path(record, run_record_path.parent)
    if not samples.is_file():
        raise MvlevalError(
            "the record's per-sample file is missing, so the baseline could not be gated with --paired.",
            fix="bless the record in the folder `mvleval run` wrote it to, next to its per-sample file.",
            where=samples,
        )
    # the baseline vouches for its samples: a per-sample file edited after scoring is refused here, and the copy's
    # hash is recorded so that the gate refuses one edited after blessing
    if not check_samples_hash(record, run_record_path.parent, "the run"):
        log.warning(
            "%s records no samples_sha256 (written before records kept one): its per-sample file is blessed as it is; "
            "rescore it with `mvleval score` first to check it against the task's data.",
            run_record_path,
        )
    check_scores_follow_samples(
        record, ((str(row.get("lang")), row.get("scores")) for row in read_samples(samples)), samples, "the run record"
    )
    samples_hash = file_sha256(samples)
    target = baseline_path(record.task.name, name, baselines_dir)
    samples_target = target.with_name(f"{name}.samples.jsonl")
    note_target = target.with_name(f"{name}.note.md")
    previous = None
    if target.is_file():
        try:
            previous = read_record(target)
        except MvlevalError:
            previous = None  # a broken old baseline is simply replaced; its run id is then not named in the note
    stamp = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    lines = [
        f"# Baseline {record.task.name}/{name}",
        "",
        note.strip(),
        "",
        f"- blessed at: {stamp}",
        f"- run id: {record.run_id} (created {record.created_at})",
        f"- from: {run_record_path.as_posix()}",
        f"- task: {record.task.name} v{record.task.version} [{record.task.split}], data {record.provenance.data_fingerprint}",
        f"- model: {record.model.path}"
        + (f" + {record.model.adapter}" if record.model.adapter else "")
        + (f" ({record.model.bits}-bit)" if record.model.bits else " (served)"),
        f"- mvleval {record.provenance.mvleval_version}, commit {record.provenance.git_commit or 'unknown'}"
        + (" (dirty)" if record.provenance.git_dirty else ""),
    ]
    if previous is not None:
        lines.append(f"- replaces run id: {previous.run_id} (created {previous.created_at})")
    copied = record.model_copy(update={"samples_file": samples_target.name, "samples_sha256": samples_hash})
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Samples first, then the record: a record never points at a missing or stale per-sample file.
        _copy_atomic(samples, samples_target)
        write_json_atomic(target, record_json(copied))
        write_json_atomic(note_target, "\n".join(lines) + "\n")
    except OSError as exc:
        raise MvlevalError(
            f"could not write the baseline ({exc.strerror or exc}).",
            fix="check that the folder is writable.",
            where=target.parent,
        ) from None
    return target
