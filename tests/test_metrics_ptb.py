"""Tests of the Python PTB tokenizer against pycocoevalcap's Java PTBTokenizer (CoreNLP 3.4.1).

Expected values in the tables were obtained by running the jar shipped in pycocoevalcap 1.2 exactly as
pycocoevalcap does (``java -cp stanford-corenlp-3.4.1.jar edu.stanford.nlp.process.PTBTokenizer -preserveLines
-lowerCase FILE``) and removing pycocoevalcap's PUNCTUATIONS. The parity tests re-run the jar (one JVM per test)
and are skipped when Java, pycocoevalcap or ../shared is missing.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
import unicodedata
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mvleval.metrics.ptb import PUNCTUATIONS, ptb_tokenize, ptb_tokenize_lines
from tests.helpers import read_jsonl

# (caption, expected tokens after pycocoevalcap's punctuation removal), from the jar (see module docstring)
ROWS = [
    ("A man's dog doesn't run.", "a man 's dog does n't run"),
    ("\"Hello,\" she said -- 'ok' (yes) [no] {x}", "hello she said ok -lrb- yes -rrb- -lsb- no -rsb- -lcb- x -rcb-"),
    ("I can't, won't and cannot go; gonna wanna?", "i ca n't wo n't and can not go gon na wan na"),
    ("The U.S. He left at 5 p.m. with Mr. Smith, etc.", "the u.s. he left at 5 p.m. with mr. smith etc."),
    ("vitamin C. The dog", "vitamin c the dog"),  # a lone letter before "The" gives up its period
    ("in the U.S.", "in the u.s."),
    ("a well-known 3-year-old x-ray e-mail", "a well-known 3-year-old x-ray e-mail"),
    (
        "50% $5 €5 £3 ¢7 ½ cup 1/2 1,000.50 4:37 12-10-2019",
        "50 % $ 5 $ 5 # 3 cents 7 1/2 cup 1/2 1,000.50 4:37 12-10-2019",
    ),
    ("Ellipsis… and “curly” ‘quotes’ – dash — em ...", "ellipsis and curly quotes dash em"),
    (
        "「こんにちは」、世界。（テスト）！？",
        "こんにちは 、 世界 。 （ テスト ） ！ ？",
    ),  # 「」 are untokenizable: deleted
    ("ΟΔΟΣ Σ ΟΔΟΣ3U.S.", "οδος σ οδοσ3u.s"),  # Java's final sigma looks at the whole word
    ("rock'n'roll o'clock y'all '90s Mac’N’Chees it’s", "rock 'n' roll o'clock y' all '90s mac ’n’ chees it 's"),
    ("schwarz/weiß and/or AT&T &amp; :) ;D", "schwarz/wei ß and/or at&t & :-rrb- ;d"),
    ("a😀b", "a b"),  # characters outside the BMP are deleted by 3.4.1
    ("!!! ?! ... . , ;", "!!! ?!"),  # "!!!" and "?!" are not in pycocoevalcap's list
    ("Wow!! Really?!", "wow !! really ?!"),
    ("", ""),
    ("   ", ""),
    ("...", ""),
    ("Two dogs\nplay", "two dogs play"),
    ("Ein Hund läuft auf grünem Rasen.", "ein hund läuft auf grünem rasen"),
    ("Panci di atas kompor, sedangkan api menyala.", "panci di atas kompor sedangkan api menyala"),
    ("رجل يركب دراجة.", "رجل يركب دراجة"),
    ("一只 在 草地 上 奔跑 的 狗 。", "一只 在 草地 上 奔跑 的 狗 。"),
    # whole-caption fast path: stand-alone ideographic marks, and ",;:" / final marks removed without the lexer
    ("一 个 小 孩 ， 在 海 里 冲 浪 。", "一 个 小 孩 ， 在 海 里 冲 浪 。"),
    ("晴れ た 日 に 、 男性 が 立っ て いる 。", "晴れ た 日 に 、 男性 が 立っ て いる 。"),
    ("猫 。 。", "猫 。 。"),
    ("A dog, a cat; two birds: one fish!", "a dog a cat two birds one fish"),
]


@pytest.mark.parametrize(("caption", "expected"), ROWS)
def test_table(caption: str, expected: str) -> None:
    assert ptb_tokenize(caption) == expected


def test_context_crosses_lines() -> None:
    # From the jar: a caption ending in a lone letter + period loses the period when the next line starts with "A"
    # (CoreNLP reads the file as one stream); the same caption at the end of the file keeps it.
    assert ptb_tokenize_lines(["the new Nintendo Wii U.", "A dog"]) == ["the new nintendo wii u", "a dog"]
    assert ptb_tokenize_lines(["the new Nintendo Wii U."]) == ["the new nintendo wii u."]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        # From the jar: a zero-width or direction mark (common in Arabic, Hebrew, Farsi and Thai text) or a byte-order mark
        # after "U." stops the rule that splits off the period before a capitalised word; plain and ideographic spaces,
        # tabs and double spaces do not.
        (["Wii U.\u200e A dog"], ["wii u. a dog"]),
        (["Wii U.\ufeffA dog"], ["wii u. a dog"]),
        (["Wii U.\x00A dog"], ["wii u. a dog"]),
        (["Wii U.\u200b", "A dog"], ["wii u.", "a dog"]),
        (["Wii U. \u200b", "A dog"], ["wii u.", "a dog"]),
        (["the new Nintendo Wii U.\u3000A dog"], ["the new nintendo wii u a dog"]),
        (["the new Nintendo Wii U.\tA dog"], ["the new nintendo wii u a dog"]),
        (["Wii U.  A dog"], ["wii u a dog"]),
        (["Wii U.", "\u3000A dog"], ["wii u", "a dog"]),
    ],
)
def test_context_is_the_real_text(lines: list[str], expected: list[str]) -> None:
    assert ptb_tokenize_lines(lines) == expected


def test_batch_equals_one_by_one_without_cross_line_context() -> None:
    # None of the table's captions ends in a lone letter or acronym followed by a context word, so batching
    # must not change any of them
    lines = [r[0] for r in ROWS]
    assert ptb_tokenize_lines(lines) == [ptb_tokenize(x) for x in lines] == [r[1] for r in ROWS]


# Characters that make chunks take every branch of the tokenizer's shortcuts: letters whose lower case is special
# (capital sigma, dotted I), digits, the marks the shortcut strips, quotes, hyphens, periods, and pieces of
# abbreviations ("St", "No") and assimilations ("gonna", "cannot").
_CHUNK_ALPHABET = list("aAbBnNtTeEsSoOmM\u03a3\u03c3\u0130\u00e9\u0301\u4e2d09,;:?!.'\"-&")
_CHUNK_PIECES = ["St", "st", "No", "Mr", "gonna", "Cannot", "wanna", "Yahoo", "etc", "e", "u"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(_CHUNK_ALPHABET + _CHUNK_PIECES), min_size=1, max_size=5).map("".join),
        min_size=1,
        max_size=30,
        unique=True,
    )
)
def test_bulk_shortcut_agrees_with_the_chunk_rules(chunks: list[str]) -> None:
    """The bulk pass over distinct chunks (regexes over all of them at once) claims a chunk is one known token only
    where the per-chunk rules (themselves checked against the jar below) give exactly that token."""
    from mvleval.metrics import ptb

    tokens, simple = ptb._single_tokens(chunks)
    assert len(tokens) == len(simple) == len(chunks)
    fast = ptb._chunk_fast()
    for chunk, token, ok in zip(chunks, tokens, simple):
        if ok:
            assert ptb._plain_chunk(chunk, fast) == (token,), chunk


def test_bulk_shortcut_table() -> None:
    """Hand-checked rows: which chunks the bulk pass takes, and their tokens."""
    from mvleval.metrics import ptb

    chunks = ["Dog", "dog,", "Street.", "St.", "gonna", "U.", "it's", "red-hair", "Wii", "\u03a3\u03a3", "a?", "b!"]
    tokens, simple = ptb._single_tokens(chunks)
    taken = {c: t for c, t, ok in zip(chunks, tokens, simple) if ok}
    # "St." may be an abbreviation, "gonna" splits, "U." is a lone letter, quotes/hyphens/sigma/"!" take the rules
    assert taken == {"Dog": "dog", "dog,": "dog", "Street.": "street", "Wii": "wii", "a?": "a"}


# ---------------------------------------------------------------------------------------------------------------
# Parity with the jar


def _jar() -> Path | None:
    try:
        import pycocoevalcap
    except ImportError:
        return None
    jar = Path(list(pycocoevalcap.__path__)[0]) / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    return jar if jar.is_file() and shutil.which("java") else None


def require_java() -> Path:
    jar = _jar()
    if jar is None:
        pytest.skip("Java or pycocoevalcap's CoreNLP jar is not available")
    return jar


@lru_cache(maxsize=8)
def java_raw(lines: tuple[str, ...]) -> tuple[str, ...]:
    """The jar's output lines for these input lines (one JVM), as pycocoevalcap runs it."""
    jar = require_java()
    with tempfile.NamedTemporaryFile("wb", delete=False, suffix=".txt") as f:
        f.write("\n".join(line.replace("\n", " ") for line in lines).encode("utf-8"))
        name = f.name
    try:
        out = subprocess.run(
            ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase", name],
            capture_output=True,
            check=True,
            timeout=300,
        ).stdout.decode("utf-8")
    finally:
        Path(name).unlink()
    got = out.split("\n")
    return tuple(got[: len(lines)])


def java_tokenize(lines: list[str]) -> list[str]:
    """pycocoevalcap's PTBTokenizer output for these captions (punctuation removed), one JVM call."""
    return [" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS) for line in java_raw(tuple(lines))]


def real_corpora(shared_data: Path) -> dict[str, tuple[str, list[str]]]:
    """Every caption-like text in ../shared/data: name -> (language, texts)."""
    d = shared_data / "iglue" / "datasets"
    out: dict[str, tuple[str, list[str]]] = {}
    for lg in ("de", "en", "ja", "zh"):
        out[f"xflickrco-{lg}"] = (
            lg,
            [s for r in read_jsonl(d / "xFlickrCO/annotations" / lg / "test.jsonl") for s in r["sentences"]],
        )
    out["flickr30k"] = (
        "en",
        [s for r in read_jsonl(d / "flickr30k/annotations/test_ann.jsonl") for s in r["sentences"]],
    )
    for lg in ("en", "ar"):
        rows = read_jsonl(d / "XVNLI/annotations" / lg / "test.jsonl")
        out[f"xvnli-{lg}"] = (lg, list(dict.fromkeys([r["sentence1"] for r in rows] + [r["sentence2"] for r in rows])))
    for lg in ("id", "zh"):
        rows = read_jsonl(d / "marvl/zero_shot/annotations" / f"marvl-{lg}.jsonl")
        out[f"marvl-{lg}"] = (lg, [r["caption"] for r in rows])
    return out


THAI = [
    "ผู้ชายกำลังขี่จักรยานบนถนน",
    "สุนัขสีน้ำตาลวิ่งอยู่บนสนามหญ้า 2 ตัว",
    "เด็ก ๆ เล่นฟุตบอล ABC 123.",
    "ผู้หญิงถือร่มสีแดงยืนอยู่ข้างรถ",
    "แมวนอนอยู่บนโต๊ะในห้อง",
    "กลุ่มคนกำลังเดินบนชายหาด",
]


def test_java_parity_on_real_captions(shared_data: Path) -> None:
    """>= 99.9% of real captions tokenise identically (raw text, and zh/ja/th after segmentation + NFC)."""
    require_java()
    from mvleval.metrics.segment import normalize_captions

    lines: list[str] = []
    for lang, texts in real_corpora(shared_data).values():
        lines += [unicodedata.normalize("NFC", t) for t in texts]
        if lang in ("zh", "ja"):
            lines += normalize_captions(texts, lang)
    lines += normalize_captions(THAI, "th") + THAI
    ours = ptb_tokenize_lines(lines)
    ref = java_tokenize(lines)
    bad = [(x, a, b) for x, a, b in zip(lines, ref, ours) if a != b]
    assert len(lines) > 20000
    assert len(bad) <= 0.001 * len(lines), bad[:10]


def _fuzz_lines(seed: int, n: int) -> list[str]:
    """Adversarial but caption-like strings: words, abbreviations, quotes, brackets, symbols, several scripts."""
    rng = random.Random(seed)
    words = (
        "dog The a I U.S. Mr etc cannot gonna don can it n t s ll re ve d m www com e x no ca Inc co y all o "
        "clock rock roll Yahoo A He She St vs v pre anti well known 3 1990 12 5 0 ä weiß Σ ΟΔΟΣ 中国 猫 café i u "
        "ผู้ชาย हिंदी বাংলা తెలుగు 한국어 русский עברית فارسی"
    ).split()
    punct = list(".,;:!?'\"-/()[]{}&$%*+=_<>") + [
        "’",
        "‘",
        "“",
        "”",
        "—",
        "–",
        "…",
        "。",
        "，",
        "「",
        "½",
        "€",
        "£",
        "\u00ad",
        "´",
        "«",
        "»",
        "&amp;",
        "...",
        "--",
        "n't",
        "'s",
        " ",
        " ",
    ]
    out = []
    for _ in range(n):
        s = ""
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            s += rng.choice(words) if r < 0.5 else rng.choice(punct) if r < 0.85 else " "
        out.append(s)
    return out


def test_java_parity_on_fuzzed_text() -> None:
    """Random mixes of tricky pieces: at least 99.5% identical (measured: 0-1 difference in 5000 lines)."""
    require_java()
    lines = _fuzz_lines(7, 3000)
    ours = ptb_tokenize_lines(lines)
    ref = java_tokenize(lines)
    bad = [(x, a, b) for x, a, b in zip(lines, ref, ours) if a != b]
    assert len(bad) <= 0.005 * len(lines), bad[:10]


def test_java_parity_on_odd_whitespace() -> None:
    """Abbreviations, acronyms and quotes next to tabs, double spaces, zero-width and direction marks, byte-order
    marks and other spaces the tokenizer splits on: identical to the jar (measured: 0 of 3006 lines differ; 52 did
    while the context after a chunk was rebuilt with single spaces)."""
    require_java()
    rng = random.Random(3)
    pieces = [
        "dog",
        "A",
        "St.",
        "U.",
        "it's",
        "\x00",
        "\u200b",
        "\ufeff",
        "\u200e",
        "\t",
        "  ",
        "",
        "Mr.",
        "The",
        "cat.",
        "\u3000",
        "\xa0",
        "gonna",
        "\x01",
    ]
    lines = [
        "".join(rng.choice(pieces) + rng.choice([" ", "", "\t"]) for _ in range(rng.randint(0, 8))) for _ in range(3000)
    ]
    lines += ["", " ", "\x00", "\u200b \u200b", "a\x00b", "dog\u200bcat"]
    ours = ptb_tokenize_lines(lines)
    ref = java_tokenize(lines)
    bad = [(x, a, b) for x, a, b in zip(lines, ref, ours) if a != b]
    assert len(bad) <= 0.001 * len(lines), bad[:10]


def test_character_table_matches_jar() -> None:
    """The stored character classes equal a fresh probe of the jar for every BMP code point."""
    require_java()
    from mvleval.metrics import ptb

    skip = {0x0A, 0x0D, 0x0B, 0x0C, 0x85, 0x2028, 0x2029}  # line separators split lines in Java
    cps = [c for c in range(0x80, 0x10000) if not 0xD800 <= c <= 0xDFFF and c not in skip]
    lines = [f"x{chr(c)}y" for c in cps] + [chr(c) for c in cps]
    raw = java_raw(tuple(lines))
    n = len(cps)
    runs = [(int(item[:-1], 16), item[-1]) for item in "".join(ptb._CHAR_TABLE).split()]
    starts = [r[0] for r in runs]
    import bisect

    mismatches = []
    for i, c in enumerate(cps):
        ch = chr(c)
        inner, alone = raw[i], raw[n + i]
        if inner == f"x{ch}y".lower():
            if alone == "":
                want = "O"  # joins words, deleted alone (hyphen-like)
            else:
                cat = unicodedata.category(ch)
                want = "D" if cat == "Nd" else "L" if cat.startswith("L") else "M"
        elif inner == "x y" and alone == "":
            want = "X"
        elif inner == f"x {ch.lower()} y" and alone == ch.lower():
            want = "S"
        else:
            want = "O"
        have = runs[bisect.bisect_right(starts, c) - 1][1]
        if have != want:
            mismatches.append((hex(c), have, want))
    assert not mismatches, mismatches[:20]
