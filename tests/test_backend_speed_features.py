"""Tests for the backend's speed features on tiny real checkpoints: image prefetching (identical predictions, worker
errors surfacing in the caller), JPEG draft decoding (within its measured envelope, off by default), the prefetch
window, thread-safe image loading, and the batch-size search (``auto_batch_size``)."""

from __future__ import annotations

import logging
import random
import threading
import warnings
from pathlib import Path

import pytest

from mvleval.backends.base import BackendOptions, GenerationRequest
from mvleval.backends.prefetch import PixelPrefetcher
from mvleval.benchmarks.images import load_image
from mvleval.benchmarks.task import GenerationSettings
from mvleval.util.errors import MvlevalError

torch = pytest.importorskip("torch")

from mvleval.backends.mblip import (  # noqa: E402
    CPU_BATCH_CAP,
    MBlipBackend,
    auto_batch_size,
    batch_size_for_budget,
    largest_fitting_batch,
)

BEAM5 = GenerationSettings(num_beams=5, max_new_tokens=6, min_new_tokens=1, length_penalty=-1.0)  # mBLIP's VQA search
GREEDY = GenerationSettings(num_beams=1, max_new_tokens=6, min_new_tokens=1)
PROMPTS = (
    "Question: What colour is the shape? Short answer in English:",
    "Question: Wie viele Formen gibt es? Short answer in English:",
    "Question: 图中是什么形状？ Short answer in English:",
    "yes",
)
KINDS = ("tiny_mt5_dir", "tiny_bloom_dir")
#: One 8-bit level of the processor's output: 1/255 divided by the smallest CLIP std (0.2613), in normalised units.
ONE_LEVEL = 1 / 255 / 0.26130258


def _draw_jpeg(path: Path, width: int, height: int, seed: int) -> Path:
    """A photo-like JPEG: coloured shapes, lines and per-pixel noise (sharp edges and fine texture, as photos have)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    img = Image.new("RGB", (width, height), tuple(rng.randint(60, 220) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(10):
        x, y, r = rng.randrange(width), rng.randrange(height), rng.randint(width // 20, width // 6)
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        getattr(draw, rng.choice(["ellipse", "rectangle"]))((x - r, y - r, x + r, y + r), fill=colour)
    for _ in range(20):
        ends = [(rng.randrange(width), rng.randrange(height)) for _ in range(2)]
        draw.line(ends, fill=tuple(rng.randint(0, 255) for _ in range(3)), width=rng.randint(1, 4))
    noise = np.random.default_rng(seed).normal(0.0, 18.0, (height, width, 3))
    pixels = np.clip(np.asarray(img, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)
    return path


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Six small distinct JPEGs (decoding cost is not what these tests are about)."""
    folder = tmp_path_factory.mktemp("jpegs")
    return [_draw_jpeg(folder / f"img{i}.jpg", 80 + 8 * i, 60 + 4 * i, seed=i) for i in range(6)]


@pytest.fixture(scope="module")
def bad_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    corrupt = folder / "corrupt.jpg"
    corrupt.write_bytes(b"<html>a web page saved as .jpg</html>")
    truncated = folder / "truncated.jpg"
    good = _draw_jpeg(folder / "good.jpg", 64, 48, seed=7).read_bytes()
    truncated.write_bytes(good[: len(good) // 2])
    return {"missing": folder / "missing.jpg", "corrupt": corrupt, "truncated": truncated}


def _load(folder: Path, **kwargs) -> MBlipBackend:
    return MBlipBackend.load(BackendOptions(model=str(folder), device="cpu"), **kwargs)


def _requests(images: list[Path], n: int) -> list[GenerationRequest]:
    """n requests, several per image (as in xGQA), prompts of different lengths."""
    return [GenerationRequest(PROMPTS[i % len(PROMPTS)], (images[(i * 5) % len(images)],)) for i in range(n)]


def _batches(requests: list[GenerationRequest], size: int) -> list[list[GenerationRequest]]:
    return [requests[i : i + size] for i in range(0, len(requests), size)]


# -- prefetching ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_prefetch_gives_identical_predictions_and_serves_every_image_from_the_workers(
    request: pytest.FixtureRequest, jpegs: list[Path], kind: str
) -> None:
    folder = request.getfixturevalue(kind)
    requests = _requests(jpegs, 24)
    plain = _load(folder, prefetch_workers=0)
    prefetching = _load(folder, prefetch_workers=2)
    try:
        assert prefetching.prefetch(requests) == len(jpegs)  # each distinct image queued once
        assert prefetching.prefetch(requests[:5]) == 0  # announcing again queues nothing
        expected, got = [], []
        for batch in _batches(requests, 8):
            expected += plain.generate(batch, BEAM5)
            got += prefetching.generate(batch, BEAM5)
        assert got == expected
        assert len(set(expected)) > 2  # the answers depend on the inputs, so equality means something
        assert prefetching.prefetch_served == len(jpegs)  # no image was decoded in generate
        assert prefetching.images_encoded == plain.images_encoded == len(jpegs)
        assert plain.prefetch(requests) == 0 and plain.prefetch_served == 0  # prefetching off: a no-op
        # cached images are not announced again
        assert prefetching.prefetch(requests) == 0
    finally:
        prefetching.close()


def test_prefetched_pixels_equal_the_processor_on_load_image(tiny_mt5_dir: Path, jpegs: list[Path]) -> None:
    backend = _load(tiny_mt5_dir)
    try:
        backend.prefetch([GenerationRequest("yes", (p,)) for p in jpegs[:3]])
        for path in jpegs[:3]:
            pixels = backend._take_pixels(path)
            reference = backend.processor.image_processor(load_image(path), return_tensors="pt")["pixel_values"][0]
            assert torch.equal(pixels, reference)
        assert backend.prefetch_served == 3
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("missing", "image not found"),
        ("corrupt", "not an image Pillow can read"),
        ("truncated", "corrupt or truncated"),
    ],
)
def test_a_bad_image_fails_in_generate_with_load_images_error_not_in_prefetch(
    tiny_mt5_dir: Path, jpegs: list[Path], bad_images: dict[str, Path], bad: str, message: str
) -> None:
    path = bad_images[bad]
    with pytest.raises(MvlevalError) as direct:
        load_image(path)
    backend = _load(tiny_mt5_dir)
    try:
        good = [GenerationRequest(PROMPTS[0], (jpegs[0],)), GenerationRequest(PROMPTS[1], (jpegs[1],))]
        broken = [GenerationRequest(PROMPTS[0], (jpegs[2],)), GenerationRequest(PROMPTS[2], (path,))]
        backend.prefetch(good + broken + good)  # never raises: the worker keeps the error
        assert len(backend.generate(good, GREEDY)) == 2  # batches before the bad image are unaffected
        caller = threading.current_thread()
        with pytest.raises(MvlevalError, match=message) as raised:
            backend.generate(broken, GREEDY)
        assert raised.value.where == str(path)
        assert str(raised.value) == str(direct.value)  # the same paragraph load_image gives, not a wrapped one
        assert threading.current_thread() is caller
        # the workers survive an error: the next announced batch still comes from them
        later = [GenerationRequest(PROMPTS[3], (jpegs[4],))]
        backend.prefetch(later)
        assert len(backend.generate(later, GREEDY)) == 1
        assert backend.prefetch_served >= 3
    finally:
        backend.close()


def test_window_bounds_the_work_ahead_and_keeps_the_announced_order(tmp_path: Path) -> None:
    """The prefetcher's own contract, with a preprocess function that records the order and blocks until released."""
    release = threading.Event()
    started: list[str] = []
    lock = threading.Lock()

    def preprocess(path: Path) -> torch.Tensor:
        with lock:
            started.append(path.name)
        release.wait(timeout=10)
        return torch.tensor([float(path.name[1:])])

    prefetcher = PixelPrefetcher(preprocess, workers=2, window=3)
    paths = [tmp_path / f"p{i}" for i in range(6)]
    try:
        assert prefetcher.submit(paths + paths[:2]) == 6  # duplicates skipped
        assert prefetcher.pending == 6
        for _ in range(100):  # the two workers pick up p0 and p1; p2 waits in the pool's queue; p3.. are not submitted
            if len(started) == 2:
                break
            threading.Event().wait(0.01)
        assert started == ["p0", "p1"]
        prefetcher.discard(paths[1])  # frees a slot: p3 may now be submitted
        release.set()
        assert float(prefetcher.take(paths[0])) == 0.0
        assert float(prefetcher.take(paths[2])) == 2.0
        assert prefetcher.take(tmp_path / "never-announced") is None
        assert prefetcher.take(paths[5]) is not None  # in flight once the window moved on
        assert float(prefetcher.take(paths[4])) == 4.0
        assert started[:2] == ["p0", "p1"] and sorted(started) == ["p0", "p1", "p2", "p3", "p4", "p5"]
        assert prefetcher.served == 4
    finally:
        release.set()
        prefetcher.close()
    assert prefetcher.pending == 0


def test_load_image_is_thread_safe_and_leaves_the_warning_filters_alone(
    jpegs: list[Path], bad_images: dict[str, Path]
) -> None:
    paths = [*jpegs, bad_images["corrupt"], bad_images["missing"]] * 6
    filters_before = list(warnings.filters)
    results: dict[int, object] = {}

    def work(i: int, path: Path) -> None:
        try:
            results[i] = load_image(path).size
        except MvlevalError as exc:
            results[i] = exc.where

    threads = [threading.Thread(target=work, args=(i, p)) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    from PIL import Image

    sizes = {}
    for p in jpegs:
        with Image.open(p) as img:
            sizes[p] = img.size
    expected = {i: sizes.get(p, str(p)) for i, p in enumerate(paths)}
    assert results == expected
    assert list(warnings.filters) == filters_before


# -- JPEG draft decoding -------------------------------------------------------------------------------------------
def test_jpeg_draft_is_off_by_default_and_off_means_full_decoding(tiny_mt5_dir: Path, tmp_path: Path) -> None:
    path = _draw_jpeg(tmp_path / "big.jpg", 640, 480, seed=1)
    backend = _load(tiny_mt5_dir, prefetch_workers=0)
    assert backend.jpeg_draft is False
    reference = backend.image_processor(load_image(path), return_tensors="pt")["pixel_values"][0]
    assert torch.equal(backend.image_pixels(path), reference)


# The envelope below was measured by bench/bench_runner.py (part c) on 16 images drawn like _draw_jpeg (see
# bench/README.md): at 640x480 -> 224x224 the max abs difference was 0.95 and the mean 0.044 in normalised units.
DRAFT_MAX_ABS = 1.0
DRAFT_MEAN_ABS = 0.06


@pytest.mark.parametrize(
    ("size", "decoded"), [((640, 480), (320, 240)), ((1024, 768), (512, 384)), ((500, 375), (500, 375))]
)
def test_jpeg_draft_decodes_smaller_and_stays_within_the_documented_envelope(
    tmp_path: Path, size: tuple[int, int], decoded: tuple[int, int]
) -> None:
    from transformers import BlipImageProcessorPil

    # the image processor of the tiny checkpoints at mBLIP's resolution (224) with BLIP-2's CLIP statistics
    processor = BlipImageProcessorPil(
        size={"height": 224, "width": 224},
        image_mean=(0.48145466, 0.4578275, 0.40821073),
        image_std=(0.26862954, 0.26130258, 0.27577711),
    )
    path = _draw_jpeg(tmp_path / "img.jpg", *size, seed=3)
    full = load_image(path)
    draft = load_image(path, draft_size=(224, 224))
    assert full.size == size and draft.size == decoded  # Pillow scales by 1/2 only while both sides stay >= 224
    a = processor(full, return_tensors="pt")["pixel_values"]
    b = processor(draft, return_tensors="pt")["pixel_values"]
    diff = (a - b).abs()
    if decoded == size:
        assert torch.equal(a, b)  # under twice the target size nothing is reduced: identical pixels
    else:
        assert float(diff.max()) <= DRAFT_MAX_ABS and float(diff.mean()) <= DRAFT_MEAN_ABS
        # ...and well beyond one 8-bit level: why draft decoding is not on by default
        assert float(diff.max()) > 10 * ONE_LEVEL


def test_jpeg_draft_on_the_backend_changes_pixels_only_for_large_jpegs(tiny_mt5_dir: Path, tmp_path: Path) -> None:
    big = _draw_jpeg(tmp_path / "big.jpg", 640, 480, seed=2)
    small = _draw_jpeg(tmp_path / "small.jpg", 60, 40, seed=2)  # under twice the tiny processor's 32x32
    full, draft = _load(tiny_mt5_dir, prefetch_workers=0), _load(tiny_mt5_dir, prefetch_workers=0, jpeg_draft=True)
    assert draft.jpeg_draft is True
    assert torch.equal(full.image_pixels(small), draft.image_pixels(small))
    # the backend asks Pillow for the processor's size: 640x480 decodes at 1/8 (80x60) for a 32x32 processor
    assert load_image(big, draft_size=draft._draft_size).size == (80, 60)
    assert not torch.equal(full.image_pixels(big), draft.image_pixels(big))


# -- batch size ----------------------------------------------------------------------------------------------------
# Hand-traced: threshold 37 from 32 -> 32 fits, 64 not, bisect 48 no, 40 no, 36 yes, 38 no, 37 yes -> 37.
@pytest.mark.parametrize(
    ("threshold", "start", "max_size", "expected"),
    [
        (37, 32, 256, 37),
        (1000, 32, 256, 256),
        (5, 32, 256, 5),
        (1, 1, 8, 1),
        (100, 64, 100, 100),
        (64, 64, 256, 64),
        (200, 3, 256, 200),
    ],
)
def test_largest_fitting_batch_finds_the_exact_threshold(
    threshold: int, start: int, max_size: int, expected: int
) -> None:
    tried: list[int] = []

    def fits(size: int) -> bool:
        tried.append(size)
        return size <= threshold

    assert largest_fitting_batch(fits, start=start, max_size=max_size) == expected
    assert max(tried) <= max_size and len(tried) == len(set(tried))  # no size probed twice


def test_largest_fitting_batch_refuses_when_nothing_fits() -> None:
    with pytest.raises(MvlevalError, match="not even one sample fits"):
        largest_fitting_batch(lambda size: False, start=16, max_size=64)


@pytest.mark.parametrize(
    ("budget", "per_sample", "cap", "expected"),
    [(1000, 100, 64, 10), (1000, 300, 64, 3), (50, 100, 64, 1), (1e12, 100, 64, 64), (1000, 0, 16, 16)],
)
def test_batch_size_for_budget(budget: float, per_sample: float, cap: int, expected: int) -> None:
    assert batch_size_for_budget(budget, per_sample, cap) == expected


def test_auto_batch_size_on_cpu_is_sane_and_leaves_the_cache_as_it_was(
    tiny_bloom_dir: Path, jpegs: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    backend = _load(tiny_bloom_dir, prefetch_workers=0)
    requests = _requests(jpegs, 12)
    backend.generate(requests[:2], GREEDY)
    cache, counters = backend.cached_paths, (backend.images_encoded, backend.cache_hits)
    with caplog.at_level(logging.INFO, logger="mvleval.backends"):
        size = auto_batch_size(backend, requests, BEAM5, max_size=1000)
    assert 1 <= size <= CPU_BATCH_CAP
    assert "auto batch size" in caplog.text and "MiB per sample" in caplog.text
    assert backend.cached_paths == cache and (backend.images_encoded, backend.cache_hits) == counters
    # an ample budget gives the cap, no budget gives 1 (with a warning), max_size bounds it
    assert auto_batch_size(backend, requests, GREEDY, max_size=12, memory_budget=2**40) == 12
    with caplog.at_level(logging.WARNING, logger="mvleval.backends.mblip"):
        assert auto_batch_size(backend, requests, GREEDY, memory_budget=1) == 1
    assert "using batch size 1" in caplog.text
    with pytest.raises(MvlevalError, match="at least 1"):
        auto_batch_size(backend, requests, GREEDY, start=0)
