"""MaXM: multilingual visual question answering on Crossmodal-3600 images, answers in the question's language.

Data (the MaXM v1 release, https://github.com/google-research-datasets/maxm: the zip
https://storage.googleapis.com/maxm/maxm_v1_release.zip unpacked under <data-root>/maxm):
  maxm/maxm_v1_release/maxm_v1_<lang>.json   lang = en fr hi iw ro th zh (Hebrew is "iw" in MaXM)
  one JSON object per language: {"dataset", "version", "split": <lang>, "annotations": [{"image_id", "image_url",
  "qa_pairs": [{"question_id", "question", "answers": [...], "processed_answers": [...], "is_collection"}]}]}
  (mBLIP reads the files from maxm/maxm_v1_release/, data/maxm/generate_maxm.py; a copy unpacked without the
  maxm_v1_release folder, maxm/maxm_v1_<lang>.json, is read as well.)
Images: the Crossmodal-3600 images, <image-root>/xm3600/<image_id>.jpg (shared with the xm3600 task).
Test only: the single split is "test".

Protocol (mBLIP, gregor-ge/mBLIP: data/maxm/generate_maxm.py, configs/experiment/mblip_test_maxm.yaml,
src/tasks/vllm/evaluation.py `vqa_maxm_classification_evaluation`): every QA pair of every image is one example, in
file order; prompt "Question: {question} Short answer in {Language}:" with the question's language named in English
("Hebrew" for iw); 5 beams, at most 10 new tokens, at least 1, length_penalty -1; an answer is correct when the
prediction, stripped and lower-cased (no VQA cleaning: mBLIP's config sets vqa_process False), equals one of the
pair's `processed_answers` lower-cased and stripped. Relaxed accuracy (the processed prediction starts or ends with a
processed answer) and language fidelity against the question's language are reported beside it; mBLIP reported
accuracy only.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any, ClassVar

from mvleval.benchmarks.annotations import read_json, safe_image_path
from mvleval.benchmarks.languages import language_name
from mvleval.benchmarks.spec import TaskSpec
from mvleval.benchmarks.task import Example, Task
from mvleval.metrics.base import Metric
from mvleval.util.errors import MvlevalError

_FORMAT_FIX = "use the MaXM v1 release's maxm_v1_<lang>.json files; see tasks/README.md for the expected format."


class MaXM(Task):
    spec = TaskSpec(
        name="maxm",
        version=1,
        description="MaXM multilingual VQA on Crossmodal-3600 images; answers in the question's language; exact match",
        kind="vqa",
        languages=("en", "fr", "hi", "iw", "ro", "th", "zh"),
        default_split="test",
        splits=("test",),
        prompt_template="Question: {question} Short answer in {language}:",
        chat_prompt_template="{question}\nAnswer the question in {language} using a single word or phrase.",
        image_subdir="xm3600",
        source_url="https://github.com/google-research-datasets/maxm",
        licence=(
            "MaXM: free to use for any purpose, acknowledgement of Google LLC appreciated, provided as is (the release's "
            "LICENSE); images from Crossmodal-3600 / Open Images, each under its own licence (mostly CC BY 2.0)"
        ),
        citation=(
            "Changpinyo et al. 2023, MaXM: Towards Multilingual Visual Question Answering, Findings of EMNLP 2023; "
            "Thapliyal et al. 2022, Crossmodal-3600, EMNLP 2022"
        ),
    )
    #: the field holding the gold answers mBLIP scored against (the raw `answers` are kept out of scoring)
    reference_field: ClassVar[str] = "processed_answers"

    def annotation_path(self, data_root: Path, lang: str, split: str) -> Path:
        release = data_root / "maxm" / "maxm_v1_release" / f"maxm_v1_{lang}.json"
        flat = data_root / "maxm" / f"maxm_v1_{lang}.json"
        # mBLIP's layout first; the same file unpacked one folder higher is the same data (the error names mBLIP's)
        return flat if not release.is_file() and flat.is_file() else release

    def read_examples(self, path: Path, lang: str, split: str, image_root: Path) -> list[Example]:
        data = read_json(path, what="MaXM file")
        annotations = data.get("annotations") if isinstance(data, dict) else None
        if not isinstance(annotations, list):
            found = (
                f"an object with the keys {', '.join(map(repr, list(data)[:8]))}"
                if isinstance(data, dict)
                else (f"a {type(data).__name__}")
            )
            raise MvlevalError(
                f"expected a JSON object with an 'annotations' list, found {found}.", fix=_FORMAT_FIX, where=path
            )
        prompt_language = language_name(lang)
        examples: list[Example] = []
        seen: dict[str, str] = {}
        for i, entry in enumerate(annotations):
            where_image = f"{path} (annotations[{i}])"
            if not isinstance(entry, dict):
                raise MvlevalError(
                    f"annotation is a {type(entry).__name__}, expected an object.", fix=_FORMAT_FIX, where=where_image
                )
            image_id = entry.get("image_id")
            if not isinstance(image_id, str) or not image_id:
                raise MvlevalError(
                    f"'image_id' must be a non-empty string, found {image_id!r}.", fix=_FORMAT_FIX, where=where_image
                )
            where_image = f"{path} (annotations[{i}], image {image_id})"
            pairs = entry.get("qa_pairs")
            if not isinstance(pairs, list):
                raise MvlevalError(f"'qa_pairs' must be a list, found {pairs!r}.", fix=_FORMAT_FIX, where=where_image)
            # posixpath.join keeps an absolute id absolute, so safe_image_path refuses it instead of nesting it
            image = safe_image_path(image_root, posixpath.join(self.image_subdir, f"{image_id}.jpg"), where=where_image)
            for j, pair in enumerate(pairs):
                examples.append(
                    self._example(
                        pair,
                        lang,
                        image,
                        image_id,
                        prompt_language,
                        seen,
                        f"{path} (annotations[{i}].qa_pairs[{j}], image {image_id})",
                    )
                )
        if not examples:
            raise MvlevalError("the MaXM file holds no question-answer pairs.", fix=_FORMAT_FIX, where=path)
        return examples

    def _example(
        self, pair: Any, lang: str, image: Path, image_id: str, prompt_language: str, seen: dict[str, str], where: str
    ) -> Example:
        if not isinstance(pair, dict):
            raise MvlevalError(
                f"question-answer pair is a {type(pair).__name__}, expected an object.", fix=_FORMAT_FIX, where=where
            )
        missing = [k for k in ("question_id", "question", self.reference_field) if k not in pair]
        if missing:
            raise MvlevalError(
                f"question-answer pair lacks the field(s) {', '.join(map(repr, missing))}.",
                fix=_FORMAT_FIX,
                where=where,
            )
        qid, question, answers = pair["question_id"], pair["question"], pair[self.reference_field]
        if not isinstance(qid, (str, int)) or isinstance(qid, bool) or str(qid) == "":
            raise MvlevalError(
                f"'question_id' must be a non-empty string, found {qid!r}.", fix=_FORMAT_FIX, where=where
            )
        qid = str(qid)
        if qid in seen:
            raise MvlevalError(
                f"question id {qid} appears twice (first at {seen[qid]}).",
                fix="example ids must be unique within a language; re-download the file.",
                where=where,
            )
        seen[qid] = where
        if not isinstance(question, str) or not question.strip():
            raise MvlevalError(
                f"'question' must be a non-empty string, found {question!r}.", fix=_FORMAT_FIX, where=where
            )
        # at least one answer: mBLIP would score a pair without answers 0 whatever the model says; such a file is not
        # the release (whose pairs carry their answers), so it is refused rather than scored
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise MvlevalError(
                f"'{self.reference_field}' must be a non-empty list of strings, found {answers!r}.",
                fix=_FORMAT_FIX,
                where=where,
            )
        # mBLIP formats the question as it is in the file (no strip): f'Question: {qa_pair["question"]} Short ...'
        return Example(
            id=qid,
            lang=lang,
            prompt=self.template.format(question=question, language=prompt_language),
            images=(image,),
            references=tuple(answers),
            target=answers[0],
            source=where,
            meta=(("image_id", image_id), ("is_collection", str(pair.get("is_collection", "")).lower())),
        )

    def metrics(self) -> tuple[Metric, ...]:
        from mvleval.metrics import ExactMatch, LanguageFidelity, RelaxedAccuracy

        return (
            ExactMatch(prediction="strip+lower"),
            RelaxedAccuracy(prediction="strip+lower"),
            LanguageFidelity(languages=self.languages, answer_language=None),
        )

    def protocol_extra(self) -> dict[str, object]:
        return {
            "language_names": {code: language_name(code) for code in self.languages},
            "reference_field": self.reference_field,
            "prediction_processing": "strip+lower",
            "label_processing": "lower+strip",
            "image_path": f"{self.image_subdir}/<image_id>.jpg",
            "answer_language": "the question's language",
            "examples": "every qa_pair of every annotation, file order",
        }
