"""xGQA: cross-lingual visual question answering (GQA questions translated into 7 languages), scored as mBLIP does.

Data (a clone of https://github.com/adapter-hub/xGQA under <data-root>/xgqa):
  few-shot splits   xgqa/data/few_shot/<lang>/<split>.json          split = dev | test | train_N
  zero-shot         xgqa/data/zero_shot/testdev_balanced_questions_<lang>.json   (split "testdev")
Images: GQA images at <image-root>/gqa/<imageId>.jpg.

Protocol (mBLIP, gregor-ge/mBLIP): prompt "Question: {question} Short answer in English:", 5 beams, at most 10 new tokens,
length_penalty -1; the answer is always English; exact match after LAVIS VQA cleaning of the prediction (the label is only
lower-cased and stripped) and relaxed accuracy (prediction starts or ends with the label). mBLIP reports the few-shot
`test` split (9666 questions per language), which is the default here.
"""

from __future__ import annotations

from pathlib import Path

from mvleval.benchmarks.annotations import read_json, safe_image_path
from mvleval.benchmarks.spec import TaskSpec
from mvleval.benchmarks.task import Example, Task
from mvleval.metrics.base import Metric
from mvleval.util.errors import MvlevalError


class XGQA(Task):
    spec = TaskSpec(
        name="xgqa",
        version=1,
        description="Cross-lingual GQA visual question answering; English answers; exact match",
        kind="vqa",
        languages=("bn", "de", "en", "id", "ko", "pt", "ru", "zh"),
        default_split="test",
        splits=("test", "dev", r"train_\d+", "testdev"),
        prompt_template="Question: {question} Short answer in English:",
        chat_prompt_template="{question}\nAnswer the question in English using a single word or phrase.",
        image_subdir="gqa",
        source_url="https://github.com/adapter-hub/xGQA",
        licence="CC BY 4.0 (questions); GQA images: see https://cs.stanford.edu/people/dorarad/gqa",
        citation=(
            "Pfeiffer et al. 2022, xGQA: Cross-Lingual Visual Question Answering, Findings of ACL 2022; "
            "Hudson & Manning 2019, GQA, CVPR 2019"
        ),
    )

    def annotation_path(self, data_root: Path, lang: str, split: str) -> Path:
        if split == "testdev":
            return data_root / "xgqa" / "data" / "zero_shot" / f"testdev_balanced_questions_{lang}.json"
        return data_root / "xgqa" / "data" / "few_shot" / lang / f"{split}.json"

    def read_examples(self, path: Path, lang: str, split: str, image_root: Path) -> list[Example]:
        data = read_json(path, what="xGQA question file")
        if not isinstance(data, dict):
            raise MvlevalError(
                f"expected a JSON object keyed by question id, found a {type(data).__name__}.",
                fix="use the xGQA release's question files (GQA format).",
                where=path,
            )
        examples: list[Example] = []
        for qid, item in data.items():
            where = f"{path} (question {qid})"
            if not isinstance(item, dict):
                raise MvlevalError("question entry is not an object.", fix="use the xGQA release's files.", where=where)
            missing = [k for k in ("imageId", "question", "answer") if k not in item]
            if missing:
                raise MvlevalError(
                    f"question lacks the field(s) {', '.join(missing)}.",
                    fix="use the xGQA release's files (GQA format: imageId, question, answer).",
                    where=where,
                )
            question = str(item["question"]).strip()
            answer = str(item["answer"]).strip().lower()
            if not question:
                raise MvlevalError("question text is empty.", fix="use the xGQA release's files.", where=where)
            image = safe_image_path(image_root, f"{self.image_subdir}/{item['imageId']}.jpg", where=where)
            examples.append(
                Example(
                    id=str(qid),
                    lang=lang,
                    prompt=self.template.format(question=question),
                    images=(image,),
                    references=(answer,),
                    target=answer,
                    source=where,
                    meta=(("image_id", str(item["imageId"])),),
                )
            )
        return examples

    def metrics(self) -> tuple[Metric, ...]:
        from mvleval.metrics import ExactMatch, LanguageFidelity, RelaxedAccuracy

        return (ExactMatch(), RelaxedAccuracy(), LanguageFidelity(languages=self.languages, answer_language="en"))

    def protocol_extra(self) -> dict[str, object]:
        return {"label_processing": "lower+strip", "answer_language": "en"}

    def requested_language(self, lang: str) -> str:
        return "en"
