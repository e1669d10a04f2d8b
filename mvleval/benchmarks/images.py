"""Opening benchmark images with clear errors (missing, corrupt, zero-byte, decompression bombs)."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from mvleval.util.errors import MvlevalError

if TYPE_CHECKING:
    from PIL import Image

#: The pixel limit (width x height) of every image mvleval opens: Pillow's default bomb limit (~89 Mpx, a 9459 x 9459
#: image), applied as a hard limit. An image whose header claims more is refused by name before anything is decoded
#: (`run`, `data check`, the report's thumbnails); the run record's provenance keeps the limit (max_image_pixels).
MAX_PIXELS = 89_478_485

#: warnings.catch_warnings swaps process-global state, so concurrent callers (the backend's prefetch threads) take
#: turns for the header read only; decoding, the slow part, runs in parallel.
_OPEN_LOCK = threading.Lock()


class ImageTooLarge(ValueError):
    """An image whose header claims more than MAX_PIXELS pixels (never decoded)."""


@contextmanager
def open_image(path: Path) -> Iterator[Image.Image]:
    """Open an image's header (nothing decoded yet), refusing one above MAX_PIXELS with ImageTooLarge: Pillow's own
    warning (printed, between 1x and 2x its limit) and error (above 2x) are both turned into it."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"its header claims more pixels than mvleval's limit of {MAX_PIXELS:,} ({exc})") from None
    with img:
        if img.width * img.height > MAX_PIXELS:
            # normally refused by the warning filter above; checked again because other threads' own
            # catch_warnings blocks can restore the filters while this one is open
            raise ImageTooLarge(
                f"{img.width}x{img.height} = {img.width * img.height:,} pixels, above mvleval's limit of {MAX_PIXELS:,}"
            )
        yield img


def load_image(path: Path, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Open an image as RGB, fully decoded. Never substitutes a blank image (mBLIP's code did; we stop).

    Thread-safe. ``draft_size`` (width, height): let a JPEG decoder scale down by 1/2, 1/4 or 1/8 while decoding, as
    far as the result stays at least this size (Pillow's ``Image.draft``); other formats ignore it. Draft decoding
    gives different pixels from a full decode (bench/README.md measures how different), so it is off by default.
    """
    from PIL import UnidentifiedImageError

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
        with open_image(path) as img:
            if draft_size is not None and img.format == "JPEG":
                img.draft("RGB", draft_size)
            img.load()
            return img.convert("RGB")
    except ImageTooLarge as exc:
        raise MvlevalError(
            f"image is too large to decode safely: {exc}.",
            fix="replace it with the benchmark's original image (or a downsized copy); mvleval refuses possible decompression bombs.",
            where=path,
        ) from None
    except UnidentifiedImageError:
        raise MvlevalError("file is not an image Pillow can read.", fix="re-download the image.", where=path) from None
    except OSError as exc:
        raise MvlevalError(
            f"image is corrupt or truncated ({exc}).", fix="re-download the image.", where=path
        ) from None


def image_problem(path: Path) -> str | None:
    """Why an existing image file cannot be used (None when it can), checked cheaply for `mvleval data check`: Pillow
    must recognise the header, and a JPEG must decode at 1/8 scale to the end (a truncated file fails here), so a
    bad file is found before a run reaches it rather than on its first batch."""
    from PIL import UnidentifiedImageError

    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with open_image(path) as img:
            if img.format == "JPEG":
                img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
    except ImageTooLarge as exc:
        return f"too large to decode safely: {exc}"
    except UnidentifiedImageError:
        return "not an image Pillow can read"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"cannot be decoded ({exc})"
    return None
