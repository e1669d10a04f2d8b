"""Language fidelity: the share of outputs written in the requested language (lingua, restricted to the task's set).

The requested language is ``answer_language`` when the task asks for answers in a fixed language (xGQA, MaRVL and
XVNLI ask for English), otherwise the corpus language (captions). Detection uses ``lingua-language-detector``
restricted to the task's languages plus the requested one (restricting is what makes short texts workable; measured
in NOTES.md: 99.3% on real captions, 79% strict top-1 on 1-3 word answers).

Decision for one output, in order:

1. No letter at all (empty, digits, punctuation): *undetermined*.
2. Script check, at any length: the letters' dominant script must be one the requested language is written in
   (Latin output for hi is wrong however short). For ja, a text with Han characters but no kana is *undetermined*
   (Han alone cannot tell Japanese from Chinese).
3. Not language (rule 2 of the decision, ``nonlanguage_verdict``): restricted to the task's languages, the detector
   always names a winner, so gibberish used to be credited (``glglgl…`` scored 100% Turkish). A text is *not
   language* when
   a. half or more of its letters lie in tandem repeats: a unit of 1-24 characters repeated 3 times or more, or
      2.5 times or more for units of 4 characters or more (``glglgl``, ``und und und``, a tiny model's loop);
      real captions reach 0.19 at most (German "der der", English "of of"); ``banana`` (2.5 copies of ``an``) is
      not a repeat;
   b. more than 10% of its letters (plus tokenizer markup: ``<row_2_col_1>``, ``</s>``, U+FFFD, ``▁``, ``##``)
      are neither in the requested language's own scripts nor Latin (``青iz�一つ�blanco`` requested in es);
      Latin is exempt because real captions name brands and places in it (zh: 44% Latin at most); no real text of
      ../shared has any such letter;
   c. letters without words: a text of 10 letters or more whose letters do not follow each other the way the
      requested language's references do (``mvleval.metrics.letter_model``: letter gain below -0.5 bits).
      lingua cannot see this in scripts it maps to one language (random Greek, Thai, Hangul, Hebrew, Indic, Han
      or kana letters are Greek, Thai, Korean... to it). The model is learned from the language's own references
      in the scored set, so it runs only where they are plentiful and caption-like (1,000 distinct references or
      more, median 15 letters or more, in the requested language's script): full captioning runs, not short
      answers, labels or a small ``--limit``. ``extra["letter_model_texts"]`` says how many references it was
      learned from (None: not run).
4. Texts of 20 characters or more: faithful iff the requested language is the restricted detector's top-1 *and*
   among the top 3 of the unrestricted detector (all of lingua's languages): a restricted win by a language far
   down the full ranking is a win by elimination (random Latin or Cyrillic letters), not a detection.
5. Shorter texts: faithful iff the requested language is top-1, or is in the top 3 while English is not top-1
   (short strings are often scored as English by default). The unrestricted ranking is not used below 20
   characters: gold one-word answers are often far down in it ("yes" is not in lingua's top 5).

Thresholds were chosen from a measurement (bench/bench_fidelity_gibberish.py): the false-credit rate on seeded
nonsense in 13 scripts (mvleval.testing.gibberish) next to the accuracy on ~21,000 real captions, hypotheses,
questions and answers. What remains credited is random letters where no letter model runs (short-answer tasks, small
subsets): in a script lingua knows one language for, lingua alone cannot tell them from the language.

Undetermined and not-language outputs count as *not faithful* (0.0): an empty, digits-only or gibberish output did
not produce text in the requested language. Their shares are reported in ``extra["undetermined"]`` and
``extra["not_language"]`` so that a reader can tell "answered '2'" or "answered glglgl" from "answered in the wrong
language", and ``extra["reference_fidelity"]`` gives the same measure on the first reference of every example: the
ceiling a perfect model would reach (gold short answers do not score 100%). When a language's own references score
below 0.5 the data is suspect (the 'bn' captions of a data root are in English): ``score`` logs a warning and
``reference_warning`` words it for ``mvleval data check``.

Languages lingua does not know (quz, Cusco Quechua) give ``value=None`` with a note; they are never scored 0.

lingua's rankings are kept on disk (``mvleval.metrics.ranking_cache``), keyed by lingua's version, the detector's
languages and the text: a text ranked before on the machine is not ranked again and loads no model (lingua's models
load per process: those of every Latin-script language for the unrestricted ranking of one short Latin caption).
The verdicts are the ones lingua's rankings give, whether made now or read back.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, ClassVar

from mvleval.metrics import letter_model, ranking_cache
from mvleval.metrics.base import Metric, MetricResult, check_inputs
from mvleval.metrics.bootstrap import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    bootstrap_mean_interval,
    bootstrap_signature,
    check_resamples,
)
from mvleval.util.errors import MissingDependencyError, MvlevalError

if TYPE_CHECKING:
    from lingua import LanguageDetector

__all__ = [
    "LanguageFidelity",
    "Verdict",
    "detector_verdict",
    "judge",
    "letter_model_for",
    "lingua_names",
    "nonlanguage_reason",
    "nonlanguage_verdict",
    "pre_verdict",
    "reference_warning",
    "script_verdict",
]

log = logging.getLogger("mvleval.metrics.language_fidelity")

LINGUA_VERSION = "2.1.1"  # the pinned version (2.2 needs Python >= 3.12); signatures record the installed one


@lru_cache(maxsize=1)
def _installed_lingua() -> str:
    from importlib import metadata

    try:
        return metadata.version("lingua-language-detector")
    except metadata.PackageNotFoundError:
        return "missing"


SHORT_TEXT_CHARS = 20
#: implementation version of the decision rule, part of the signature: 2 added the not-language checks (repetition,
#: foreign scripts) and the unrestricted top-3 check, so records made before are never gated against later ones
RULE_VERSION = 3  # 3 added the letter model (rule 3c)
#: a text with at least this share of its letters in tandem repeats is not language (real captions: <= 0.19)
REPEAT_SHARE = 0.5
#: a text with more than this share of letters outside the requested language's scripts and Latin is not language
FOREIGN_SHARE = 0.10
#: long texts: the requested language must be among this many best of the unrestricted detector
FULL_TOP = 3
#: reference fidelity below this: the language's own references are probably not in that language
REFERENCE_WARNING_BELOW = 0.5
assert FULL_TOP <= ranking_cache.RANKS_KEPT and 3 <= ranking_cache.RANKS_KEPT  # the rules read only what is kept

# Dataset language codes whose lingua name differs from the ISO 639-1 upper-case code (or that have no ISO 639-1
# code). "no" (XM3600's Norwegian) is written in Bokmål or Nynorsk: either counts.
_SPECIAL = {
    "no": ("BOKMAL", "NYNORSK"),
    "nb": ("BOKMAL",),
    "nn": ("NYNORSK",),
    "fil": ("TAGALOG",),
    "tl": ("TAGALOG",),
    "iw": ("HEBREW",),
    "he": ("HEBREW",),
    "in": ("INDONESIAN",),
}

# Scripts (first word of the Unicode character name, normalised below) each language is written in.
_SCRIPTS: dict[str, frozenset[str]] = {}
for _codes, _script in (
    ("ru uk be bg kk mk mn sr", "CYRILLIC"),
    ("el", "GREEK"),
    ("ar fa ur", "ARABIC"),
    ("he iw", "HEBREW"),
    ("hi mr", "DEVANAGARI"),
    ("bn", "BENGALI"),
    ("te", "TELUGU"),
    ("ta", "TAMIL"),
    ("gu", "GUJARATI"),
    ("pa", "GURMUKHI"),
    ("th", "THAI"),
    ("ko", "HANGUL"),
    ("zh", "HAN"),
    ("ka", "GEORGIAN"),
    ("hy", "ARMENIAN"),
):
    for _c in _codes.split():
        _SCRIPTS[_c] = frozenset({_script})
_SCRIPTS["ja"] = frozenset({"HAN", "KANA"})
_SCRIPTS["sr"] = frozenset({"CYRILLIC", "LATIN"})
_LATIN_LANGS = (
    "af az bs ca cs cy da de en eo es et eu fi fil tl fr ga hr hu id in is it la lt lv mi ms nb nn no nl pl pt quz ro "
    "sk sl so sq st sv sw tn tr ts vi xh yo zu lg sn"
)
for _c in _LATIN_LANGS.split():
    _SCRIPTS.setdefault(_c, frozenset({"LATIN"}))


def lingua_names(code: str) -> tuple[str, ...] | None:
    """lingua Language member names for a dataset language code, or None when lingua does not know the language.

    Reads no model: safe to call at import time of tasks.
    """
    code = code.lower()
    if code in _SPECIAL:
        return _SPECIAL[code]
    base = code.split("-")[0].split("_")[0]
    if base in _SPECIAL:
        return _SPECIAL[base]
    from lingua import IsoCode639_1, Language

    iso = getattr(IsoCode639_1, base.upper(), None)
    if iso is None or len(base) != 2:
        return None
    try:
        return (Language.from_iso_code_639_1(iso).name,)
    except ValueError:
        return None


def _script_of(ch: str) -> str | None:
    name = unicodedata.name(ch, "")
    if not name:
        return None
    first = name.split(" ", 1)[0]
    if first in ("FULLWIDTH", "HALFWIDTH"):
        first = name.split(" ", 2)[1]
    if first in ("CJK", "IDEOGRAPHIC"):  # the latter: the iteration mark 々 of 人々 and 〆
        return "HAN"
    if first in ("HIRAGANA", "KATAKANA", "KATAKANA-HIRAGANA"):  # the last: the long-vowel mark ー of katakana words
        return "KANA"
    return first


def _letter_scripts(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ch in text:
        if ch.isalpha():
            s = _script_of(ch)
            if s is not None:
                counts[s] = counts.get(s, 0) + 1
    return counts


class Verdict:
    """Outcome labels of judge()."""

    FAITHFUL = "faithful"
    WRONG = "wrong"
    UNDETERMINED = "undetermined"
    NOT_LANGUAGE = "not_language"


@lru_cache(maxsize=16)
def _detector(names: tuple[str, ...]) -> LanguageDetector:
    """A lingua detector restricted to these languages (built once per set; models load on first use)."""
    try:
        from lingua import Language, LanguageDetectorBuilder
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "lingua-language-detector", "Language fidelity", f"pip install lingua-language-detector=={LINGUA_VERSION}"
        ) from exc
    if not names:  # every language lingua knows: the unrestricted detector of rule 4
        return LanguageDetectorBuilder.from_all_languages().build()
    return LanguageDetectorBuilder.from_languages(*(getattr(Language, n) for n in names)).build()


#: (language, script, long text) whose models _load_models loaded (lingua keeps every model it loaded for the
#: process, shared by all detectors), and (detector names, script, long text) already prepared
_LOADED: set[tuple[str, str, bool]] = set()
_PREPARED: set[tuple[tuple[str, ...], str, bool]] = set()
#: lingua's own limit: texts this long are ranked by trigrams alone, shorter ones by 1- to 5-grams
_LINGUA_LONG_TEXT = 120


def _load_models(names: tuple[str, ...], text: str) -> None:
    """Load the models detector `names` needs for `text` one language at a time (each a fraction of a second).

    lingua loads a language's models on first use, inside one call into its Rust code, which holds the interpreter:
    Ctrl-C waited until all of them were loaded (9 s for the unrestricted detector on one Latin caption). Loading them
    language by language, through two-language detectors on the same text (lingua filters candidates by script
    first, so a language of another script loads nothing), lets KeyboardInterrupt through between two languages.
    The detector's answer is the same: the models are lingua's own, loaded once per process whichever detector asks.
    """
    scripts = _letter_scripts(text)
    key = (names, _dominant(scripts) if scripts else "", len(text) >= _LINGUA_LONG_TEXT)
    if key in _PREPARED:
        return
    from lingua import Language

    members = names or tuple(sorted(language.name for language in Language.all()))
    log.debug(
        "loading lingua's models of %s for %s text, one language at a time",
        f"{len(members)} languages" + (" (the unrestricted detector)" if not names else ""),
        key[1] or "letterless",
    )
    for name in members:
        if (name, key[1], key[2]) in _LOADED:
            continue
        partner = members[0] if name != members[0] else members[1]
        _pair_detector(name, partner).compute_language_confidence_values(text)
        _LOADED.add((name, key[1], key[2]))
    _PREPARED.add(key)


@lru_cache(maxsize=512)
def _pair_detector(name: str, partner: str) -> LanguageDetector:
    from lingua import Language, LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_languages(getattr(Language, name), getattr(Language, partner)).build()


def _ranking(names: tuple[str, ...], text: str) -> list[tuple[str, float]]:
    """The ranking of `text` by detector `names` (() the unrestricted one): lingua names with confidences, best first,
    its first ``ranking_cache.RANKS_KEPT`` entries (the rules read the top 3).

    Read from the on-disk cache of rankings when this lingua version ranked the same text with the same languages
    before (``mvleval.metrics.ranking_cache``: then no model loads); otherwise ranked by lingua and kept there (written
    by ``ranking_cache.flush_all``).
    """
    cache = ranking_cache.current()
    key = ranking_cache.ranking_key(_installed_lingua(), names, text)
    ranking = cache.get(key)
    if ranking is None:
        _load_models(names, text)
        ranking = [
            (c.language.name, c.value)
            for c in _detector(names).compute_language_confidence_values(text)[: ranking_cache.RANKS_KEPT]
        ]
        cache.put(key, ranking)
    return ranking


def script_verdict(text: str, requested: str) -> str | None:
    """The letter and script checks (rules 1-2): a final verdict, or None when the detector must decide."""
    scripts = _letter_scripts(text)
    if not scripts:
        return Verdict.UNDETERMINED
    req = requested.lower().split("-")[0]
    if req == "ja":
        if "KANA" in scripts:
            return None
        return Verdict.UNDETERMINED if _dominant(scripts) == "HAN" else Verdict.WRONG
    expected = _SCRIPTS.get(req)
    if expected is not None and _dominant(scripts) not in expected:
        return Verdict.WRONG
    return None


def _lingua_code(name: str) -> str:
    """A lingua language name as its ISO 639-1 code ("GERMAN" -> "de"), or the name in lower case."""
    from lingua import Language

    try:
        code: str = getattr(Language, name).iso_code_639_1.name.lower()
        return code
    except AttributeError:
        return name.lower()


def _dominant(scripts: dict[str, int]) -> str:
    return max(scripts.items(), key=lambda kv: (kv[1], kv[0]))[0]


# a unit of 1-24 characters followed by at least one more copy (lazy: the shortest unit first)
_TANDEM = re.compile(r"(.{1,24}?)\1+", re.DOTALL)
# what tokenizers leave in a decoded text: special tokens (<pad>, </s>, <row_2_col_1>, <extra_id_0>), the
# replacement character of a split UTF-8 sequence, SentencePiece's word mark and WordPiece's continuation mark
_MARKUP = re.compile(r"</?[A-Za-z_][\w|]{0,40}>|\ufffd|\u2581|##")


def repeat_share(text: str) -> float:
    """Share of the letters of `text` that lie in tandem repeats (see rule 3a of the module docstring).

    A repeat is a unit of 1-24 characters (letters and single spaces) occurring 3 times or more in a row, or 2.5
    times or more for units of 4 characters or more (a loop cut by the length limit: ``ναυόναναυόναναυ``). Units of
    1-3 characters need 3 whole copies so that ``banana``/``Ananas`` (``an`` 2.5 times) is not a repeat.
    """
    s = letter_model.letters_and_spaces(text)
    n_letters = len(s) - s.count(" ")
    if n_letters == 0:
        return 0.0
    covered = 0
    pos = 0
    while True:
        m = _TANDEM.search(s, pos)
        if m is None:
            break
        unit = m.group(1)
        p = len(unit)
        end = m.end()
        k = 0  # a partial copy after the whole ones
        while end + k < len(s) and k < p and s[end + k] == unit[k]:
            k += 1
        length = end + k - m.start()
        if length >= 3 * p or (p >= 4 and length >= 2.5 * p):
            covered += length - s.count(" ", m.start(), end + k)
            pos = end + k
        else:
            pos = m.start() + 1
    return covered / n_letters


def foreign_share(text: str, requested: str) -> float:
    """Share of letters (plus tokenizer markup) outside the requested language's scripts and Latin (rule 3b)."""
    markup = sum(len(m.group(0)) for m in _MARKUP.finditer(text))
    scripts = _letter_scripts(_MARKUP.sub(" ", text))
    total = sum(scripts.values()) + markup
    if total == 0:
        return 0.0
    req = requested.lower().split("-")[0]
    own = set(_SCRIPTS.get(req, ())) | {"LATIN"}
    if req == "ja":
        own |= {"HAN", "KANA"}
    elif req == "ko":
        own.add("HAN")  # hanja
    return (markup + sum(v for s, v in scripts.items() if s not in own)) / total


def nonlanguage_reason(text: str, requested: str, model: letter_model.LetterModel | None = None) -> str | None:
    """Why `text` is not language (rule 3): "repeats", "foreign letters" or "no words"; None when it may be.

    `model` is the requested language's letter model (rule 3c); None skips that check.
    """
    if repeat_share(text) >= REPEAT_SHARE:
        return "repeats"
    if foreign_share(text, requested) > FOREIGN_SHARE:
        return "foreign letters"
    if model is not None and model.is_nonsense(text):
        return "no words"
    return None


def nonlanguage_verdict(text: str, requested: str, model: letter_model.LetterModel | None = None) -> str | None:
    """Rule 3: Verdict.NOT_LANGUAGE for repetitive, script-mixed or wordless text, else None (the detector decides)."""
    return Verdict.NOT_LANGUAGE if nonlanguage_reason(text, requested, model) else None


def pre_verdict(
    text: str, requested: str, model: letter_model.LetterModel | None = None
) -> tuple[str | None, str | None]:
    """Rules 1-3 (letters, script, not language): (final verdict or None when the detector must decide, why the text
    is not language or None)."""
    verdict = script_verdict(text, requested)
    if verdict is not None:
        return verdict, None
    reason = nonlanguage_reason(text, requested, model)
    return (Verdict.NOT_LANGUAGE, reason) if reason else (None, None)


def letter_model_for(references: Sequence[Sequence[str]], requested: str) -> letter_model.LetterModel | None:
    """The requested language's letter model from every reference of the scored examples (rule 3c), or None when
    they are too few, too short, or not in the requested language's script."""
    texts = [ref for refs in references for ref in refs]
    return letter_model.LetterModel.from_references(
        texts, scripts_ok=lambda distinct: script_verdict(" ".join(distinct[:2000]), requested) is None
    )


def detector_verdict(
    text: str,
    requested: str,
    ranking: Sequence[tuple[str, float]],
    full_ranking: Sequence[tuple[str, float]] | None = None,
) -> str:
    """Rules 4-5 from the detector's ranking (lingua language names with confidences, best first).

    `full_ranking` is the unrestricted detector's (all languages lingua knows); None skips that part of rule 4.
    """
    if not ranking or ranking[0][1] <= 0.0:
        return Verdict.UNDETERMINED
    wanted = set(lingua_names(requested) or ())
    top = [name for name, _ in ranking[:3]]
    short = len(text.strip()) < SHORT_TEXT_CHARS
    if top[0] in wanted:
        if not short and full_ranking is not None and not wanted.intersection(n for n, _ in full_ranking[:FULL_TOP]):
            return Verdict.WRONG
        return Verdict.FAITHFUL
    if short and wanted.intersection(top) and top[0] != "ENGLISH":
        return Verdict.FAITHFUL
    return Verdict.WRONG


def judge(
    text: str,
    requested: str,
    ranking: Sequence[tuple[str, float]] | None,
    full_ranking: Sequence[tuple[str, float]] | None = None,
    model: letter_model.LetterModel | None = None,
) -> str:
    """Decide whether `text` is in the `requested` dataset language, given the detectors' rankings.

    Args:
        text: the output.
        requested: dataset code of the requested language (lingua must know it).
        ranking: lingua language names with confidences, best first, from the detector restricted to the task's
            languages; None when the detector was not run (then only the script and not-language checks can
            decide, and a text that passes them counts as faithful).
        full_ranking: the same from the unrestricted detector (rule 4); None skips that check.
        model: the requested language's letter model (rule 3c); None skips that check.

    Returns:
        Verdict.FAITHFUL, Verdict.WRONG, Verdict.UNDETERMINED or Verdict.NOT_LANGUAGE.
    """
    pre, _ = pre_verdict(text, requested, model)
    if pre is not None:
        return pre
    if ranking is None:
        return Verdict.FAITHFUL
    return detector_verdict(text, requested, ranking, full_ranking)


def reference_warning(lang: str, requested: str, reference_fidelity: float | None) -> str | None:
    """A one-line warning when a language's own references fail the fidelity check badly, else None.

    Only meaningful when the references are requested in the corpus language (captions); `requested` is the
    language they were judged against.
    """
    if reference_fidelity is None or reference_fidelity >= REFERENCE_WARNING_BELOW:
        return None
    return (
        f"the '{lang}' references are not in {requested}: language fidelity of the references is "
        f"{reference_fidelity:.2f} (below {REFERENCE_WARNING_BELOW}); check that the data root holds the "
        f"'{lang}' annotations"
    )


class LanguageFidelity(Metric):
    """Share of outputs in the requested language (see the module docstring for the exact rules).

    Args:
        languages: the task's languages (dataset codes); the detector is restricted to them plus the requested one.
        answer_language: the language answers are requested in, when it is fixed (xGQA, MaRVL, XVNLI: "en");
            None means each corpus is requested in its own language (captioning).
        bootstrap_resamples: resamples for the 95% interval (0: none).
        seed: seed of the bootstrap.
    """

    name: ClassVar[str] = "language_fidelity"

    def __init__(
        self,
        languages: Sequence[str],
        answer_language: str | None = None,
        bootstrap_resamples: int = DEFAULT_RESAMPLES,
        seed: int = DEFAULT_SEED,
    ) -> None:
        if isinstance(languages, str) or not languages:
            raise MvlevalError(
                f"LanguageFidelity needs the task's list of languages, got {languages!r}.",
                fix="pass e.g. languages=['de', 'en', 'zh'].",
            )
        check_resamples(bootstrap_resamples, seed)
        self.languages = tuple(dict.fromkeys(str(x) for x in languages))
        self.answer_language = answer_language
        self.bootstrap_resamples = bootstrap_resamples
        self.seed = seed

    @classmethod
    def for_task(cls, languages: Sequence[str], answer_language: str | None) -> LanguageFidelity:
        return cls(languages=languages, answer_language=answer_language)

    def signature(self) -> str:
        req = f"answer={self.answer_language}" if self.answer_language else "answer=corpus"
        return (
            f"language_fidelity|lingua-{_installed_lingua()}|langs={','.join(sorted(self.languages))}|{req}|"
            f"short<{SHORT_TEXT_CHARS}:top1|top3-not-en|script|undetermined=0|"
            f"notlang:repeat>={REPEAT_SHARE},foreign>{FOREIGN_SHARE},"
            f"letters<{letter_model.MIN_GAIN}(>{letter_model.LARGE_ALPHABET}:{letter_model.MIN_GAIN_LARGE})"
            f"@{letter_model.MIN_LETTERS}+refs>={letter_model.MIN_TEXTS}/median{letter_model.MIN_MEDIAN_LETTERS}|long:full-top{FULL_TOP}|rule-{RULE_VERSION}|"
            f"{bootstrap_signature(self.bootstrap_resamples, self.seed)}|mvleval-1"
        )

    def _detector_names(self, requested: str) -> tuple[str, ...]:
        names: list[str] = []
        for code in (*self.languages, requested):
            for n in lingua_names(code) or ():
                if n not in names:
                    names.append(n)
        if len(names) < 2 and "ENGLISH" not in names:
            names.append("ENGLISH")  # lingua needs two languages; English is the usual confusion
        return tuple(sorted(names))

    def verdicts(
        self, texts: Sequence[str], requested: str, model: letter_model.LetterModel | None = None
    ) -> list[str]:
        """Verdict for each text (detectors run once per distinct text that passes the script and not-language checks;
        the unrestricted one only for texts of 20 characters or more that the restricted one credits). `model`: the
        requested language's letter model (rule 3c), None to skip that check."""
        return [verdict for verdict, _ in self.judgements(texts, requested, model)]

    def judgements(
        self, texts: Sequence[str], requested: str, model: letter_model.LetterModel | None = None
    ) -> list[tuple[str, dict[str, str] | None]]:
        """(verdict, facts) for each text; facts say, for an output that is not faithful, what was found instead.

        facts is None for a faithful output, else {"verdict": "wrong"|"undetermined"|"not_language", "requested":
        dataset code, "script": dominant script of the letters (when there are letters), "detected": the detector's
        top-1 as a dataset code (or lingua's ISO code / name outside the task's languages; absent when nothing was
        detected), "why": for not_language, "repeats", "foreign letters" or "no words"}. The detector also runs on
        outputs the script check already judged wrong, only to fill "detected": the verdict (and so the score) is
        the one `judge` gives.
        """
        names = self._detector_names(requested)
        detector = _detector(names) if len(names) >= 2 else None  # built now: a missing lingua is reported first
        codes = self._codes_by_name(requested)
        try:
            return self._judge_all(texts, requested, model, names, detector, codes)
        finally:  # rankings made so far are kept, also when interrupted
            ranking_cache.flush_all()

    def _judge_all(
        self,
        texts: Sequence[str],
        requested: str,
        model: letter_model.LetterModel | None,
        names: tuple[str, ...],
        detector: LanguageDetector | None,
        codes: dict[str, str],
    ) -> list[tuple[str, dict[str, str] | None]]:
        cache: dict[str, tuple[str, dict[str, str] | None]] = {}
        out = []
        for text in texts:
            judged = cache.get(text)
            if judged is None:
                ranking = full = None
                pre, reason = pre_verdict(text, requested, model)
                if detector is not None and (pre is None or pre == Verdict.WRONG):
                    ranking = _ranking(names, text)
                    if (
                        pre is None
                        and len(text.strip()) >= SHORT_TEXT_CHARS
                        and detector_verdict(text, requested, ranking) == Verdict.FAITHFUL
                    ):
                        full = _ranking((), text)
                # judge()'s decision, without running rules 1-3 a second time
                verdict = pre or (
                    Verdict.FAITHFUL if ranking is None else detector_verdict(text, requested, ranking, full)
                )
                facts: dict[str, str] | None = None
                if verdict != Verdict.FAITHFUL:
                    facts = {"verdict": verdict, "requested": requested}
                    if reason:
                        facts["why"] = reason
                    scripts = _letter_scripts(text)
                    if scripts:
                        facts["script"] = _dominant(scripts)
                    if ranking and ranking[0][1] > 0.0:
                        facts["detected"] = codes.get(ranking[0][0]) or _lingua_code(ranking[0][0])
                judged = (verdict, facts)
                cache[text] = judged
            out.append(judged)
        return out

    def _codes_by_name(self, requested: str) -> dict[str, str]:
        """lingua language name -> the dataset code it stands for (the requested language's code wins)."""
        codes: dict[str, str] = {}
        for code in (requested, *self.languages):
            for n in lingua_names(code) or ():
                codes.setdefault(n, code)
        return codes

    def reference_fidelity(self, references: Sequence[Sequence[str]], lang: str) -> float | None:
        """Fidelity of the first reference of each example (the ceiling in ``extra``); None when not measurable.

        Judged as `score` judges outputs, with the letter model learned from the same references."""
        requested = self.answer_language or lang
        firsts = [refs[0] for refs in references if len(refs) > 0]
        if not firsts or lingua_names(requested) is None:
            return None
        model = letter_model_for(references, requested)
        return sum(v == Verdict.FAITHFUL for v in self.verdicts(firsts, requested, model)) / len(firsts)

    def check_references(self, references: Sequence[Sequence[str]], lang: str) -> str | None:
        """A warning when `lang`'s own references fail its fidelity check (below 0.5), else None.

        Checked only when answers are requested in the corpus language (captions): references in a fixed answer
        language say nothing about the corpus. Used by ``score`` (logged) and by ``mvleval data check``.
        """
        if self.answer_language is not None:
            return None
        return reference_warning(lang, lang, self.reference_fidelity(references, lang))

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]], lang: str) -> MetricResult:
        """Score one language's outputs; `references` give the reference ceiling (first reference per example).

        Raises:
            MvlevalError: when predictions and references differ in length or an entry is not a string.
        """
        check_inputs(self.name, predictions, references, lang)
        requested = self.answer_language or lang
        if lingua_names(requested) is None:
            return MetricResult(
                value=None,
                per_example=None,
                signature=self.signature(),
                note=f"lingua-language-detector {_installed_lingua()} has no model for '{requested}': "
                "language fidelity is not computed for it",
                extra={
                    "reference_fidelity": None,
                    "undetermined": None,
                    "not_language": None,
                    "letter_model_texts": None,
                },
            )
        if not predictions:
            return MetricResult(
                value=None, per_example=[], signature=self.signature(), note=f"no examples for language '{lang}'"
            )
        model = letter_model_for(references, requested)
        judged = self.judgements(predictions, requested, model)
        verdicts = [v for v, _ in judged]
        per_example = [1.0 if v == Verdict.FAITHFUL else 0.0 for v in verdicts]
        firsts = [refs[0] for refs in references if len(refs) > 0]
        ref_verdicts = self.verdicts(firsts, requested, model) if firsts else []
        extra: dict[str, float | None] = {
            "reference_fidelity": (
                sum(v == Verdict.FAITHFUL for v in ref_verdicts) / len(ref_verdicts) if ref_verdicts else None
            ),
            "undetermined": sum(v == Verdict.UNDETERMINED for v in verdicts) / len(verdicts),
            "not_language": sum(v == Verdict.NOT_LANGUAGE for v in verdicts) / len(verdicts),
            "letter_model_texts": float(model.n_texts) if model is not None else None,
        }
        if self.answer_language is None:  # references are in the corpus language only when that is requested
            warning = reference_warning(lang, requested, extra["reference_fidelity"])
            if warning:
                log.warning("%s.", warning)
        value = sum(per_example) / len(per_example)
        interval = bootstrap_mean_interval(per_example, self.bootstrap_resamples, self.seed)
        return MetricResult(
            value=value,
            per_example=per_example,
            signature=self.signature(),
            interval=interval,
            extra=extra,
            per_example_extra=[facts for _, facts in judged],
        )
