"""xFlickrCo: image captioning on IGLUE's xFlickr&CO images in 8 languages, scored with CIDEr as mBLIP does.

IGLUE defines xFlickr&CO as an image-text *retrieval* benchmark; mBLIP (and this task) uses its images and captions
for *captioning* instead: the model captions each image and CIDEr compares the output with the image's caption(s).
Scores are therefore not comparable with IGLUE's retrieval recall numbers.

Data (a clone of https://github.com/e-bug/iglue under <data-root>/iglue):
  de es id ja ru tr zh   iglue/datasets/xFlickrCO/annotations/<lang>/<split>.jsonl   split = test | train_N
                         one line per image: {"sentences": [caption], "id", "img_path"}; test: 2000 images
                         (1000 Flickr30k + 1000 COCO val2014), one caption each
  en                     iglue/datasets/flickr30k/annotations/test_ann.jsonl (split "test"): Flickr30k test,
                         1000 images with 5 captions each, as mBLIP did (not xFlickrCO/annotations/en, whose
                         2000 images carry one caption each)
Images: <image-root>/flickr30k/<img_path> (Flickr30k and COCO val2014 images in one folder, as mBLIP kept them).

Protocol (mBLIP, gregor-ge/mBLIP: data/flickr/generate_flickr.py, configs/datamodule/mblip_flickr.yaml,
configs/evaluation/mblip_eval_captioning.yaml): prompt "Caption in {Language}: " (trailing space) with mBLIP's
English language names (mvleval.benchmarks.languages; for these 8 languages mBLIP's two name tables agree); 5 beams, at most 50
new tokens, at least 1, length_penalty 1; references are the record's `sentences`, raw (segmentation and NFC
belong to the CIDEr metric). Empty captions are kept as mBLIP kept them: xFlickrCO de test.jsonl line 1960
(COCO_val2014_000000122239.jpg) has the single caption "", so that image scores 0 CIDEr for any output.

Metrics: CIDEr (mBLIP's, the headline), then BLEU and chrF++ through sacrebleu on the same segmentation (v2; not in
mBLIP's evaluation, see mvleval/metrics/sacrebleu_metrics.py), then language fidelity.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from mvleval.benchmarks.annotations import read_jsonl, safe_image_path
from mvleval.benchmarks.languages import language_name
from mvleval.benchmarks.spec import TaskSpec
from mvleval.benchmarks.task import Example, Task
from mvleval.metrics.base import Metric
from mvleval.util.errors import MvlevalError

_FORMAT_FIX = "use IGLUE's published xFlickrCO / flickr30k annotation files; see tasks/README.md for the format."


class XFlickrCo(Task):
    spec = TaskSpec(
        name="xflickrco",
        version=2,  # v2: BLEU and chrF++ added beside CIDEr
        description="xFlickr&CO images captioned in 8 languages (English: Flickr30k test, 5 refs); CIDEr, BLEU, chrF++",
        kind="caption",
        languages=("de", "en", "es", "id", "ja", "ru", "tr", "zh"),
        default_split="test",
        splits=("test", r"train_\d+"),
        prompt_template="Caption in {language}: ",
        chat_prompt_template="Write a one-sentence caption of the image in {language}.",
        image_subdir="flickr30k",
        source_url="https://github.com/e-bug/iglue",
        licence=(
            "CC BY 4.0 (xFlickr&CO captions); Flickr30k captions under the Flickr30k terms of use; "
            "images: Flickr30k (non-commercial research) and COCO val2014 (Flickr terms of each image)"
        ),
        citation=(
            "Bugliarello et al. 2022, IGLUE: A Benchmark for Transfer Learning across Modalities, Tasks, and Languages, "
            "ICML 2022; Young et al. 2014, From image descriptions to visual denotations (Flickr30k), TACL"
        ),
    )

    def annotation_path(self, data_root: Path, lang: str, split: str) -> Path:
        datasets = data_root / "iglue" / "datasets"
        if lang == "en" and split == "test":
            # mBLIP's English captioning set: Flickr30k test with 5 references per image.
            return datasets / "flickr30k" / "annotations" / "test_ann.jsonl"
        return datasets / "xFlickrCO" / "annotations" / lang / f"{split}.jsonl"

    def read_examples(self, path: Path, lang: str, split: str, image_root: Path) -> list[Example]:
        prompt = self.template.format(language=language_name(lang))
        examples: list[Example] = []
        for lineno, row in read_jsonl(path, required=("sentences", "id", "img_path"), what="xFlickrCO annotation file"):
            where = f"{path}:{lineno}"
            sentences = row["sentences"]
            # Empty strings are kept, as mBLIP kept them (xFlickrCO de test line 1960 has the caption ""): such an
            # image scores CIDEr 0 whatever the model says, and dropping it would change the published mean.
            if not isinstance(sentences, list) or not sentences or not all(isinstance(s, str) for s in sentences):
                raise MvlevalError(
                    f"'sentences' must be a non-empty list of strings, found {sentences!r}.",
                    fix=_FORMAT_FIX,
                    where=where,
                )
            img_path = row["img_path"]
            if not isinstance(img_path, str) or not img_path:
                raise MvlevalError(
                    f"'img_path' must be a non-empty string, found {img_path!r}.", fix=_FORMAT_FIX, where=where
                )
            # posixpath.join keeps an absolute img_path absolute, so safe_image_path refuses it instead of nesting it.
            image = safe_image_path(image_root, posixpath.join(self.image_subdir, img_path), where=where)
            examples.append(
                Example(
                    # xFlickrCO ids are strings for Flickr30k rows and integers for COCO rows.
                    id=str(row["id"]),
                    lang=lang,
                    prompt=prompt,
                    images=(image,),
                    references=tuple(sentences),
                    target=sentences[0],
                    source=where,
                    meta=(("img_path", img_path),),
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
            "reference_field": "sentences",
            "english_test_set": "iglue/datasets/flickr30k/annotations/test_ann.jsonl (1000 images, 5 references)",
            "image_path": f"{self.image_subdir}/<img_path>",
            "answer_language": "the prompted language",
        }
