"""XVNLI: visual entailment in 5 languages (does the image entail the hypothesis?), scored as mBLIP does.

Data (a clone of https://github.com/e-bug/iglue under <data-root>/iglue):
  iglue/datasets/XVNLI/annotations/<lang>/<split>.jsonl     lang = ar en es fr ru; split = test | train_N
  one line per pair: {"gold_label", "sentence1", "sentence2", "captionID", "pairID", "Flikr30kID"} (sic: "Flikr")
Images: <image-root>/flickr30k/<Flikr30kID>.jpg.

Protocol (mBLIP, gregor-ge/mBLIP: data/xvnli/generate_xvnli.py, configs/datamodule/mblip_xvnli.yaml,
configs/evaluation/mblip_eval_classification.yaml): only the hypothesis (`sentence2`) is shown, the image stands in for
the premise (`sentence1` is ignored); prompt 'Is it guaranteed true that "{sentence2}"? Yes, no, or maybe? Answer in
English:'; 5 beams, at most 10 new tokens, at least 1, length_penalty -1; gold labels entailment/contradiction/neutral
-> "yes"/"no"/"maybe"; rows whose gold label is "-" (no annotator majority) are dropped, 14 of the 1164 test rows per
language, leaving 1150. mBLIP drops every label outside the three classes; here any other value is an error instead
(the published files hold only the three classes and "-", so the examples are identical, and a corrupted label is
not silently skipped). Scored by exact match after VQA cleaning of the prediction, and relaxed accuracy.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import ClassVar

from mvleval.benchmarks.annotations import read_jsonl, safe_image_path
from mvleval.benchmarks.spec import TaskSpec
from mvleval.benchmarks.task import Example, Task
from mvleval.metrics.base import Metric
from mvleval.util.errors import MvlevalError

_FORMAT_FIX = "use IGLUE's published XVNLI annotation files; see tasks/README.md for the format."


class XVNLI(Task):
    spec = TaskSpec(
        name="xvnli",
        version=1,
        description="XVNLI visual entailment (hypothesis only) in 5 languages; English yes/no/maybe; exact match",
        kind="yesno",
        languages=("ar", "en", "es", "fr", "ru"),
        default_split="test",
        splits=("test", r"train_\d+"),
        prompt_template='Is it guaranteed true that "{sentence2}"? Yes, no, or maybe? Answer in English:',
        chat_prompt_template=(
            'Is it guaranteed true that "{sentence2}"? Answer in English with a single word: yes, no, or maybe.'
        ),
        image_subdir="flickr30k",
        label_vocabulary=frozenset({"yes", "no", "maybe"}),
        source_url="https://github.com/e-bug/iglue",
        licence="CC BY 4.0 (XVNLI text); Flickr30k images for non-commercial research under the Flickr30k terms",
        citation=(
            "Bugliarello et al. 2022, IGLUE: A Benchmark for Transfer Learning across Modalities, Tasks, and Languages, "
            "ICML 2022; Xie et al. 2019, Visual Entailment (SNLI-VE), arXiv:1901.06706"
        ),
    )
    #: gold_label -> the answer word the model must produce (mBLIP's label_map).
    label_map: ClassVar[dict[str, str]] = {"entailment": "yes", "contradiction": "no", "neutral": "maybe"}
    #: gold labels whose rows are dropped: "-" marks pairs without an annotator majority.
    dropped_labels: ClassVar[frozenset[str]] = frozenset({"-"})

    def annotation_path(self, data_root: Path, lang: str, split: str) -> Path:
        return data_root / "iglue" / "datasets" / "XVNLI" / "annotations" / lang / f"{split}.jsonl"

    def read_examples(self, path: Path, lang: str, split: str, image_root: Path) -> list[Example]:
        examples: list[Example] = []
        required = ("gold_label", "sentence2", "pairID", "Flikr30kID")
        for lineno, row in read_jsonl(path, required=required, what="XVNLI annotation file"):
            where = f"{path}:{lineno}"
            gold = row["gold_label"]
            if not isinstance(gold, str):
                raise MvlevalError(f"'gold_label' must be a string, found {gold!r}.", fix=_FORMAT_FIX, where=where)
            if gold in self.dropped_labels:
                continue
            if gold not in self.label_map:
                raise MvlevalError(
                    f"unknown gold_label {gold!r}; expected one of {', '.join(sorted(self.label_map))}"
                    " (or '-', which is skipped).",
                    fix=_FORMAT_FIX,
                    where=where,
                )
            hypothesis = row["sentence2"]
            if not isinstance(hypothesis, str) or not hypothesis.strip():
                raise MvlevalError(
                    f"'sentence2' must be a non-empty string, found {hypothesis!r}.", fix=_FORMAT_FIX, where=where
                )
            image_id = row["Flikr30kID"]
            if not isinstance(image_id, (str, int)) or isinstance(image_id, bool) or not str(image_id):
                raise MvlevalError(
                    f"'Flikr30kID' must be an image id, found {image_id!r}.", fix=_FORMAT_FIX, where=where
                )
            image_id = str(image_id)
            # posixpath.join keeps an absolute id absolute, so safe_image_path refuses it instead of nesting it.
            image = safe_image_path(image_root, posixpath.join(self.image_subdir, f"{image_id}.jpg"), where=where)
            answer = self.label_map[gold]
            examples.append(
                Example(
                    id=str(row["pairID"]),
                    lang=lang,
                    prompt=self.template.format(sentence2=hypothesis),
                    images=(image,),
                    references=(answer,),
                    target=answer,
                    source=where,
                    meta=(("image_id", image_id), ("gold_label", gold)),
                )
            )
        if not examples:
            raise MvlevalError(
                "no usable rows: every gold_label is '-'.",
                fix="use IGLUE's published XVNLI annotation files.",
                where=path,
            )
        return examples

    def metrics(self) -> tuple[Metric, ...]:
        from mvleval.metrics import ExactMatch, LanguageFidelity, RelaxedAccuracy

        return (ExactMatch(), RelaxedAccuracy(), LanguageFidelity(languages=self.languages, answer_language="en"))

    def protocol_extra(self) -> dict[str, object]:
        return {
            "label_map": dict(self.label_map),
            "dropped_gold_labels": sorted(self.dropped_labels),
            "label_vocabulary": sorted(self.label_vocabulary or ()),
            "text_field": "sentence2 (premise sentence1 ignored)",
            "image_path": f"{self.image_subdir}/<Flikr30kID>.jpg",
            "answer_language": "en",
        }

    def requested_language(self, lang: str) -> str:
        return "en"
