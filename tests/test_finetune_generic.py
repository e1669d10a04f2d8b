"""Fine-tuning the generic backend's families (Qwen2-VL, PaliGemma, Gemma 3, Idefics3, LLaVA-NeXT) on tiny models:
the training conversation is the evaluation's, the loss covers the answer and the end-of-turn token only, LoRA sits on
the language model only, resume is bit-identical, and the outputs load in `mvleval run --adapter` and transformers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from mvleval.finetune import load_config  # noqa: E402
from mvleval.finetune import train as run_training  # noqa: E402
from mvleval.finetune.config import TrainConfig  # noqa: E402
from mvleval.finetune.loop import list_checkpoints, read_train_log  # noqa: E402
from mvleval.testing.squares import write_squares_benchmark  # noqa: E402
from mvleval.testing.tiny_vlm import build_tiny_vlm, load_processor  # noqa: E402
from mvleval.util.errors import MvlevalError  # noqa: E402

FAMILIES = ("qwen2_vl", "paligemma", "gemma3", "idefics3", "llava_next")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-generic")
    for family in FAMILIES:
        build_tiny_vlm(family, root / family)
    return root


@pytest.fixture(scope="module")
def squares(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_squares_benchmark(tmp_path_factory.mktemp("bench") / "squares", n_train=12, n_test=4)


def _examples(squares: Path, split: str = "train", style: str = "mblip") -> list[Any]:
    from mvleval.finetune.data import read_task_split

    return read_task_split(str(squares), split, squares, squares / "images", prompt_style=style)


def _config(base: Path, out: Path, squares: Path, *sets: str, **flags: Any) -> TrainConfig:
    return load_config(
        None, list(sets), base_model=str(base), output_dir=out, task=str(squares), split="train", **flags
    )


# -- the conversation and the loss mask -------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("style", ["mblip", "chat"])
def test_mask_is_the_answer_and_the_end_of_turn_token(family: str, style: str, models: Path, squares: Path) -> None:
    """Per family: the labelled tokens are exactly the answer's tokens plus the end-of-turn token, and every token
    before them is the prompt the generic backend builds at evaluation for the same example (same ids, same images)."""
    from mvleval.backends.base import BackendOptions, GenerationRequest
    from mvleval.backends.hf_vlm import HfVlmBackend
    from mvleval.benchmarks.images import load_image
    from mvleval.finetune.generic import _stop_ids, build_batch, render_training_texts

    model_dir = models / family
    processor = load_processor(model_dir)
    examples = _examples(squares, style=style)[:3]  # three languages of one image
    rendered = render_training_texts(processor, examples, _stop_ids(model_dir, processor.tokenizer))
    images = [[load_image(p) for p in e.images] for e in examples]
    batch = build_batch(processor, rendered, images, "cpu")
    tokenizer = processor.tokenizer
    backend = HfVlmBackend.load(BackendOptions(model=str(model_dir), device="cpu"), processor=load_processor(model_dir))
    eos_names = {
        "qwen2_vl": "<|im_end|>",
        "paligemma": "<eos>",
        "gemma3": "<end_of_turn>",
        "idefics3": "<end_of_utterance>",
        "llava_next": "</s>",
    }
    for row, example in enumerate(examples):
        labels = batch["labels"][row]
        kept = labels[labels != -100].tolist()
        # the answer (as the template writes it: Idefics3 and LLaVA-NeXT put a space before it) + end of turn
        lead = " " if family in ("idefics3", "llava_next") else ""
        answer_ids = tokenizer(lead + example.target, add_special_tokens=False)["input_ids"]
        assert kept == [*answer_ids, tokenizer.convert_tokens_to_ids(eos_names[family])]
        assert tokenizer.decode(kept) == lead + example.target + eos_names[family]
        # the labelled tokens are the row's last ones, and everything before them is the evaluation prompt
        mask = batch["attention_mask"][row].bool()
        ids = batch["input_ids"][row][mask].tolist()
        prompt_part = ids[: len(ids) - len(kept)]
        evaluation = backend.build_inputs([GenerationRequest(prompt=example.prompt, images=example.images)])
        assert prompt_part == evaluation["input_ids"][0][evaluation["attention_mask"][0].bool()].tolist()
        # a different answer changes the labels (the check above can fail)
        assert example.target not in tokenizer.decode(prompt_part)
    backend.close()


def test_a_template_that_changes_the_prompt_is_refused(models: Path, squares: Path) -> None:
    """A template whose rendering with the answer does not start with the evaluation prompt is refused, not trained."""
    from mvleval.finetune.generic import render_training_texts

    processor = load_processor(models / "gemma3")
    processor.chat_template = processor.chat_template.replace(
        "{{'<start_of_turn>model\n'}}", "{{'<start_of_turn>model\nSure: '}}"
    )
    assert "Sure: " in processor.chat_template
    with pytest.raises(MvlevalError, match="differently from the evaluation prompt"):
        render_training_texts(processor, _examples(squares)[:1], [processor.tokenizer.eos_token_id])


# -- what is trained --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_lora_only_in_the_language_model_and_projector_by_option(
    family: str, models: Path, squares: Path, tmp_path: Path
) -> None:
    from mvleval.finetune.generic import add_generic_lora, language_model_prefix, load_generic_model

    model_dir = models / family
    for train_projection in (True, False):
        model, _, _ = load_generic_model(str(model_dir), 32, "cpu", load_processor(model_dir))
        prefix = language_model_prefix(model)
        n_linear = sum(isinstance(m, torch.nn.Linear) for _, m in model.get_submodule(prefix).named_modules())
        config = _config(model_dir, tmp_path / "o", squares, f"train_projection={str(train_projection).lower()}")
        peft_model = add_generic_lora(model, config)
        lora_layers = [
            n
            for n, m in peft_model.named_modules()
            if hasattr(m, "lora_A") and isinstance(m.lora_A, torch.nn.ModuleDict)
        ]
        assert lora_layers and all(f".{prefix}." in f".{n}" for n in lora_layers)
        assert len(lora_layers) == n_linear  # every linear layer of the language model's blocks (lm_head is outside)
        trained = [n for n, p in peft_model.named_parameters() if p.requires_grad]
        assert not any(
            t in n for n in trained for t in ("vision_tower", "vision_model", "visual.blocks", "patch_embed")
        )
        projector = [n for n in trained if "lora_" not in n]
        assert bool(projector) is train_projection
        assert all("modules_to_save" in n for n in projector)


# -- resume -----------------------------------------------------------------------------------------------------------
class _KillAt:
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


def _adapter(out: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter_model.safetensors"))


@pytest.mark.parametrize(("family", "bits"), [("qwen2_vl", 32), ("gemma3", 4)])
def test_resumed_run_ends_with_the_same_weights(
    family: str, bits: int, models: Path, squares: Path, tmp_path: Path
) -> None:
    """6 steps straight vs killed after step 3 (last checkpoint step 2) and resumed: identical adapter tensors and
    losses; dropout, gradient accumulation and gradient checkpointing on. gemma3 at 4 bits is QLoRA on CPU."""
    model_dir = models / family

    def config(out: Path, seed: int = 0) -> TrainConfig:
        return _config(
            model_dir,
            out,
            squares,
            "save_every=2",
            "lora_dropout=0.1",
            "grad_accum_steps=2",
            "gradient_checkpointing=true",
            f"seed={seed}",
            max_steps=6,
            batch_size=5,
            bits=bits,
        )

    def train(cfg: TrainConfig, **kw: Any) -> Path:
        return run_training(cfg, processor=load_processor(model_dir), **kw)

    straight = train(config(tmp_path / "straight"))
    with pytest.raises(KeyboardInterrupt):
        train(config(tmp_path / "resumed"), progress=_KillAt(3))
    assert [p.name for p in list_checkpoints(tmp_path / "resumed")] == ["step-2"]
    resumed = train(config(tmp_path / "resumed"), resume=True)
    a, b = _adapter(straight), _adapter(resumed)
    assert a.keys() == b.keys() and any("lora_" not in k for k in a)  # the projector travels in the adapter
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert [r["loss"] for r in read_train_log(straight)] == [r["loss"] for r in read_train_log(resumed)]
    other = _adapter(train(config(tmp_path / "other", seed=1)))
    assert any(not torch.equal(a[k], other[k]) for k in a)  # negative control: the equality above can fail


# -- outputs: adapter for `mvleval run`, merged export for transformers -----------------------------------------------
def test_adapter_runs_and_export_loads_in_transformers(
    models: Path, squares: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through mvleval.cli.main: train -> run --adapter (the record names the training config's hash) -> export ->
    AutoModelForImageTextToText.from_pretrained gives the logits of the in-memory base+adapter model."""
    from transformers import AutoModelForImageTextToText

    from tests.helpers import cli

    model_dir = models / "gemma3"
    code, out, err = cli(
        capsys,
        "train",
        "--model",
        model_dir,
        "--task",
        squares,
        "--split",
        "train",
        "--out",
        tmp_path / "ft",
        "--max-steps",
        "4",
        "--batch-size",
        "4",
        "--set",
        "lr_lora=1e-2",
        "--set",
        "lr_blip=1e-2",
    )
    assert code == 0, err
    assert "Traceback" not in err
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "train_config.json",
        "train_log.jsonl",
        "loss.png",
    ):
        assert (tmp_path / "ft" / name).is_file(), name
    code, out, err = cli(
        capsys,
        "run",
        "--task",
        squares,
        "--model",
        model_dir,
        "--adapter",
        tmp_path / "ft",
        "--out",
        tmp_path / "runs",
        "--lang",
        "en",
        "--cache",
        "off",
    )
    assert code == 0, err
    record = json.loads(next((tmp_path / "runs").glob("*.json")).read_text())
    import hashlib

    sha = hashlib.sha256((tmp_path / "ft" / "train_config.json").read_bytes()).hexdigest()
    assert record["model"]["details"]["adapter_train_config_sha256"] == sha
    code, out, err = cli(capsys, "export", tmp_path / "ft", "--out", tmp_path / "merged", "--bits", "32")
    assert code == 0, err
    merged = AutoModelForImageTextToText.from_pretrained(tmp_path / "merged")
    from PIL import Image

    from mvleval.backends.hf_vlm import apply_lora

    processor = load_processor(tmp_path / "merged")
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    batch = processor(
        text=[processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)],
        images=[[Image.new("RGB", (32, 32), (200, 20, 20))]],
        return_tensors="pt",
        add_special_tokens=False,
    )
    base = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    with torch.no_grad():
        before = base(**batch).logits
        with_adapter = apply_lora(base, tmp_path / "ft")
        a = merged.eval()(**batch).logits
        b = with_adapter(**batch).logits
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(a, before, atol=1e-4)  # the adapter changed the model (the equality above can fail)
    # 4-bit export: bitsandbytes nf4 with its quantization_config, loadable by transformers and by `mvleval run`
    code, out, err = cli(capsys, "export", tmp_path / "ft", "--out", tmp_path / "nf4", "--bits", "4")
    assert code == 0, err
    assert json.loads((tmp_path / "nf4" / "config.json").read_text())["quantization_config"]["load_in_4bit"] is True
    nf4 = AutoModelForImageTextToText.from_pretrained(tmp_path / "nf4")
    from mvleval.backends.hf.precision import disable_cpu_bf16_repack

    disable_cpu_bf16_repack(nf4)
    with torch.no_grad():
        c = nf4.eval()(**batch).logits
    assert c.shape == a.shape and bool(torch.isfinite(c).all())
    code, out, err = cli(
        capsys,
        "run",
        "--task",
        squares,
        "--model",
        tmp_path / "nf4",
        "--out",
        tmp_path / "runs4",
        "--lang",
        "en",
        "--cache",
        "off",
    )
    assert code == 0, err


# -- learnability: the colour of a square in three languages, through the CLI ----------------------------------------
#: (steps, learning rate) per (family, bits): the fewest steps at which the family learns the colours with a margin on
#: this CPU (measured, issue 26: Qwen2-VL, Idefics3 and LLaVA-NeXT reach 100% exact match after 100 steps at 1e-2,
#: PaliGemma 75% after 150; Gemma 3 and PaliGemma 4-bit keep 300 steps at 3e-3, where Gemma 3 is ~44% and fewer steps
#: or a higher rate leave it at chance). The assertions are the same for every family.
LEARN_SCHEDULE: dict[tuple[str, int], tuple[int, str]] = {
    ("qwen2_vl", 32): (100, "1e-2"),
    ("paligemma", 32): (150, "1e-2"),
    ("gemma3", 32): (300, "3e-3"),
    ("idefics3", 32): (100, "1e-2"),
    ("llava_next", 32): (100, "1e-2"),
    ("paligemma", 4): (300, "3e-3"),
}


@pytest.mark.slow
@pytest.mark.parametrize(("family", "bits"), list(LEARN_SCHEDULE))
def test_training_teaches_what_the_image_shows(
    family: str, bits: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mvleval train` (the family's LEARN_SCHEDULE steps) then `mvleval run` on the held-apart test rows: exact match
    far above the untrained model's and above chance (25%). LLaVA-NeXT through the installed console script, the
    others through its `main()` in-process (tests.helpers.run_cli: the script's exit code and output, without a fresh
    interpreter per command); Qwen2-VL with the image-only processor patched in (its real processor needs
    torchvision, absent here)."""
    from mvleval.testing.squares import sharpen_head
    from tests.helpers import cli, console_script, run_cli

    steps, lr = LEARN_SCHEDULE[(family, bits)]

    bench = write_squares_benchmark(tmp_path / "squares", n_train=48, n_test=16)
    base = build_tiny_vlm(family, tmp_path / "base", hidden=64)
    sharpen_head(base, 4.0)
    train_args = [
        "train",
        "--model",
        base,
        "--task",
        bench,
        "--split",
        "train",
        "--out",
        tmp_path / "ft",
        "--max-steps",
        str(steps),
        "--batch-size",
        "8",
        "--set",
        f"lr_lora={lr}",
        "--set",
        f"lr_blip={lr}",
        "--set",
        "save_every=1000",
        "--bits",
        str(bits),
    ]
    run_args = ["run", "--task", bench, "--model", base, "--cache", "off"]
    if family == "qwen2_vl":
        from mvleval.testing.tiny_vlm import load_processor as image_only

        monkeypatch.setattr("mvleval.backends.hf.processor.load_processor", lambda d, f, t=False: image_only(d, f))
        monkeypatch.setattr("mvleval.backends.hf_vlm.load_processor", lambda d, f, t=False: image_only(d, f))

        def mvleval(*args: object) -> tuple[int, str]:
            code, out, err = cli(capsys, *args)
            return code, out + err
    else:

        def mvleval(*args: object) -> tuple[int, str]:
            # LLaVA-NeXT through the installed console script (`mvleval train` and `run --adapter` in a real
            # process, once), the others through its main() in-process
            done = (console_script if family == "llava_next" else run_cli)(*args)
            return done.returncode, done.stdout + done.stderr

    scores = {}
    for name, extra in (("untrained", []), ("trained", ["--adapter", tmp_path / "ft"])):
        if name == "trained":
            code, text = mvleval(*train_args)
            assert code == 0, text
            assert "Traceback" not in text
        code, text = mvleval(*run_args, *extra, "--out", tmp_path / name)
        assert code == 0, text
        record = json.loads(next((tmp_path / name).glob("squares-*.json")).read_text())
        scores[name] = record["scores"]["exact_match"]["mean"]
        assert set(record["scores"]["exact_match"]["per_lang"]) == {"en", "de", "es"}
    print(family, bits, scores)
    assert scores["untrained"] <= 0.1
    assert scores["trained"] >= 0.4 and scores["trained"] >= scores["untrained"] + 0.3


def test_a_folder_that_is_no_vision_llm_is_one_clear_error(
    squares: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mvleval train --model` on a text-only checkpoint: exit 2, one paragraph naming config.json, nothing written."""
    from tests.helpers import cli

    model = tmp_path / "bert"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "bert"}), encoding="utf-8")
    (model / "model.safetensors").write_bytes(b"")
    code, out, err = cli(
        capsys, "train", "--model", model, "--task", squares, "--split", "train", "--out", tmp_path / "ft"
    )
    text = " ".join(err.split())
    assert code == 2 and "Traceback" not in err
    assert "model_type 'bert'" in text and "config.json" in text and "vision-LLM" in text
    assert not (tmp_path / "ft").exists()


def test_a_family_without_template_or_suffix_is_refused(squares: Path, tmp_path: Path) -> None:
    """InstructBLIP's processor has neither a chat template nor PaliGemma's answer suffix: the prompt/answer boundary
    cannot be taken from the family's own code, so training is refused with a message, not guessed."""
    from mvleval.finetune.generic import render_training_texts

    processor = load_processor(build_tiny_vlm("instructblip", tmp_path / "ib"))
    with pytest.raises(MvlevalError, match="no chat template and no answer suffix"):
        render_training_texts(processor, _examples(squares)[:1], [processor.tokenizer.eos_token_id])


# -- precision of a QLoRA run ----------------------------------------------------------------------------------------
def test_4bit_training_keeps_the_unquantised_parts_as_the_16bit_run_does(models: Path, tmp_path: Path) -> None:
    """--bits 4 on CPU: the vision tower, projector, embeddings and lm_head load in bf16 as at --bits 16 (they were
    fp32, which made a 4-bit run's peak memory exceed the 16-bit run's), and nf4 is dequantised to bf16; a narrower
    vision tower than language model (build_tiny_vlm's vision_layers) builds and trains."""
    import bitsandbytes as bnb

    from mvleval.finetune.generic import load_generic_model
    from mvleval.testing.tiny_vlm import build_tiny_vlm

    model_dir = build_tiny_vlm("gemma3", tmp_path / "gemma3", hidden=64, layers=4, vision_layers=2)
    dtypes = {}
    for bits in (16, 4):
        model, _, _ = load_generic_model(str(model_dir), bits, "cpu", load_processor(model_dir))
        quantised = {n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
        dtypes[bits] = {n: p.dtype for n, p in model.named_parameters() if n.rsplit(".", 1)[0] not in quantised}
        if bits == 4:
            assert quantised and {m.compute_dtype for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)} == {
                torch.bfloat16
            }
    config = model.config
    assert (config.vision_config.num_hidden_layers, config.text_config.num_hidden_layers) == (2, 4)
    unquantised = {n: d for n, d in dtypes[16].items() if n in dtypes[4]}
    assert any(".vision_tower." in f".{n}" for n in unquantised) and any("lm_head" in n for n in unquantised)
    assert dtypes[4] == unquantised and set(unquantised.values()) == {torch.bfloat16}
