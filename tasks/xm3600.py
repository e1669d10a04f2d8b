"""XM3600 (Crossmodal-3600): image captioning in 36 languages, scored with CIDEr per language as mBLIP does.

Data (the Crossmodal-3600 download, https://google.github.io/crossmodal-3600/, under <data-root>/xm3600):
  xm3600/captions.jsonl   one line per image: "image/key", "image/locale", and for every language code
                          {"caption": [...], "caption/tokenized": [...], "caption/tokenized/lowercase": [...]}
Images: <image-root>/xm3600/<image/key>.jpg (3600 images, shared by all 36 languages). Only a "test" split exists.

Protocol (mBLIP, gregor-ge/mBLIP: data/xm3600/convert_xm3600_to_coco.py, configs/datamodule/mblip_xm3600.yaml,
configs/evaluation/mblip_eval_captioning.yaml): one example per image and language; prompt "Caption in {Language}: "
(trailing space) with mBLIP's English language names (mvleval.benchmarks.languages, including its spellings "Ukranian" and
"Portugese"); 5 beams, at most 50 new tokens, at least 1, length_penalty 1. The references are the raw `caption`
strings of the image's entry for that language (mBLIP used `row[lang]["caption"]`, not the tokenized fields); the
zh/ja/th segmentation and NFC normalisation mBLIP applied to references and predictions belong to the CIDEr metric,
not to this adapter. An image without captions in the evaluated language is an error: mBLIP's CIDEr (pycocoevalcap)
asserts at least one reference per image, so such a file could not have produced its published numbers.

Metrics: CIDEr (mBLIP's, the headline), then BLEU and chrF++ through sacrebleu on the same segmentation (v2; not in
mBLIP's evaluation, see mvleval/metrics/sacrebleu_metrics.py), then language fidelity.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import ClassVar

from mvleval.benchmarks.annotations import read_jsonl, safe_image_path
from mvleval.benchmarks.languages import language_name
from mvleval.benchmarks.spec import TaskSpec
from mvleval.benchmarks.task import Example, Task
from mvleval.metrics.base import Metric
from mvleval.util.errors import MvlevalError

_FORMAT_FIX = "use the Crossmodal-3600 release's captions.jsonl; see tasks/README.md for the expected format."

LANGUAGES = (
    "ar", "bn", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fil", "fr", "he", "hi", "hr", "hu", "id", "it",
    "ja", "ko", "mi", "nl", "no", "pl", "pt", "quz", "ro", "ru", "sv", "sw", "te", "th", "tr", "uk", "vi", "zh",
)  # fmt: skip


class XM3600(Task):
    spec = TaskSpec(
        name="xm3600",
        version=2,  # v2: BLEU and chrF++ added beside CIDEr
        description="Crossmodal-3600 image captioning in 36 languages; CIDEr, BLEU, chrF++",
        kind="caption",
        languages=LANGUAGES,
        default_split="test",
        splits=("test",),
        prompt_template="Caption in {language}: ",
        chat_prompt_template="Write a one-sentence caption of the image in {language}.",
        image_subdir="xm3600",
        source_url="https://google.github.io/crossmodal-3600/",
        licence="CC BY 4.0 (captions); images from the Open Images dataset, each under its own licence (mostly CC BY 2.0)",
        citation=(
            "Thapliyal et al. 2022, Crossmodal-3600: A Massively Multilingual Multimodal Evaluation Dataset, EMNLP 2022"
        ),
    )
    #: the per-language field holding the references (mBLIP used the raw captions, not the tokenized variants)
    reference_field: ClassVar[str] = "caption"

    def annotation_path(self, data_root: Path, lang: str, split: str) -> Path:
        # One file holds every language; the language is picked per line in read_examples.
        return data_root / "xm3600" / "captions.jsonl"

    def read_examples(self, path: Path, lang: str, split: str, image_root: Path) -> list[Example]:
        prompt = self.template.format(language=language_name(lang))
        examples: list[Example] = []
        for lineno, row in read_jsonl(path, required=("image/key",), what="XM3600 captions file"):
            where = f"{path}:{lineno}"
            key = row["image/key"]
            if not isinstance(key, str) or not key:
                raise MvlevalError(
                    f"'image/key' must be a non-empty string, found {key!r}.", fix=_FORMAT_FIX, where=where
                )
            entry = row.get(lang)
            if not isinstance(entry, dict):
                raise MvlevalError(
                    f"image {key} has no '{lang}' captions (an object with a '{self.reference_field}' list)."
                    if entry is None
                    else f"the '{lang}' entry of image {key} is a {type(entry).__name__}, expected an object.",
                    fix=_FORMAT_FIX,
                    where=where,
                )
            captions = entry.get(self.reference_field)
            # At least one caption (pycocoevalcap's CIDEr asserts it); empty strings are kept as mBLIP kept them.
            if not isinstance(captions, list) or not captions or not all(isinstance(c, str) for c in captions):
                raise MvlevalError(
                    f"the '{lang}' entry of image {key} needs a non-empty list of strings in "
                    f"'{self.reference_field}', found {captions!r}.",
                    fix=_FORMAT_FIX,
                    where=where,
                )
            # posixpath.join keeps an absolute key absolute, so safe_image_path refuses it instead of nesting it.
            image = safe_image_path(image_root, posixpath.join(self.image_subdir, f"{key}.jpg"), where=where)
            examples.append(
                Example(
                    id=key,
                    lang=lang,
                    prompt=prompt,
                    images=(image,),
                    references=tuple(captions),
                    target=captions[0],
                    source=where,
                    meta=(("image_key", key), ("image_locale", str(row.get("image/locale", "")))),
                )
            )
        return examples

    def metrics(self) -> tuple[Metric, ...]:
        from mvleval.metrics import Bleu, ChrF, Cider, LanguageFidelity

        # CIDEr is mBLIP's metric and the headline; BLEU and chrF++ (sacrebleu, same segmentation) are reported beside it
        return (Cider(), Bleu(), ChrF(), LanguageFidelity(languages=self.languages, answer_language=None))

    def protocol_extra(self) -> dict[str, object]:
        return {
            "language_names": {code: language_name(code) for code in self.languages},
            "reference_field": self.reference_field,
            "image_path": f"{self.image_subdir}/<image/key>.jpg",
            "answer_language": "the prompted language",
        }
