"""xMMMU: MMMU's college-exam questions (validation set) translated into 7 languages, from PangeaBench, scored with
MMMU's own answer parsing.

Data (the dataset repo neulab/PangeaBench-xmmmu as published, under <data-root>/xmmmu; `mvleval data fetch --task
xmmmu`): one split per language, `xmmmu/data/<lang>-0000N-of-0000M.parquet` (the file names are UNVERIFIED: the split
names ar en fr hi id ja pt are). Columns: `id` ("validation_<Subject>_<n>"), `question` (with `<image k>` markers),
`options` (the *string* of a Python list; its texts may be `<image k>` markers too), `answer` (a letter; an open
question's answer, several as the string of a list), `question_type` ("multiple-choice" or "open"), `image_1` ...
`image_7` (Image structs, null where the question has fewer).

Protocol (MMMU-Benchmark/MMMU eval, configs/llava1.5.yaml and data_utils.construct_prompt): multiple choice
"{question}\\n(A) ...\\n(B) ...\\n\\nAnswer with the option's letter from the given choices directly."; open
"{question}\\nAnswer the question using a single word or phrase."; images placed where the `<image k>` markers stand
(in the question or the options; an image no marker names goes first), greedy, at most 16 new tokens (PangeaBench);
`mmmu_accuracy` per language (MMMU's parsing; no random guess where it reads no letter: see mvleval/metrics/mmmu.py).
MMMU also reports accuracy per subject (the `id`'s middle part): each example's group, so the record gives every metric
per subject too (`by_group`).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mvleval.benchmarks.hubdata import first_shard, image_bytes, materialise_image, read_rows, shards
from mvleval.benchmarks.spec import TaskSpec
from mvleval.benchmarks.task import Example, GenerationSettings, Task
from mvleval.metrics.base import Metric
from mvleval.util.errors import MvlevalError

_FIX = "use the parquet files of neulab/PangeaBench-xmmmu as published (`mvleval data fetch --task xmmmu`)."
MAX_IMAGES = 7
_MARKER = re.compile(r"<image (\d+)>")
MC_TEMPLATE = "{question}\n{options}\nAnswer with the option's letter from the given choices directly."
OPEN_TEMPLATE = "{question}\nAnswer the question using a single word or phrase."


class XMMMU(Task):
    spec = TaskSpec(
        name="xmmmu",
        version=1,
        description="xMMMU: MMMU college-exam questions in 7 languages, interleaved images; MMMU's answer parsing",
        kind="multiple_choice",
        languages=("ar", "en", "fr", "hi", "id", "ja", "pt"),
        default_split="validation",
        splits=("validation",),
        prompt_template=MC_TEMPLATE,
        generation=GenerationSettings(num_beams=1, max_new_tokens=16, min_new_tokens=1, length_penalty=1.0),
        images_per_example=MAX_IMAGES,
        images_vary=True,
        image_subdir="xmmmu",
        source_url="https://huggingface.co/datasets/neulab/PangeaBench-xmmmu",
        licence="MIT (PangeaBench); MMMU's questions and images: research use",
        citation=(
            "Yue et al. 2024, MMMU, CVPR 2024; Yue et al. 2025, Pangea: A Fully Open Multilingual Multimodal LLM for 39 "
            "Languages, ICLR 2025"
        ),
        size="MMMU's 900 validation questions per language (UNVERIFIED)",
    )

    def annotation_path(self, data_root: Path, lang: str, split: str) -> Path:
        return first_shard(data_root / "xmmmu" / "data", lang)

    def read_examples(self, path: Path, lang: str, split: str, image_root: Path) -> list[Example]:
        columns = ("id", "question", "options", "answer", "question_type") + tuple(
            f"image_{k}" for k in range(1, MAX_IMAGES + 1)
        )
        examples: list[Example] = []
        for where, row in read_rows(shards(path.parent, lang) or [path], columns, what="xMMMU parquet file", fix=_FIX):
            question, answer, kind = row["question"], row["answer"], row["question_type"]
            if (
                not isinstance(question, str)
                or not question.strip()
                or not isinstance(answer, str)
                or not answer.strip()
            ):
                raise MvlevalError("the question and the answer must be non-empty texts.", fix=_FIX, where=where)
            images = self._images(row, where)
            if kind == "multiple-choice":
                options = _options(row["options"], where)
                block = "".join(f"({chr(ord('A') + i)}) {o}\n" for i, o in enumerate(options))
                prompt = self.template.format(question=question, options=block)
                letter = answer.strip()
                if letter not in [chr(ord("A") + i) for i in range(len(options))]:
                    raise MvlevalError(
                        f"a multiple-choice answer must be one of the {len(options)} option letters, found {answer!r}.",
                        fix=_FIX,
                        where=where,
                    )
                references, choices = (letter,), tuple(options)
            elif kind == "open":
                prompt = OPEN_TEMPLATE.format(question=question)
                references, choices = (answer.strip(),), None
            else:
                raise MvlevalError(
                    f"'question_type' must be 'multiple-choice' or 'open', found {kind!r}.", fix=_FIX, where=where
                )
            named = {int(k) for k in _MARKER.findall(prompt)}
            if any(k > len(images) for k in named):
                raise MvlevalError(
                    f"the question names <image {max(named)}> but the row has {len(images)} image(s).",
                    fix=_FIX,
                    where=where,
                )
            subject = str(row["id"]).removeprefix("validation_").rsplit("_", 1)[0]
            examples.append(
                Example(
                    id=str(row["id"]),
                    lang=lang,
                    prompt=prompt,
                    images=images,
                    references=references,
                    target=references[0],
                    source=where,
                    choices=choices,
                    meta=(("question_type", kind), ("subject", subject)),
                    group=subject,
                )
            )
        return examples

    @staticmethod
    def _images(row: dict[str, object], where: str) -> tuple[Path, ...]:
        """image_1, image_2, ... up to the last one present (a gap before it is an error: markers count from 1)."""
        present = [k for k in range(1, MAX_IMAGES + 1) if row[f"image_{k}"] is not None]
        if present and present != list(range(1, present[-1] + 1)):
            raise MvlevalError(
                f"the row has images {present}: image_1 ... image_{present[-1]} must all be there.",
                fix=_FIX,
                where=where,
            )
        return tuple(materialise_image(image_bytes(row[f"image_{k}"], where, f"image_{k}"), where) for k in present)

    def metrics(self) -> tuple[Metric, ...]:
        from mvleval.metrics.mmmu import MmmuAccuracy

        return (MmmuAccuracy(),)

    def protocol_extra(self) -> dict[str, object]:
        return {
            "data": "neulab/PangeaBench-xmmmu parquet",
            "open_template": OPEN_TEMPLATE,
            "options": "(A) text\\n per option",
            "images": "0-7 per question, placed at <image k> markers",
            "images_vary": True,
        }


def _options(value: object, where: str) -> list[str]:
    parsed = value
    if isinstance(value, str):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = None
    if not isinstance(parsed, list) or not 2 <= len(parsed) <= 26 or not all(isinstance(o, str) for o in parsed):
        raise MvlevalError(
            f"'options' must be the string of a list of 2+ texts, found {value!r:.80}.", fix=_FIX, where=where
        )
    return parsed
