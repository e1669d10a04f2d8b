"""Image thumbnails for the HTML report: each distinct image downsized and embedded once, as a JPEG data URI."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path

#: Longest side of an embedded thumbnail, in pixels (2x the displayed size, so it stays sharp on HiDPI screens).
THUMB_SIZE = 128
THUMB_QUALITY = 70


@dataclass
class ImageStore:
    """Collects the images a report shows: index by relative path, one thumbnail per distinct file.

    Args:
        root: the image root the per-sample file's relative paths are under (None: no thumbnails, names only).
        size: longest side of a thumbnail in pixels.
        link: also give each thumbnail a link to the full-size file (a file:// URI; it opens where the report is
            opened only when that machine can reach the path).
    """

    root: Path | None
    size: int = THUMB_SIZE
    link: bool = True
    names: list[str] = field(default_factory=list)
    thumbs: list[str | None] = field(default_factory=list)
    links: list[str | None] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)

    def add(self, rel: str) -> int:
        """The index of image `rel` (relative to the root), making its thumbnail the first time it is seen."""
        found = self._index.get(rel)
        if found is not None:
            return found
        thumb: str | None = None
        link: str | None = None
        if self.root is not None:
            path = self._resolve(rel)
            if path is None:
                self.missing.append(rel)
            else:
                try:
                    thumb = _thumbnail(path, self.size)
                    link = path.as_uri() if self.link else None
                except (OSError, ValueError, SyntaxError):  # PIL's errors for unreadable or truncated files
                    self.missing.append(rel)
        self._index[rel] = len(self.names)
        self.names.append(rel)
        self.thumbs.append(thumb)
        self.links.append(link)
        return self._index[rel]

    def _resolve(self, rel: str) -> Path | None:
        """The file under the root, or None when it is absent or the path leaves the root (e.g. '../x')."""
        assert self.root is not None
        from mvleval.benchmarks.hubdata import resolve_image_name

        hub = resolve_image_name(rel)  # an image a dataset file embeds: in the cache dir, named by content
        if hub is not None:
            return hub if hub.is_file() else None
        root = self.root.resolve()
        path = (root / rel).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        return path


def _thumbnail(path: Path, size: int) -> str:
    from mvleval.benchmarks.images import open_image

    with open_image(path) as img:  # an image above the pixel limit raises ImageTooLarge (a ValueError): not decoded
        # JPEG: let libjpeg decode at a reduced scale (a 4000 px photo decodes ~10x faster); the thumbnail is
        # resized from there, so the result is a thumbnail either way.
        img.draft("RGB", (size, size))
        rgb = img.convert("RGB")
    rgb.thumbnail((size, size))
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=THUMB_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
