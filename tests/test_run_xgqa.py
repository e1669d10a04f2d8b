"""End-to-end `mvleval run --task xgqa` on tiny real mT5 and BLOOM checkpoints, real xGQA files and plain HF checkpoints."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

import pytest

from mvleval.benchmarks.registry import load_task
from mvleval.record.schema import read_record, read_samples
from tests.helpers import invoke, invoke_run, placeholder_images, run_records


def _xgqa_images(data_root: Path, image_root: Path, langs: list[str], split: str) -> int:
    task = load_task("xgqa")
    paths = {p for lang in langs for e in task.examples(data_root, image_root, lang, split) for p in e.images}
    return placeholder_images(sorted(paths))


def _simple_clean(text: str) -> str:
    """An independent, minimal answer normaliser for cross-checking exact match (lower, strip punctuation/articles)."""
    text = text.lower().strip()
    text = text.translate(str.maketrans("", "", string.punctuation))
    words = [w for w in text.split() if w not in {"a", "an", "the"}]
    return " ".join(words)


@pytest.mark.slow
def test_xgqa_real_dev_files_end_to_end(shared_data: Path, tmp_path: Path, tiny_mt5_dir: Path) -> None:
    image_root = tmp_path / "images"
    langs = ["de", "en", "zh"]
    assert _xgqa_images(shared_data, image_root, langs, "dev") == 50  # the dev split covers 50 GQA images
    out = tmp_path / "runs"
    args = [
        "run",
        "--task",
        "xgqa",
        "--model",
        tiny_mt5_dir,
        "--data-root",
        shared_data,
        "--image-root",
        image_root,
        "--split",
        "dev",
        "--out",
        out,
        "--batch-size",
        "64",
        "--num-beams",
        "1",
        "--max-new-tokens",
        "3",
    ]
    record_path = invoke_run(args, langs)
    record = read_record(record_path)
    assert record.task.n_examples == {"de": 1422, "en": 1422, "zh": 1422}
    assert record.task.split == "dev" and record.task.version == load_task("xgqa").version
    assert record.model.kind == "encoder-decoder" and record.model.bits == 32
    assert record.model.generation["num_beams"] == 1 and record.model.generation["max_new_tokens"] == 3
    assert record.model.generation["length_penalty"] == -1.0  # mBLIP's, not overridden
    rows = list(read_samples(record_path.parent / record.samples_file))
    assert len(rows) == 3 * 1422
    assert len({(r["lang"], r["id"]) for r in rows}) == len(rows)
    # independent recomputation from the per-sample file
    for lang in langs:
        lang_rows = [r for r in rows if r["lang"] == lang]
        em = sum(r["scores"]["exact_match"] for r in lang_rows) / len(lang_rows)
        assert record.scores["exact_match"].per_lang[lang] == pytest.approx(em, abs=1e-12)
        simple = sum(_simple_clean(r["prediction"]) == r["references"][0] for r in lang_rows) / len(lang_rows)
        assert record.scores["exact_match"].per_lang[lang] == pytest.approx(simple, abs=0.01)
        relaxed = sum(r["scores"]["relaxed_accuracy"] for r in lang_rows) / len(lang_rows)
        assert record.scores["relaxed_accuracy"].per_lang[lang] == pytest.approx(relaxed, abs=1e-12)
        assert record.scores["exact_match"].per_lang[lang] <= record.scores["relaxed_accuracy"].per_lang[lang]
    mean = sum(record.scores["exact_match"].per_lang.values()) / 3
    assert record.scores["exact_match"].mean == pytest.approx(mean)
    # the prompt is mBLIP's, filled with the translated question
    de = next(r for r in rows if r["lang"] == "de" and r["id"] == "201640614")
    assert de["prompt"] == "Question: Wer trägt das Kleid? Short answer in English:"
    assert de["references"] == ["women"]


def _demo_data(tmp_path: Path) -> tuple[Path, Path]:
    from mvleval.demo.command import build_demo_data

    return build_demo_data(tmp_path / "demo", n_train=0, n_test=6)


@pytest.mark.parametrize("fixture", ["tiny_mt5_dir", "tiny_bloom_dir"])
def test_run_record_contents(fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    model_dir: Path = request.getfixturevalue(fixture)
    data_root, image_root = _demo_data(tmp_path)
    out = tmp_path / "runs"
    result = invoke(
        "run",
        "--task",
        "xgqa",
        "--model",
        model_dir,
        "--data-root",
        data_root,
        "--image-root",
        image_root,
        "--lang",
        "en",
        "--lang",
        "zh",
        "--out",
        out,
        "--batch-size",
        "5",
        "--limit",
        "12",
    )
    assert result.exit_code == 0, result.output
    [record_path] = run_records(out)
    raw = json.loads(record_path.read_text())
    assert raw["schema_version"] == 2
    record = read_record(record_path)
    assert record.task.n_examples == {"en": 12, "zh": 12} and record.task.limit == 12
    assert record.model.kind == ("encoder-decoder" if "mt5" in fixture else "decoder-only")
    assert record.model.dtype == "float32" and record.model.adapter is None
    assert record.model.generation == {
        "num_beams": 5,
        "max_new_tokens": 10,
        "min_new_tokens": 1,
        "length_penalty": -1.0,
        "do_sample": False,
    }
    # 5 beams: the prompt is computed once per sample (mvleval/backends/shared_prefix.py), and the record says so
    assert record.model.generation_path == "beam search, prompt computed once per sample"
    assert set(record.scores) == {"exact_match", "relaxed_accuracy", "language_fidelity"}
    for metric in record.scores.values():
        assert metric.signature and set(metric.per_lang) == {"en", "zh"}
    prov = record.provenance
    assert prov.git_commit is None or re.fullmatch(r"[0-9a-f]{40}", prov.git_commit)
    assert prov.packages["torch"] and prov.packages["transformers"]
    assert prov.device.startswith("cpu")
    assert len(prov.annotation_files) == 2 and all(
        re.fullmatch(r"[0-9a-f]{64}", v) for v in prov.annotation_files.values()
    )
    assert prov.prompt_hash == load_task("xgqa").protocol_hash()
    rows = list(read_samples(out / record.samples_file))
    assert [r["lang"] for r in rows] == ["en"] * 12 + ["zh"] * 12
    keys = {"id", "lang", "prompt", "prediction", "references", "images", "scores"}
    assert all(keys <= set(r) <= keys | {"extra"} for r in rows)  # extra: what a metric found, e.g. a detected language
    assert all(
        len(r["images"]) == 1 and r["images"][0].startswith("gqa/") and r["images"][0].endswith(".jpg") for r in rows
    )
    assert not list(out.glob("*.partial.jsonl")) and not list(out.glob("*.manifest.json"))


def test_no_shared_prefix_switch_gives_the_same_samples(tmp_path: Path, tiny_mt5_dir: Path) -> None:
    """--no-shared-prefix runs transformers' plain generate: the per-sample file is byte-identical to the default
    (shared-prefix) run's, and each record names the path it took."""
    data_root, image_root = _demo_data(tmp_path)
    got = {}
    for flag in ("--shared-prefix", "--no-shared-prefix"):
        out = tmp_path / flag
        result = invoke(
            "run",
            "--task",
            "xgqa",
            "--model",
            tiny_mt5_dir,
            "--data-root",
            data_root,
            "--image-root",
            image_root,
            "--lang",
            "en",
            "--out",
            out,
            "--limit",
            "10",
            "--batch-size",
            "4",
            flag,
        )
        assert result.exit_code == 0, result.output
        [record_path] = list(out.glob("*-*.json"))
        record = read_record(record_path)
        got[flag] = (record.model.generation_path, (out / record.samples_file).read_bytes())
    assert got["--shared-prefix"][0] == "beam search, prompt computed once per sample"
    assert got["--no-shared-prefix"][0] == "transformers generate"
    assert got["--shared-prefix"][1] == got["--no-shared-prefix"][1]


def test_two_runs_are_byte_identical_apart_from_time(tmp_path: Path, tiny_bloom_dir: Path) -> None:
    data_root, image_root = _demo_data(tmp_path)
    texts = []
    for i in range(2):
        out = tmp_path / f"runs{i}"
        result = invoke(
            "run",
            "--task",
            "xgqa",
            "--model",
            tiny_bloom_dir,
            "--data-root",
            data_root,
            "--image-root",
            image_root,
            "--lang",
            "de",
            "--out",
            out,
            "--limit",
            "9",
            "--batch-size",
            ["4", "auto"][i],
            "--cache",
            "off",  # both runs generate: the second must not be answered from the first's cache
        )
        assert result.exit_code == 0, result.output
        [record_path] = list(out.glob("*-*.json"))
        record = json.loads(record_path.read_text())
        samples = (out / record["samples_file"]).read_bytes()
        for key in ("created_at", "duration_s"):
            record.pop(key)
        record["provenance"].pop("command")  # differs only in --out / --batch-size
        record["provenance"].pop("batch_size")  # 4, and what auto picked
        texts.append((json.dumps(record, sort_keys=True), samples))
    assert texts[0][1] == texts[1][1]
    assert texts[0][0] == texts[1][0]


def test_checkpoint_saved_by_plain_transformers_runs_without_flags(tmp_path: Path) -> None:
    """A tiny BLIP-2 written with nothing but transformers (processor without num_query_tokens, as older checkpoints)."""
    import torch
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        BlipImageProcessorPil,
        T5Config,
        T5Tokenizer,
    )

    torch.manual_seed(0)
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [
        (f"▁{w}", -float(i))
        for i, w in enumerate(
            "question short answer in english yes no red blue green what colour shape how many is are the".split()
        )
    ]
    pieces += [(c, -20.0) for c in string.ascii_lowercase + string.ascii_uppercase + "?:.,"]
    tokenizer = T5Tokenizer(vocab=pieces, unk_id=2, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", extra_ids=0)
    config = Blip2Config(
        vision_config=Blip2VisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ).to_dict(),
        qformer_config=Blip2QFormerConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            encoder_hidden_size=32,
            vocab_size=100,
        ).to_dict(),
        text_config=T5Config(
            vocab_size=len(tokenizer),
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=1,
            num_heads=2,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
        ).to_dict(),
        num_query_tokens=4,
    )
    model = Blip2ForConditionalGeneration(config).eval()
    processor = Blip2Processor(
        image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer
    )
    model_dir = tmp_path / "plain-blip2"
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)

    data_root, image_root = _demo_data(tmp_path)
    result = invoke(
        "run",
        "--task",
        "xgqa",
        "--model",
        model_dir,
        "--data-root",
        data_root,
        "--image-root",
        image_root,
        "--lang",
        "en",
        "--limit",
        "6",
        "--out",
        tmp_path / "runs",
    )
    assert result.exit_code == 0, result.output
    record = read_record(next((tmp_path / "runs").glob("*-*.json")))
    assert record.model.num_query_tokens == 4 and record.task.n_examples == {"en": 6}
