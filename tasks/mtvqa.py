"""MTVQA: text-centric VQA on photos of text in 9 languages, human expert questions and answers, scored as its authors do.

Data (the dataset repo ByteDance/MTVQA as published, under <data-root>/mtvqa; `mvleval data fetch --task mtvqa`):
  test   mtvqa/data/test-0000N-of-0000M.parquet     (2,116 images; the train split: train-*.parquet)
  columns: `image` (an Image struct with the JPEG's bytes), `qa_pairs` (a *string*: a Python-literal list of
  {"question", "answer"}), `lang` (AR DE FR IT JA KO RU TH VI), `id`.
One example per question: id `{id}_{k}` (k counts the image's pairs from 0). The images are embedded in the parquet
files; they are written once to the cache dir as content-addressed files (mvleval/benchmarks/hubdata.py).

Protocol (arXiv 2405.11985; bytedance/MTVQA scripts/acc.py; lmms-eval's mtvqa task): prompt
"{question}\\nAnswer the question using a word or phrase in the language of the question.", greedy decoding, at most
64 new tokens; correct when the reference (stripped, lower-cased) is contained in the prediction (stripped,
lower-cased, periods removed): `contains_accuracy`, per language. The authors' headline is the mean of the nine
languages' accuracies. VLMEvalKit and lmms-eval also remove periods from the reference and average over all
questions, and VLMEvalKit asks an LLM judge about the misses: other numbers; this task keeps the authors' rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

from mvleval.benchmarks.hubdata import first_shard, image_bytes, materialise_image, read_rows, shards
from mvleval.benchmarks.spec import TaskSpec
from mvleval.benchmarks.task import Example, GenerationSettings, Task
from mvleval.metrics.base import Metric
from mvleval.util.errors import MvlevalError

_FIX = "use the parquet files of ByteDance/MTVQA as published (`mvleval data fetch --task mtvqa`)."
_PROMPT = "{question}\nAnswer the question using a word or phrase in the language of the question."


class MTVQA(Task):
    spec = TaskSpec(
        name="mtvqa",
        version=1,
        description="MTVQA: questions on photos of text, 9 languages; answers in the question's language; containment",
        kind="vqa",
        languages=("ar", "de", "fr", "it", "ja", "ko", "ru", "th", "vi"),
        default_split="test",
        splits=("test", "train"),
        prompt_template=_PROMPT,
        generation=GenerationSettings(num_beams=1, max_new_tokens=64, min_new_tokens=1, length_penalty=1.0),
        image_subdir="mtvqa",
        source_url="https://huggingface.co/datasets/ByteDance/MTVQA",
        licence="CC BY-NC 4.0 (non-commercial)",
        citation=(
            "Tang et al. 2024, MTVQA: Benchmarking Multilingual Text-Centric Visual Question Answering, arXiv 2405.11985"
        ),
        # number of examples of the published test split (for `mvleval tasks`)
        size="6,778 questions on 2,116 images (test)",
    )

    def annotation_path(self, data_root: Path, lang: str, split: str) -> Path:
        return first_shard(data_root / "mtvqa" / "data", split)

    def read_examples(self, path: Path, lang: str, split: str, image_root: Path) -> list[Example]:
        examples: list[Example] = []
        code = lang.upper()
        files = shards(path.parent, split) or [path]
        for where, row in read_rows(files, ("image", "qa_pairs", "lang", "id"), what="MTVQA parquet file", fix=_FIX):
            if str(row["lang"]).upper() != code:
                continue
            pairs = _qa_pairs(row["qa_pairs"], where)
            image = materialise_image(image_bytes(row["image"], where, "image"), where)
            for k, pair in enumerate(pairs):
                question, answer = pair["question"].strip(), pair["answer"].strip()
                examples.append(
                    Example(
                        id=f"{row['id']}_{k}",
                        lang=lang,
                        prompt=self.template.format(question=question),
                        images=(image,),
                        references=(answer,),
                        target=answer,
                        source=f"{where}, pair {k}",
                        meta=(("image_id", str(row["id"])),),
                    )
                )
        return examples

    def metrics(self) -> tuple[Metric, ...]:
        from mvleval.metrics.contains import ContainsAccuracy

        return (ContainsAccuracy(),)

    def protocol_extra(self) -> dict[str, object]:
        return {
            "data": "ByteDance/MTVQA parquet",
            "example_id": "{id}_{k}",
            "headline": "mean over languages of contains_accuracy",
            "answer_language": "question's",
        }


def _qa_pairs(value: object, where: str) -> list[dict[str, str]]:
    """The row's question-answer pairs: a Python-literal string as published (or an already parsed list)."""
    parsed = value
    if isinstance(value, str):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise MvlevalError(
                f"'qa_pairs' is not a Python-literal list of question-answer pairs: {value[:60]!r}.",
                fix=_FIX,
                where=where,
            ) from None
    if not isinstance(parsed, list) or not parsed:
        raise MvlevalError(f"'qa_pairs' must be a non-empty list, found {parsed!r:.60}.", fix=_FIX, where=where)
    for k, pair in enumerate(parsed):
        if (
            not isinstance(pair, dict)
            or not isinstance(pair.get("question"), str)
            or not isinstance(pair.get("answer"), str)
            or not pair["question"].strip()
            or not pair["answer"].strip()
        ):
            raise MvlevalError(
                f"question-answer pair {k} must have a non-empty 'question' and 'answer', found {pair!r:.80}.",
                fix=_FIX,
                where=where,
            )
    return parsed
