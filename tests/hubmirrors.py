"""Parquet stand-ins for the `floschne/*` mirrors in each one's published schema (BENCHMARK-SOURCES.md, NOTES.md):
one split per language, `data/<lang>-00000-of-00001.parquet`, images embedded as `{bytes, path}` structs holding real
JPEG/PNG files. Built from small hand-made rows, or from the upstream annotation files in ../shared/data."""

from __future__ import annotations

import hashlib
import io
from typing import Any


def image_bytes(key: str, fmt: str = "JPEG", size: int = 24) -> bytes:
    """A small, distinct, decodable image for an id (colour and a bar derived from it)."""
    from PIL import Image, ImageDraw

    h = hashlib.sha256(key.encode()).digest()
    img = Image.new("RGB", (size, size), (h[0], h[1], h[2]))
    ImageDraw.Draw(img).rectangle((h[3] % (size - 6), 0, h[3] % (size - 6) + 6, size), fill=(255 - h[0], 90, h[2]))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def image_cell(key: str, fmt: str = "JPEG") -> dict[str, Any]:
    return {"bytes": image_bytes(key, fmt), "path": None}


def parquet(rows: list[dict[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def shard(lang: str) -> str:
    return f"data/{lang}-00000-of-00001.parquet"


# ------------------------------------------------------------------------------------------- rows in each schema
def xm3600_rows(keys: list[str], lang: str) -> list[dict[str, Any]]:
    return [
        {
            "image_id": k,
            "image": image_cell(f"xm3600/{k}"),
            "image_locale": "en",
            "captions": [f"{lang} caption {i} a", f"{lang} caption {i} b"],
            "captions_tokenized": [f"{lang} caption {i} a"],
            "captions_tokenized_lowercase": [f"{lang} caption {i} a"],
        }
        for i, k in enumerate(keys)
    ]


def xflickrco_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """IGLUE xFlickrCO lines -> the mirror's rows (`sentences` one string, `id` a string, no file name)."""
    return [
        {"id": str(r["id"]), "image": image_cell(f"flickr30k/{r['img_path']}"), "sentences": r["sentences"][0]}
        for r in records
    ]


def xgqa_rows(questions: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """xGQA's question file -> the mirror's rows (no question id column in the documented schema)."""
    return [
        {
            "question": q["question"],
            "answer": q["answer"],
            "full_answer": q.get("fullAnswer", ""),
            "image_id": q["imageId"],
            "image": image_cell(f"gqa/{q['imageId']}"),
        }
        for q in questions.values()
    ]


def marvl_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        left, right = (r[s].rsplit(".", 1)[0] for s in ("left_img", "right_img"))
        li = image_cell(f"marvl/{r['concept']}/{left}", "PNG")
        ri = image_cell(f"marvl/{r['concept']}/{right}", "PNG")
        out.append(
            {
                "id": r["id"],
                "hypothesis": r["caption"],
                "hypo_en": "",
                "language": r["language"],
                "label": r["label"],
                "chapter": r.get("chapter", ""),
                "concept": r["concept"],
                "left_img_id": left,
                "right_img_id": right,
                "left_img": li,
                "right_img": ri,
                "resized_left_img": li,
                "resized_right_img": ri,
                "vertically_stacked_img": li,
                "horizontally_stacked_img": ri,
            }
        )
    return out


def xvnli_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "flikr30k_id": r["Flikr30kID"],
            "image": image_cell(f"flickr30k/{r['Flikr30kID']}.jpg"),
            "caption": r["sentence1"],
            "hypothesis": r["sentence2"],
            "label": r["gold_label"],
        }
        for r in records
    ]


def maxm_rows(lang: str, n: int, yesno: bool) -> list[dict[str, Any]]:
    keys = [f"{i:016x}" for i in range(3)]
    return [
        {
            "question": f"{lang} {'yes/no ' if yesno else ''}question {i}?",
            "answers": ["yes" if yesno else f"answer {i}"],
            "processed_answers": ["yes" if yesno else f"answer {i}"],
            "image": image_cell(f"xm3600/{keys[i % 3]}"),
            "image_id": keys[i % 3],
            "language": lang,
        }
        for i in range(n)
    ]


# ------------------------------------------------------------------------------------------------ whole repos
XM_KEYS = [f"{i:016x}" for i in range(3)]


def small_repo(task: str, langs: list[str]) -> dict[str, bytes]:
    """A handful of rows per language for the mirror of `task`, hand-made in its schema."""
    files: dict[str, bytes] = {}
    for lang in langs:
        if task == "xm3600":
            files[shard(lang)] = parquet(xm3600_rows(XM_KEYS, lang))
        elif task == "xflickrco":
            recs = [{"id": "1007129816", "img_path": "1007129816.jpg", "sentences": [f"{lang} a man"]}]
            recs.append({"id": 391895, "img_path": "COCO_val2014_000000391895.jpg", "sentences": [f"{lang} a bike"]})
            recs.append({"id": "2005373853", "img_path": "2005373853.jpg", "sentences": [f"{lang} two dogs"]})
            files[shard(lang)] = parquet(xflickrco_rows(recs))
        elif task == "xgqa":
            qs = {
                str(100 + i): {"imageId": f"n{i % 2}", "question": f"{lang} what is it {i}?", "answer": "cat"}
                for i in range(4)
            }
            files[shard(lang)] = parquet(xgqa_rows(qs))
        elif task == "marvl":
            recs = [
                {
                    "id": f"{lang}-{i}",
                    "concept": "82-铅笔",
                    "language": lang,
                    "caption": f"{lang} statement {i}",
                    "left_img": f"82-{i}.jpg",
                    "right_img": f"82-{i + 1}.jpg",
                    "label": bool(i % 2),
                    "chapter": "Cognition",
                }
                for i in range(3)
            ]
            files[shard(lang)] = parquet(marvl_rows(recs))
        elif task == "xvnli":
            labels = ["entailment", "contradiction", "neutral", "-"]
            recs = [
                {"Flikr30kID": str(1007129816 + i), "sentence1": "premise", "sentence2": f"{lang} hyp {i}",
                 "gold_label": labels[i]}
                for i in range(4)
            ]  # fmt: skip
            files[shard(lang)] = parquet(xvnli_rows(recs))
        elif task == "maxm":
            files[shard(lang)] = parquet(maxm_rows(lang, 3, yesno=False))
            files[f"data/{lang}_yesno-00000-of-00001.parquet"] = parquet(maxm_rows(lang, 2, yesno=True))
        else:
            raise ValueError(task)
    return files
