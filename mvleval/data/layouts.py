"""Writers that turn a mirror's parquet rows into the data-root layout the task adapters read (tasks/README.md).

One writer per layout named in the lock. Each writes one language's annotation file and its images (the bytes as the
mirror stores them, so the image content is the published one; an image already on disk with the same bytes is not
written again, which is how xFlickrCo and XVNLI share Flickr30k images and XM3600 and MaXM share XM3600 images), and
returns notes on every way the mirror differs from the upstream release. A difference is either repaired (from the
upstream file in the lock) or said in a note; a row the layout cannot represent is refused.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mvleval.data.fetch import Source, atomic_write
from mvleval.data.fetch import inside as _inside
from mvleval.util.errors import MvlevalError
from mvleval.util.jsonl import BadLine, jsonl_text, parse_lines

#: COCO val2014 ids are below this, Flickr30k ids above (xFlickrCO: COCO 810..581010, Flickr30k 1989609..8234387593);
#: used only when the mirror's image struct carries no file name
COCO_ID_BELOW = 1_000_000


def rows(paths: list[Path], columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """The rows of parquet files, in file order, a batch at a time (a split embeds all its images)."""
    import pyarrow.parquet as pq

    for path in paths:
        parquet = pq.ParquetFile(path)
        names = set(parquet.schema_arrow.names)
        cols = [c for c in columns if c in names] if columns else None
        for batch in parquet.iter_batches(batch_size=256, columns=cols):
            yield from batch.to_pylist()


def _columns(paths: list[Path]) -> set[str]:
    import pyarrow.parquet as pq

    return set(pq.ParquetFile(paths[0]).schema_arrow.names) if paths else set()


def _require(paths: list[Path], needed: tuple[str, ...], source: Source, lang: str) -> set[str]:
    have = _columns(paths)
    missing = [c for c in needed if c not in have]
    if missing:
        raise MvlevalError(
            f"{source.repo} ({lang}) lacks the column(s) {', '.join(missing)} the {source.layout} layout reads "
            f"(found: {', '.join(sorted(have))}).",
            fix="the mirror's schema changed: pin the commit in the lock that has them (mvleval data lock), or report it.",
            where=str(paths[0]),
        )
    return have


class ImageWriter:
    """Writes image bytes under <data root>/images once; counts what was written, kept and found different."""

    def __init__(self, root: Path) -> None:
        self.images = root / "images"
        self.written = self.kept = 0
        self.differs: list[str] = []

    def put(self, relative: str, cell: Any, where: str) -> None:
        data = cell.get("bytes") if isinstance(cell, dict) else cell
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise MvlevalError(
                "the row has no image bytes.", fix="report the mirror's broken row; nothing was scored.", where=where
            )
        _inside(relative, "image root", where)
        target = self.images / relative
        if target.is_file():
            if target.stat().st_size == len(data) and target.read_bytes() == data:
                self.kept += 1
                return
            self.differs.append(relative)  # keep the first copy: other tasks may already rely on it
            return
        atomic_write(target, bytes(data))
        self.written += 1

    def notes(self) -> list[str]:
        out = [f"images: {self.written} written, {self.kept} already there (same bytes)"]
        if self.differs:
            out.append(
                f"{len(self.differs)} image(s) differ in bytes from the copy already in the data root (kept the "
                f"first), e.g. {self.differs[0]}"
            )
        return out


def _image_name(cell: Any) -> str | None:
    path = cell.get("path") if isinstance(cell, dict) else None
    return posixpath.basename(path) if isinstance(path, str) and path else None


def _ensure_ext(name: str) -> str:
    return name if posixpath.splitext(name)[1] else f"{name}.jpg"


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    atomic_write(path, jsonl_text(records).encode("utf-8"))


def _id_column(have: set[str], candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if c in have), None)


# ------------------------------------------------------------------------------------------------------------- xm3600
def write_xm3600(src: Source, lang: str, paths: list[Path], ups: list[Path], root: Path) -> list[str]:
    """xm3600/captions.jsonl (every language fetched so far, one line per image) + images/xm3600/<image_id>.jpg."""
    _require(paths, ("image_id", "captions", "image"), src, lang)
    images = ImageWriter(root)
    parts = root / ".mvleval" / "parts" / "xm3600"
    entries = []
    for i, row in enumerate(rows(paths)):
        key = str(row["image_id"])
        images.put(f"xm3600/{key}.jpg", row["image"], f"{paths[0]} row {i}")
        entries.append(
            {
                "image/key": key,
                "image/locale": row.get("image_locale"),
                lang: {
                    "caption": list(row["captions"] or []),
                    "caption/tokenized": list(row.get("captions_tokenized") or []),
                    "caption/tokenized/lowercase": list(row.get("captions_tokenized_lowercase") or []),
                },
            }
        )
    _write_jsonl(parts / f"{lang}.jsonl", entries)
    # rebuild the one captions file from every language fetched into this root
    merged: dict[str, dict[str, Any]] = {}
    for part in sorted(parts.glob("*.jsonl")):
        for lineno, value in parse_lines(part.read_text(encoding="utf-8")):
            if isinstance(value, BadLine):
                raise MvlevalError(
                    f"the fetched captions of one language are damaged ({value.reason}).",
                    fix="delete the file and run `mvleval data fetch --task xm3600` again for that language.",
                    where=f"{part}:{lineno}",
                )
            row = value
            slot = merged.setdefault(row["image/key"], {"image/key": row["image/key"], "image/locale": None})
            slot["image/locale"] = slot["image/locale"] or row["image/locale"]
            slot.update({k: v for k, v in row.items() if k not in ("image/key", "image/locale")})
    _write_jsonl(root / "xm3600" / "captions.jsonl", [merged[k] for k in sorted(merged)])
    return [f"{len(entries)} images with captions", *images.notes()]


# ---------------------------------------------------------------------------------------------------------- xflickrco
def _flickr_name(row_id: str, cell: Any) -> tuple[str, str | int]:
    """(img_path, id as IGLUE writes it): Flickr30k ids are strings, COCO ids integers (xFlickrCO's own files)."""
    name = _image_name(cell)
    if name:
        is_coco = name.startswith("COCO_")
    else:
        is_coco = row_id.isdigit() and int(row_id) < COCO_ID_BELOW
        name = f"COCO_val2014_{int(row_id):012d}.jpg" if is_coco else f"{row_id}.jpg"
    return name, (int(row_id) if is_coco and row_id.isdigit() else row_id)


def write_xflickrco(src: Source, lang: str, paths: list[Path], ups: list[Path], root: Path) -> list[str]:
    """iglue/datasets/xFlickrCO/annotations/<lang>/test.jsonl + images/flickr30k/<img_path>; en: Flickr30k test."""
    _require(paths, ("id", "sentences", "image"), src, lang)
    images = ImageWriter(root)
    records = []
    for i, row in enumerate(rows(paths)):
        sentences = row["sentences"]
        sentences = [sentences] if isinstance(sentences, str) else list(sentences or [])
        name, rid = _flickr_name(str(row["id"]), row["image"])
        images.put(f"flickr30k/{name}", row["image"], f"{paths[0]} row {i}")
        records.append({"sentences": sentences, "id": rid, "img_path": name})
    _write_jsonl(root / "iglue" / "datasets" / "xFlickrCO" / "annotations" / lang / "test.jsonl", records)
    notes = [f"{len(records)} images", *images.notes()]
    if lang == "en":
        test_ann = next((p for p in ups if p.name == "test_ann.jsonl"), None)
        if test_ann is None:
            raise MvlevalError(
                "xflickrco en needs Flickr30k's test_ann.jsonl (the references mBLIP scored).",
                fix="check the lock's upstream entry for xflickrco.",
            )
        needed = [json.loads(line)["img_path"] for line in test_ann.read_text(encoding="utf-8").splitlines() if line]
        missing = [n for n in needed if not (root / "images" / "flickr30k" / n).is_file()]
        if missing:
            raise MvlevalError(
                f"{len(missing)} of the {len(needed)} Flickr30k test images are not in the mirror's en split "
                f"(e.g. {missing[0]}).",
                fix="the mirror changed: pin the commit in the lock that has them, or report it.",
            )
        notes.append(
            f"REPAIRED: the mirror's en is IGLUE's {len(records)} x 1 caption set; mvleval scores en on Flickr30k test "
            f"({len(needed)} images x 5 captions, as mBLIP did) from the upstream test_ann.jsonl (sha256 pinned); "
            "its images are the mirror's"
        )
    return notes


# --------------------------------------------------------------------------------------------------------------- xgqa
def write_xgqa(src: Source, lang: str, paths: list[Path], ups: list[Path], root: Path) -> list[str]:
    """xgqa/data/few_shot/<lang>/test.json (keyed by question id) + images/gqa/<imageId>.jpg."""
    have = _require(paths, ("question", "answer", "image_id", "image"), src, lang)
    id_col = _id_column(have, ("question_id", "qid", "id"))
    images = ImageWriter(root)
    out: dict[str, dict[str, Any]] = {}
    for i, row in enumerate(rows(paths)):
        qid = str(row[id_col]) if id_col else f"{lang}-{i}"
        if qid in out:
            raise MvlevalError(
                f"question id {qid} appears twice.", fix="report the mirror.", where=f"{paths[0]} row {i}"
            )
        image_id = str(row["image_id"])
        images.put(f"gqa/{image_id}.jpg", row["image"], f"{paths[0]} row {i}")
        item = {"imageId": image_id, "question": row["question"], "answer": row["answer"]}
        if row.get("full_answer") is not None:
            item["fullAnswer"] = row["full_answer"]
        out[qid] = item
    target = root / "xgqa" / "data" / "few_shot" / lang / "test.json"
    atomic_write(target, json.dumps(out, ensure_ascii=False).encode("utf-8"))
    notes = [f"{len(out)} questions", *images.notes()]
    if not id_col:
        notes.append(
            "the mirror has no question-id column: ids are '<lang>-<row>' (xGQA's own ids differ; scores do not)"
        )
    return notes


# -------------------------------------------------------------------------------------------------------------- marvl
def write_marvl(src: Source, lang: str, paths: list[Path], ups: list[Path], root: Path) -> list[str]:
    """iglue/datasets/marvl/zero_shot/annotations/marvl-<lang>.jsonl + images/marvl/<language>/images/<concept>/."""
    _require(paths, ("id", "hypothesis", "label", "concept", "left_img", "right_img"), src, lang)
    images = ImageWriter(root)
    records = []
    for i, row in enumerate(rows(paths)):
        where = f"{paths[0]} row {i}"
        language = str(row.get("language") or lang)
        concept = str(row["concept"])
        names = []
        for side in ("left", "right"):
            name = row.get(f"{side}_img_id") or _image_name(row[f"{side}_img"])
            if not name:
                raise MvlevalError(f"the {side} image has no id.", fix="report the mirror's row.", where=where)
            name = _ensure_ext(posixpath.basename(str(name)))
            images.put(f"marvl/{language}/images/{concept}/{name}", row[f"{side}_img"], where)
            names.append(name)
        label = row["label"]
        if isinstance(label, str) and label.lower() in ("true", "false"):
            label = label.lower() == "true"
        if not isinstance(label, bool):
            raise MvlevalError(f"label {label!r} is not true/false.", fix="report the mirror's row.", where=where)
        record = {
            "concept": concept,
            "language": language,
            "caption": row["hypothesis"],
            "left_img": names[0],
            "right_img": names[1],
            "label": label,
            "id": str(row["id"]),
        }
        for extra in ("chapter", "annotator_info"):
            if row.get(extra) is not None:
                record[extra] = row[extra]
        records.append(record)
    _write_jsonl(root / "iglue" / "datasets" / "marvl" / "zero_shot" / "annotations" / f"marvl-{lang}.jsonl", records)
    return [f"{len(records)} statements", *images.notes()]


# -------------------------------------------------------------------------------------------------------------- xvnli
def write_xvnli(src: Source, lang: str, paths: list[Path], ups: list[Path], root: Path) -> list[str]:
    """iglue/datasets/XVNLI/annotations/<lang>/test.jsonl + images/flickr30k/<Flikr30kID>.jpg."""
    have = _require(paths, ("flikr30k_id", "hypothesis", "label", "image"), src, lang)
    id_col = _id_column(have, ("pairID", "pair_id", "id"))
    images = ImageWriter(root)
    records = []
    for i, row in enumerate(rows(paths)):
        image_id = str(row["flikr30k_id"]).removesuffix(".jpg")
        images.put(f"flickr30k/{image_id}.jpg", row["image"], f"{paths[0]} row {i}")
        label = row["label"]
        if not isinstance(label, str):
            raise MvlevalError(
                f"label {label!r} is not a string (entailment, neutral, contradiction or -).",
                fix="report the mirror's row.",
                where=f"{paths[0]} row {i}",
            )
        records.append(
            {
                "gold_label": label,
                "sentence1": row.get("caption"),
                "sentence2": row["hypothesis"],
                "pairID": str(row[id_col]) if id_col else f"{lang}-{i}",
                "Flikr30kID": image_id,
            }
        )
    _write_jsonl(root / "iglue" / "datasets" / "XVNLI" / "annotations" / lang / "test.jsonl", records)
    dropped = sum(r["gold_label"] == "-" for r in records)
    notes = [f"{len(records)} pairs ({dropped} with gold label '-', dropped by the task as mBLIP did)", *images.notes()]
    if not id_col:
        notes.append("the mirror has no pair-id column: ids are '<lang>-<row>' (XVNLI's pairIDs differ; scores do not)")
    return notes


# --------------------------------------------------------------------------------------------------------------- maxm
def write_maxm(
    src: Source, lang: str, paths: list[Path], ups: list[Path], root: Path, repo_paths: list[str]
) -> list[str]:
    """maxm/maxm_v1_release/maxm_v1_<lang>.json (the release's schema) + images/xm3600/<image_id>.jpg. The mirror
    splits the yes/no questions into <lang>_yesno files; mBLIP kept them, so both are merged back."""
    main = [p for p, r in zip(paths, repo_paths, strict=True) if "_yesno" not in r]
    yesno = [p for p, r in zip(paths, repo_paths, strict=True) if "_yesno" in r]
    if not yesno:
        raise MvlevalError(
            f"maxm {lang}: the mirror has no {lang}_yesno file; without its yes/no questions the set is not the one "
            "mBLIP scored.",
            fix="pin a commit of floschne/maxm that has them (mvleval data lock).",
        )
    have = _require(main, ("question", "processed_answers", "image_id", "image"), src, lang)
    id_col = _id_column(have, ("question_id", "qid", "id"))
    images = ImageWriter(root)
    annotations: dict[str, dict[str, Any]] = {}
    counts = {"main": 0, "yesno": 0}
    for kind, files in (("main", main), ("yesno", yesno)):
        for i, row in enumerate(rows(files)):
            image_id = str(row["image_id"])
            images.put(f"xm3600/{image_id}.jpg", row["image"], f"{files[0]} row {i}")
            qid = str(row[id_col]) if id_col else f"{lang}-{kind}-{i}"
            entry = annotations.setdefault(image_id, {"image_id": image_id, "qa_pairs": []})
            entry["qa_pairs"].append(
                {
                    "question_id": qid,
                    "question": row["question"],
                    "answers": list(row.get("answers") or []),
                    "processed_answers": list(row["processed_answers"] or []),
                }
            )
            counts[kind] += 1
    release = {"dataset": "maxm", "version": "v1", "split": lang, "annotations": list(annotations.values())}
    target = root / "maxm" / "maxm_v1_release" / f"maxm_v1_{lang}.json"
    atomic_write(target, json.dumps(release, ensure_ascii=False).encode("utf-8"))
    notes = [
        f"REPAIRED: merged {counts['yesno']} yes/no questions from the mirror's {lang}_yesno split back into the "
        f"{counts['main']} others (mBLIP kept them); pairs are grouped by image, yes/no ones after the others",
        *images.notes(),
    ]
    if lang == "iw":
        notes.append("Hebrew is 'iw' (MaXM's code) in the mirror and in mvleval; --lang he is accepted for it")
    if not id_col:
        notes.append("the mirror has no question-id column: ids are '<lang>-<main|yesno>-<row>' (scores do not change)")
    return notes


# ----------------------------------------------------------------------------------------------------------- snapshot
def write_snapshot(src: Source, lang: str, paths: list[Path], repo_paths: list[str], root: Path) -> list[str]:
    """The repo's files as published under <data root>/<task>/<path in repo> (hard links into the hub cache where
    the file system allows, else copies)."""
    for path, repo_path in zip(paths, repo_paths, strict=True):
        _inside(repo_path, "data root", f"{src.repo}/{repo_path}")
        target = root / src.task / repo_path
        if target.is_file() and os.path.samefile(target, path):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        if tmp.exists():
            tmp.unlink()
        try:
            os.link(path.resolve(), tmp)
        except OSError:
            import shutil

            shutil.copyfile(path, tmp)
        os.replace(tmp, target)
    return [f"{len(paths)} file(s) as published under {src.task}/"]


_WRITERS: dict[str, Callable[..., list[str]]] = {
    "xm3600": write_xm3600,
    "xflickrco": write_xflickrco,
    "xgqa": write_xgqa,
    "marvl": write_marvl,
    "xvnli": write_xvnli,
}


def write_language(
    src: Source, lang: str, paths: list[Path], ups: list[Path], root: Path, repo_paths: list[str]
) -> list[str]:
    """Write one language of a task from its downloaded, verified files; returns the notes on the mirror."""
    if src.layout == "snapshot":
        return write_snapshot(src, lang, paths, repo_paths, root)
    if src.layout == "maxm":
        return write_maxm(src, lang, paths, ups, root, repo_paths)
    if src.layout not in _WRITERS:
        raise MvlevalError(f"unknown layout {src.layout!r} in the lock.", fix="restore the lock from the release.")
    return _WRITERS[src.layout](src, lang, paths, ups, root)
