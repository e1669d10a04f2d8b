"""Tests for mvleval.testing.factory: tiny checkpoints are deterministic, load like real ones, and tokenise the demo words."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from mvleval.testing.factory import LEXICON, TOKENIZER_CORPUS, build_tiny_checkpoint
from mvleval.util.errors import MvlevalError


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("kind", ["mt5", "bloom"])
def test_same_seed_gives_byte_identical_checkpoint_and_other_seed_differs(tmp_path: Path, kind: str) -> None:
    a = _files(build_tiny_checkpoint(tmp_path / "a", kind, seed=3))
    b = _files(build_tiny_checkpoint(tmp_path / "b", kind, seed=3))
    c = _files(build_tiny_checkpoint(tmp_path / "c", kind, seed=4))
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], f"{name} differs between two builds with the same seed"
    assert a["model.safetensors"] != c["model.safetensors"]
    # the tokenizer depends on the corpus only, not on the weight seed
    assert a["tokenizer.json"] == c["tokenizer.json"]


@pytest.mark.parametrize(
    ("fixture", "text_model_type", "encoder_decoder"),
    [("tiny_mt5_dir", "mt5", True), ("tiny_bloom_dir", "bloom", False)],
)
def test_checkpoint_is_laid_out_and_loads_like_a_published_one(
    request: pytest.FixtureRequest, fixture: str, text_model_type: str, encoder_decoder: bool
) -> None:
    from transformers import AutoConfig, AutoProcessor, Blip2Processor, BlipImageProcessorPil

    folder: Path = request.getfixturevalue(fixture)
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth"))]  # safetensors only
    config = AutoConfig.from_pretrained(folder)
    assert config.model_type == "blip-2"
    assert config.text_config.model_type == text_model_type
    assert config.text_config.is_encoder_decoder is encoder_decoder
    assert config.num_query_tokens == 8
    processor = AutoProcessor.from_pretrained(folder, backend="pil")
    assert isinstance(processor, Blip2Processor)
    assert isinstance(processor.image_processor, BlipImageProcessorPil)
    assert processor.num_query_tokens == 8
    # the <image> token exists and lies inside the language model's embedding matrix
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert image_id == config.image_token_index
    assert image_id < config.text_config.vocab_size


def test_special_tokens_follow_the_published_conventions(tiny_mt5_dir: Path, tiny_bloom_dir: Path) -> None:
    from transformers import AutoTokenizer

    mt5 = AutoTokenizer.from_pretrained(tiny_mt5_dir)
    bloom = AutoTokenizer.from_pretrained(tiny_bloom_dir)
    # mT5: pad 0, eos 1, unk 2, no BOS, EOS appended; BLOOM: unk 0, bos 1, eos 2, pad 3, nothing added, left padding
    assert (mt5.pad_token_id, mt5.eos_token_id, mt5.unk_token_id, mt5.bos_token_id) == (0, 1, 2, None)
    assert mt5("yes")["input_ids"][-1] == mt5.eos_token_id
    assert (bloom.unk_token_id, bloom.bos_token_id, bloom.eos_token_id, bloom.pad_token_id) == (0, 1, 2, 3)
    assert bloom("yes")["input_ids"] == bloom("yes", add_special_tokens=False)["input_ids"]
    assert bloom.padding_side == "left"


# Piece counts checked by hand on the tokenizers the factory builds (printed with tokenizer.tokenize).
@pytest.mark.parametrize("word", ["yes", "no", "maybe", "red", "two", "ja", "是", "نعم", "да", "ya"])
def test_demo_words_are_single_pieces_for_mt5_and_at_most_two_for_bloom(
    tiny_mt5_dir: Path, tiny_bloom_dir: Path, word: str
) -> None:
    from transformers import AutoTokenizer

    mt5 = AutoTokenizer.from_pretrained(tiny_mt5_dir)
    bloom = AutoTokenizer.from_pretrained(tiny_bloom_dir)
    assert len(mt5(word, add_special_tokens=False)["input_ids"]) == 1
    assert len(bloom(word, add_special_tokens=False)["input_ids"]) <= 2


def test_corpus_covers_the_benchmark_scripts_and_nothing_becomes_unknown(tiny_mt5_dir: Path) -> None:
    from transformers import AutoTokenizer

    scripts = {"LATIN", "CYRILLIC", "CJK", "ARABIC", "DEVANAGARI", "BENGALI", "THAI", "HIRAGANA"}
    seen = {unicodedata.name(ch).split()[0] for text in TOKENIZER_CORPUS for ch in text if ch.isalpha()}
    assert scripts <= seen
    mt5 = AutoTokenizer.from_pretrained(tiny_mt5_dir)
    for lang, groups in LEXICON.items():
        for words in groups.values():
            for word in words:
                ids = mt5(word, add_special_tokens=False)["input_ids"]
                assert mt5.unk_token_id not in ids, f"{lang} word {word!r} has an unknown piece"
                assert mt5.decode(ids) == unicodedata.normalize("NFKC", word)


def test_mid_size_configuration_and_legacy_layout(tmp_path: Path) -> None:
    from transformers import AutoConfig

    folder = build_tiny_checkpoint(
        tmp_path / "mid",
        "bloom",
        vision_hidden=64,
        text_hidden=64,
        layers=1,
        text_layers=3,
        image_size=56,
        num_query_tokens=4,
        legacy_layout=True,
    )
    config = AutoConfig.from_pretrained(folder)
    assert config.vision_config.hidden_size == 64
    assert config.vision_config.num_hidden_layers == 1
    assert config.vision_config.image_size == 56
    assert config.vision_config.patch_size == 14
    assert config.text_config.hidden_size == 64
    assert config.text_config.n_layer == 3
    assert config.num_query_tokens == 4
    # laid out like the published mBLIP checkpoints: no processor_config.json (so no num_query_tokens), no <image>
    # token in the tokenizer, no image_token_index
    assert not (folder / "processor_config.json").exists()
    assert json.loads((folder / "preprocessor_config.json").read_text())["size"] == {"height": 56, "width": 56}
    assert "<image>" not in (folder / "tokenizer.json").read_text()
    assert config.image_token_index is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "t5"}, "unknown tiny checkpoint kind"),
        ({"kind": "mt5", "text_hidden": 30}, "not divisible by num_heads"),
        ({"kind": "mt5", "image_size": 30, "patch_size": 8}, "not a multiple of patch_size"),
    ],
)
def test_bad_sizes_are_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    kind = kwargs.pop("kind")
    with pytest.raises(MvlevalError, match=message):
        build_tiny_checkpoint(tmp_path, kind, **kwargs)
