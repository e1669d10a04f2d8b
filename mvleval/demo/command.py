"""The built-in demo: a synthetic multilingual benchmark drawn offline, a tiny model, and a full evaluation run."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mvleval.util.jsonl import jsonl_text

if TYPE_CHECKING:
    from mvleval.record.schema import RunRecord
    from mvleval.run.generate import Progress

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


# -- captions (XM3600 / xFlickrCo formats): grammatical descriptions written per language ---------------------------
_NUM = {
    "en": ("one", "two", "three"),
    "de": ("ein", "zwei", "drei"),
    "id": ("satu", "dua", "tiga"),
    "ru": ("один", "два", "три"),
    "zh": ("一个", "两个", "三个"),
}
_COLOUR = {
    "en": {"red": "red", "blue": "blue", "green": "green", "yellow": "yellow"},
    "id": {"red": "merah", "blue": "biru", "green": "hijau", "yellow": "kuning"},
    "zh": {"red": "红色的", "blue": "蓝色的", "green": "绿色的", "yellow": "黄色的"},
}
_SHAPE: dict[str, dict[str, str | tuple[str, str]]] = {  # English: (singular, plural)
    "en": {"circle": ("circle", "circles"), "square": ("square", "squares"), "triangle": ("triangle", "triangles")},
    "id": {"circle": "lingkaran", "square": "persegi", "triangle": "segitiga"},
    "zh": {"circle": "圆形", "square": "正方形", "triangle": "三角形"},
}
# German: "ein roter Kreis" (masc.), "ein rotes Quadrat/Dreieck" (neut.), plural "zwei rote Kreise/Quadrate/Dreiecke".
_DE_STEM = {"red": "rot", "blue": "blau", "green": "grün", "yellow": "gelb"}
_DE_SHAPE = {
    "circle": ("Kreis", "Kreise", "er"),
    "square": ("Quadrat", "Quadrate", "es"),
    "triangle": ("Dreieck", "Dreiecke", "es"),
}
# Russian (all three nouns masculine): "один красный круг", "два красных круга".
_RU_COLOUR = {
    "red": ("красный", "красных"),
    "blue": ("синий", "синих"),
    "green": ("зелёный", "зелёных"),
    "yellow": ("жёлтый", "жёлтых"),
}
_RU_SHAPE = {
    "circle": ("круг", "круга"),
    "square": ("квадрат", "квадрата"),
    "triangle": ("треугольник", "треугольника"),
}


def caption(scene: Scene, lang: str) -> str:
    """A short, grammatical description of the scene in `lang` (en, de, id, ru, zh)."""
    k = scene.count - 1
    if lang == "en":
        return f"{_NUM['en'][k]} {scene.colour} {_SHAPE['en'][scene.shape][0 if k == 0 else 1]}"
    if lang == "de":
        sing, plural, ending = _DE_SHAPE[scene.shape]
        stem = _DE_STEM[scene.colour]
        return f"ein {stem}{ending} {sing}" if k == 0 else f"{_NUM['de'][k]} {stem}e {plural}"
    if lang == "id":
        return f"{_NUM['id'][k]} {_SHAPE['id'][scene.shape]} {_COLOUR['id'][scene.colour]}"
    if lang == "ru":
        colour = _RU_COLOUR[scene.colour][0 if k == 0 else 1]
        return f"{_NUM['ru'][k]} {colour} {_RU_SHAPE[scene.shape][0 if k == 0 else 1]}"
    if lang == "zh":
        return f"{_NUM['zh'][k]}{_COLOUR['zh'][scene.colour]}{_SHAPE['zh'][scene.shape]}"
    raise ValueError(f"no demo captions for {lang}")


# -- MaRVL: statements about two images --------------------------------------------------------------------------------
MARVL_LANGUAGES = ("id", "zh")
_MARVL_STATEMENT = {"id": "Kedua gambar berisi {shape}.", "zh": "两张图片里都有{shape}。"}

# -- MaXM: questions in the demo languages MaXM has, answered in the question's language ---------------------------------
MAXM_LANGUAGES = ("en", "zh")
_MAXM_COLOUR = {"en": _COLOUR["en"], "zh": {"red": "红色", "blue": "蓝色", "green": "绿色", "yellow": "黄色"}}

# -- XVNLI: hypotheses about one image -----------------------------------------------------------------------------------
XVNLI_LANGUAGES = ("en", "es", "fr", "ru")
_XVNLI_COLOUR_HYP = {
    "en": (
        "There is something {c} in the picture.",
        {"red": "red", "blue": "blue", "green": "green", "yellow": "yellow"},
    ),
    "es": ("Hay algo {c} en la imagen.", {"red": "rojo", "blue": "azul", "green": "verde", "yellow": "amarillo"}),
    "fr": (
        "Il y a quelque chose de {c} sur l'image.",
        {"red": "rouge", "blue": "bleu", "green": "vert", "yellow": "jaune"},
    ),
    "ru": ("На картинке есть что-то {c}.", {"red": "красное", "blue": "синее", "green": "зелёное", "yellow": "жёлтое"}),
}
_XVNLI_NEUTRAL = {
    "en": "The picture was made yesterday.",
    "es": "La imagen se hizo ayer.",
    "fr": "L'image a été faite hier.",
    "ru": "Картинку сделали вчера.",
}


def _write_jsonl(path: Path, rows: Sequence[Mapping[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(jsonl_text(rows), encoding="utf-8")


def _draw_all(scenes: list[Scene], folder: Path, seed: int) -> None:
    for scene in scenes:
        path = folder / f"{scene.image_id}.jpg"
        if not path.exists():
            draw_scene(scene, path, seed)


def build_demo_data(root: Path, seed: int = 0, n_train: int = 72, n_test: int = 24) -> tuple[Path, Path]:
    """Draw the synthetic benchmark in every task's native format under root; returns (data_root, image_root).

    Splits: `train_<n_train>` (xGQA, xFlickrCo, MaRVL, XVNLI) for fine-tuning and `test` (all tasks) held out, on
    disjoint images. MaXM (test only) asks about the XM3600 images; the demo run itself (DEMO_LANGUAGES) leaves it out,
    its files are there for `--task all`. Idempotent for a seed.
    """
    data_root = root / "data"
    image_root = data_root / "images"
    iglue = data_root / "iglue" / "datasets"
    rng = random.Random(seed)

    # xGQA
    scenes = make_scenes(n_train + n_test, seed)
    _draw_all(scenes, image_root / "gqa", seed)
    write_xgqa(data_root, image_root, {f"train_{n_train}": scenes[:n_train], "test": scenes[n_train:]})

    # xFlickrCo (captions; English test in Flickr30k's test_ann format with the same fields)
    cap_scenes = [
        Scene(f"flickr{seed}_{i:04d}", s.colour, s.shape, s.count)
        for i, s in enumerate(make_scenes(n_train + n_test, seed + 1))
    ]
    _draw_all(cap_scenes, image_root / "flickr30k", seed)
    for split, part in ((f"train_{n_train}", cap_scenes[:n_train]), ("test", cap_scenes[n_train:])):
        for lang in LANGUAGES:
            rows: list[dict[str, object]] = [
                {"sentences": [caption(s, lang)], "id": s.image_id, "img_path": f"{s.image_id}.jpg"} for s in part
            ]
            if lang == "en" and split == "test":
                _write_jsonl(iglue / "flickr30k" / "annotations" / "test_ann.jsonl", rows)
            else:
                _write_jsonl(iglue / "xFlickrCO" / "annotations" / lang / f"{split}.jsonl", rows)

    # XM3600 (test only): one line per image with every language's captions
    xm_scenes = make_scenes(n_test, seed + 2)
    xm_rows = []
    for i, s in enumerate(xm_scenes):
        key = f"{seed:08x}{i:08x}"
        xm_rows.append(
            {
                "image/key": key,
                "image/locale": "en",
                **{
                    lang: {
                        "caption": [caption(s, lang)],
                        "caption/tokenized": [caption(s, lang)],
                        "caption/tokenized/lowercase": [caption(s, lang).lower()],
                    }
                    for lang in LANGUAGES
                },
            }
        )
        path = image_root / "xm3600" / f"{key}.jpg"
        if not path.exists():
            draw_scene(s, path, seed)
    _write_jsonl(data_root / "xm3600" / "captions.jsonl", xm_rows)

    # MaRVL: two images, "both images contain <shape>", true for half the pairs
    for lang in MARVL_LANGUAGES:
        for split, n in ((f"train_{n_train}", n_train), ("test", n_test)):
            rows = []
            for i in range(n):
                shape = SHAPES[i % len(SHAPES)]
                truth = i % 2 == 0
                other = SHAPES[(i + 1) % len(SHAPES)]
                left = Scene(
                    f"marvl{seed}_{lang}_{split}_{i:04d}_l", rng.choice(list(COLOURS)), shape, rng.choice(COUNTS)
                )
                right = Scene(
                    f"marvl{seed}_{lang}_{split}_{i:04d}_r",
                    rng.choice(list(COLOURS)),
                    shape if truth else other,
                    rng.choice(COUNTS),
                )
                if rng.random() < 0.5:
                    left, right = right, left
                concept = "1-形状" if lang == "zh" else "1-bentuk"
                for sc in (left, right):
                    draw_scene(sc, image_root / "marvl" / lang / "images" / concept / f"{sc.image_id}.jpg", seed)
                shape_word = _SHAPE[lang][shape]
                rows.append(
                    {
                        "concept": concept,
                        "language": lang,
                        "caption": _MARVL_STATEMENT[lang].format(shape=shape_word),
                        "left_img": f"{left.image_id}.jpg",
                        "right_img": f"{right.image_id}.jpg",
                        "annotator_info": {},
                        "chapter": "demo",
                        "id": f"{lang}-{split}-{i}",
                        "label": truth,
                    }
                )
            if split == "test":
                _write_jsonl(iglue / "marvl" / "zero_shot" / "annotations" / f"marvl-{lang}.jsonl", rows)
            else:
                _write_jsonl(iglue / "marvl" / "few_shot" / "annotations" / f"marvl-{lang}_train{n}.jsonl", rows)

    # XVNLI: hypotheses over the xFlickrCo images: entailment / contradiction by colour, neutral by a fixed sentence
    for split, part in ((f"train_{n_train}", cap_scenes[:n_train]), ("test", cap_scenes[n_train:])):
        for lang in XVNLI_LANGUAGES:
            template, colours = _XVNLI_COLOUR_HYP[lang]
            rows = []
            for i, s in enumerate(part):
                kind = ("entailment", "contradiction", "neutral")[i % 3]
                if kind == "entailment":
                    hyp = template.format(c=colours[s.colour])
                elif kind == "contradiction":
                    wrong = [c for c in COLOURS if c != s.colour][i % 3]
                    hyp = template.format(c=colours[wrong])
                else:
                    hyp = _XVNLI_NEUTRAL[lang]
                rows.append(
                    {
                        "gold_label": kind,
                        "sentence1": caption(s, "en"),
                        "sentence2": hyp,
                        "captionID": s.image_id,
                        "pairID": f"{s.image_id}-{i}",
                        "Flikr30kID": s.image_id,
                    }
                )
            _write_jsonl(iglue / "XVNLI" / "annotations" / lang / f"{split}.jsonl", rows)

    # MaXM (test only): questions about the XM3600 images, answered in the question's language (drawn last, with no
    # random numbers, so the other tasks' files stay what they were)
    for lang in MAXM_LANGUAGES:
        annotations = []
        for i, s in enumerate(xm_scenes):
            key = f"{seed:08x}{i:08x}"
            pairs = [
                {
                    "question_id": f"{key}-{lang}-colour",
                    "question": QUESTIONS["colour"][lang],
                    "answers": [_MAXM_COLOUR[lang][s.colour]],
                    "processed_answers": [_MAXM_COLOUR[lang][s.colour]],
                    "is_collection": False,
                },
                {
                    "question_id": f"{key}-{lang}-count",
                    "question": QUESTIONS["count"][lang],
                    "answers": [_NUM[lang][s.count - 1]],
                    "processed_answers": [str(s.count), _NUM[lang][s.count - 1]],
                    "is_collection": False,
                },
            ]
            annotations.append({"image_id": key, "image_url": "", "qa_pairs": pairs})
        path = data_root / "maxm" / "maxm_v1_release" / f"maxm_v1_{lang}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"dataset": "maxm", "version": "demo", "split": lang, "annotations": annotations}
        path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")

    # MTVQA and CVQA (test only): "how many shapes?" about the XM3600 images, in their hub repos' parquet schemas with
    # the images embedded (no random numbers drawn: the other files stay what they were)
    write_hub_demo(
        data_root,
        [(f"{seed:08x}{i:08x}", s, image_root / "xm3600" / f"{seed:08x}{i:08x}.jpg") for i, s in enumerate(xm_scenes)],
    )
    return data_root, image_root


#: the demo's MTVQA languages and CVQA pairs (those of QUESTIONS' languages the benchmarks have)
MTVQA_DEMO_LANGUAGES = ("de", "ru")
XMMMU_DEMO_LANGUAGES = ("en", "id")
KALEIDOSCOPE_DEMO_LANGUAGES = ("de", "en", "ru")
M3EXAM_DEMO_LANGUAGES = {"en": "english", "zh": "chinese"}
CVQA_DEMO_PAIRS = {"id": "('Indonesian', 'Indonesia')", "ru": "('Russian', 'Russia')", "zh": "('Chinese', 'China')"}


def write_hub_demo(data_root: Path, images: Sequence[tuple[str, Scene, Path]]) -> None:
    """The demo files of the benchmarks read from hub datasets (MTVQA, CVQA, xMMMU, Kaleidoscope): one counting question
    per image and language, in each dataset repo's published layout and schema (images embedded, or in data.zip)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    mtvqa, cvqa = [], []
    for key, scene, path in images:
        image = {"bytes": path.read_bytes(), "path": path.name}
        for lang in MTVQA_DEMO_LANGUAGES:
            pairs = [{"question": QUESTIONS["count"][lang], "answer": str(scene.count)}]
            mtvqa.append({"image": image, "qa_pairs": str(pairs), "lang": lang.upper(), "id": f"{key}-{lang}"})
        for lang, subset in CVQA_DEMO_PAIRS.items():
            options = [str(c) for c in (*COUNTS, len(COUNTS) + 1)]
            cvqa.append(
                {
                    "image": image,
                    "ID": f"{key}_{lang}",
                    "Subset": subset,
                    "Question": QUESTIONS["count"][lang],
                    "Translated Question": QUESTIONS["count"]["en"],
                    "Options": options,
                    "Translated Options": options,
                    "Label": options.index(str(scene.count)),
                    "Category": "demo",
                    "Image Type": "Self",
                    "Image Source": "",
                    "License": "CC BY 4.0",
                }
            )
    mtvqa_schema = pa.schema(
        [("image", image_type), ("qa_pairs", pa.string()), ("lang", pa.string()), ("id", pa.string())]
    )
    text = pa.string()
    cvqa_schema = pa.schema(
        [
            ("image", image_type),
            ("ID", text),
            ("Subset", text),
            ("Question", text),
            ("Translated Question", text),
            ("Options", pa.list_(text)),
            ("Translated Options", pa.list_(text)),
            ("Label", pa.int64()),
            ("Category", text),
            ("Image Type", text),
            ("Image Source", text),
            ("License", text),
        ]
    )
    for task, rows, schema in (("mtvqa", mtvqa, mtvqa_schema), ("cvqa", cvqa, cvqa_schema)):
        folder = data_root / task / "data"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "test-00000-of-00001.parquet")

    # xMMMU (one split per language) and Kaleidoscope (metadata + data.zip): the same question, one image each
    options = [str(c) for c in (*COUNTS, len(COUNTS) + 1)]
    letters = "ABCD"
    xmmmu_fields = [(c, text) for c in ("id", "question", "options", "answer", "question_type")]
    xmmmu_schema = pa.schema(xmmmu_fields + [(f"image_{k}", image_type) for k in range(1, 8)])
    for lang in XMMMU_DEMO_LANGUAGES:
        lang_rows: list[dict[str, object]] = [
            {
                "id": f"validation_Math_{n}",
                "question": f"<image 1> {QUESTIONS['count'][lang]}",
                "options": str(options),
                "answer": letters[options.index(str(scene.count))],
                "question_type": "multiple-choice",
                "image_1": {"bytes": path.read_bytes(), "path": path.name},
                **{f"image_{k}": None for k in range(2, 8)},
            }
            for n, (_, scene, path) in enumerate(images)
        ]
        folder = data_root / "xmmmu" / "data"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(lang_rows, schema=xmmmu_schema), folder / f"{lang}-00000-of-00001.parquet")
    import zipfile

    folder = data_root / "kaleidoscope" / "data"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder.parent / "data.zip", "w") as archive:
        for key, _, path in images:
            archive.writestr(f"final_data/demo/{key}.png", path.read_bytes())
    kal_rows = [
        {
            "question": QUESTIONS["count"][lang],
            "options": options,
            "answer": options.index(str(scene.count)),
            "language": lang,
            "image": f"demo/{key}.png",
            "category_en": "Mathematics",
        }
        for lang in KALEIDOSCOPE_DEMO_LANGUAGES
        for key, scene, _ in images
    ]
    kal_schema = pa.schema(
        [
            ("question", text),
            ("options", pa.list_(text)),
            ("answer", pa.int64()),
            ("language", text),
            ("image", text),
            ("category_en", text),
        ]
    )
    pq.write_table(pa.Table.from_pylist(kal_rows, schema=kal_schema), folder / "train-00000-of-00001.parquet")

    # M3Exam (one split per language name; images as base64 strings, marked in the question)
    import base64

    m3_fields = [
        ("language", text),
        ("subject_category", text),
        ("question_text", text),
        ("options", pa.list_(text)),
        ("answer_text", text),
        ("background_description", pa.list_(text)),
    ]
    m3_schema = pa.schema(m3_fields + [(f"image_{k}", text) for k in range(10)])
    folder = data_root / "m3exam" / "data"
    folder.mkdir(parents=True, exist_ok=True)
    for lang, name in M3EXAM_DEMO_LANGUAGES.items():
        lang_rows = [
            {
                "language": name,
                "subject_category": "math",
                "question_text": f"(image)[{key}.png] {QUESTIONS['count'][lang]}",
                "options": [f"{letters[i]}. {o}" for i, o in enumerate(options)],
                "answer_text": letters[options.index(str(scene.count))],
                "background_description": [],
                "image_0": base64.b64encode(path.read_bytes()).decode(),
                **{f"image_{k}": "None" for k in range(1, 10)},
            }
            for key, scene, path in images
        ]
        pq.write_table(pa.Table.from_pylist(lang_rows, schema=m3_schema), folder / f"{name}-00000-of-00001.parquet")


#: The languages the demo evaluates per task.
DEMO_LANGUAGES: dict[str, tuple[str, ...]] = {
    "xgqa": LANGUAGES,
    "xflickrco": LANGUAGES,
    "xm3600": LANGUAGES,
    "marvl": MARVL_LANGUAGES,
    "xvnli": XVNLI_LANGUAGES,
}


#: The demo model: small enough to train in a couple of minutes on 2 CPU cores, big enough to learn the scenes.
DEMO_MODEL = {"kind": "mt5", "text_hidden": 64, "vision_hidden": 64, "image_size": 64}
#: Fine-tuning settings of the demo: mBLIP's recipe with learning rates raised for a model trained from random init.
DEMO_TRAINING = {"max_steps": 1200, "batch_size": 16, "lr_lora": 3e-3, "lr_blip": 1e-3, "save_every": 400}
DEMO_SPLIT = "train_72"


@dataclass(frozen=True)
class DemoResult:
    """What the demo produced: records of the untrained and the trained model per task, and the leaderboard files."""

    untrained: dict[str, tuple[RunRecord, Path]]
    trained: dict[str, tuple[RunRecord, Path]]
    leaderboard: list[Path]
    trained_model: Path


def _fingerprint(payload: object) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]


#: The trained demo model that ships inside the package (a 4-bit export of `mvleval demo --train`), so the demo's numbers
#: and this repository's CI gate depend only on inference, not on how a CPU vendor's BLAS rounds 1200 training steps.
PACKAGED_MODEL = Path(__file__).with_name("model")
#: The packaged model's manifest (file hashes, how and where it was trained); not copied into a demo's folder.
PACKAGED_MANIFEST = "MANIFEST.json"
PACKAGED_SEED = 0


def install_packaged_model(into: Path, source: Path = PACKAGED_MODEL) -> None:
    """Copy the packaged trained demo model into `into` after checking every file against its manifest.

    Raises:
        MvlevalError: a file is missing or its SHA-256 differs from the manifest's (a checkout that rewrote line endings,
            a Git LFS pointer, a hand edit): the demo would otherwise report numbers of another model.
    """
    import shutil

    from mvleval.record.provenance import file_sha256
    from mvleval.util.errors import MvlevalError

    manifest_path = source / PACKAGED_MANIFEST
    fix = "reinstall mvleval from a clean checkout (`git checkout -- mvleval/demo/model`), or train one with `mvleval demo --train`"
    try:
        files: dict[str, str] = json.loads(manifest_path.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError) as exc:
        raise MvlevalError(
            f"the packaged demo model's manifest {manifest_path} cannot be read ({exc}).", fix=fix
        ) from None
    bad = []
    for name, digest in sorted(files.items()):
        path = source / name
        if not path.is_file():
            bad.append(f"{name} is missing")
        elif (actual := file_sha256(path)) != digest:
            bad.append(f"{name} has SHA-256 {actual[:16]}…, the manifest says {digest[:16]}…")
    if bad:
        raise MvlevalError(
            f"the packaged demo model in {source} is not the one its manifest names: " + "; ".join(bad) + ".", fix=fix
        )
    tmp = into.with_name(into.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in files:
        shutil.copyfile(source / name, tmp / name)
    shutil.rmtree(into, ignore_errors=True)
    tmp.rename(into)


def package_trained_model(
    exported: Path, train_dir: Path, into: Path = PACKAGED_MODEL, *, machine: str = ""
) -> dict[str, object]:
    """Replace the packaged demo model with `exported` (a `mvleval demo --train` 4-bit export) and write its manifest.

    For maintainers: `mvleval demo --train --out D`, then `python -c "from mvleval.demo.command import package_trained_model as p;
    from pathlib import Path as P; m = P('D/models'); p(next(m.glob('demo-4bit-*')), next(m.glob('lora-*')))"`, then
    re-bless the five demo baselines (docs/ci.md). Paths of the training machine are replaced by `<demo-out>`.
    """
    import platform
    import shutil

    from mvleval.record.provenance import file_sha256, package_versions

    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    demo_out = str(exported.parent.parent)
    for path in sorted(exported.iterdir()):
        if path.is_file():
            if path.suffix == ".json":
                (into / path.name).write_text(
                    path.read_text(encoding="utf-8").replace(demo_out, "<demo-out>"), encoding="utf-8"
                )
            else:
                shutil.copyfile(path, into / path.name)
    from mvleval.finetune.loop import read_train_log

    losses = [r["loss"] for r in read_train_log(train_dir)]
    manifest = {
        "what": "the demo model of `mvleval demo`: a tiny mT5-based mBLIP-shaped checkpoint fine-tuned with LoRA by "
        "`mvleval demo --train` and exported 4-bit (nf4)",
        "seed": PACKAGED_SEED,
        "model": DEMO_MODEL,
        "training": {**DEMO_TRAINING, "split": DEMO_SPLIT, "first_loss": losses[0], "last_loss": losses[-1]},
        "trained_on": machine or f"{platform.machine()} {platform.processor()}".strip(),
        "packages": {
            k: v for k, v in package_versions().items() if k in ("torch", "transformers", "peft", "bitsandbytes")
        },
        "files": {p.name: file_sha256(p) for p in sorted(into.iterdir()) if p.name != PACKAGED_MANIFEST},
    }
    (into / PACKAGED_MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def run_demo(
    out: Path,
    *,
    seed: int = 0,
    train_model: bool = False,
    progress: Progress | None = None,
    train_progress: object | None = None,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Draw data, build the untrained tiny checkpoint, take the trained one, evaluate all five tasks, leaderboard.

    The trained model is the packaged one (PACKAGED_MODEL) unless `train_model`: then it is fine-tuned here (cached
    under `out/models`, so a second demo skips training) and exported 4-bit. Training is deterministic on one machine,
    but its bits differ between CPU vendors (docs/ci.md), which is why the default evaluates the packaged model.
    """
    from mvleval.compare.leaderboard import build_leaderboard
    from mvleval.compare.leaderboard_files import write_leaderboard
    from mvleval.finetune import export, load_config, train
    from mvleval.run.evaluate import evaluate
    from mvleval.run.files import RunPaths
    from mvleval.run.plan import RunOptions, prepare, run_identity, run_name
    from mvleval.testing.factory import build_tiny_checkpoint
    from mvleval.util.errors import MvlevalError

    if not train_model and seed != PACKAGED_SEED:
        raise MvlevalError(
            f"the packaged demo model was trained with seed {PACKAGED_SEED}, not {seed}.",
            fix=f"add --train to fine-tune one for seed {seed} here, or leave --seed out",
        )
    data_root, image_root = build_demo_data(out, seed=seed)
    models = out / "models"
    base = models / f"base-seed{seed}-{_fingerprint(DEMO_MODEL)}"
    if not (base / "config.json").is_file():
        log(f"building a tiny mT5-based mBLIP-shaped checkpoint in {base}")
        kwargs = {k: v for k, v in DEMO_MODEL.items() if k != "kind"}
        build_tiny_checkpoint(base, DEMO_MODEL["kind"], seed=seed, **kwargs)  # type: ignore[arg-type]

    tasks = "+".join(t for t in DEMO_LANGUAGES if t != "xm3600")  # XM3600 has no training split: it is zero-shot
    key = _fingerprint({"model": DEMO_MODEL, "training": DEMO_TRAINING, "tasks": tasks, "seed": seed})
    train_dir = models / f"lora-seed{seed}-{key}"
    if not train_model:
        exported = models / f"demo-4bit-seed{seed}-{key}"
        log(
            f"using the packaged fine-tuned model (LoRA, {DEMO_TRAINING['max_steps']} steps, 4-bit export), copied to {exported}"
        )
        install_packaged_model(exported)
    else:
        exported = models / f"demo-4bit-seed{seed}-{key}-trained-here"
        if (exported / "config.json").is_file():
            log(f"using the model trained here before, {exported}")
        else:
            log(
                f"fine-tuning with LoRA on {tasks.replace('+', ', ')} ({DEMO_SPLIT}) for {DEMO_TRAINING['max_steps']} steps"
            )
            config = load_config(
                None,
                [f"{k}={v}" for k, v in DEMO_TRAINING.items() if k not in ("max_steps", "batch_size")],
                base_model=str(base),
                output_dir=train_dir,
                task=tasks,
                split=DEMO_SPLIT,
                data_root=data_root,
                image_roots=[image_root],
                bits=32,
                max_steps=DEMO_TRAINING["max_steps"],
                batch_size=DEMO_TRAINING["batch_size"],
                seed=seed,
            )
            resume = (train_dir / "checkpoints").is_dir()
            train(config, resume=resume, progress=train_progress)  # type: ignore[arg-type]
            log(f"exporting the trained model as a 4-bit (nf4) checkpoint to {exported}")
            export(train_dir, exported, 4)

    runs = out / "runs"
    untrained: dict[str, tuple[RunRecord, Path]] = {}
    trained: dict[str, tuple[RunRecord, Path]] = {}
    for task, langs in DEMO_LANGUAGES.items():
        for model, into in ((base, untrained), (exported, trained)):
            options = RunOptions(
                task=task,
                model=str(model),
                data_root=data_root,
                image_root=image_root,
                languages=langs,
                split="test",
                batch_size=24,
                out_dir=runs,
                seed=seed,
                command=("mvleval", "demo"),
                overwrite=True,
            )
            # A repeated demo replaces its previous run of the same configuration.
            prepared = prepare(options)
            paths = RunPaths.for_name(runs, run_name(options, run_identity(options, prepared)))
            for p in (paths.partial, paths.manifest):
                p.unlink(missing_ok=True)
            into[task] = evaluate(options, progress=progress, prepared=prepared)
    board = write_leaderboard(
        build_leaderboard([(path, record) for record, path in [*untrained.values(), *trained.values()]]),
        out / "leaderboard",
    )
    return DemoResult(untrained=untrained, trained=trained, leaderboard=board, trained_model=exported)
