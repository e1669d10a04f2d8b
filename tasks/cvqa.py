"""CVQA: culturally diverse multiple-choice VQA, 39 country-language pairs, each question in its local language and in
English, scored per pair.

Data (the dataset repo afaji/cvqa as published, under <data-root>/cvqa; `mvleval data fetch --task cvqa`):
  cvqa/data/test-0000N-of-0000M.parquet; columns `image` (Image struct), `ID`, `Subset` (the pair, written as the
  string "('Japanese', 'Japan')"), `Question`, `Translated Question` (English), `Options`, `Translated Options` (four
  strings each: a list, or in older revisions the string of a Python list), `Label` (0-3), `Category`, `Image Type`,
  `Image Source`, `License` (each row's own image licence).
Splits: `test` asks the local-language question and options, `test_en` the English translation of the same rows; both
are scored per pair and against the same gold letter. Language codes here name the pair: `<ISO 639-1>-<ISO 3166>`
(`ja-JP`, `es-MX`, `ur-PK`, ...; `mi-ID` for Minangkabau, `br-FR` for Breton, `arz-EG` for Egyptian Arabic). A
Subset value not in the table below stops the run naming it (the table was written from the paper's list of pairs;
its spelling of each Subset is UNVERIFIED against every revision).

Protocol: the question, then the options as `A. ...` lines, then "Answer with the option's letter from the given
choices directly." (the LLaVA / lmms-eval multiple-choice wording; PangeaBench writes "Question: {q} \\n\\n Options:
... \\n\\n Answer with the option's letter ..."; VLMEvalKit's CVQA uses its generic MCQ prompt), greedy decoding, at
most 16 new tokens; the answer letter read by mvleval's extraction cascade (mvleval/metrics/choice.py: never a random
guess, unlike PangeaBench's and VLMEvalKit's fallbacks) and compared with `Label`: `choice_accuracy` per pair, with
its `format_error_rate`, and per `Category` within each pair (the record's `by_group`). The public test labels may be
withheld in some revisions (the official score is on eval.ai): a row whose Label is not 0-3 stops the run naming it; a
leaderboard submission file is not written here.
"""

from __future__ import annotations

import ast
from pathlib import Path

from mvleval.benchmarks.hubdata import first_shard, image_bytes, materialise_image, read_rows, shards
from mvleval.benchmarks.spec import TaskSpec
from mvleval.benchmarks.task import Example, GenerationSettings, Task
from mvleval.metrics.base import Metric
from mvleval.util.errors import MvlevalError

_FIX = "use the parquet files of afaji/cvqa as published (`mvleval data fetch --task cvqa`)."
LABELS = ("A", "B", "C", "D")

#: (language, country) as CVQA's Subset names them -> the pair's code
PAIRS: dict[tuple[str, str], str] = {
    ("Amharic", "Ethiopia"): "am-ET",
    ("Oromo", "Ethiopia"): "om-ET",
    ("Igbo", "Nigeria"): "ig-NG",
    ("Kinyarwanda", "Rwanda"): "rw-RW",
    ("Swahili", "Kenya"): "sw-KE",
    ("Egyptian Arabic", "Egypt"): "arz-EG",
    ("Bengali", "India"): "bn-IN",
    ("Hindi", "India"): "hi-IN",
    ("Marathi", "India"): "mr-IN",
    ("Tamil", "India"): "ta-IN",
    ("Telugu", "India"): "te-IN",
    ("Urdu", "India"): "ur-IN",
    ("Urdu", "Pakistan"): "ur-PK",
    ("Chinese", "China"): "zh-CN",
    ("Chinese", "Singapore"): "zh-SG",
    ("Filipino", "Philippines"): "fil-PH",
    ("Indonesian", "Indonesia"): "id-ID",
    ("Javanese", "Indonesia"): "jv-ID",
    ("Minangkabau", "Indonesia"): "min-ID",
    ("Sundanese", "Indonesia"): "su-ID",
    ("Japanese", "Japan"): "ja-JP",
    ("Korean", "South Korea"): "ko-KR",
    ("Malay", "Malaysia"): "ms-MY",
    ("Mongolian", "Mongolia"): "mn-MN",
    ("Sinhala", "Sri Lanka"): "si-LK",
    ("Breton", "France"): "br-FR",
    ("Bulgarian", "Bulgaria"): "bg-BG",
    ("Irish", "Ireland"): "ga-IE",
    ("Norwegian", "Norway"): "no-NO",
    ("Romanian", "Romania"): "ro-RO",
    ("Russian", "Russia"): "ru-RU",
    ("Spanish", "Spain"): "es-ES",
    ("Portuguese", "Brazil"): "pt-BR",
    ("Spanish", "Argentina"): "es-AR",
    ("Spanish", "Chile"): "es-CL",
    ("Spanish", "Colombia"): "es-CO",
    ("Spanish", "Ecuador"): "es-EC",
    ("Spanish", "Mexico"): "es-MX",
    ("Spanish", "Uruguay"): "es-UY",
}
_COLUMNS = (
    "image",
    "ID",
    "Subset",
    "Question",
    "Translated Question",
    "Options",
    "Translated Options",
    "Label",
    "Category",
)
_INSTRUCTION = "Answer with the option's letter from the given choices directly."


class CVQA(Task):
    spec = TaskSpec(
        name="cvqa",
        version=1,
        description="CVQA: culturally diverse 4-way multiple-choice VQA, 39 country-language pairs (local and English)",
        kind="multiple_choice",
        languages=tuple(sorted(PAIRS.values())),
        default_split="test",
        splits=("test", "test_en"),
        prompt_template="{question}\n{options}\n" + _INSTRUCTION,
        generation=GenerationSettings(num_beams=1, max_new_tokens=16, min_new_tokens=1, length_penalty=1.0),
        image_subdir="cvqa",
        label_vocabulary=frozenset(LABELS),
        source_url="https://huggingface.co/datasets/afaji/cvqa",
        licence="CC BY-SA 4.0; each image under its own licence (the License column)",
        citation=(
            "Romero et al. 2024, CVQA: Culturally-diverse Multilingual Visual Question Answering Benchmark, NeurIPS 2024 "
            "Datasets and Benchmarks"
        ),
        size="10,374 questions, each local and English (test)",
    )

    def annotation_path(self, data_root: Path, lang: str, split: str) -> Path:
        return first_shard(data_root / "cvqa" / "data", "test")

    def read_examples(self, path: Path, lang: str, split: str, image_root: Path) -> list[Example]:
        english = split == "test_en"
        examples: list[Example] = []
        for where, row in read_rows(
            shards(path.parent, "test") or [path], _COLUMNS, what="CVQA parquet file", fix=_FIX
        ):
            if _pair_code(row["Subset"], where) != lang:
                continue
            question = row["Translated Question" if english else "Question"]
            if not isinstance(question, str) or not question.strip():
                raise MvlevalError("the question is empty.", fix=_FIX, where=where)
            options = _options(row["Translated Options" if english else "Options"], where)
            label = row["Label"]
            if not isinstance(label, int) or not 0 <= label < len(options):
                raise MvlevalError(
                    f"'Label' must be the index of the correct option (0-{len(options) - 1}), found {label!r}: the "
                    "public labels of this revision may be withheld (the official score is on eval.ai).",
                    fix="fetch a revision of afaji/cvqa with its labels (the data-fetch lock pins one).",
                    where=where,
                )
            lines = "\n".join(f"{LABELS[i]}. {text}" for i, text in enumerate(options))
            image = materialise_image(image_bytes(row["image"], where, "image"), where)
            examples.append(
                Example(
                    id=str(row["ID"]),
                    lang=lang,
                    prompt=self.template.format(question=question.strip(), options=lines),
                    images=(image,),
                    references=(LABELS[label],),
                    target=LABELS[label],
                    source=where,
                    choices=tuple(options),
                    meta=(("subset", str(row["Subset"])),),
                    group=str(row["Category"]),
                )
            )
        return examples

    def metrics(self) -> tuple[Metric, ...]:
        from mvleval.metrics.choice import ChoiceAccuracy

        return (ChoiceAccuracy(),)

    def protocol_extra(self) -> dict[str, object]:
        return {
            "data": "afaji/cvqa parquet",
            "pairs": {f"{lang}|{country}": code for (lang, country), code in sorted(PAIRS.items())},
            "labels": list(LABELS),
            "splits": {"test": "Question/Options", "test_en": "Translated Question/Translated Options"},
        }


def _pair_code(subset: object, where: str) -> str:
    """The code of a row's country-language pair, from CVQA's Subset string "('Japanese', 'Japan')"."""
    value = subset
    if isinstance(subset, str):
        try:
            value = ast.literal_eval(subset)
        except (ValueError, SyntaxError):
            value = subset
    if isinstance(value, (list, tuple)) and len(value) == 2 and (str(value[0]), str(value[1])) in PAIRS:
        return PAIRS[(str(value[0]), str(value[1]))]
    raise MvlevalError(
        f"unknown country-language pair in 'Subset': {subset!r}. The task knows "
        f"{len(PAIRS)} pairs ({', '.join(f'{a}/{b}' for a, b in list(PAIRS)[:4])}, ...; tasks/cvqa.py PAIRS).",
        fix="fetch the revision of afaji/cvqa the lock file pins; a new pair needs a row in PAIRS and a new task version.",
        where=where,
    )


def _options(value: object, where: str) -> list[str]:
    """A row's option texts: a list as published, or the string of a Python list (older revisions)."""
    parsed = value
    if isinstance(value, str):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = None
    if (
        not isinstance(parsed, (list, tuple))
        or not 2 <= len(parsed) <= len(LABELS)
        or not all(isinstance(o, str) and o.strip() for o in parsed)
    ):
        raise MvlevalError(
            f"the options must be 2-{len(LABELS)} non-empty texts, found {value!r:.80}.", fix=_FIX, where=where
        )
    return [o.strip() for o in parsed]
