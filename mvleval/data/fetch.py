"""`mvleval data fetch`: download a task's pinned sources from the Hugging Face hub, verify them, write the data root.

The sources are in the lock file beside this module (sources.lock.yaml): per task a dataset repo, its commit, file
patterns, licence and terms. A fetch lists the repo's tree at the commit (huggingface_hub), downloads each needed file
into the hub cache (``hf_hub_download`` with ``revision=<commit>``: resumable, shared between data roots), checks its
SHA-256 against the hub's LFS hash of that commit and the lock's hash where the lock has one (a mismatch is refused
with both hashes, and the cached copy deleted), then hands the files to the task's writer (mvleval.data.layouts),
which writes the layout `mvleval run` reads. What was fetched, from which commit, with which notes about the mirror's
differences, is recorded in ``<data root>/.mvleval/fetch.json``; a language already written from the same commit is
skipped without touching the network, so a second fetch (also with HF_HUB_OFFLINE=1) does nothing.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mvleval.util.errors import MvlevalError

LOCK_NAME = "sources.lock.yaml"
STATE_FILE = Path(".mvleval") / "fetch.json"
_HEX40 = frozenset("0123456789abcdef")


# ------------------------------------------------------------------------------------------------------------ the lock
@dataclass(frozen=True)
class Upstream:
    """An original-release annotation file that repairs a known difference of the mirror."""

    path: str
    url: str
    sha256: str
    languages: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class Source:
    """One task's entry of the lock file."""

    task: str
    repo: str
    revision: str | None
    layout: str
    licence: str
    terms: str | None
    languages: tuple[str, ...]
    files: tuple[str, ...]
    hashes: dict[str, dict[str, Any]]
    split_names: dict[str, str] = field(default_factory=dict)
    upstream: tuple[Upstream, ...] = ()
    revision_from: str | None = None

    @property
    def split_by_language(self) -> bool:
        """Whether the repo keeps each language in its own files (so --lang downloads less)."""
        return bool(self.languages) and any("{lang}" in p or "{split}" in p for p in self.files)

    def patterns(self, lang: str | None) -> list[str]:
        """The repo paths' patterns for one language (None: a source not split by language)."""
        out = []
        for pattern in self.files:
            if "{lang}" in pattern or "{split}" in pattern:
                if lang is None:
                    continue
                out.append(pattern.format(lang=lang, split=self.split_names.get(lang, lang)))
            else:
                out.append(pattern)
        return out


def lock_path() -> Path:
    """The lock file shipped inside the package."""
    return Path(str(resources.files("mvleval.data").joinpath(LOCK_NAME)))


def load_lock(path: Path | None = None) -> dict[str, Source]:
    """Read and check the lock file; every problem is a user error naming the file and the task."""
    import yaml

    path = path or lock_path()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise MvlevalError(
            f"cannot read the sources lock: {exc}.", fix="restore it from the release.", where=path
        ) from None
    if not isinstance(raw, dict) or raw.get("schema") != 1 or not isinstance(raw.get("tasks"), dict):
        raise MvlevalError("not a sources lock of schema 1.", fix="restore it from the release.", where=path)
    sources: dict[str, Source] = {}
    for name, entry in raw["tasks"].items():
        where = f"{path} (task {name})"
        try:
            revision = entry.get("revision")
            if revision is not None and not (len(revision) == 40 and set(revision) <= _HEX40):
                raise ValueError(f"revision {revision!r} is not a 40-hex commit")
            sources[name] = Source(
                task=name,
                repo=str(entry["repo"]),
                revision=revision,
                layout=str(entry["layout"]),
                licence=str(entry["licence"]),
                terms=entry.get("terms"),
                languages=tuple(str(x) for x in entry.get("languages") or ()),
                files=tuple(entry["files"]),
                hashes=dict(entry.get("hashes") or {}),
                split_names={str(k): str(v) for k, v in (entry.get("split_names") or {}).items()},
                upstream=tuple(
                    Upstream(u["path"], u["url"], u["sha256"], tuple(u.get("languages") or ()), u.get("why", ""))
                    for u in entry.get("upstream") or ()
                ),
                revision_from=entry.get("revision_from"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MvlevalError(
                f"malformed entry: {exc}.", fix="restore the lock from the release.", where=where
            ) from None
    return sources


# ------------------------------------------------------------------------------------------------------- the data root
@dataclass
class State:
    """``<data root>/.mvleval/fetch.json``: per task the source, commit, languages written, notes, accepted terms."""

    root: Path
    data: dict[str, Any]

    @classmethod
    def load(cls, root: Path) -> State:
        path = root / STATE_FILE
        if not path.is_file():
            return cls(root, {"schema": 1, "tasks": {}, "accepted_terms": {}})
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise MvlevalError(
                f"cannot read the fetch record: {exc}.", fix="delete it and fetch again.", where=path
            ) from None
        return cls(root, data)

    def task(self, name: str) -> dict[str, Any]:
        entry: dict[str, Any] = self.data.setdefault("tasks", {}).setdefault(name, {"languages": {}})
        return entry

    def save(self) -> None:
        path = self.root / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)


def source_record(root: Path, task: str) -> dict[str, Any] | None:
    """What a fetch recorded about a task in this data root (repo, commit, pinned, languages, notes), if anything."""
    state = State.load(root)
    entry = state.data.get("tasks", {}).get(task)
    return dict(entry) if entry else None


# ----------------------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None  # the hub's LFS hash at the commit (None: a file not stored in LFS)
    lock_sha256: str | None


@dataclass
class TaskPlan:
    source: Source
    revision: str
    pinned: str  # "lock" | "recorded" | "--revision" | "resolved main"
    languages: list[str]
    todo: dict[str, list[RemoteFile]]  # language ("" = not split by language) -> files to download and write
    done: list[str]  # languages already written from this commit
    upstream: list[Upstream]

    @property
    def download_bytes(self) -> int:
        seen: dict[str, int] = {}
        for files in self.todo.values():
            for f in files:
                seen[f.path] = f.size
        return sum(seen.values())

    @property
    def disk_bytes(self) -> int:
        """About what the fetch adds on disk: the files in the hub cache, plus, for a mirror turned into a layout,
        its images written out again into the data root (a snapshot is hard-linked where it can be)."""
        return self.download_bytes * (1 if self.source.layout == "snapshot" else 2)


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def _cache_dir() -> str | None:
    return os.environ.get("HF_HUB_CACHE") or None


def resolve_languages(source: Source, langs: list[str] | None) -> list[str]:
    """The task's languages to fetch (all by default); an alias (MaXM's Hebrew: he -> iw) is accepted."""
    from mvleval.benchmarks.languages import CODE_ALIASES
    from mvleval.util.errors import did_you_mean

    if not source.split_by_language:
        return [""]  # one set of files for every language (plan_task says so when --lang was given)
    if not langs:
        return list(source.languages)
    out = []
    for lang in langs:
        if lang not in source.languages:
            alias = next((k for k, v in CODE_ALIASES.items() if v == lang and k in source.languages), None)
            if alias is None:
                raise MvlevalError(
                    f"{source.task} has no language {lang!r}.{did_you_mean(lang, source.languages)}",
                    fix=f"pick from: {' '.join(source.languages)}.",
                )
            lang = alias
        if lang not in out:
            out.append(lang)
    return out


def _hf_api() -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=_endpoint())


def _is_network_error(exc: BaseException) -> bool:
    """An HTTP or connection failure of the hub client (its HTTP library varies by version); anything else is a bug."""
    from huggingface_hub.errors import HfHubHTTPError

    root = type(exc).__module__.split(".")[0]
    return isinstance(exc, (HfHubHTTPError, OSError)) or root in {"httpx", "httpx2", "httpcore", "requests", "urllib3"}


@contextlib.contextmanager
def _hub_call(what: str) -> Iterator[None]:
    """A failed call to the hub becomes one user error naming what was asked and the endpoint."""
    try:
        yield
    except Exception as exc:
        if not _is_network_error(exc):
            raise
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise MvlevalError(
            f"{what}: the hub at {_endpoint() or 'https://huggingface.co'} could not be reached or refused it ({first}).",
            fix="check the network (HF_ENDPOINT, a proxy) and fetch again; what completed is kept and not downloaded "
            "again. Without a network, HF_HUB_OFFLINE=1 uses a data root fetched before.",
        ) from None


def resolve_main(repo: str) -> str:
    """The commit `main` points at now (one network call)."""
    with _hub_call(f"resolving main of {repo}"):
        return str(_hf_api().dataset_info(repo, revision="main").sha)


def list_tree(source: Source, revision: str) -> dict[str, RemoteFile]:
    """Every file of the repo at the commit, with the hub's size and LFS sha256."""
    with _hub_call(f"listing {source.repo} at {revision}"):
        entries = list(_hf_api().list_repo_tree(source.repo, repo_type="dataset", revision=revision, recursive=True))
    out: dict[str, RemoteFile] = {}
    for e in entries:
        if getattr(e, "blob_id", None) is None:  # a folder
            continue
        lfs = getattr(e, "lfs", None)
        lock = source.hashes.get(e.path, {}).get("sha256")
        out[e.path] = RemoteFile(e.path, int(e.size), lfs.sha256 if lfs is not None else None, lock)
    return out


def plan_task(
    source: Source, langs: list[str] | None, root: Path, revision: str | None = None, *, notes: list[str]
) -> TaskPlan:
    """What a fetch of one task will download; touches the network only when something is left to do."""
    state = State.load(root)
    recorded = state.data.get("tasks", {}).get(source.task, {})
    languages = resolve_languages(source, langs)
    if langs and not source.split_by_language:
        notes.append(f"{source.task}: the source is not split by language: --lang does not apply, all of it is fetched")
    if revision is not None:
        if not (len(revision) == 40 and set(revision) <= _HEX40):
            raise MvlevalError(
                f"--revision {revision!r} is not a full commit (40 hex digits).",
                fix="pass the commit's full sha (the hub's 'Files and versions' page shows it).",
            )
        rev, pinned = revision, "--revision"
    elif source.revision is not None:
        rev, pinned = source.revision, "lock"
    elif recorded.get("revision") and recorded.get("pinned") in ("resolved main", "recorded"):
        rev, pinned = recorded["revision"], "recorded"
    else:
        rev, pinned = "", "resolved main"
    done = [
        lang
        for lang in languages
        if rev and recorded.get("revision") == rev and recorded.get("languages", {}).get(lang or "all", {}).get("done")
    ]
    left = [lang for lang in languages if lang not in done]
    upstream = [u for u in source.upstream if any(lang in u.languages for lang in left)]
    if not left:
        return TaskPlan(source, rev, pinned, languages, {}, done, [])
    if _offline():
        raise MvlevalError(
            f"{source.task} ({', '.join(x or 'all' for x in left)}) is not in the data root {root} and HF_HUB_OFFLINE "
            "is set.",
            fix="fetch once with the network (unset HF_HUB_OFFLINE), or point --data-root at a data root fetched before.",
        )
    if not rev:
        rev = resolve_main(source.repo)
        notes.append(
            f"{source.task}: {source.repo} is NOT PINNED BY MVLEVAL: resolved main to {rev} (recorded in the data root; "
            "later fetches reuse it)"
        )
    tree = list_tree(source, rev)
    todo: dict[str, list[RemoteFile]] = {}
    for lang in left:
        files: list[RemoteFile] = []
        for pattern in source.patterns(lang or None):
            matched = sorted(p for p in tree if fnmatch.fnmatchcase(p, pattern))
            if not matched:
                raise MvlevalError(
                    f"{source.repo} at {rev} has no file matching {pattern!r} "
                    f"({source.task}{', ' + lang if lang else ''}).",
                    fix="check --revision, or run `mvleval data lock` to re-read the repo's layout.",
                )
            for p in matched:
                inside(p, "data root", f"{source.repo}@{rev}")
            files.extend(tree[p] for p in matched)
        todo[lang] = files
    return TaskPlan(source, rev, pinned, languages, todo, done, upstream)


# ------------------------------------------------------------------------------------------------------- downloading
def sha256_file(path: Path) -> str:
    from mvleval.record.provenance import file_sha256

    return file_sha256(path)


class HashMismatch(MvlevalError):
    pass


def _refuse(path: Path, what: str, expected: str, got: str) -> None:
    # the hub cache keeps the blob behind a snapshot link: remove both so nothing ever reads it again
    real = path.resolve()
    with contextlib.suppress(OSError):
        path.unlink()
    with contextlib.suppress(OSError):
        real.unlink()
    raise HashMismatch(
        f"{what}: SHA-256 {got} does not match the expected {expected}; the file was deleted and not used.",
        fix="fetch again (a corrupted download); if it persists, the source changed: report it, or pass --revision "
        "knowingly.",
        where=what.split(" ")[0],
    )


def download(source: Source, revision: str, f: RemoteFile, progress: Callable[[int], None] | None = None) -> Path:
    """One file of the repo at the commit, from the hub cache or the hub (resuming a partial download), verified."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    tqdm_class = _progress_tqdm(progress) if progress is not None else None
    try:
        with _hub_call(f"downloading {source.repo}/{f.path} at {revision}"):
            local = hf_hub_download(
                source.repo,
                f.path,
                repo_type="dataset",
                revision=revision,
                endpoint=_endpoint(),
                cache_dir=_cache_dir(),
                tqdm_class=tqdm_class,
            )
    except LocalEntryNotFoundError as exc:
        raise MvlevalError(
            f"{source.repo}/{f.path} at {revision} could not be downloaded: {str(exc).splitlines()[0]}",
            fix="check the network (HF_ENDPOINT) and fetch again; what completed is kept and not downloaded again.",
        ) from None
    path = Path(local)
    got = sha256_file(path)
    label = f"{source.repo}/{f.path}@{revision[:12]}"
    if f.sha256 is not None and got != f.sha256:
        _refuse(path, f"{label} (against the hub's LFS hash at the commit)", f.sha256, got)
    if f.lock_sha256 is not None and got != f.lock_sha256:
        _refuse(path, f"{label} (against mvleval's lock)", f.lock_sha256, got)
    return path


def _progress_tqdm(progress: Callable[[int], None]) -> Any:
    """A tqdm class huggingface_hub drives, forwarding byte counts to a rich bar (and printing nothing itself)."""
    from tqdm.auto import tqdm

    class _Forward(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            progress(int(n or 0))
            return None

    return _Forward


def fetch_upstream(root: Path, up: Upstream) -> Path:
    """An original-release annotation file into the data root: kept when its sha256 matches, else downloaded
    (httpx, from the URL in the lock; $MVLEVAL_UPSTREAM_BASE replaces https://raw.githubusercontent.com) and
    verified against the lock's sha256."""
    target = root / up.path
    if target.is_file() and sha256_file(target) == up.sha256:
        return target
    if _offline():
        raise MvlevalError(
            f"{up.path} is needed ({up.why}) and HF_HUB_OFFLINE is set.",
            fix=f"download {up.url} to {target} (sha256 {up.sha256}), or fetch once with the network.",
        )
    import httpx

    url = up.url
    base = os.environ.get("MVLEVAL_UPSTREAM_BASE")
    if base:
        url = url.replace("https://raw.githubusercontent.com", base.rstrip("/"))
    try:
        response = httpx.get(url, follow_redirects=True, timeout=60)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise MvlevalError(
            f"cannot download {url}: {exc}.",
            fix=f"download it yourself to {target} (sha256 {up.sha256}) and fetch again.",
        ) from None
    got = hashlib.sha256(response.content).hexdigest()
    if got != up.sha256:
        raise HashMismatch(
            f"SHA-256 {got} does not match the lock's {up.sha256}; not used.",
            fix=f"the upstream file changed: place the published file at {target}, or report it.",
            where=url,
        )
    atomic_write(target, response.content)
    return target


def inside(relative: str, what: str, where: str) -> None:
    """A name from a mirror (an id, a repo path) becomes a file name: one that would leave its root is refused."""
    parts = relative.split("/")
    if relative.startswith("/") or "\\" in relative or any(p in ("", ".", "..") for p in parts):
        raise MvlevalError(
            f"the name {relative!r} would leave the {what}.",
            fix="report the mirror; nothing was written for it.",
            where=where,
        )


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------------- the fetch
def free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_terms(plans: list[TaskPlan], root: Path, accept: bool) -> list[str]:
    """Sources with terms beyond an open licence need --accept-terms once; returns the tasks newly accepted."""
    state = State.load(root)
    accepted = state.data.get("accepted_terms", {})
    needed = [p for p in plans if p.todo and p.source.terms and accepted.get(p.source.task) != p.source.terms]
    if needed and not accept:
        terms = " ".join(f"[{p.source.task}] {p.source.terms}" for p in needed)
        raise MvlevalError(
            f"these sources come with terms beyond an open licence: {terms}",
            fix="read them, then add --accept-terms (recorded in the data root, asked once).",
        )
    return [p.source.task for p in needed]


@contextlib.contextmanager
def no_library_noise() -> Iterator[None]:
    """huggingface_hub's own progress bars and warnings stay off the terminal (mvleval draws its own): its bars are
    disabled, and its log lines below ERROR (the "Retrying in 1s [Retry 1/5]" of an unreachable hub) dropped; what
    goes wrong reaches the user as one mvleval error paragraph."""
    import logging

    from huggingface_hub.utils.tqdm import disable_progress_bars, enable_progress_bars

    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)
    disable_progress_bars()
    try:
        yield
    finally:
        enable_progress_bars()
        hub_log.setLevel(level)


# ------------------------------------------------------------------------------------------------ the maintainer side
def update_lock(task: str, lock_file: Path, revision: str | None = None) -> dict[str, Any]:
    """`mvleval data lock`: pin a task's commit (the given one, else the lock's, else main now) and write every
    matching file's sha256 and size from the hub's tree listing into the lock file. Returns what changed."""
    import yaml

    sources = load_lock(lock_file)
    if task not in sources:
        from mvleval.util.errors import did_you_mean

        raise MvlevalError(f"no task {task!r} in the lock.{did_you_mean(task, sources)}", fix="check --task.")
    source = sources[task]
    rev = revision or source.revision or resolve_main(source.repo)
    tree = list_tree(source, rev)
    patterns = [p for lang in (source.languages or [None]) for p in source.patterns(lang)]
    hashes: dict[str, dict[str, Any]] = {}
    for path, f in sorted(tree.items()):
        if any(fnmatch.fnmatchcase(path, p) for p in patterns):
            if f.sha256 is None:
                raise MvlevalError(
                    f"{source.repo}/{path} is not stored in LFS: the hub gives no sha256 for it.",
                    fix="download it and hash it yourself, then write it into the lock by hand.",
                )
            hashes[path] = {"sha256": f.sha256, "size": f.size}
    raw = yaml.safe_load(lock_file.read_text(encoding="utf-8"))
    raw["tasks"][task]["revision"] = rev
    raw["tasks"][task]["hashes"] = hashes
    header = "".join(line + "\n" for line in lock_file.read_text(encoding="utf-8").splitlines() if line.startswith("#"))
    lock_file.write_text(
        header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True, width=1000), encoding="utf-8"
    )
    return {"task": task, "repo": source.repo, "revision": rev, "files": len(hashes)}


def fetch_command(task: str, lang: str | None = None, data_root: Path | str | None = None) -> str | None:
    """The `mvleval data fetch` command that gets `task`'s data (None when the lock has no source for it): what the
    errors about missing data tell the user to run."""
    try:
        if task not in load_lock():
            return None
    except MvlevalError:
        return None
    command = f"mvleval data fetch --task {task}"
    if lang:
        command += f" --lang {lang}"
    if data_root:
        command += f" --data-root {data_root}"
    return command
