"""mBLIP's table of language names (code -> English name) used inside prompts, with its deviations from standard names.

mBLIP fills its captioning prompt ("Caption in {}: ") with an English language name. The names below are copied from
the 36-entry list in mBLIP's public code (gregor-ge/mBLIP, data/xm3600/convert_xm3600_to_coco.py, `xm3600_langs` /
`full_lang`, zipped pairwise). They are part of the prompt and therefore of the protocol: a model prompted with
"Portuguese" instead of mBLIP's "Portugese" is not being evaluated the way the published numbers were made.

mBLIP's xFlickrCo script (data/flickr/generate_flickr.py) uses a second, larger table (`lang_code2lang`) that spells
some names differently (bn "Bangla", fa "Persian", pt "Portuguese", uk "Ukrainian"); for the eight xFlickrCo
languages (de en es id ja ru tr zh) both tables give the same name, so one table serves every task.

`STANDARD_NAMES` holds the CLDR English display names (what Unicode CLDR / ICU show for each code) for comparison;
`DEVIATIONS` lists every code where mBLIP's name differs from it, so the difference is a documented fact rather than
a silent typo fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from mvleval.util.errors import MvlevalError, did_you_mean

#: mBLIP's names, exactly as in its XM3600 conversion script (spelling mistakes included: they are in the prompts).
MBLIP_LANGUAGE_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "ar": "Arabic",
        "bn": "Bengali",
        "cs": "Czech",
        "da": "Danish",
        "de": "German",
        "el": "Greek",
        "en": "English",
        "es": "Spanish",
        "fa": "Farsi",
        "fi": "Finnish",
        "fil": "Filipino",
        "fr": "French",
        "he": "Hebrew",
        "hi": "Hindi",
        "hr": "Croatian",
        "hu": "Hungarian",
        "id": "Indonesian",
        "it": "Italian",
        "ja": "Japanese",
        "ko": "Korean",
        "mi": "Maori",
        "nl": "Dutch",
        "no": "Norwegian",
        "pl": "Polish",
        "pt": "Portugese",  # sic (mBLIP)
        "quz": "Quechua",
        "ro": "Romanian",
        "ru": "Russian",
        "sv": "Swedish",
        "sw": "Swahili",
        "te": "Telugu",
        "th": "Thai",
        "tr": "Turkish",
        "uk": "Ukranian",  # sic (mBLIP)
        "vi": "Vietnamese",
        "zh": "Chinese",
    }
)

#: CLDR English display names for the same codes. CLDR has no entry for `quz` (Cusco Quechua); its ISO 639-3 name
#: is given instead.
STANDARD_NAMES: Mapping[str, str] = MappingProxyType(
    {
        **dict(MBLIP_LANGUAGE_NAMES),
        "bn": "Bangla",
        "fa": "Persian",
        "mi": "Māori",
        "pt": "Portuguese",
        "quz": "Cusco Quechua",
        "uk": "Ukrainian",
    }
)

#: code -> (mBLIP's name, standard name) wherever the two differ.
DEVIATIONS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {code: (name, STANDARD_NAMES[code]) for code, name in MBLIP_LANGUAGE_NAMES.items() if name != STANDARD_NAMES[code]}
)


#: Codes some datasets use for a language that mBLIP's table lists under another code: MaXM (like Google's other
#: releases) writes Hebrew as "iw", ISO 639-1's code before 1989; mBLIP's MaXM script (data/maxm/generate_maxm.py,
#: `lang_code2lang`) names it "Hebrew", the name the XM3600 table gives "he". The alias only resolves the prompt name:
#: the dataset's own code stays the task's language code.
CODE_ALIASES: Mapping[str, str] = MappingProxyType({"iw": "he"})


def language_name(code: str) -> str:
    """The English name mBLIP puts into prompts for a dataset language code.

    Args:
        code: the dataset's language code, e.g. "de" or "fil" (an alias in CODE_ALIASES, e.g. MaXM's "iw", is
            resolved first).

    Returns:
        mBLIP's name for it, e.g. "German" (or "Ukranian" for "uk", as mBLIP spells it; "Hebrew" for "iw").

    Raises:
        MvlevalError: the code is not in mBLIP's table.
    """
    try:
        return MBLIP_LANGUAGE_NAMES[CODE_ALIASES.get(code, code)]
    except KeyError:
        raise MvlevalError(
            f"no prompt language name for the code '{code}'.{did_you_mean(code, MBLIP_LANGUAGE_NAMES)}",
            fix=f"use one of: {' '.join(sorted(MBLIP_LANGUAGE_NAMES))}.",
        ) from None
