"""Reading a benchmark's files as its Hugging Face dataset repository publishes them: parquet shards, and the images
embedded in them (Image structs, base64 strings, zip members) written once as content-addressed files a backend opens.

`mvleval data fetch` puts a dataset repo's files, as published, under ``<data_root>/<task>/<path in repo>``. The tasks
of the new benchmarks (tasks/mtvqa.py, tasks/cvqa.py, ...) read that layout with the functions here. Embedded images
are materialised under ``<cache dir>/hub-images/<sha256[:2]>/<sha256><ext>`` (mvleval/util/cachedir.py): that works when
the data root is read-only, each distinct image is written once (the name is the hash of its bytes, so a re-run
finds it and writes nothing), and a file is renamed into place only once whole, so a crash leaves no half image.
"""

from __future__ import annotations

import glob
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mvleval.util.errors import MvlevalError

#: folder under the cache dir holding the materialised images
IMAGE_FOLDER = "hub-images"
#: how an image is named in per-sample rows and data fingerprints: this prefix + its content-addressed file name
#: (the same on every machine, wherever the cache dir is)
IMAGE_NAME_PREFIX = "hub-images/"

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", ".jpg"),
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"GIF87a", ".gif"),
    (b"GIF89a", ".gif"),
    (b"BM", ".bmp"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
)


def image_dir() -> Path:
    """Where materialised images live (not created here)."""
    from mvleval.util.cachedir import cache_dir

    return cache_dir() / IMAGE_FOLDER


def image_suffix(data: bytes) -> str:
    """The file suffix of image bytes, by their magic number ('.img' for a format not recognised: PIL still opens it
    by content)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return next((suffix for magic, suffix in _MAGIC if data.startswith(magic)), ".img")


def materialise_image(data: bytes, where: str) -> Path:
    """The content-addressed file holding `data`, written atomically the first time these bytes are seen.

    Raises:
        MvlevalError: the bytes are empty, or the cache folder cannot be written.
    """
    if not data:
        raise MvlevalError(
            "the row's image holds no bytes.", fix="fetch the dataset again (`mvleval data fetch`).", where=where
        )
    digest = hashlib.sha256(data).hexdigest()
    folder = image_dir() / digest[:2]
    path = folder / f"{digest}{image_suffix(data)}"
    if path.is_file():  # content-addressed: an existing file holds exactly these bytes
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise MvlevalError(
            f"cannot write the dataset's embedded images under {image_dir()} ({exc.strerror or exc}).",
            fix="set MVLEVAL_CACHE_DIR to a writable folder (the images are written there once, then reused).",
        ) from None
    return path


def image_name(path: Path, image_root: Path, hub: Path | None = None) -> str:
    """How an image is named in per-sample rows and data fingerprints: its path under the image root (as
    ``os.path.relpath`` writes it), or, for an image materialised from a dataset file (under `hub`, default
    ``image_dir()``), ``hub-images/<sha256><ext>``: the same on every machine."""
    if path.is_relative_to(hub if hub is not None else image_dir()):
        return IMAGE_NAME_PREFIX + path.name
    return os.path.relpath(path, image_root)


def resolve_image_name(name: str) -> Path | None:
    """The cache file an ``hub-images/<sha256><ext>`` name (see image_name) stands for; None for any other name."""
    if not name.startswith(IMAGE_NAME_PREFIX):
        return None
    file = name[len(IMAGE_NAME_PREFIX) :]
    if "/" in file or not file[:2].isalnum():
        return None
    return image_dir() / file[:2] / file


def shards(folder: Path, split: str) -> list[Path]:
    """The parquet shards of one split in a dataset repo's folder (``<split>-00000-of-00003.parquet``, ...), sorted."""
    return sorted(Path(p) for p in glob.glob(str(folder / f"{glob.escape(split)}-*.parquet")))


def first_shard(folder: Path, split: str) -> Path:
    """The split's first shard (the file a task names as its annotation file); a name that does not exist when none
    is there, so the missing-data message shows where the files belong."""
    found = shards(folder, split)
    return found[0] if found else folder / f"{split}-00000-of-00001.parquet"


def read_rows(
    paths: Sequence[Path], columns: Sequence[str], *, what: str, fix: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows of parquet files as dicts of `columns`, each with its place ('file, row N'), checking the columns first.

    Args:
        paths: the shards, read in order.
        columns: the columns every row needs.
        what: what the files are, for messages ("MTVQA parquet file").
        fix: what to do about a malformed file.

    Raises:
        MvlevalError: a file that is not parquet, or lacks a column.
    """
    import pyarrow.parquet as pq

    for path in paths:
        try:
            schema = pq.read_schema(path)
        except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for a file that is not parquet
            raise MvlevalError(f"cannot read the {what} ({exc}).", fix=fix, where=path) from None
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise MvlevalError(
                f"the {what} lacks the column(s) {', '.join(missing)} (it has {', '.join(schema.names)}).",
                fix=fix,
                where=path,
            )
        table = pq.read_table(path, columns=list(columns))
        for i, row in enumerate(table.to_pylist()):
            yield f"{path}, row {i}", row


def image_bytes(value: Any, where: str, column: str) -> bytes:
    """The bytes of a parquet ``Image`` struct ({bytes, path}) or of raw bytes.

    Raises:
        MvlevalError: no bytes (an image stored by path only, or a null).
    """
    if isinstance(value, dict):
        value = value.get("bytes")
    if isinstance(value, (bytes, bytearray)) and value:
        return bytes(value)
    raise MvlevalError(
        f"the '{column}' column holds no image bytes (found {type(value).__name__}).",
        fix="fetch the dataset's parquet files as published (`mvleval data fetch`): their images are embedded.",
        where=where,
    )
