"""MaRVL: is a statement true of a pair of images? (5 languages, culturally specific concepts), scored as mBLIP does.

Data (a clone of https://github.com/e-bug/iglue under <data-root>/iglue):
  test (zero-shot)  iglue/datasets/marvl/zero_shot/annotations/marvl-<lang>.jsonl        lang = id sw ta tr zh
  train_N           iglue/datasets/marvl/few_shot/annotations/marvl-<lang>_train<N>.jsonl (IGLUE ships id tr zh)
  one line per statement: {"concept", "language", "caption", "left_img", "right_img", "label": true|false, "id", ...}
Images (from the MaRVL release, https://marvl-challenge.github.io): <image-root>/marvl/<language>/images/<concept>/<file>,
left image first. Zero-shot files give a bare file name ("82-6.jpg"); few-shot files already prefix the concept
folder ("52-火锅/52-n-2.jpg"), so the concept is only added when the file name does not already start with it.

Unicode in paths: concept folders may be non-ASCII ("82-铅笔", Turkish and Tamil names). mBLIP normalises the whole
relative path `<language>/images/<concept>/<file>` to NFKD before opening it (data/marvl/generate_marvl.py, which
asserts the NFKD path exists, so its copy of the MaRVL images had decomposed names). The annotation text is NFC, so
a byte-wise join can miss a file whose name was stored decomposed, or, after re-encoding, composed. This adapter tries mBLIP's NFKD form first, then NFC, then the annotation's own
spelling, and uses the first that exists on disk (all three name the same file, written in different Unicode forms);
when none exists the NFKD form is used, so `mvleval data check` reports the path mBLIP would have opened.

Protocol (mBLIP: configs/experiment/mblip_test_marvl.yaml, configs/evaluation/mblip_eval_classification.yaml): prompt
'Based on the two images, is it correct to say "{caption}"? Yes or no?' (the test-time override; the training config's
template adds " Answer in English:"), each image encoded separately and both sets of query tokens given to the LLM;
5 beams, at most 10 new tokens, at least 1, length_penalty -1; label true/false -> "yes"/"no"; exact match after VQA
cleaning of the prediction, and relaxed accuracy. Answers are English in every language.
"""

from __future__ import annotations

import posixpath
import unicodedata
from pathlib import Path
from typing import ClassVar, Literal

from mvleval.benchmarks.annotations import read_jsonl, safe_image_path
from mvleval.benchmarks.spec import TaskSpec
from mvleval.benchmarks.task import Example, Task
from mvleval.metrics.base import Metric
from mvleval.util.errors import MvlevalError

_FORMAT_FIX = "use IGLUE's published MaRVL annotation files; see tasks/README.md for the format."
_REQUIRED = ("concept", "language", "caption", "left_img", "right_img", "label", "id")


class MaRVL(Task):
    spec = TaskSpec(
        name="marvl",
        version=1,
        description="MaRVL: is a statement about two images true? 5 languages; English yes/no; exact match",
        kind="yesno",
        languages=("id", "sw", "ta", "tr", "zh"),
        default_split="test",
        splits=("test", r"train_\d+"),
        prompt_template='Based on the two images, is it correct to say "{caption}"? Yes or no?',
        chat_prompt_template=(
            'Based on the two images, is it correct to say "{caption}"? Answer in English with a single word: yes or no.'
        ),
        images_per_example=2,
        image_subdir="marvl",
        label_vocabulary=frozenset({"yes", "no"}),
        # the annotations' source; the images come from the MaRVL release (https://marvl-challenge.github.io)
        source_url="https://github.com/e-bug/iglue",
        licence="CC BY 4.0 (statements); images for non-commercial research only, under their original licences",
        citation=(
            "Liu, Bugliarello et al. 2021, Visually Grounded Reasoning across Languages and Cultures, EMNLP 2021; "
            "Bugliarello et al. 2022, IGLUE, ICML 2022"
        ),
    )
    #: JSON label -> the answer word the model must produce (mBLIP's target2str {"True": "yes", "False": "no"}).
    label_map: ClassVar[dict[bool, str]] = {True: "yes", False: "no"}
    #: Unicode forms tried, in order, when locating an image on disk (see the module docstring).
    path_normalisations: ClassVar[tuple[Literal["NFKD", "NFC", "as-is"], ...]] = ("NFKD", "NFC", "as-is")

    def annotation_path(self, data_root: Path, lang: str, split: str) -> Path:
        marvl = data_root / "iglue" / "datasets" / "marvl"
        if split == "test":
            return marvl / "zero_shot" / "annotations" / f"marvl-{lang}.jsonl"
        shots = split.removeprefix("train_")
        return marvl / "few_shot" / "annotations" / f"marvl-{lang}_train{shots}.jsonl"

    def read_examples(self, path: Path, lang: str, split: str, image_root: Path) -> list[Example]:
        examples: list[Example] = []
        for lineno, row in read_jsonl(path, required=_REQUIRED, what="MaRVL annotation file"):
            where = f"{path}:{lineno}"
            for key in ("concept", "language", "caption", "left_img", "right_img"):
                if not isinstance(row[key], str) or not row[key].strip():
                    raise MvlevalError(
                        f"'{key}' must be a non-empty string, found {row[key]!r}.", fix=_FORMAT_FIX, where=where
                    )
            label = row["label"]
            if not isinstance(label, bool):
                raise MvlevalError(f"'label' must be true or false, found {label!r}.", fix=_FORMAT_FIX, where=where)
            answer = self.label_map[label]
            images = tuple(
                self._image_path(image_root, row["language"], row["concept"], row[side], where)
                for side in ("left_img", "right_img")
            )
            examples.append(
                Example(
                    id=str(row["id"]),
                    lang=lang,
                    prompt=self.template.format(caption=row["caption"]),
                    images=images,
                    references=(answer,),
                    target=answer,
                    source=where,
                    meta=(
                        ("concept", row["concept"]),
                        ("left_img", row["left_img"]),
                        ("right_img", row["right_img"]),
                        ("label", str(label).lower()),
                    ),
                )
            )
        return examples

    def _image_path(self, image_root: Path, language: str, concept: str, file: str, where: str) -> Path:
        """Locate one image of a pair, trying mBLIP's NFKD spelling of the path first (see the module docstring)."""
        # Few-shot files already carry the concept folder in the file name. posixpath.join keeps an absolute field
        # absolute, so safe_image_path refuses it instead of nesting it under the root.
        inner = file if file.startswith(f"{concept}/") else posixpath.join(concept, file)
        relative = posixpath.join(self.image_subdir, language, "images", inner)
        spellings: list[str] = []
        for form in self.path_normalisations:
            spelled = unicodedata.normalize(form, relative) if form != "as-is" else relative
            if spelled not in spellings:
                spellings.append(spelled)
        candidates = [safe_image_path(image_root, s, where=where) for s in spellings]
        return next((c for c in candidates if c.is_file()), candidates[0])

    def metrics(self) -> tuple[Metric, ...]:
        from mvleval.metrics import ExactMatch, LanguageFidelity, RelaxedAccuracy

        return (ExactMatch(), RelaxedAccuracy(), LanguageFidelity(languages=self.languages, answer_language="en"))

    def protocol_extra(self) -> dict[str, object]:
        return {
            "label_map": {str(k).lower(): v for k, v in self.label_map.items()},
            "label_vocabulary": sorted(self.label_vocabulary or ()),
            "image_order": ["left_img", "right_img"],
            "image_path": f"{self.image_subdir}/<language>/images/<concept>/<file>",
            "path_normalisations": list(self.path_normalisations),
            "answer_language": "en",
        }

    def requested_language(self, lang: str) -> str:
        return "en"
