"""Tests for shared-prefix beam search (mvleval/backends/shared_prefix.py) on tiny real checkpoints: the same token ids
(and, on the CPU, bitwise the same beam scores) as transformers' plain ``generate`` for mT5 and BLOOM, fp32 and 4-bit,
1/3/5 beams, batches of 1 and several; that the prompt's work really runs once per sample; the off switch; the paths
greedy search and sampling keep; and the cross-attention cache that skips re-ordering."""

from __future__ import annotations

from pathlib import Path

import pytest

from mvleval.backends.base import BackendOptions, GenerationRequest
from mvleval.benchmarks.task import GenerationSettings

torch = pytest.importorskip("torch")

from mvleval.backends.mblip import PLAIN_PATH, SHARED_PREFIX_PATH, MBlipBackend, generation_kwargs  # noqa: E402
from mvleval.backends.shared_prefix import (  # noqa: E402
    _beam_shared_cross_attention_cache_class,
    generate_sharing_prefix,
    uses_shared_prefix,
)

KINDS = ("tiny_mt5_dir", "tiny_bloom_dir")
PROMPTS = (
    "Question: What colour is the shape? Short answer in English:",
    "Caption in German: ",
    "yes",
    'Is it guaranteed true that "the square is red"? Yes, no, or maybe? Answer in English:',
    "",
)
#: mBLIP's VQA search (length penalty -1 favours short answers), a forced minimum length, and its caption search.
SETTINGS = {
    "vqa": lambda beams: GenerationSettings(num_beams=beams, max_new_tokens=8, min_new_tokens=1, length_penalty=-1.0),
    "min3": lambda beams: GenerationSettings(num_beams=beams, max_new_tokens=6, min_new_tokens=3, length_penalty=-1.0),
    "caption": lambda beams: GenerationSettings(
        num_beams=beams, max_new_tokens=12, min_new_tokens=1, length_penalty=1.0
    ),
}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three visibly different images (colour, shape, size)."""
    from PIL import Image, ImageDraw

    folder = tmp_path_factory.mktemp("shared_prefix_images")
    paths = []
    for i, (colour, size) in enumerate((((200, 30, 30), 40), ((30, 160, 60), 52), ((20, 40, 220), 64))):
        img = Image.new("RGB", (size, size + 5 * i), colour)
        ImageDraw.Draw(img).ellipse(
            (size // 5, size // 4, size // 2 + 4 * i, size // 2 + 6 * i), fill=(255, 255 - 80 * i, 0)
        )
        path = folder / f"img{i}.png"
        img.save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def backends(tiny_mt5_dir: Path, tiny_bloom_dir: Path) -> dict[tuple[str, int], MBlipBackend]:
    """Each tiny checkpoint in fp32 and 4-bit nf4 (bitsandbytes on the CPU), shared prefix on (the default)."""
    folders = {"tiny_mt5_dir": tiny_mt5_dir, "tiny_bloom_dir": tiny_bloom_dir}
    return {
        (kind, bits): MBlipBackend.load(
            BackendOptions(model=str(folders[kind]), device="cpu", bits=bits), prefetch_workers=0
        )
        for kind in KINDS
        for bits in (32, 4)
    }


def _requests(images: list[Path], n: int) -> list[GenerationRequest]:
    """n requests with prompts of different lengths (padding in a batch; the empty prompt too) and images."""
    return [GenerationRequest(PROMPTS[i % len(PROMPTS)], (images[(i + i // 3) % len(images)],)) for i in range(n)]


def _plain_and_shared(backend: MBlipBackend, requests: list[GenerationRequest], settings: GenerationSettings):
    """(plain, shared) generate outputs with beam scores, on the same input embeddings."""
    inputs = backend.prepare_inputs(requests)
    generate_inputs = {"inputs_embeds": inputs.inputs_embeds, "attention_mask": inputs.attention_mask}
    if not backend.is_encoder_decoder:
        generate_inputs["input_ids"] = inputs.input_ids
    lm = backend.model.language_model
    extra = {"return_dict_in_generate": True, "output_scores": True}
    with torch.inference_mode():
        plain = lm.generate(**generate_inputs, **generation_kwargs(settings), **extra)
        shared = generate_sharing_prefix(lm, **generate_inputs, **generation_kwargs(settings), **extra)
    return plain, shared


# -- same ids as transformers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bits", [32, 4])
@pytest.mark.parametrize("beams", [3, 5])
@pytest.mark.parametrize("batch", [1, 2, 7])
def test_same_ids_and_beam_scores_as_plain_generate(
    backends: dict, images: list[Path], kind: str, bits: int, beams: int, batch: int
) -> None:
    backend = backends[(kind, bits)]
    for name, make in SETTINGS.items():
        requests = _requests(images, batch) if name == "vqa" else _requests(images, batch)[::-1]
        plain, shared = _plain_and_shared(backend, requests, make(beams))
        assert torch.equal(shared.sequences, plain.sequences), name
        # Bitwise, not approximately: the shared computations get exactly the rows each beam copy would, in products
        # of >= num_query_tokens rows, whose kernels give every row the same bits whatever the row count (measured
        # here: MKL/oneDNN rows agree for any count >= 4; 1-3 rows take other kernels, hence nothing per-token is shared)
        assert torch.equal(shared.sequences_scores, plain.sequences_scores), name


@pytest.mark.parametrize("kind", KINDS)
def test_backend_generate_ids_equal_with_the_switch_on_and_off(
    tiny_mt5_dir: Path, tiny_bloom_dir: Path, images: list[Path], kind: str
) -> None:
    folder = {"tiny_mt5_dir": tiny_mt5_dir, "tiny_bloom_dir": tiny_bloom_dir}[kind]
    on = MBlipBackend.load(BackendOptions(model=str(folder), device="cpu"), prefetch_workers=0)
    off = MBlipBackend.load(BackendOptions(model=str(folder), device="cpu", shared_prefix=False), prefetch_workers=0)
    settings = SETTINGS["vqa"](5)
    assert (on.generation_path(settings), off.generation_path(settings)) == (SHARED_PREFIX_PATH, PLAIN_PATH)
    requests = _requests(images, 10)
    ids = on.generate_ids(requests, settings)
    assert ids == off.generate_ids(requests, settings)
    assert len({tuple(row) for row in ids}) > 3  # the answers depend on the inputs, so equality means something
    # a batch of 10 and one-by-one agree too (the runner's last batch of a language is often small)
    assert [on.generate_ids([r], settings)[0] for r in requests[:4]] == [
        off.generate_ids([r], settings)[0] for r in requests[:4]
    ]


# -- the prompt's work runs once per sample ------------------------------------------------------------------------
def _rows_into_first_prompt_projection(
    backend: MBlipBackend, requests: list[GenerationRequest], settings: GenerationSettings
) -> int:
    """Rows the first call of the shared projection gets: mT5's first cross-attention key projection, BLOOM's first
    fused query/key/value projection (the prefill)."""
    lm = backend.model.language_model
    module = (
        lm.decoder.block[0].layer[1].EncDecAttention.k
        if backend.is_encoder_decoder
        else lm.transformer.h[0].self_attention.query_key_value
    )
    rows: list[int] = []
    handle = module.register_forward_hook(lambda _m, args, _out: rows.append(int(args[0].shape[0])))
    try:
        backend.generate_ids(requests, settings)
    finally:
        handle.remove()
    return rows[0]


@pytest.mark.parametrize("kind", KINDS)
def test_the_prompt_is_computed_once_per_sample_and_the_switch_turns_it_off(
    tiny_mt5_dir: Path, tiny_bloom_dir: Path, images: list[Path], kind: str
) -> None:
    folder = {"tiny_mt5_dir": tiny_mt5_dir, "tiny_bloom_dir": tiny_bloom_dir}[kind]
    on = MBlipBackend.load(BackendOptions(model=str(folder), device="cpu"), prefetch_workers=0)
    off = MBlipBackend.load(BackendOptions(model=str(folder), device="cpu", shared_prefix=False), prefetch_workers=0)
    requests = _requests(images, 6)
    assert _rows_into_first_prompt_projection(on, requests, SETTINGS["vqa"](5)) == 6
    assert _rows_into_first_prompt_projection(off, requests, SETTINGS["vqa"](5)) == 30  # transformers' 5 copies each
    # greedy search has nothing to share: one row per sample on both
    greedy = GenerationSettings(num_beams=1, max_new_tokens=4, min_new_tokens=1)
    assert on.generation_path(greedy) == PLAIN_PATH
    assert _rows_into_first_prompt_projection(on, requests, greedy) == 6
    # no hook is left behind on any module
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in on.model.modules())


@pytest.mark.parametrize(
    ("beams", "do_sample", "expected"),
    [(1, False, False), (2, False, True), (5, False, True), (1, True, False), (5, True, False)],
)
def test_only_deterministic_beam_search_takes_the_shared_path(beams: int, do_sample: bool, expected: bool) -> None:
    assert uses_shared_prefix(beams, do_sample) is expected


def test_sampling_keeps_the_plain_path_and_direct_calls_refuse_it(backends: dict, images: list[Path]) -> None:
    backend = backends[("tiny_mt5_dir", 32)]
    sampling = GenerationSettings(num_beams=5, max_new_tokens=4, min_new_tokens=1, do_sample=True)
    assert backend.generation_path(sampling) == PLAIN_PATH
    inputs = backend.prepare_inputs(_requests(images, 2))
    lm = backend.model.language_model
    with pytest.raises(ValueError, match="without sampling"):
        generate_sharing_prefix(lm, inputs_embeds=inputs.inputs_embeds, num_beams=5, do_sample=True)
    with pytest.raises(ValueError, match="without sampling"):
        generate_sharing_prefix(lm, inputs_embeds=inputs.inputs_embeds, num_beams=1)
    with pytest.raises(ValueError, match="inputs_embeds"):
        generate_sharing_prefix(lm, num_beams=5)


@pytest.mark.parametrize("kind", KINDS)
def test_hooks_are_removed_when_generate_fails(backends: dict, images: list[Path], kind: str) -> None:
    backend = backends[(kind, 32)]
    inputs = backend.prepare_inputs(_requests(images, 3))
    lm = backend.model.language_model

    def fail(*_args: object) -> None:
        raise RuntimeError("simulated failure inside generate")

    failing = lm.get_output_embeddings().register_forward_hook(fail)  # lm_head runs after the shared computation
    try:
        with pytest.raises(RuntimeError, match="simulated failure"):
            generate_sharing_prefix(
                lm, inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask, num_beams=3
            )
    finally:
        failing.remove()
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in lm.modules())
    # and the model still generates exactly as before
    plain, shared = _plain_and_shared(backend, _requests(images, 3), SETTINGS["vqa"](3))
    assert torch.equal(plain.sequences, shared.sequences)


# -- LoRA adapters -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "targets"), [("tiny_mt5_dir", ["q", "k", "v", "o"]), ("tiny_bloom_dir", ["query_key_value", "dense"])]
)
def test_lora_layers_on_the_shared_projections_give_the_same_ids(
    request: pytest.FixtureRequest, tmp_path: Path, images: list[Path], kind: str, targets: list[str]
) -> None:
    """peft replaces the shared projections by its LoRA layers; those are what the first call must run once."""
    from peft import LoraConfig, get_peft_model
    from transformers import Blip2ForConditionalGeneration

    folder = request.getfixturevalue(kind)
    torch.manual_seed(3)
    model = Blip2ForConditionalGeneration.from_pretrained(folder)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)  # random non-zero LoRA
    get_peft_model(model.language_model, config).save_pretrained(tmp_path / "adapter")
    options = {"model": str(folder), "device": "cpu", "adapter": str(tmp_path / "adapter")}
    on = MBlipBackend.load(BackendOptions(**options), prefetch_workers=0)
    off = MBlipBackend.load(BackendOptions(**options, shared_prefix=False), prefetch_workers=0)
    requests = _requests(images, 5)
    settings = SETTINGS["vqa"](5)
    assert on.generate_ids(requests, settings) == off.generate_ids(requests, settings)
    base = MBlipBackend.load(BackendOptions(model=str(folder), device="cpu"), prefetch_workers=0)
    assert on.generate_ids(requests, settings) != base.generate_ids(requests, settings)  # the LoRA layers did run


# -- the cross-attention cache -------------------------------------------------------------------------------------
def _cache_with_distinct_rows(num_beams: int, samples: int):
    """A BeamSharedCrossAttentionCache of 1 layer whose every row is distinct (row r holds the value r)."""
    from transformers import DynamicCache

    rows = samples * num_beams
    cache = _beam_shared_cross_attention_cache_class()(DynamicCache(), DynamicCache(), num_beams=num_beams)
    values = torch.arange(rows, dtype=torch.float32).view(rows, 1, 1, 1).expand(rows, 2, 3, 4).contiguous()
    cache.self_attention_cache.update(values.clone(), values.clone(), 0)
    cache.cross_attention_cache.update(values.clone(), values.clone(), 0)
    return cache


@pytest.mark.parametrize(
    ("beam_idx", "cross_moves"),
    [
        ([0, 0, 2, 3, 3, 5], False),  # sample 0 keeps beams 0,0,2; sample 1 keeps 3,3,5: within each sample
        ([2, 1, 0, 5, 4, 3], False),
        ([0, 1, 2, 3, 4, 5], False),
        ([0, 1, 3, 3, 4, 5], True),  # row 2 would take sample 1's beam: the rows must move
    ],
)
def test_cross_attention_rows_are_only_reordered_when_a_beam_changes_sample(
    beam_idx: list[int], cross_moves: bool
) -> None:
    cache = _cache_with_distinct_rows(num_beams=3, samples=2)
    before = cache.cross_attention_cache.layers[0].keys
    index = torch.tensor(beam_idx, dtype=torch.int32)  # transformers' beam search passes int32 indices
    cache.reorder_cache(index)
    # the self-attention cache (different for every beam) always follows the beams
    assert cache.self_attention_cache.layers[0].keys[:, 0, 0, 0].tolist() == [float(i) for i in beam_idx]
    after = cache.cross_attention_cache.layers[0].keys
    if cross_moves:
        assert after[:, 0, 0, 0].tolist() == [float(i) for i in beam_idx]
    else:
        assert after is before  # not even copied: in real use these rows are equal within a sample


# -- the cache keyword: the model's own name for it, on every transformers release ---------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_the_cache_goes_under_the_name_the_model_takes(backends: dict, kind: str) -> None:
    """transformers 5.24 renamed generate's ``past_key_values`` to ``cache`` and 5.25 dropped both from generate's
    signature: the name must come from what the model's forward takes, or 5.25 warns on every mT5 run (the newest-release
    job of .ci/run runs this on the newest transformers)."""
    import inspect

    from mvleval.backends.shared_prefix import _cache_kwarg

    lm = backends[(kind, 32)].model.language_model
    forward = inspect.signature(lm.forward).parameters
    assert _cache_kwarg(lm) == ("cache" if "cache" in forward else "past_key_values")
    assert _cache_kwarg(lm) in forward


@pytest.mark.slow
def test_a_beam_search_run_prints_no_library_warning(tiny_mt5_dir: Path, tmp_path: Path) -> None:
    """Through the console script, as a user runs it: mBLIP's beam search with an mT5 language model (the shared-prefix
    path) prints no library warning, on the pinned and on the newest transformers."""
    import os
    import shutil
    import subprocess

    from mvleval.demo.command import build_demo_data

    data_root, image_root = build_demo_data(tmp_path / "demo", n_train=0, n_test=3)
    exe = shutil.which("mvleval")
    assert exe, "the mvleval console script is not installed (pip install -e .)"
    result = subprocess.run(
        [
            exe,
            "run",
            "--task",
            "xgqa",
            "--lang",
            "en",
            "--model",
            str(tiny_mt5_dir),
            "--data-root",
            str(data_root),
            "--image-root",
            str(image_root),
            "--out",
            str(tmp_path / "runs"),
            "--max-new-tokens",
            "3",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"},
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    for noise in ("Warning", "deprecated", "past_key_values", "Traceback"):
        assert noise not in output, output
