"""Opening benchmark images with clear errors (missing, corrupt, zero-byte, decompression bombs)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from mvleval.errors import MvlevalError

if TYPE_CHECKING:
    from PIL import Image

#: Pillow's default bomb limit (~89 Mpx) is kept; past it an image is refused rather than decoded.
MAX_PIXELS = 89_478_485


def load_image(path: Path) -> Image.Image:
    """Open an image as RGB, fully decoded. Never substitutes a blank image (mBLIP's code did; we stop)."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    if not path.is_file():
        raise MvlevalError(
            "image not found.",
            fix="download the benchmark's images into --image-root (see tasks/README.md), or run "
            "`mvleval data check --task NAME` to list every missing file.",
            where=path,
        )
    if path.stat().st_size == 0:
        raise MvlevalError("image file is empty (0 bytes).", fix="re-download the image.", where=path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                return img.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MvlevalError(
            f"image is too large to decode safely ({exc}).",
            fix="replace it with the benchmark's original image; mvleval refuses possible decompression bombs.",
            where=path,
        ) from None
    except UnidentifiedImageError:
        raise MvlevalError("file is not an image Pillow can read.", fix="re-download the image.", where=path) from None
    except OSError as exc:
        raise MvlevalError(f"image is corrupt or truncated ({exc}).", fix="re-download the image.", where=path) from None
