"""The fine-tuning recipe on tiny real mT5 and BLOOM checkpoints: LoRA targets, inputs, logged losses, reload, resume."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from mvleval.finetune.config import TrainConfig, load_config
from mvleval.finetune.data import read_task_mix, tokenize_examples
from mvleval.finetune.loop import (
    DataOrder,
    list_checkpoints,
    lora_leaf_names,
    lora_target_regex,
    make_optimizer,
    read_train_log,
    save_trained_weights,
)
from mvleval.finetune.train import (
    add_lora,
    build_inputs,
    compute_loss,
    image_queries,
    load_base_model,
    load_pixels,
    train,
)
from mvleval.util.errors import MvlevalError
from tests.test_finetune_data import TASK_MIX, draw_shape_images

torch = pytest.importorskip("torch")

# hand-listed from the mT5 and BLOOM modeling code: every linear layer inside the blocks (mBLIP's "lora_all")
EXPECTED_LEAVES = {
    "mt5": ["k", "o", "q", "v", "wi_0", "wi_1", "wo"],
    "bloom": ["dense", "dense_4h_to_h", "dense_h_to_4h", "query_key_value"],
}
# tiny checkpoints have 2 layers: mT5 encoder 2 x (4 attention + 3 feed-forward), decoder 2 x (4 self + 4 cross + 3);
# BLOOM 2 x (query_key_value, dense, dense_h_to_4h, dense_4h_to_h)
EXPECTED_LORA_MODULES = {"mt5": 2 * 7 + 2 * 11, "bloom": 2 * 4}


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return list(draw_shape_images(tmp_path_factory.mktemp("ft_train_images")))


@pytest.fixture(scope="module")
def single_image_mix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 24 one-image records of task_mix.json (transformers' own forward takes one image per row)."""
    rows = [r for r in json.loads(TASK_MIX.read_text(encoding="utf-8")) if isinstance(r["image_id"], str)]
    path = tmp_path_factory.mktemp("ft_mix") / "single.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _checkpoint(kind: str, request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(f"tiny_{kind}_dir")


def _config(
    base: Path, out: Path, roots: list[Path], *overrides: str, train_file: Path = TASK_MIX, **values: object
) -> TrainConfig:
    return load_config(
        None, list(overrides), base_model=str(base), output_dir=out, train_file=train_file, image_roots=roots, **values
    )


# -- LoRA placement ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mt5", "bloom"])
def test_lora_targets_are_found_by_structure_and_never_in_the_qformer(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, roots: list[Path]
) -> None:
    base = _checkpoint(kind, request)
    model, _ = load_base_model(str(base), 32, "cpu")
    assert lora_leaf_names(model.language_model) == EXPECTED_LEAVES[kind]
    regex = lora_target_regex(model.language_model, EXPECTED_LEAVES[kind])
    # the Q-Former has Linear layers named query/key/value/dense: the anchored regex matches none of them,
    # whether seen from the Q-Former or from the whole BLIP-2 model
    assert not [n for n, _ in model.qformer.named_modules() if re.fullmatch(regex, n)]
    assert not [n for n, _ in model.named_modules() if re.fullmatch(regex, n)]
    assert not re.fullmatch(regex, "lm_head")

    add_lora(model, _config(base, tmp_path / "run", roots))
    lora_modules = {n.rsplit(".lora_A", 1)[0] for n, _ in model.named_parameters() if ".lora_A." in n}
    assert len(lora_modules) == EXPECTED_LORA_MODULES[kind]
    assert all(n.startswith("language_model.") for n in lora_modules)
    assert {n.rsplit(".", 1)[1] for n in lora_modules} == set(EXPECTED_LEAVES[kind])
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n.split(".", 1)[0] for n in trained} == {"language_model", "qformer", "query_tokens", "language_projection"}
    assert all("lora_" in n for n in trained if n.startswith("language_model."))  # the LLM itself stays frozen
    assert not any(n.startswith("vision_model.") for n in trained)
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if p.requires_grad)


def test_lora_targets_can_be_named_and_typos_are_caught(tiny_mt5_dir: Path, tmp_path: Path, roots: list[Path]) -> None:
    model, _ = load_base_model(str(tiny_mt5_dir), 32, "cpu")
    add_lora(model, _config(tiny_mt5_dir, tmp_path / "run", roots, "lora_targets=[q, v]"))
    lora_modules = {n.rsplit(".lora_A", 1)[0] for n, _ in model.named_parameters() if ".lora_A." in n}
    # mBLIP's plain "lora": q and v of every attention (encoder 2 x 1, decoder 2 x 2 attentions)
    assert len(lora_modules) == 2 * 2 + 2 * 4
    with pytest.raises(MvlevalError, match="Did you mean 'wi_0'"):
        train(_config(tiny_mt5_dir, tmp_path / "typo", roots, "lora_targets=[wi0]", max_steps=1))
    # a run that failed on bad input leaves nothing that would block the corrected rerun
    assert not (tmp_path / "typo" / "train_config.json").exists()
    assert read_train_log(train(_config(tiny_mt5_dir, tmp_path / "typo", roots, "lora_targets=[wi_0]", max_steps=1)))


# -- inputs: the backend's layout, and transformers' own loss ---------------------------------------------------
@pytest.mark.parametrize("kind", ["mt5", "bloom"])
def test_training_inputs_equal_the_backends_inference_inputs(
    kind: str, request: pytest.FixtureRequest, roots: list[Path]
) -> None:
    from mvleval.backends.base import BackendOptions, GenerationRequest
    from mvleval.backends.mblip import MBlipBackend

    backend = MBlipBackend.load(
        BackendOptions(model=str(_checkpoint(kind, request)), bits=32, device="cpu", image_cache_size=0)
    )
    examples = read_task_mix(TASK_MIX, roots)
    for n_images in (1, 2):  # MaRVL-style rows: both images' queries, in order, before the prompt
        batch_examples = [e for e in examples if len(e.images) == n_images][:3]
        reference = backend.prepare_inputs(
            [GenerationRequest(prompt=e.prompt, images=e.images) for e in batch_examples]
        )
        tokenized, _ = tokenize_examples(
            batch_examples,
            backend.tokenizer,
            max_prompt_tokens=256,
            max_target_tokens=64,
            image_token_id=backend.image_token_id,
        )
        with torch.no_grad():
            queries = image_queries(
                backend.model, load_pixels([p for e in batch_examples for p in e.images], backend.processor)
            )
            ours = build_inputs(
                backend.model,
                tokenized,
                queries,
                image_token_id=backend.image_token_id,
                pad_token_id=backend.pad_token_id,
            )
        for row, tok in enumerate(tokenized):
            n = n_images * backend.num_query_tokens + len(tok.prompt_ids)
            ref_mask = reference.attention_mask[row].bool()  # left-padded for BLOOM, right-padded for mT5
            assert int(ref_mask.sum()) == n
            torch.testing.assert_close(
                ours.inputs_embeds[row, :n], reference.inputs_embeds[row][ref_mask], rtol=0, atol=1e-6
            )
            assert int(ours.attention_mask[row].sum()) == n + (len(tok.target_ids) if kind == "bloom" else 0)


@pytest.mark.parametrize("kind", ["mt5", "bloom"])
def test_logged_first_loss_equals_transformers_blip2_loss(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, roots: list[Path], single_image_mix: Path
) -> None:
    """Step 1's logged loss (LoRA's B starts at zero, tiny models have no dropout) must be Blip2ForConditionalGeneration's
    own loss on the same 4 examples: an independent path (processor-style input_ids, HF's embedding merge and loss)."""
    from transformers import Blip2ForConditionalGeneration

    base = _checkpoint(kind, request)
    config = _config(base, tmp_path / "run", roots, "seed=5", train_file=single_image_mix, max_steps=1, batch_size=4)
    out = train(config)
    logged = read_train_log(out)[0]["loss"]

    examples = read_task_mix(single_image_mix, roots)
    batch = [examples[i] for i in DataOrder(len(examples), 4, 5).batch(0)]
    _, processor = load_base_model(str(base), 32, "cpu")
    model = Blip2ForConditionalGeneration.from_pretrained(str(base)).eval()
    tok = processor.tokenizer
    n_query = model.config.num_query_tokens
    image_id = model.config.image_token_index
    pixels = load_pixels([e.images[0] for e in batch], processor)
    losses, weights = [], []
    for i, example in enumerate(batch):  # one row at a time: no padding conventions involved
        prompt = tok(example.prompt)["input_ids"]
        target = tok(example.target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        if kind == "bloom":
            ids = [image_id] * n_query + prompt + target
            labels = [-100] * (n_query + len(prompt)) + target
            out_hf = model(pixel_values=pixels[i : i + 1], input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
        else:
            ids = [image_id] * n_query + prompt
            out_hf = model(pixel_values=pixels[i : i + 1], input_ids=torch.tensor([ids]), labels=torch.tensor([target]))
        losses.append(float(out_hf.loss.detach()) * len(target))
        weights.append(len(target))
    token_mean = sum(losses) / sum(weights)  # our loss is the mean over the batch's target tokens
    assert logged == pytest.approx(token_mean, rel=1e-5, abs=1e-5)


# -- the loop: loss goes down, outputs written ------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_runs(
    tmp_path_factory: pytest.TempPathFactory, roots: list[Path], request: pytest.FixtureRequest
) -> dict[str, Path]:
    """20 steps on the 28-record task mix (one- and two-image rows mixed in batches) for each LLM kind."""
    runs = {}
    for kind in ("mt5", "bloom"):
        out = tmp_path_factory.mktemp(f"ft_run_{kind}") / "run"
        # a higher lr than mBLIP's: the tiny random models must move visibly in 20 steps
        config = _config(
            _checkpoint(kind, request),
            out,
            roots,
            "lr_lora=1e-2",
            "lr_blip=1e-3",
            "save_every=10",
            max_steps=20,
            batch_size=8,
        )
        runs[kind] = train(config)
    return runs


@pytest.mark.parametrize(
    ("kind", "margin"),
    # measured once (factory seed 0, CPU), mean of the first 3 vs last 3 logged losses of 20 steps:
    # mT5 6.54 -> 3.55, BLOOM 7.70 -> 4.27; the margins are about half of the measured drop
    [("mt5", 1.5), ("bloom", 1.5)],
)
def test_logged_loss_goes_down(kind: str, margin: float, trained_runs: dict[str, Path]) -> None:
    records = read_train_log(trained_runs[kind])
    assert [r["step"] for r in records] == list(range(1, 21))
    losses = [r["loss"] for r in records]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - margin, losses
    assert all(r["lr"] > 0 for r in records[1:]) and records[0]["lr"] == 0.0  # warm-up starts at 0
    assert records[-1]["lr"] < records[len(records) // 2]["lr"]  # cosine decay
    assert all(r["grad_norm"] >= 0 and r["examples_per_s"] > 0 for r in records)


@pytest.mark.parametrize("kind", ["mt5", "bloom"])
def test_training_folder_holds_the_contracted_files(kind: str, trained_runs: dict[str, Path]) -> None:
    from safetensors.torch import load_file

    out = trained_runs[kind]
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "blip_parts.safetensors",
        "train_config.json",
        "train_log.jsonl",
        "loss.png",
    ):
        assert (out / name).is_file(), name
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    adapter_config = json.loads((out / "adapter_config.json").read_text(encoding="utf-8"))
    assert adapter_config["peft_type"] == "LORA" and adapter_config["r"] == 8 and adapter_config["lora_alpha"] == 16
    parts = load_file(str(out / "blip_parts.safetensors"))
    assert "query_tokens" in parts  # saved explicitly (peft's modules_to_save ignores a Parameter)
    assert {k.split(".", 1)[0] for k in parts} == {"qformer", "query_tokens", "language_projection"}
    saved = TrainConfig.model_validate_json((out / "train_config.json").read_text(encoding="utf-8"))
    assert saved.bits == 32 and saved.device == "cpu"  # resolved values are what is saved
    assert [p.name for p in list_checkpoints(out)] == ["step-10", "step-20"]
    last = list_checkpoints(out)[-1]
    for name in ("adapter_model.safetensors", "blip_parts.safetensors"):
        final, ckpt = load_file(str(out / name)), load_file(str(last / name))
        assert final.keys() == ckpt.keys() and all(torch.equal(final[k], ckpt[k]) for k in final)
    for name in ("optimizer.pt", "scheduler.pt", "rng.pt", "trainer_state.json"):
        assert (last / name).is_file()
    assert json.loads((last / "trainer_state.json").read_text(encoding="utf-8"))["micro_batches"] == 20


# -- adapter reload ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mt5", "bloom"])
def test_saved_adapter_reloads_exactly_through_the_backend(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, roots: list[Path]
) -> None:
    from mvleval.backends.base import BackendOptions, GenerationRequest
    from mvleval.backends.mblip import MBlipBackend

    base = _checkpoint(kind, request)
    config = _config(base, tmp_path / "run", roots, "lr_lora=1e-2", "lr_blip=1e-3")
    torch.manual_seed(0)
    model, processor = load_base_model(str(base), 32, "cpu")
    peft_model = add_lora(model, config)
    optimizer = make_optimizer(model, config)
    examples = read_task_mix(TASK_MIX, roots)
    tokenized, _ = tokenize_examples(
        examples,
        processor.tokenizer,
        max_prompt_tokens=256,
        max_target_tokens=64,
        image_token_id=int(model.config.image_token_index),
    )
    model.train()
    for step in range(3):  # a few real updates of LoRA and the BLIP-2 parts, in memory
        idx = list(range(step * 8, step * 8 + 8))
        queries = image_queries(model, load_pixels([p for i in idx for p in examples[i].images], processor))
        batch = build_inputs(
            model,
            [tokenized[i] for i in idx],
            queries,
            image_token_id=int(model.config.image_token_index),
            pad_token_id=processor.tokenizer.pad_token_id,
        )
        optimizer.zero_grad()
        compute_loss(model, batch).backward()
        optimizer.step()
    model.eval()
    adapter_dir = tmp_path / "adapter"
    save_trained_weights(model, peft_model, adapter_dir)

    requests = [GenerationRequest(prompt=e.prompt, images=e.images) for e in examples if len(e.images) == 1]
    in_memory = MBlipBackend(
        model=model,
        processor=processor,
        model_dir=base,
        model_name=str(base),
        device="cpu",
        bits=32,
        quantization=None,
        adapter=None,
        fingerprint="",
        image_cache_size=0,
    )
    reloaded = MBlipBackend.load(BackendOptions(model=str(base), adapter=str(adapter_dir), bits=32, device="cpu"))
    plain = MBlipBackend.load(BackendOptions(model=str(base), bits=32, device="cpu"))
    expected = in_memory.next_token_logits(requests)
    assert torch.equal(reloaded.next_token_logits(requests), expected)
    assert not torch.allclose(plain.next_token_logits(requests), expected, atol=1e-3)  # the adapter changes the model


# -- resume ----------------------------------------------------------------------------------------------------
class _KillAt:
    """A progress callback that interrupts training after optimizer step `step` (as Ctrl-C would)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def start(self, label: str, total: int, done: int) -> None:
        pass

    def update(self, step: int, loss: float, lr: float, examples_per_s: float) -> None:
        if step == self.step:
            raise KeyboardInterrupt

    def finish(self) -> None:
        pass

    def note(self, message: str) -> None:
        pass


def _weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {**load_file(str(out / "adapter_model.safetensors")), **load_file(str(out / "blip_parts.safetensors"))}


@pytest.mark.parametrize(("kind", "bits"), [("mt5", 32), ("bloom", 4)])
def test_resumed_run_ends_with_the_same_weights(
    kind: str, bits: int, request: pytest.FixtureRequest, tmp_path: Path, roots: list[Path]
) -> None:
    """6 steps straight vs killed after step 3 (last checkpoint: step 2) and resumed: identical tensors.

    Dropout 0.1, gradient accumulation and batches straddling epochs make any lost RNG or data-position state show.
    `bloom, 4` is QLoRA (nf4 base) on CPU.
    """
    base = _checkpoint(kind, request)

    def config(out: Path, seed: int = 0) -> TrainConfig:
        return _config(
            base,
            out,
            roots,
            "save_every=2",
            "lora_dropout=0.1",
            "grad_accum_steps=2",
            f"seed={seed}",
            max_steps=6,
            batch_size=5,
            bits=bits,
        )

    straight = train(config(tmp_path / "straight"))
    with pytest.raises(KeyboardInterrupt):
        train(config(tmp_path / "resumed"), progress=_KillAt(3))
    assert [p.name for p in list_checkpoints(tmp_path / "resumed")] == ["step-2"]
    with pytest.raises(MvlevalError, match="already holds a training run"):
        train(config(tmp_path / "resumed"))
    with pytest.raises(MvlevalError, match="seed: 0 -> 1"):
        train(config(tmp_path / "resumed", seed=1), resume=True)
    resumed = train(config(tmp_path / "resumed"), resume=True)

    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert read_train_log(straight) and [r["loss"] for r in read_train_log(straight)] == [
        r["loss"] for r in read_train_log(resumed)
    ]
    if bits == 4:
        import bitsandbytes as bnb

        model, _ = load_base_model(str(base), 4, "cpu")
        quantised = [m for m in model.language_model.modules() if isinstance(m, bnb.nn.Linear4bit)]
        assert quantised and all(m.support_avx512bf16_for_cpu is False for m in quantised)  # NOTES.md workaround
    # negative control: another seed really gives other weights, so the equality above can fail
    other = train(config(tmp_path / "other", seed=1))
    c = _weights(other)
    assert any(not torch.equal(a[k], c[k]) for k in a)


# -- options --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mt5", "bloom"])
def test_gradient_checkpointing_changes_memory_not_results(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, roots: list[Path]
) -> None:
    base = _checkpoint(kind, request)
    weights = {}
    for on in (False, True):
        config = _config(
            base,
            tmp_path / f"gc_{on}",
            roots,
            "lora_dropout=0.1",
            f"gradient_checkpointing={str(on).lower()}",
            max_steps=3,
            batch_size=4,
        )
        weights[on] = _weights(train(config))
    # recomputation replays dropout's RNG; only float summation order may differ (measured <= 2e-6 on mT5, 0 on BLOOM)
    for name, tensor in weights[False].items():
        torch.testing.assert_close(weights[True][name], tensor, rtol=0, atol=1e-5)


@pytest.mark.parametrize("bits", [16, 8])
def test_bf16_and_int8_bases_train_and_reload(
    bits: int, tiny_bloom_dir: Path, tmp_path: Path, roots: list[Path]
) -> None:
    from mvleval.backends.base import BackendOptions, GenerationRequest
    from mvleval.backends.mblip import MBlipBackend

    out = train(
        _config(
            tiny_bloom_dir,
            tmp_path / "run",
            roots,
            "lr_lora=1e-2",
            "lr_blip=1e-3",
            max_steps=3,
            batch_size=4,
            bits=bits,
        )
    )
    records = read_train_log(out)
    assert len(records) == 3 and all(math.isfinite(r["loss"]) for r in records)
    assert TrainConfig.model_validate_json((out / "train_config.json").read_text(encoding="utf-8")).bits == bits
    requests = [GenerationRequest(prompt=e.prompt, images=e.images) for e in read_task_mix(TASK_MIX, roots)[:4]]
    adapted = MBlipBackend.load(BackendOptions(model=str(tiny_bloom_dir), bits=bits, adapter=str(out), device="cpu"))
    plain = MBlipBackend.load(BackendOptions(model=str(tiny_bloom_dir), bits=bits, device="cpu"))
    assert not torch.allclose(adapted.next_token_logits(requests), plain.next_token_logits(requests), atol=1e-3)


def test_training_on_a_task_split(shared_data: Path, tiny_mt5_dir: Path, tmp_path: Path) -> None:
    from mvleval.benchmarks.registry import load_task
    from tests.helpers import placeholder_images

    image_root = tmp_path / "images"
    task = load_task("xgqa")
    examples = [e for lang in ("de", "en", "zh") for e in task.examples(shared_data, image_root, lang, "train_1")]
    placeholder_images(sorted({p for e in examples for p in e.images}))
    config = load_config(
        None,
        ["split=train_1"],
        base_model=str(tiny_mt5_dir),
        output_dir=tmp_path / "run",
        task="xgqa",
        data_root=shared_data,
        image_roots=[image_root],
        max_steps=2,
        batch_size=4,
    )
    out = train(config)
    assert [r["step"] for r in read_train_log(out)] == [1, 2]
    # epoch = examples seen / examples of every language that has the split
    assert read_train_log(out)[-1]["epoch"] == pytest.approx(8 / len(examples), abs=1e-4)
    saved = json.loads((out / "train_config.json").read_text(encoding="utf-8"))
    assert saved["task"] == "xgqa" and saved["split"] == "train_1"


def test_4bit_training_keeps_the_unquantised_parts_as_the_16bit_run_does(tiny_bloom_dir: Path) -> None:
    """--bits 4 on CPU: ViT, Q-Former, projection, embeddings and lm_head load in bf16 as at --bits 16 (they were
    fp32), and nf4 is dequantised to bf16."""
    import bitsandbytes as bnb

    dtypes = {}
    for bits in (16, 4):
        model, _ = load_base_model(str(tiny_bloom_dir), bits, "cpu")
        quantised = {n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
        dtypes[bits] = {n: p.dtype for n, p in model.named_parameters() if n.rsplit(".", 1)[0] not in quantised}
        if bits == 4:
            assert quantised and {m.compute_dtype for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)} == {
                torch.bfloat16
            }
    unquantised = {n: d for n, d in dtypes[16].items() if n in dtypes[4]}
    assert {n.split(".", 1)[0] for n in unquantised} >= {"vision_model", "qformer", "language_projection"}
    assert dtypes[4] == unquantised and set(unquantised.values()) == {torch.bfloat16}


def test_release_checkpoint_file_drops_the_mapping_and_keeps_the_values(tmp_path: Path) -> None:
    """release_checkpoint_file (after a 4-bit load on CPU): weights that were views of a memory-mapped file get their
    own memory, so the process no longer maps the file; values unchanged."""
    import gc

    from mvleval.finetune.loop import release_checkpoint_file

    maps = Path("/proc/self/maps")
    if not maps.is_file():
        pytest.skip("needs /proc/self/maps (Linux)")
    path = tmp_path / "weights.bin"
    torch.arange(64, dtype=torch.float32).numpy().tofile(path)
    module = torch.nn.Linear(8, 8)
    module.weight.data = torch.from_file(str(path), shared=True, size=64, dtype=torch.float32).view(8, 8)
    gc.collect()
    assert str(path) in maps.read_text()  # the control: a view of the file keeps it mapped
    release_checkpoint_file(module)
    gc.collect()
    assert [line for line in maps.read_text().splitlines() if str(path) in line] == []
    assert torch.equal(module.weight, torch.arange(64, dtype=torch.float32).view(8, 8))
