"""Test helpers: placeholder images for the ids real annotation files reference, and a CLI invoker."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from typer.testing import CliRunner, Result


def placeholder_images(paths: Iterable[Path], size: int = 48) -> int:
    """Write a small, distinct JPEG at each path (colour and a bar position derived from the path)."""
    from PIL import Image, ImageDraw

    n = 0
    for path in paths:
        if path.exists():
            continue
        h = hashlib.sha256(str(path.name).encode()).digest()
        img = Image.new("RGB", (size, size), (h[0], h[1], h[2]))
        draw = ImageDraw.Draw(img)
        x = h[3] % (size - 8)
        draw.rectangle((x, 0, x + 8, size), fill=(255 - h[0], 255 - h[1], 255 - h[2]))
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, format="JPEG", quality=90)
        n += 1
    return n


def invoke(*args: str) -> Result:
    """Run the CLI in-process (the same code path as the console script, minus the exit-code wrapper)."""
    from mvleval.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def stub_provenance(fingerprint: str) -> dict[str, object]:
    """A minimal, valid provenance block for hand-built run records (only the data fingerprint carries meaning)."""
    return {
        "mvleval_version": "0.1.0",
        "git_commit": None,
        "git_dirty": None,
        "python": "3.11.7",
        "packages": {},
        "device": "cpu",
        "data_fingerprint": fingerprint,
        "annotation_files": {},
        "prompt_hash": "h",
        "seed": 0,
        "command": ["mvleval", "run"],
    }
