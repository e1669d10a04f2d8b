"""A benchmark folder whose answer is learnable from the image: the colour of a square, asked in three languages.

Used by the fine-tuning tests and bench/bench_train.py to prove that `mvleval train` teaches a tiny model of any family
what the image shows: an untrained model scores ~0, a trained one far above chance (1 in 4).
"""

from __future__ import annotations

import random
from pathlib import Path

from mvleval.util.jsonl import jsonl_text

#: colour name per language, and the RGB it is drawn in (each image jitters it)
COLOURS: dict[str, dict[str, str]] = {
    "red": {"en": "red", "de": "rot", "es": "rojo"},
    "green": {"en": "green", "de": "grün", "es": "verde"},
    "blue": {"en": "blue", "de": "blau", "es": "azul"},
    "yellow": {"en": "yellow", "de": "gelb", "es": "amarillo"},
}
_RGB = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 50, 220), "yellow": (235, 220, 30)}
LANGUAGES = ("en", "de", "es")
QUESTIONS = {
    "en": "What colour is the square?",
    "de": "Welche Farbe hat das Quadrat?",
    "es": "¿De qué color es el cuadrado?",
}

HEADER = """version: 1
description: The colour of a square, in English, German and Spanish (learnable from the image)
kind: vqa
prompt: "{question} Answer in {language}:"
chat_prompt: "{question} Answer with one word in {language}."
metrics: [exact_match]
generation: {num_beams: 1, max_new_tokens: 6}
default_split: test
licence: CC0 (generated)
"""


def write_squares_benchmark(
    folder: Path, *, n_train: int = 48, n_test: int = 16, seed: int = 0, size: int = 32
) -> Path:
    """Write benchmark.yaml, data.jsonl and images/ (train and test images distinct); return `folder`.

    Each image is a square of one of four colours (shade jittered) at a random place and size on a grey background;
    every image is asked about in the three languages.
    """
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "benchmark.yaml").write_text(HEADER, encoding="utf-8")
    rows = []
    names = sorted(COLOURS)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            colour = names[i % len(names)]
            rgb = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in _RGB[colour])
            side = rng.randint(size // 2, size - 4)
            x, y = rng.randint(0, size - side), rng.randint(0, size - side)
            img = Image.new("RGB", (size, size), (128, 128, 128))
            ImageDraw.Draw(img).rectangle((x, y, x + side - 1, y + side - 1), fill=rgb)
            name = f"{split}_{i}.png"
            img.save(folder / "images" / name)
            for lang in LANGUAGES:
                rows.append(
                    {
                        "id": f"{split}_{i}",
                        "lang": lang,
                        "split": split,
                        "images": [name],
                        "question": QUESTIONS[lang],
                        "answers": [COLOURS[colour][lang]],
                    }
                )
    (folder / "data.jsonl").write_text(jsonl_text(rows), encoding="utf-8")
    return folder


def sharpen_head(model_dir: Path, factor: float) -> None:
    """Multiply a tiny checkpoint's lm_head by `factor`, in place.

    A random tiny model's frozen output head (hidden 32-64, RMS-normed input) cannot give any token much more than
    a few percent of the probability, whatever LoRA does below it; published checkpoints' heads can. Learnability
    tests sharpen the head of the untrained base once, so that LoRA on the language model can express a confident
    answer; the untrained model stays at ~0 (tests/test_finetune_generic.py measures both).
    """
    from safetensors.torch import load_file, save_file

    path = Path(model_dir) / "model.safetensors"
    tensors = load_file(str(path))
    heads = [k for k in tensors if k.endswith("lm_head.weight")]
    if not heads:
        raise ValueError(f"{path} has no lm_head.weight")
    for key in heads:
        tensors[key] = (tensors[key] * factor).contiguous()
    save_file(tensors, str(path), metadata={"format": "pt"})
