"""The built-in demo: a synthetic multilingual benchmark drawn offline, a tiny model, and a full evaluation run."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mvleval.record import RunRecord
    from mvleval.runner import Progress

COLOURS = {"red": (220, 40, 40), "blue": (40, 70, 220), "green": (40, 170, 60), "yellow": (235, 210, 40)}
SHAPES = ("circle", "square", "triangle")
COUNTS = (1, 2, 3)
#: Demo languages: a subset of xGQA's, covering Latin, Cyrillic and Han scripts.
LANGUAGES = ("en", "de", "id", "ru", "zh")

# Human translations of the three question types (answers stay English, as in xGQA).
QUESTIONS: dict[str, dict[str, str]] = {
    "colour": {
        "en": "What colour are the shapes?",
        "de": "Welche Farbe haben die Formen?",
        "id": "Apa warna bentuk-bentuk itu?",
        "ru": "Какого цвета фигуры?",
        "zh": "这些形状是什么颜色的？",
    },
    "count": {
        "en": "How many shapes are there?",
        "de": "Wie viele Formen gibt es?",
        "id": "Ada berapa bentuk?",
        "ru": "Сколько здесь фигур?",
        "zh": "有几个形状？",
    },
    "shape": {
        "en": "Which shape is shown?",
        "de": "Welche Form ist zu sehen?",
        "id": "Bentuk apa yang ditampilkan?",
        "ru": "Какая фигура изображена?",
        "zh": "图中是什么形状？",
    },
}


@dataclass(frozen=True)
class Scene:
    """One synthetic image: `count` shapes of one kind and one colour."""

    image_id: str
    colour: str
    shape: str
    count: int

    def answer(self, question: str) -> str:
        return {"colour": self.colour, "count": str(self.count), "shape": self.shape}[question]


def make_scenes(n: int, seed: int) -> list[Scene]:
    """Deterministic scenes covering every (colour, shape, count) combination as evenly as possible."""
    rng = random.Random(seed)
    combos = [(c, s, k) for c in COLOURS for s in SHAPES for k in COUNTS]
    scenes = []
    for i in range(n):
        if i % len(combos) == 0:
            rng.shuffle(combos)
        c, s, k = combos[i % len(combos)]
        scenes.append(Scene(image_id=f"demo{seed}_{i:04d}", colour=c, shape=s, count=k))
    return scenes


def draw_scene(scene: Scene, path: Path, seed: int, size: int = 96) -> None:
    """Draw the scene as a JPEG: non-overlapping shapes on a light background with slight noise."""
    from PIL import Image, ImageDraw

    rng = random.Random(f"{seed}-{scene.image_id}")
    img = Image.new("RGB", (size, size), tuple(rng.randint(225, 250) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    cell = size // 3
    cells = rng.sample([(x, y) for x in range(3) for y in range(3)], scene.count)
    for cx, cy in cells:
        r = rng.randint(cell // 3, cell // 2 - 2)
        x0, y0 = cx * cell + cell // 2 - r, cy * cell + cell // 2 - r
        box = (x0, y0, x0 + 2 * r, y0 + 2 * r)
        colour = COLOURS[scene.colour]
        if scene.shape == "circle":
            draw.ellipse(box, fill=colour)
        elif scene.shape == "square":
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(x0 + r, y0), (x0, y0 + 2 * r), (x0 + 2 * r, y0 + 2 * r)], fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="JPEG", quality=95)


def write_xgqa(data_root: Path, image_root: Path, scenes_by_split: dict[str, list[Scene]]) -> None:
    """Write xGQA-format question files (a dict keyed by question id) for every demo language and split."""
    for split, scenes in scenes_by_split.items():
        for lang in LANGUAGES:
            questions = {}
            for scene in scenes:
                for qtype in QUESTIONS:
                    qid = f"{scene.image_id}_{qtype}"
                    questions[qid] = {
                        "imageId": scene.image_id,
                        "question": QUESTIONS[qtype][lang],
                        "answer": scene.answer(qtype),
                        "fullAnswer": "",
                        "types": {"structural": "query", "semantic": "attr", "detailed": qtype},
                    }
            path = data_root / "xgqa" / "data" / "few_shot" / lang / f"{split}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(questions, ensure_ascii=False, indent=1), encoding="utf-8")


def build_demo_data(root: Path, seed: int = 0, n_train: int = 72, n_test: int = 24) -> tuple[Path, Path]:
    """Draw the synthetic benchmark under root; returns (data_root, image_root). Idempotent for a seed."""
    data_root = root / "data"
    image_root = data_root / "images"
    scenes = make_scenes(n_train + n_test, seed)
    splits = {f"train_{n_train}": scenes[:n_train], "test": scenes[n_train:]}
    for scene in scenes:
        path = image_root / "gqa" / f"{scene.image_id}.jpg"
        if not path.exists():
            draw_scene(scene, path, seed)
    write_xgqa(data_root, image_root, splits)
    return data_root, image_root


def run_demo(
    out: Path,
    *,
    seed: int = 0,
    progress: Progress | None = None,
    log: Callable[[str], None] = print,
) -> list[tuple[RunRecord, Path]]:
    """Build data and a tiny checkpoint (cached under `out`), evaluate xGQA on the demo languages; return the records."""
    from mvleval.factory import build_tiny_checkpoint
    from mvleval.runner import RunOptions, evaluate

    data_root, image_root = build_demo_data(out, seed=seed)
    model_dir = out / "models" / f"tiny-mt5-seed{seed}"
    if not (model_dir / "config.json").is_file():
        log(f"building a tiny mT5-based mBLIP-shaped checkpoint in {model_dir}")
        build_tiny_checkpoint(model_dir, "mt5", seed=seed)
    options = RunOptions(
        task="xgqa",
        model=str(model_dir),
        data_root=data_root,
        image_root=image_root,
        languages=LANGUAGES,
        split="test",
        batch_size=16,
        out_dir=out / "runs",
        seed=seed,
        command=("mvleval", "demo"),
    )
    # A repeated demo replaces its previous run of the same configuration.
    from mvleval.runner import RunPaths, prepare, run_identity, run_name

    prepared = prepare(options)
    paths = RunPaths.for_name(options.out_dir, run_name(options, run_identity(options, prepared)))
    for p in (paths.partial, paths.manifest):
        p.unlink(missing_ok=True)
    return [evaluate(options, progress=progress)]
