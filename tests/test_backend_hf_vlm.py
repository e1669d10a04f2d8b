"""The generic Hugging Face backend on a tiny real model of every family it must serve (built from config, no download):
batch-size-invariant answers (greedy and beam search), one and two images, 4-bit on CPU, a LoRA adapter, the record."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from mvleval.backends import BackendOptions, GenerationRequest
from mvleval.backends.hf_vlm import HfVlmBackend, side_by_side
from mvleval.benchmarks.task import GenerationSettings
from mvleval.testing.tiny_vlm import FAMILIES, load_processor, multi_image, needs_torchvision
from mvleval.util.errors import MvlevalError
from tests.helpers import tiny_model

GREEDY = GenerationSettings(num_beams=1, max_new_tokens=6, min_new_tokens=1)
BEAMS = GenerationSettings(num_beams=3, max_new_tokens=6, min_new_tokens=1, length_penalty=-1.0)
PROMPTS = (
    "Question: What colour are the shapes? Short answer in English:",
    "Caption in German: ",
    "Welche Farbe haben die Formen?",
    "这些形状是什么颜色的？",
    "Какого цвета фигуры?",
    "hi",
    'Is it guaranteed true that "a red circle"? Yes, no, or maybe? Answer in English:',
)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Seven different JPEGs of different sizes (the processors resize them)."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("hf-images")
    paths = []
    for i in range(7):
        rng = np.random.default_rng(i)
        path = root / f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (40 + 8 * i, 56 - 2 * i, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _checkpoint(family: str, root: Path) -> Path:
    # built once per test session, shared with the other modules that ask for the same family (tests/helpers.py)
    return tiny_model("vlm", family)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-vlms")


def _load(family: str, root: Path, **options: object) -> HfVlmBackend:
    model_dir = _checkpoint(family, root)
    # transformers 5.x builds Qwen2-VL's, Qwen2.5-VL's and SmolVLM's processor only with torchvision (not installable
    # next to the CPU torch here): their generation path is tested with the real processor class minus its video part
    processor = load_processor(model_dir, family) if needs_torchvision(family) else None
    return HfVlmBackend.load(BackendOptions(model=str(model_dir), **options), processor=processor, prefetch_workers=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("settings", [GREEDY, BEAMS], ids=["greedy", "beams3"])
def test_batched_equals_single(
    family: str, settings: GenerationSettings, checkpoints: Path, images: list[Path]
) -> None:
    backend = _load(family, checkpoints)
    requests = [GenerationRequest(p, (images[i],)) for i, p in enumerate(PROMPTS)]
    batched = backend.generate(requests, settings)  # batch size 7
    single = [backend.generate([r], settings)[0] for r in requests]
    assert batched == single
    assert backend.generate(requests[:4], settings) + backend.generate(requests[4:], settings) == single  # 4 + 3
    # the answers depend on the input (else the check above proves little): at least 3 distinct of 7
    assert len(set(batched)) >= 3, batched
    ids = backend.generate_ids(requests[:2], settings)
    assert all(len(row) <= settings.max_new_tokens + 1 for row in ids)  # the prompt was sliced off


@pytest.mark.parametrize("family", [f for f in FAMILIES if multi_image(f)])
def test_two_images_in_one_turn(family: str, checkpoints: Path, images: list[Path]) -> None:
    backend = _load(family, checkpoints)
    backend.check_settings(GREEDY, 2)
    requests = [GenerationRequest(p, (images[i], images[(i + 3) % 7])) for i, p in enumerate(PROMPTS)]
    batched = backend.generate(requests, GREEDY)
    assert batched == [backend.generate([r], GREEDY)[0] for r in requests]
    # the second image reaches the model: swapping it changes the first-step input
    a = backend.build_inputs([GenerationRequest("x", (images[0], images[1]))])
    b = backend.build_inputs([GenerationRequest("x", (images[0], images[2]))])
    key = next(k for k in a if "pixel" in k)
    assert a[key].shape == b[key].shape and not bool((a[key] == b[key]).all())


def test_one_image_family_refuses_two_images_unless_side_by_side(checkpoints: Path, images: list[Path]) -> None:
    backend = _load("instructblip", checkpoints)
    with pytest.raises(MvlevalError, match="side-by-side"):
        backend.check_settings(GREEDY, 2)
    pasted = _load("instructblip", checkpoints, image_handling="side-by-side")
    pasted.check_settings(GREEDY, 2)
    requests = [GenerationRequest(p, (images[i], images[(i + 1) % 7])) for i, p in enumerate(PROMPTS)]
    assert pasted.generate(requests, GREEDY) == [pasted.generate([r], GREEDY)[0] for r in requests]
    assert pasted.info(GREEDY).image_handling == "side-by-side"


def test_side_by_side_pastes_left_to_right() -> None:
    from PIL import Image

    left, right = Image.new("RGB", (10, 20), (255, 0, 0)), Image.new("RGB", (5, 10), (0, 0, 255))
    joined = side_by_side([left, right])
    assert joined.size == (20, 20)
    assert joined.getpixel((2, 2)) == (255, 0, 0) and joined.getpixel((15, 15)) == (0, 0, 255)


@pytest.mark.parametrize("family", FAMILIES)
def test_four_bit_on_cpu(family: str, checkpoints: Path, images: list[Path]) -> None:
    pytest.importorskip("bitsandbytes")
    backend = _load(family, checkpoints, bits=4)
    info = backend.info(GREEDY)
    assert info.bits == 4 and "nf4" in (info.quantization or "")
    import bitsandbytes as bnb

    quantised = [n for n, m in backend.model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantised and not any(part in n for n in quantised for part in ("vision", "visual", "projector", "lm_head"))
    requests = [GenerationRequest(p, (images[i],)) for i, p in enumerate(PROMPTS)]
    assert backend.generate(requests, GREEDY) == [backend.generate([r], GREEDY)[0] for r in requests]


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_adapter_changes_answers_and_loads_exactly(
    family: str, checkpoints: Path, images: list[Path], tmp_path: Path
) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    model_dir = _checkpoint(family, checkpoints)
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    # the language model's attention projections, whatever the family calls its text model
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=r".*(language_model|text_model).*\.(q_proj|v_proj|q|v)",
        init_lora_weights=False,
    )
    peft_model = get_peft_model(model, config)
    adapter = tmp_path / "lora"
    peft_model.save_pretrained(adapter)

    plain = _load(family, checkpoints)
    adapted = _load(family, checkpoints, adapter=str(adapter))
    requests = [GenerationRequest(p, (images[i],)) for i, p in enumerate(PROMPTS)]
    with_adapter = adapted.generate(requests, GREEDY)
    assert with_adapter != plain.generate(requests, GREEDY)
    assert with_adapter == [adapted.generate([r], GREEDY)[0] for r in requests]
    # the same as the in-memory peft model the adapter was saved from
    inputs = adapted.build_inputs(requests[:1])
    peft_model.eval()
    with torch.inference_mode():
        reference = peft_model.generate(
            **inputs,
            num_beams=1,
            max_new_tokens=6,
            min_new_tokens=1,
            do_sample=False,
            pad_token_id=adapted.pad_token_id,
        )
    assert adapted.generate_ids(requests[:1], GREEDY)[0] == reference[0, inputs["input_ids"].shape[1] :].tolist()
    assert (
        adapted.info(GREEDY).adapter == str(adapter)
        and adapted.info(GREEDY).fingerprint != plain.info(GREEDY).fingerprint
    )


def test_info_says_what_ran(checkpoints: Path) -> None:
    info = _load("idefics3", checkpoints).info(BEAMS)
    assert (info.backend, info.family, info.model_class) == ("hf", "idefics3", "Idefics3ForConditionalGeneration")
    assert info.kind == "decoder-only" and info.bits == 32 and info.dtype == "float32"
    assert info.chat_template_sha and info.processor_sha and info.image_handling == "native"
    assert info.generation == BEAMS.to_dict() and info.num_query_tokens is None
    no_template = _load("paligemma", checkpoints).info(GREEDY)
    assert no_template.chat_template_sha is None and no_template.processor_class == "PaliGemmaProcessor"


def test_chat_template_places_the_prompt_in_a_user_turn(checkpoints: Path) -> None:
    backend = _load("qwen2_5_vl", checkpoints)
    text = backend.render_prompt("Caption in German: ", 2)
    assert text.count("<|image_pad|>") == 2 and "Caption in German: " in text
    assert text.index("<|image_pad|>") < text.index("Caption in German")  # the images where Qwen's template puts them
    assert text.rstrip().endswith("assistant")  # the generation prompt
    assert _load("paligemma", checkpoints).render_prompt("Caption in German: ", 1) == "Caption in German: "


def test_no_double_bos(checkpoints: Path, images: list[Path]) -> None:
    """Gemma 3's template writes BOS itself; the tokenizer must not add a second one."""
    backend = _load("gemma3", checkpoints)
    ids = backend.build_inputs([GenerationRequest("hi", (images[0],))])["input_ids"][0].tolist()
    bos = backend.tokenizer.bos_token_id
    assert ids.count(bos) == 1


def test_remote_code_is_refused_without_the_flag(checkpoints: Path, tmp_path: Path) -> None:
    import json
    import shutil

    model_dir = tmp_path / "remote"
    shutil.copytree(_checkpoint("llava", checkpoints), model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageTextToText": "modeling_custom.CustomModel"}
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(MvlevalError, match="--trust-remote-code"):
        HfVlmBackend.load(BackendOptions(model=str(model_dir)))


def test_not_a_vision_llm(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(MvlevalError, match="does not load as a vision-LLM"):
        HfVlmBackend.load(BackendOptions(model=str(tmp_path)))


def test_max_pixels_sets_qwen_pixel_budget(checkpoints: Path, tmp_path: Path) -> None:
    """-M max_pixels (HfVlmOptions.max_pixels): fewer image patches for Qwen2-VL-style processors, said in the record's
    details and in the response cache's key (the answers depend on it)."""
    import numpy as np
    from PIL import Image

    from mvleval.backends.hf_vlm import HfVlmOptions

    image = tmp_path / "big.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (224, 280, 3), dtype=np.uint8)).save(image)
    requests = [GenerationRequest("hi", (image,))]
    plain = _load("qwen2_5_vl", checkpoints)
    budget = 1024  # the tiny processor's own: 256 to 2304 pixels
    limited = _load("qwen2_5_vl", checkpoints, model_options=HfVlmOptions(max_pixels=budget))
    patch = plain.processor.image_processor.patch_size**2

    def pixels(backend: HfVlmBackend) -> int:
        _, height, width = backend.build_inputs(requests)["image_grid_thw"][0].tolist()
        return int(height * width * patch)

    assert pixels(limited) <= budget < pixels(plain)
    assert limited.info(GREEDY).details["max_pixels"] == budget and "max_pixels" not in plain.info(GREEDY).details
    assert limited.cache_identity(GREEDY) != plain.cache_identity(GREEDY)
    assert len(limited.generate(requests, GREEDY)) == 1


@pytest.mark.parametrize(
    ("family", "max_pixels", "message"),
    [("llava", 50_000, "applies to Qwen2-VL and Qwen2.5-VL checkpoints"), ("qwen2_5_vl", 100, "below the processor's")],
)
def test_max_pixels_refusals(checkpoints: Path, family: str, max_pixels: int, message: str) -> None:
    from mvleval.backends.hf_vlm import HfVlmOptions

    with pytest.raises(MvlevalError, match=message):
        _load(family, checkpoints, model_options=HfVlmOptions(max_pixels=max_pixels))


@pytest.mark.parametrize(("value", "message"), [("0", "greater than 0"), ("many", "valid integer")])
def test_max_pixels_bad_value_through_the_cli(
    capsys: pytest.CaptureFixture[str], checkpoints: Path, tmp_path: Path, value: str, message: str
) -> None:
    from tests.helpers import cli

    model_dir = _checkpoint("llava", checkpoints)
    out = tmp_path / "out"
    code, _, err = cli(capsys, "run", "--task", "xgqa", "--model", model_dir, "-M", f"max_pixels={value}", "--data-root", tmp_path, "--out", out)  # fmt: skip
    text = " ".join(err.split())
    assert code == 2 and "Traceback" not in err and f"-M max_pixels={value}: " in text and message in text, err
    assert not out.exists()
