"""Checkpoint folders: a local folder or a downloaded hub id, its weight files, the pickle policy, a fingerprint."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mvleval.util.errors import MvlevalError

logger = logging.getLogger("mvleval.checkpoint")

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: safetensors files in a folder that are not the model's own weights (mvleval's trained BLIP-2 parts).
NOT_MODEL_WEIGHTS = ("blip_parts.safetensors",)


def resolve_model_dir(model: str) -> Path:
    """Turn a local folder or a hub id (already in the local Hugging Face cache) into a folder; never downloads.

    Raises:
        MvlevalError: the folder does not exist, or the hub id is not downloaded.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise MvlevalError(
            "--model must be a checkpoint folder (config.json, *.safetensors, tokenizer and processor files), not a file.",
            fix="pass the folder that holds the file.",
            where=path,
        )
    if _HUB_ID.match(model) and not model.startswith((".", "~")):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(repo_id=model, local_files_only=True))
        except Exception:
            pass
        raise MvlevalError(
            f"model '{model}' is neither a local folder nor in the local Hugging Face cache (mvleval never downloads "
            "weights during a run).",
            fix=f"download it first, e.g. `huggingface-cli download {model} --local-dir DIR`, then pass --model DIR.",
        )
    raise MvlevalError(
        "model folder not found.",
        fix="pass a local checkpoint folder or a hub id such as Qwen/Qwen2.5-VL-7B-Instruct that you downloaded.",
        where=path,
    )


def weight_files(model_dir: Path) -> tuple[list[Path], list[Path]]:
    """The (safetensors, pickle) weight files of a checkpoint folder, sorted by name."""
    files = sorted(p for p in model_dir.iterdir() if p.is_file())
    safe = [p for p in files if p.name.endswith(".safetensors") and p.name not in NOT_MODEL_WEIGHTS]
    pickled = [p for p in files if p.suffix in _PICKLE_SUFFIXES and p.name != "training_args.bin"]
    return safe, pickled


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MvlevalError(
            f"cannot read this JSON file ({exc}).", fix="restore the checkpoint's file.", where=path
        ) from None
    if not isinstance(data, dict):
        raise MvlevalError("expected a JSON object.", fix="restore the checkpoint's file.", where=path)
    return data


def fingerprint_files(paths: Sequence[Path]) -> str:
    """sha256 over the files' names and contents: a model's identity, whatever folder or working directory it is run
    from (two fine-tunes of one base have weight files of the same names and sizes, so names and sizes alone are not).

    Each file's content digest is read once and then kept in a cache (``file_digests``), so a second run of a large
    checkpoint does not read its weights twice.
    """
    digest = hashlib.sha256()
    for path, content in zip(paths, file_digests(paths), strict=True):
        digest.update(f"{path.name}\0{path.stat().st_size}\0{content}\n".encode())
    return digest.hexdigest()[:16]


def _cache_dir() -> Path:
    from mvleval.util.cachedir import cache_dir

    return cache_dir()


def file_digests(paths: Sequence[Path]) -> list[str]:
    """blake2b of each file's content, cached by (absolute path, size, modification time, inode) in
    ``$MVLEVAL_CACHE_DIR`` (default ``$XDG_CACHE_HOME/mvleval`` or ``~/.cache/mvleval``), ``file-digests.json``,
    which is read and written once per call.

    A file rewritten in place gets a new modification time, so its digest is read again. The cache is an
    optimisation only: an unreadable or unwritable cache means reading the files again, never an error.
    """
    cache_path = _cache_dir() / "file-digests.json"
    try:
        cache = json.loads(cache_path.read_text(encoding="utf-8"))
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    out: list[str] = []
    added = False
    for path in paths:
        st = path.stat()
        key = f"{path.resolve()}\t{st.st_size}\t{st.st_mtime_ns}\t{st.st_ino}"
        hit = cache.get(key)
        if not isinstance(hit, str):
            if st.st_size > 1 << 30:
                logger.warning("reading %s (%.1f GB) once for the model's fingerprint", path.name, st.st_size / 1e9)
            h = hashlib.blake2b(digest_size=16)
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
            hit = cache[key] = h.hexdigest()
            added = True
        out.append(hit)
    if added:
        if len(cache) > 2000:  # forget files that are gone
            cache = {k: v for k, v in cache.items() if Path(k.split("\t", 1)[0]).exists()}
        try:
            from mvleval.record.schema import write_json_atomic

            write_json_atomic(cache_path, json.dumps(cache, sort_keys=True))
        except OSError:
            pass
    return out


def read_config(model_dir: Path, fix: str) -> dict[str, Any]:
    """The folder's config.json as a dict; an error naming the folder and `fix` when it is missing or unreadable."""
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        adapter_config = model_dir / "adapter_config.json"
        if adapter_config.is_file():
            base = read_json(adapter_config).get("base_model_name_or_path")
            train_config = model_dir / "train_config.json"  # an adapter made by `mvleval train` names its base here
            if not base and train_config.is_file():
                base = read_json(train_config).get("base_model")
            raise MvlevalError(
                "this is a LoRA adapter folder, not a checkpoint.",
                fix=f"pass it with --adapter {model_dir}, and its base checkpoint with --model"
                + (f" (the adapter names {base})." if base else "."),
                where=model_dir,
            )
        raise MvlevalError("not a Hugging Face checkpoint folder: config.json is missing.", fix=fix, where=model_dir)
    return read_json(config_path)


def check_weights(model_dir: Path, allow_pickle: bool, fix: str) -> list[Path]:
    """The weight files a load will read (safetensors; pickle files only with `allow_pickle`), for the fingerprint.

    Raises:
        MvlevalError: no weights, or only pickle weights without --allow-pickle (loading them can run code).
    """
    safe, pickled = weight_files(model_dir)
    if safe:
        for path in safe:
            check_safetensors_header(path)
        return safe
    if pickled and not allow_pickle:
        raise MvlevalError(
            f"the checkpoint has only pickle weights ({', '.join(p.name for p in pickled[:3])}); loading pickle "
            "files can run arbitrary code, so mvleval refuses them by default.",
            fix="convert the weights to safetensors, or pass --allow-pickle if you trust the files.",
            where=model_dir,
        )
    if not pickled:
        raise MvlevalError("the checkpoint has no weight files (*.safetensors).", fix=fix, where=model_dir)
    return pickled


def check_safetensors_header(path: Path) -> None:
    """Read a safetensors file's header (cheap): a truncated or corrupt file is an error naming it, not a traceback."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            fh.keys()
    except Exception as exc:
        raise MvlevalError(
            f"this weight file cannot be read ({exc}); it is probably truncated or damaged.",
            fix="download or copy the checkpoint again (compare its size with the original).",
            where=path,
        ) from None
