"""The task adapters read the real published annotation files in ../shared/data (skipped when absent).

Expected counts are the published figures (README of ../shared and IGLUE); label distributions and image lists are
recomputed here from the raw files with plain json + collections.Counter, independently of the task code, and
compared with what the tasks produce. Images are not shipped: empty placeholder files are created for the paths the
raw annotations name (as mBLIP's code would open them), so `check_data` must find every one of them.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mvleval.benchmarks.datacheck import check_data
from mvleval.benchmarks.registry import load_task
from mvleval.util.errors import MvlevalError
from tests.helpers import read_jsonl

XVNLI_LABELS = {"entailment": "yes", "contradiction": "no", "neutral": "maybe"}


def _iglue(shared: Path) -> Path:
    return shared / "iglue" / "datasets"


def _marvl_image(row: dict[str, Any], side: str) -> str:
    """The path mBLIP opens (NFKD of <language>/images/<concept>/<file>); few-shot files already hold the concept."""
    file = row[side]
    inner = file if "/" in file else f"{row['concept']}/{file}"
    return "marvl/" + unicodedata.normalize("NFKD", f"{row['language']}/images/{inner}")


@pytest.fixture(scope="module")
def image_root(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny valid JPEG at every image path the shared annotation files reference (data check opens each one)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="JPEG")
    jpeg = buffer.getvalue()
    root = tmp_path_factory.mktemp("real-images")
    iglue = _iglue(shared_data)
    rels: set[str] = set()
    for path in list(iglue.glob("xFlickrCO/annotations/*/*.jsonl")) + [iglue / "flickr30k/annotations/test_ann.jsonl"]:
        rels.update(f"flickr30k/{r['img_path']}" for r in read_jsonl(path))
    for path in iglue.glob("XVNLI/annotations/*/*.jsonl"):
        rels.update(f"flickr30k/{r['Flikr30kID']}.jpg" for r in read_jsonl(path))
    for path in iglue.glob("marvl/*/annotations/*.jsonl"):
        rels.update(_marvl_image(r, side) for r in read_jsonl(path) for side in ("left_img", "right_img"))
    for rel in rels:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(jpeg)
    return root


# -- XVNLI -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", ["en", "ar"])
def test_xvnli_test_split(shared_data: Path, image_root: Path, lang: str) -> None:
    raw = read_jsonl(_iglue(shared_data) / f"XVNLI/annotations/{lang}/test.jsonl")
    assert len(raw) == 1164
    usable = [r for r in raw if r["gold_label"] != "-"]
    examples = load_task("xvnli").examples(shared_data, image_root, lang, "test")

    assert len(examples) == 1150 == len(usable)
    # Counter from the raw file, mapped by hand: contradiction 375, neutral 381, entailment 394 (+ 14 "-").
    raw_labels = Counter(r["gold_label"] for r in raw)
    assert raw_labels == {"contradiction": 375, "neutral": 381, "entailment": 394, "-": 14}
    assert Counter(e.target for e in examples) == {XVNLI_LABELS[k]: v for k, v in raw_labels.items() if k != "-"}
    assert [e.id for e in examples] == [r["pairID"] for r in usable]
    for e, r in zip(examples, usable):
        assert e.prompt == f'Is it guaranteed true that "{r["sentence2"]}"? Yes, no, or maybe? Answer in English:'
        assert e.images == (image_root / "flickr30k" / f"{r['Flikr30kID']}.jpg",)
        assert e.references == (XVNLI_LABELS[r["gold_label"]],)


@pytest.mark.parametrize(("split", "n_raw", "n_dash"), [("train_1", 3, 0), ("train_5", 18, 1), ("train_10", 39, 1)])
def test_xvnli_few_shot_splits(shared_data: Path, image_root: Path, split: str, n_raw: int, n_dash: int) -> None:
    raw = read_jsonl(_iglue(shared_data) / f"XVNLI/annotations/en/{split}.jsonl")
    assert (len(raw), sum(r["gold_label"] == "-" for r in raw)) == (n_raw, n_dash)
    examples = load_task("xvnli").examples(shared_data, image_root, "en", split)
    assert len(examples) == n_raw - n_dash
    assert Counter(e.target for e in examples) == Counter(
        XVNLI_LABELS[r["gold_label"]] for r in raw if r["gold_label"] != "-"
    )


# -- MaRVL -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("lang", "n", "n_true"), [("id", 1128, 564), ("zh", 1012, 504)])
def test_marvl_test_split(shared_data: Path, image_root: Path, lang: str, n: int, n_true: int) -> None:
    raw = read_jsonl(_iglue(shared_data) / f"marvl/zero_shot/annotations/marvl-{lang}.jsonl")
    examples = load_task("marvl").examples(shared_data, image_root, lang, "test")

    assert len(examples) == len(raw) == n
    assert Counter(r["label"] for r in raw) == {True: n_true, False: n - n_true}
    assert Counter(e.target for e in examples) == {"yes": n_true, "no": n - n_true}
    for e, r in zip(examples, raw):
        assert e.id == r["id"]
        assert e.prompt == f'Based on the two images, is it correct to say "{r["caption"]}"? Yes or no?'
        assert e.images == (image_root / _marvl_image(r, "left_img"), image_root / _marvl_image(r, "right_img"))
        assert all(p.is_file() for p in e.images)


@pytest.mark.parametrize(("lang", "split", "n"), [("id", "train_1", 4), ("id", "train_10", 40), ("zh", "train_10", 40)])
def test_marvl_few_shot_splits(shared_data: Path, image_root: Path, lang: str, split: str, n: int) -> None:
    raw = read_jsonl(_iglue(shared_data) / f"marvl/few_shot/annotations/marvl-{lang}_{split.replace('_', '')}.jsonl")
    examples = load_task("marvl").examples(shared_data, image_root, lang, split)
    assert len(examples) == len(raw) == n
    assert Counter(e.target for e in examples) == Counter("yes" if r["label"] else "no" for r in raw)
    assert all(p.is_file() for e in examples for p in e.images)


def test_marvl_non_ascii_concepts_are_present(shared_data: Path) -> None:
    """The zh file really has non-ASCII concept folders (so the Unicode path handling is exercised above)."""
    raw = read_jsonl(_iglue(shared_data) / "marvl/zero_shot/annotations/marvl-zh.jsonl")
    assert any(not r["concept"].isascii() for r in raw)


# -- xFlickrCo -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("lang", "name"), [("de", "German"), ("ja", "Japanese"), ("zh", "Chinese")])
def test_xflickrco_test_split(shared_data: Path, image_root: Path, lang: str, name: str) -> None:
    raw = read_jsonl(_iglue(shared_data) / f"xFlickrCO/annotations/{lang}/test.jsonl")
    examples = load_task("xflickrco").examples(shared_data, image_root, lang, "test")

    assert len(examples) == len(raw) == 2000
    assert sum(e.images[0].name.startswith("COCO_val2014_") for e in examples) == 1000
    for e, r in zip(examples, raw):
        assert e.id == str(r["id"]) and e.references == tuple(r["sentences"]) and len(e.references) == 1
        assert e.prompt == f"Caption in {name}: "
        assert e.images == (image_root / "flickr30k" / r["img_path"],)


def test_xflickrco_keeps_the_empty_german_caption(shared_data: Path, image_root: Path) -> None:
    """de test.jsonl line 1960 has the caption "": kept as mBLIP kept it (n stays 2000; that image scores 0 CIDEr)."""
    raw = read_jsonl(_iglue(shared_data) / "xFlickrCO/annotations/de/test.jsonl")
    assert [i + 1 for i, r in enumerate(raw) if r["sentences"] == [""]] == [1960]
    examples = load_task("xflickrco").examples(shared_data, image_root, "de", "test")
    assert examples[1959].references == ("",) and examples[1959].source.endswith("test.jsonl:1960")


def test_xflickrco_english_is_flickr30k_test_with_five_references(shared_data: Path, image_root: Path) -> None:
    raw = read_jsonl(_iglue(shared_data) / "flickr30k/annotations/test_ann.jsonl")
    examples = load_task("xflickrco").examples(shared_data, image_root, "en", "test")
    assert len(examples) == len(raw) == 1000
    assert Counter(len(e.references) for e in examples) == {5: 1000}
    assert [e.references for e in examples] == [tuple(r["sentences"]) for r in raw]
    assert {e.prompt for e in examples} == {"Caption in English: "}


@pytest.mark.parametrize(
    ("lang", "split", "n"), [("de", "train_10", 10), ("de", "train_100", 100), ("ja", "train_100", 100)]
)
def test_xflickrco_few_shot_splits(shared_data: Path, image_root: Path, lang: str, split: str, n: int) -> None:
    examples = load_task("xflickrco").examples(shared_data, image_root, lang, split)
    assert len(examples) == n and all(e.target == e.references[0] for e in examples)


# -- XM3600 ----------------------------------------------------------------------------------------------------------
def test_xm3600_fixture_ids_are_real_image_ids(shared_data: Path) -> None:
    """The captions file is not shipped; the test fixture uses real image keys from the published id list."""
    ids = (shared_data / "xm3600" / "image_ids.txt").read_text().split()
    assert len(ids) == len(set(ids)) == 3600
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
    fixture = Path(__file__).resolve().parent / "data" / "tasks" / "xm3600" / "captions.jsonl"
    keys = [r["image/key"] for r in read_jsonl(fixture)]
    assert keys and set(keys) <= set(ids)


# -- data check over the real files ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("task", "split", "present", "counts"),
    [
        ("xvnli", "test", ("en", "ar"), {"en": (1150, 357), "ar": (1150, 357)}),
        ("marvl", "test", ("id", "zh"), None),
        ("xflickrco", "test", ("de", "en", "ja", "zh"), {"de": (2000, 2000), "en": (1000, 1000)}),
    ],
)
def test_data_check_on_shared_data(
    shared_data: Path,
    image_root: Path,
    task: str,
    split: str,
    present: tuple[str, ...],
    counts: dict[str, tuple[int, int]] | None,
) -> None:
    t = load_task(task)
    report = check_data(t, shared_data, image_root, split=split)
    by_lang = {r.lang: r for r in report.languages}
    assert tuple(by_lang) == t.languages
    for lang in present:
        assert by_lang[lang].ok, by_lang[lang]
    for lang in set(t.languages) - set(present):  # shared data is partial: the rest is reported, not raised
        assert not by_lang[lang].ok and "not found" in (by_lang[lang].error or "")
    assert not report.ok
    for lang, (n_examples, n_images) in (counts or {}).items():
        assert (by_lang[lang].n_examples, by_lang[lang].n_images_referenced) == (n_examples, n_images)
    assert check_data(t, shared_data, image_root, languages=present, split=split).ok


def test_data_check_reports_missing_real_images(shared_data: Path, tmp_path: Path) -> None:
    report = check_data(load_task("marvl"), shared_data, tmp_path, languages=["zh"])
    (zh,) = report.languages
    raw = read_jsonl(_iglue(shared_data) / "marvl/zero_shot/annotations/marvl-zh.jsonl")
    distinct = {_marvl_image(r, s) for r in raw for s in ("left_img", "right_img")}
    assert zh.n_examples == 1012 and zh.n_images_referenced == zh.n_missing_images == len(distinct)
    assert not report.ok


def test_unknown_split_is_refused_before_reading(shared_data: Path, image_root: Path) -> None:
    with pytest.raises(MvlevalError, match="no split 'dev'"):
        load_task("marvl").examples(shared_data, image_root, "id", "dev")
