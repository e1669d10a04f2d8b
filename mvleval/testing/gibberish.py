"""Seeded nonsense in every script the tasks use: what language fidelity must never credit (tests and bench).

`gibberish(seed, n_per_kind)` returns rows (kind, script, requested language, text) of five kinds, for each script:

- ``syllable``: one syllable of the script repeated (``glglgl…``, ``ลาลาลา``), with or without spaces;
- ``token``: one word-like token repeated (``der der der …``), sometimes a real word of the language;
- ``letters``: random letters of the script grouped into word-like chunks (no words, no repetition);
- ``mixture``: random pieces of 2-4 scripts, special tokens and U+FFFD replacement characters in one string
  (``青iz�一つ�blanco``, ``<row_2_col_1>Kreisьvierา``), as a random multilingual model samples them;
- ``tiny``: what an untrained or tiny multilingual LM emits: a few subword pieces of several languages, then a loop
  of one to three pieces repeated until the length limit.

The requested language is one written in the script (tasks' languages, cycled), so that the script check alone
cannot reject the text; a mixture requests the language of its most frequent script. Deterministic for a seed.
"""

from __future__ import annotations

import random
import unicodedata
from typing import NamedTuple

__all__ = ["HANDWRITTEN", "KINDS", "SCRIPTS", "GibberishRow", "gibberish"]


class GibberishRow(NamedTuple):
    kind: str
    script: str
    requested: str
    text: str


# script -> (requested languages written in it, letters, syllables, word-like tokens). Letters are each script's
# common alphabet (what a tokenizer's vocabulary holds), not the whole Unicode block.
SCRIPTS: dict[str, tuple[tuple[str, ...], str, tuple[str, ...], tuple[str, ...]]] = {
    "Latin": (
        ("tr", "de", "en", "id", "es", "fr", "pt", "cs", "vi", "sw", "fi", "pl"),
        "abcdefghijklmnopqrstuvwxyzçğışöüäßéèñãõ",
        ("gl", "la", "na", "ba", "ko", "ti", "ra", "me", "ha", "lo", "ku", "ze"),
        ("der", "the", "bir", "yang", "de", "ve", "und", "la", "il", "ist", "ada", "man"),
    ),
    "Cyrillic": (
        ("ru", "uk"),
        "абвгдежзийклмнопрстуфхцчшщыьэюяіїє",
        ("ла", "на", "ко", "ба", "ти", "ра", "ме"),
        ("и", "в", "на", "не", "что", "это", "мы"),
    ),
    "Greek": (
        ("el",),
        "αβγδεζηθικλμνξοπρστυφχψωάέίόύή",
        ("λα", "να", "κο", "μα", "τι"),
        ("και", "το", "η", "να", "ένα"),
    ),
    "Arabic": (
        ("ar", "fa"),
        "ابتثجحخدذرزسشصضطظعغفقكلمنهويةىپچژگک",
        ("لا", "با", "نا", "ما", "سا"),
        ("في", "من", "على", "و", "رجل"),
    ),
    "Hebrew": (("he",), "אבגדהוזחטיכלמנסעפצקרשתםןףץך", ("לה", "נא", "בא", "מה"), ("של", "את", "על", "איש", "זה")),
    "Devanagari": (
        ("hi",),
        "अआइईउएओकखगघचछजझटठडढणतथदधनपफबभमयरलवशषसहािीुूेैोौंः्",
        ("ला", "ना", "का", "मा", "रा"),
        ("का", "के", "में", "है", "और"),
    ),
    "Bengali": (
        ("bn",),
        "অআইঈউএওকখগঘচছজঝটঠডঢণতথদধনপফবভমযরলশষসহািীুূেৈোৌংঃ্",
        ("লা", "না", "কা", "মা"),
        ("এবং", "একটি", "করে", "হয়"),
    ),
    "Tamil": (("ta",), "அஆஇஈஉஊஎஏஐஒஓகஙசஞடணதநபமயரலவழளறனாிீுூெேைொோ்", ("லா", "நா", "கா", "மா"), ("ஒரு", "மற்றும்", "இது", "அந்த")),
    "Telugu": (
        ("te",),
        "అఆఇఈఉఊఎఏఐఒఓకఖగఘచఛజఝటఠడఢణతథదధనపఫబభమయరలవశషసహాిీుూెేైొోౌ్",
        ("లా", "నా", "కా", "మా"),
        ("ఒక", "మరియు", "ఇది", "లో"),
    ),
    "Thai": (
        ("th",),
        "กขคฆงจฉชซญฎฏฐดตถทธนบปผพฟภมยรลวศษสหอฮะาำิีึืุูเแโใไ่้๊๋็์",
        ("ลา", "นา", "กา", "มา"),
        ("และ", "ที่", "ของ", "คน", "ใน"),
    ),
    "Han": (
        ("zh",),
        "的一是不了人我在有他这中大来上个国到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么",
        ("哈", "啊", "的", "了"),
        ("一个", "我们", "他们", "没有", "什么"),
    ),
    "Kana": (
        ("ja",),
        "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをんアイウエオカキクケコサシスセソタチツテト",
        ("ら", "な", "か", "ま", "ラ", "ナ"),
        ("の", "です", "ます", "これ", "スポーツ"),
    ),
    "Hangul": (
        ("ko",),
        "가나다라마바사아자차카타파하고노도로모보소오조초코토포호구누두루무부수우주추쿠투푸후기니디리미비시이지치키티피히는을를에서의",
        ("라", "나", "가", "하"),
        ("그리고", "있다", "사람", "이", "는"),
    ),
}

_SPECIALS = ("<row_2_col_1>", "<pad>", "</s>", "<unk>", "<extra_id_0>", "\ufffd", "\ufffd\ufffd", "▁", "##")


def _letters_word(rng: random.Random, letters: str, lo: int = 1, hi: int = 8) -> str:
    return "".join(rng.choice(letters) for _ in range(rng.randint(lo, hi)))


def _spaced(script: str) -> bool:
    return script not in ("Han", "Kana", "Thai")


def _one(kind: str, script: str, rng: random.Random) -> str:
    _, letters, syllables, tokens = SCRIPTS[script]
    sep = " " if _spaced(script) else ""
    if kind == "syllable":
        syl = rng.choice(syllables) if rng.random() < 0.5 else _letters_word(rng, letters, 1, 3)
        joiner = rng.choice(["", "", " ", "-"])
        return joiner.join([syl] * rng.randint(4, 25))
    if kind == "token":
        tok = rng.choice(tokens) if rng.random() < 0.5 else _letters_word(rng, letters, 2, 7)
        text = (sep or rng.choice(["", " "])).join([tok] * rng.randint(3, 15))
        return text + rng.choice(["", ".", " ."])
    if kind == "letters":
        n_words = rng.randint(2, 10)
        return sep.join(_letters_word(rng, letters, 1, 9) for _ in range(n_words))
    if kind == "mixture":
        others = rng.sample([s for s in SCRIPTS if s != script], rng.randint(1, 3))
        pieces: list[str] = []
        for _ in range(rng.randint(3, 8)):
            r = rng.random()
            if r < 0.2:
                pieces.append(rng.choice(_SPECIALS))
            else:
                s = script if r < 0.55 else rng.choice(others)
                _, lt, _, tk = SCRIPTS[s]
                pieces.append(rng.choice(tk) if rng.random() < 0.5 else _letters_word(rng, lt, 1, 5))
        return rng.choice(["", " "]).join(pieces)
    if kind == "tiny":
        pool = [script] * 3 + rng.sample(list(SCRIPTS), 2)
        vocab = []
        for s in pool:
            _, lt, sy, tk = SCRIPTS[s]
            vocab += [rng.choice(tk), rng.choice(sy), _letters_word(rng, lt, 1, 4)]
        head = [rng.choice(vocab) for _ in range(rng.randint(0, 3))]
        loop = [rng.choice(vocab[:9]) for _ in range(rng.randint(1, 3))]  # the loop is in the requested script
        joiner = rng.choice(["", " "])
        text = joiner.join(head + loop * rng.randint(3, 15))
        return text[: rng.randint(15, 120)]
    raise ValueError(kind)


KINDS = ("syllable", "token", "letters", "mixture", "tiny")


_UNICODE_SCRIPT = {
    "LATIN": "Latin",
    "CYRILLIC": "Cyrillic",
    "GREEK": "Greek",
    "ARABIC": "Arabic",
    "HEBREW": "Hebrew",
    "DEVANAGARI": "Devanagari",
    "BENGALI": "Bengali",
    "TAMIL": "Tamil",
    "TELUGU": "Telugu",
    "THAI": "Thai",
    "CJK": "Han",
    "HIRAGANA": "Kana",
    "KATAKANA": "Kana",
    "HANGUL": "Hangul",
}


def _dominant_script(text: str, default: str) -> str:
    counts: dict[str, int] = {}
    for ch in text:
        if ch.isalpha():
            s = _UNICODE_SCRIPT.get(unicodedata.name(ch, "?").split(" ", 1)[0])
            if s:
                counts[s] = counts.get(s, 0) + 1
    if "Kana" in counts:  # Japanese is written with kana and Han together
        counts["Kana"] += counts.pop("Han", 0)
    return max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0] if counts else default


def gibberish(seed: int = 0, n_per_kind: int = 40) -> list[GibberishRow]:
    """`n_per_kind` texts of each kind for each script (see the module docstring); deterministic for a seed."""
    rng = random.Random(seed)
    rows: list[GibberishRow] = []
    for script, (_langs, *_rest) in SCRIPTS.items():
        for kind in KINDS:
            for i in range(n_per_kind):
                text = _one(kind, script, rng)
                # a mixture is requested in the language of its most frequent script (else the script check alone
                # would reject it); the other kinds are written in the row's script
                dominant = _dominant_script(text, script) if kind == "mixture" else script
                dlangs = SCRIPTS[dominant][0]
                rows.append(GibberishRow(kind, script, dlangs[i % len(dlangs)], text))
    return rows


#: Real captions and one-word answers in languages ../shared has no data for, written by hand for the measurement
#: (plain, correct sentences of the kind caption datasets hold): language fidelity must keep crediting them.
HANDWRITTEN: dict[str, list[str]] = {
    "tr": [
        "Bir köpek yeşil çimenlerin üzerinde koşuyor.",
        "Kırmızı gömlekli bir adam bisiklet sürüyor.",
        "İki çocuk plajda kumdan kale yapıyor.",
        "Masanın üzerinde bir fincan kahve var.",
        "kedi",
        "evet",
    ],
    "es": [
        "Un perro corre sobre la hierba verde.",
        "Un hombre con camisa roja monta en bicicleta.",
        "Dos niños juegan en la playa.",
        "Una mujer sostiene un paraguas azul.",
        "perro",
        "sí",
    ],
    "fr": [
        "Un chien court sur l'herbe verte.",
        "Un homme en chemise rouge fait du vélo.",
        "Deux enfants jouent sur la plage.",
        "Une femme tient un parapluie bleu.",
    ],
    "pt": [
        "Um cachorro corre na grama verde.",
        "Um homem de camisa vermelha anda de bicicleta.",
        "Duas crianças brincam na praia.",
    ],
    "ru": [
        "Собака бежит по зелёной траве.",
        "Мужчина в красной рубашке едет на велосипеде.",
        "Двое детей играют на пляже.",
        "Женщина держит синий зонтик.",
        "собака",
        "да",
    ],
    "uk": [
        "Собака біжить по зеленій траві.",
        "Чоловік у червоній сорочці їде на велосипеді.",
        "Двоє дітей граються на пляжі.",
    ],
    "el": [
        "Ένας σκύλος τρέχει στο πράσινο γρασίδι.",
        "Ένας άντρας με κόκκινο πουκάμισο κάνει ποδήλατο.",
        "Δύο παιδιά παίζουν στην παραλία.",
        "σκύλος",
    ],
    "fa": ["یک سگ روی چمن سبز می‌دود.", "مردی با پیراهن قرمز دوچرخه سواری می‌کند.", "دو کودک در ساحل بازی می‌کنند."],
    "he": ["כלב רץ על הדשא הירוק.", "איש בחולצה אדומה רוכב על אופניים.", "שני ילדים משחקים על החוף.", "כלב"],
    "hi": [
        "एक कुत्ता हरी घास पर दौड़ रहा है।",
        "लाल कमीज़ पहने एक आदमी साइकिल चला रहा है।",
        "दो बच्चे समुद्र तट पर खेल रहे हैं।",
        "कुत्ता",
    ],
    "bn": ["একটি কুকুর সবুজ ঘাসের উপর দৌড়াচ্ছে।", "লাল জামা পরা একজন লোক সাইকেল চালাচ্ছে।", "দুটি শিশু সমুদ্র সৈকতে খেলছে।", "কুকুর"],
    "ta": [
        "ஒரு நாய் பச்சை புல்லில் ஓடுகிறது.",
        "சிவப்பு சட்டை அணிந்த ஒருவர் மிதிவண்டி ஓட்டுகிறார்.",
        "இரண்டு குழந்தைகள் கடற்கரையில் விளையாடுகிறார்கள்.",
    ],
    "te": [
        "ఒక కుక్క పచ్చని గడ్డిపై పరుగెడుతోంది.",
        "ఎరుపు చొక్కా వేసుకున్న ఒక వ్యక్తి సైకిల్ తొక్కుతున్నాడు.",
        "ఇద్దరు పిల్లలు సముద్ర తీరంలో ఆడుకుంటున్నారు.",
    ],
    "th": [
        "ผู้ชายกำลังขี่จักรยานบนถนน",
        "สุนัขสีน้ำตาลวิ่งอยู่บนสนามหญ้า 2 ตัว",
        "ผู้หญิงถือร่มสีแดงยืนอยู่ข้างรถ",
        "แมวนอนอยู่บนโต๊ะในห้อง",
        "กลุ่มคนกำลังเดินบนชายหาด",
        "แมว",
    ],
    "ko": [
        "개 한 마리가 푸른 잔디 위를 달리고 있다.",
        "빨간 셔츠를 입은 남자가 자전거를 타고 있다.",
        "두 아이가 해변에서 놀고 있다.",
        "고양이",
    ],
    "vi": [
        "Một con chó đang chạy trên bãi cỏ xanh.",
        "Một người đàn ông mặc áo đỏ đang đi xe đạp.",
        "Hai đứa trẻ đang chơi trên bãi biển.",
    ],
    "cs": ["Pes běží po zelené trávě.", "Muž v červené košili jede na kole.", "Dvě děti si hrají na pláži."],
    "sw": [
        "Mbwa anakimbia kwenye nyasi za kijani.",
        "Mwanamume aliyevaa shati jekundu anaendesha baiskeli.",
        "Watoto wawili wanacheza ufukweni.",
    ],
    "fi": [
        "Koira juoksee vihreällä nurmikolla.",
        "Punapaitainen mies ajaa polkupyörällä.",
        "Kaksi lasta leikkii rannalla.",
    ],
    "pl": [
        "Pies biegnie po zielonej trawie.",
        "Mężczyzna w czerwonej koszuli jedzie na rowerze.",
        "Dwoje dzieci bawi się na plaży.",
    ],
    "id": ["anjing", "kucing"],
}
