"""Kaleidoscope: national-exam multiple-choice questions in 18 languages, with an image or text-only, scored as its
authors do (strict answer reading, unparseable = wrong, reported as a format error).

Data (the dataset repo CohereLabs/kaleidoscope as published, under <data-root>/kaleidoscope; `mvleval data fetch
--task kaleidoscope`): `kaleidoscope/data/train-0000N-of-0000M.parquet` (the published split is `train`; it is the
test set: split `test` here; the shard names are UNVERIFIED) and `kaleidoscope/data.zip` with the pixels. Columns:
`question`, `options` (list of strings; an option that is an image is its `.png` path), `answer` (index of the
correct option), `language` (the code), `image` (a path in data.zip, or null for a text-only question), `country`,
`level`, `category_en`, `general_category_en`, `image_type`, `image_information`. An image path is looked up in the zip
as written, then under `final_data/`. Example ids: the row's position in the split, over all shards (`row-<n>`).

Protocol (israfelsr/kaleidoscope model_zoo.py, the "direct" regime of its open models): the system message asking for
JSON (`{"choice": "B"}`), then the user text "\\nOutput your choice in the specified JSON format.\\n\\n{Question}:
{question}\\n{Options}:\\nA. ...\\n...\\n\\nANSWER:" with the question and options keywords in the question's language;
one user turn here (the backends have no system turn: the system message opens it). The question's image first, then
each image option at its `<image k>`; a text-only question gets no image, from the same model. Greedy, at most 64 new
tokens (the authors sample at temperature 0.7 with 1,024 tokens: a deterministic run is this harness's rule). Scored:
the cascade of mvleval/metrics/choice.py after mapping the other-script letters the authors map (Б->B, ...): JSON
`{"choice": "B"}`, `<ANSWER> B </ANSWER>` and a bare letter all read; unparseable = wrong (`format_error_rate`), and
`valid_accuracy` over the parseable answers, as the authors report both. The chain-of-thought regime (in-language
instructions, `<ANSWER>` tags; the closed models' prompts) is the task `kaleidoscope_cot`. Every metric is also given per
`category_en` (the record's `by_group`), as the paper breaks results down by subject.
"""

from __future__ import annotations

import ast
import zipfile
from pathlib import Path

from mvleval.benchmarks.hubdata import first_shard, materialise_image, read_rows, shards
from mvleval.benchmarks.spec import TaskSpec
from mvleval.benchmarks.task import Example, GenerationSettings, Task
from mvleval.metrics.base import Metric
from mvleval.util.errors import MvlevalError

_FIX = "use the files of CohereLabs/kaleidoscope as published (`mvleval data fetch --task kaleidoscope`)."
SYS_MESSAGE = (
    "You are a helpful assistant who answers multiple-choice questions. For each question, output your final answer in "
    'JSON format with the following structure:\n\n{"choice": "The correct option (e.g., A, B, C, or D)"}\n\\ONLY output '
    "this format exactly. Do not include any additional text or explanations outside the JSON structure."
)
INSTRUCTION = "Output your choice in the specified JSON format."
#: the authors' keywords per language (model_zoo.py `keywords`): question, options
KEYWORDS: dict[str, tuple[str, str]] = {
    "en": ("Question", "Options"),
    "es": ("Pregunta", "Opciones"),
    "hi": ("प्रश्न", "विकल्प"),
    "hu": ("Kérdés", "Lehetőségek"),
    "hr": ("Pitanje", "Opcije"),
    "uk": ("Питання", "Варіанти"),
    "pt": ("Pergunta", "Opções"),
    "bn": ("প্রশ্ন", "বিকল্প"),
    "te": ("ప్రశ్న", "ఎంపికలు"),
    "ne": ("प्रश्न", "विकल्पहरू"),
    "sr": ("Pitanje", "Opcije"),
    "nl": ("Vraag", "Opties"),
    "ar": ("السؤال", "الخيارات"),
    "ru": ("Вопрос", "Варианты"),
    "fr": ("Question", "Options"),
    "fa": ("سؤال", "گزینهها"),
    "de": ("Frage", "Optionen"),
    "lt": ("Klausimas", "Pasirinkimai"),
}
_COLUMNS = ("question", "options", "answer", "language", "image", "category_en")


class Kaleidoscope(Task):
    spec = TaskSpec(
        name="kaleidoscope",
        version=1,
        description="Kaleidoscope: national-exam multiple choice, 18 languages, with an image or text-only",
        kind="multiple_choice",
        languages=tuple(sorted(KEYWORDS)),
        default_split="test",
        splits=("test",),
        prompt_template=(
            SYS_MESSAGE.replace("{", "{{").replace("}", "}}")
            + "\n\n"
            + INSTRUCTION
            + "\n\n{question_kw}: {question}\n{options_kw}:\n{options}\nANSWER:"
        ),
        generation=GenerationSettings(num_beams=1, max_new_tokens=64, min_new_tokens=1, length_penalty=1.0),
        images_per_example=5,
        images_vary=True,
        image_subdir="kaleidoscope",
        source_url="https://huggingface.co/datasets/CohereLabs/kaleidoscope",
        licence="Apache 2.0 (UNVERIFIED: read the dataset card); exam images under their sources' terms",
        citation="Salazar et al. 2025, Kaleidoscope: In-language Exams for Massively Multilingual Vision Evaluation",
        size="20,911 questions: 11,457 with an image, 9,454 text-only",
    )

    def annotation_path(self, data_root: Path, lang: str, split: str) -> Path:
        return first_shard(data_root / "kaleidoscope" / "data", "train")

    def read_examples(self, path: Path, lang: str, split: str, image_root: Path) -> list[Example]:
        archive = path.parent.parent / "data.zip"
        examples: list[Example] = []
        zip_file: zipfile.ZipFile | None = None
        try:
            rows = read_rows(
                shards(path.parent, "train") or [path], _COLUMNS, what="Kaleidoscope parquet file", fix=_FIX
            )
            for n, (where, row) in enumerate(rows):
                if row["language"] != lang:
                    continue
                options = _options(row["options"], where)
                answer = row["answer"]
                if not isinstance(answer, int) or not 0 <= answer < len(options):
                    raise MvlevalError(
                        f"'answer' must be the index of the correct option (0-{len(options) - 1}), found {answer!r}.",
                        fix=_FIX,
                        where=where,
                    )
                wanted = ([row["image"]] if row["image"] else []) + [o for o in options if _is_image(o)]
                if wanted and zip_file is None:
                    zip_file = _open_zip(archive)
                images = tuple(_zip_image(zip_file, name, archive, where) for name in wanted)  # type: ignore[arg-type]
                k = 1 if row["image"] else 0
                lines = []
                for i, option in enumerate(options):
                    marker = None
                    if _is_image(option):
                        k += 1
                        marker = f"<image {k}>"
                    lines.append(self.option_line(chr(ord("A") + i), option, marker))
                letter = chr(ord("A") + answer)
                examples.append(
                    Example(
                        id=f"row-{n}",
                        lang=lang,
                        prompt=self.prompt(lang, str(row["question"]), "".join(lines), bool(row["image"])),
                        images=images,
                        references=(letter,),
                        target=letter,
                        source=where,
                        choices=tuple(options),
                        meta=(("multimodal", str(bool(row["image"])).lower()),),
                        group=str(row["category_en"]),
                    )
                )
        finally:
            if zip_file is not None:
                zip_file.close()
        return examples

    def prompt(self, lang: str, question: str, options: str, has_image: bool) -> str:
        """The user turn of one question (the direct regime: its image goes first, no marker names it)."""
        question_kw, options_kw = KEYWORDS[lang]
        return self.template.format(question_kw=question_kw, question=question, options_kw=options_kw, options=options)

    def option_line(self, label: str, option: str, marker: str | None) -> str:
        """One option as the prompt lists it; `marker` is the <image k> of an option that is an image."""
        return f"{label}. {marker or option}\n"

    def metrics(self) -> tuple[Metric, ...]:
        from mvleval.metrics.choice import ChoiceAccuracy

        return (ChoiceAccuracy(script_letters=True),)

    def protocol_extra(self) -> dict[str, object]:
        return {
            "data": "CohereLabs/kaleidoscope parquet + data.zip",
            "keywords": {k: list(v) for k, v in KEYWORDS.items()},
            "regime": "direct (JSON choice), system message first in the user turn",
            "images": "question image first, image options at <image k>; text-only questions without an image",
            "images_vary": True,
        }


def _is_image(option: str) -> bool:
    return option.lower().endswith(".png")  # how the authors' code tells an image option (model_zoo.py)


def _options(value: object, where: str) -> list[str]:
    parsed = value
    if isinstance(value, str):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = None
    if not isinstance(parsed, list) or not 2 <= len(parsed) <= 26 or not all(isinstance(o, str) for o in parsed):
        raise MvlevalError(f"'options' must be a list of 2+ texts, found {value!r:.80}.", fix=_FIX, where=where)
    return parsed


def _open_zip(archive: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except FileNotFoundError:
        raise MvlevalError(
            "the questions with images need data.zip, which is not there.", fix=_FIX, where=archive
        ) from None
    except zipfile.BadZipFile as exc:
        raise MvlevalError(f"data.zip is not a readable zip file ({exc}).", fix=_FIX, where=archive) from None


def _zip_image(archive: zipfile.ZipFile, name: str, path: Path, where: str) -> Path:
    for member in (name, f"final_data/{name}"):
        try:
            data = archive.read(member)
        except KeyError:
            continue
        return materialise_image(data, where)
    raise MvlevalError(
        f"the image {name!r} is not in {path.name} (looked for {name} and final_data/{name}).", fix=_FIX, where=where
    )
