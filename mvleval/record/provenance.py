"""Provenance of a run: git commit/dirty, package versions, device, data and prompt fingerprints."""

from __future__ import annotations

import hashlib
import json
import platform
import socket
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import mvleval

PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "bitsandbytes",
    "accelerate",
    "tokenizers",
    "sentencepiece",
    "pillow",
    "numpy",
    "lingua-language-detector",
    "sudachipy",
    "sudachidict-core",
    "pythainlp",
)


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages that can change a score (None when absent)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state(path: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout holding mvleval's source, or (None, None) for an installed wheel."""
    where = path or Path(mvleval.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(status.strip())


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def examples_fingerprint(rows: Iterable[dict[str, Any]]) -> str:
    """A hash of exactly which examples were evaluated (ids, prompts, references, image names and contents), order-insensitive.

    Two records share a fingerprint only when they scored the same example set; the leaderboard and the gate rely on it.
    """
    digests = sorted(
        hashlib.sha256(json.dumps(r, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest() for r in rows
    )
    return hashlib.sha256("\n".join(digests).encode("ascii")).hexdigest()[:32]


def device_description(device: str) -> str:
    """E.g. 'cuda:0 NVIDIA H100 80GB HBM3', 'cpu x86_64 (2 threads)', or a served model's 'endpoint URL' as it is."""
    if device.startswith("endpoint "):
        return device  # the model runs on the server; this machine's torch is not involved (and may be absent)
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} {torch.cuda.get_device_name(torch.device(device))}"
    from mvleval.util.numerics import describe_cpu_kernels

    # the kernels in use change a result's last bits (and, through training, its scores): recorded with the device
    kernels = [f"{torch.get_num_threads()} threads", f"{torch.backends.cpu.get_cpu_capability()} kernels"]
    if describe_cpu_kernels():
        kernels.append(describe_cpu_kernels())
    return f"cpu {platform.machine()} ({', '.join(kernels)})"


def hostname() -> str | None:
    try:
        return socket.gethostname()
    except OSError:
        return None
