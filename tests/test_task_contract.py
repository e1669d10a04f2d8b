"""Contract tests over every task in tasks/: fixtures load, prompts are exact, vocabularies closed, versions pinned.

The fixtures in tests/data/tasks/ are tiny files in each benchmark's native format, laid out as under --data-root
(most lines copied verbatim from the published CC BY 4.0 files; the MaRVL Turkish rows and the XM3600 captions are
hand-made). The expected prompts and references below were written by hand from those files and the protocol table
in tasks/README.md, not produced by the task code.
"""

from __future__ import annotations

import json
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest

from mvleval.benchmarks.hubdata import image_dir
from mvleval.benchmarks.registry import load_task, task_names
from mvleval.benchmarks.task import Task
from mvleval.util.errors import MvlevalError
from tests.helpers import placeholder_images

FIXTURES = Path(__file__).resolve().parent / "data" / "tasks"

#: task -> (version, protocol hash). When a task's protocol changes (prompt, generation, filtering, label map,
#: metrics, language names...), bump its `version` and update its row here, in the same commit.
PINNED: dict[str, tuple[int, str]] = {
    "marvl": (1, "7a16f06c7a15c1a4"),
    "maxm": (1, "91590d9f7192af79"),
    "xflickrco": (2, "375bfa6ee89a65f6"),  # v2: bleu and chrfpp added after cider
    "xgqa": (1, "9a675bbf9fafef34"),
    "xm3600": (2, "309a3ddcb31d3aa1"),  # v2: bleu and chrfpp added after cider
    "xvnli": (1, "0abcf49a94ada671"),
    "mtvqa": (1, "e44ebcff298e1077"),
    "cvqa": (1, "53b6de36673defa8"),
    "xmmmu": (1, "e3855ede2db85812"),
    "kaleidoscope": (1, "7968d8b9578ff720"),
    "kaleidoscope_cot": (1, "065f2d399990291c"),
    "m3exam": (1, "d92c3f305dbdab1b"),
}

#: task -> (version, protocol hash) of the "chat" prompt style: a protocol of its own, pinned the same way.
PINNED_CHAT: dict[str, tuple[int, str]] = {
    "marvl": (1, "552a7ebc1c8a3550"),
    "maxm": (1, "0deebd8463e0ec5b"),
    "xflickrco": (2, "7e65569636040789"),
    "xgqa": (1, "dd1243c68cee4008"),
    "xm3600": (2, "6abf2576171c9849"),
    "xvnli": (1, "8405d14711d31f02"),
    "mtvqa": (1, "fd183ebb84c76d4d"),
    "cvqa": (1, "930d0a3443ed346f"),
    "xmmmu": (1, "4a995a41a20582c9"),
    "kaleidoscope": (1, "8661e96026fd543b"),
    "kaleidoscope_cot": (1, "c339bd726dcbf6f0"),
    "m3exam": (1, "8d5f4c590edf0d2c"),
}

#: the language each task's prompt asks for: English for the QA/classification tasks, None = the evaluated language
ANSWER_LANGUAGE: dict[str, str | None] = {
    "xgqa": "en",
    "marvl": "en",
    "xvnli": "en",
    "xm3600": None,
    "xflickrco": None,
    "maxm": None,
    "mtvqa": None,  # the question's language
    "cvqa": None,  # a letter: no answer language
    "xmmmu": None,
    "kaleidoscope": None,
    "kaleidoscope_cot": None,
    "m3exam": None,
}

#: metrics whose score is 1.0 when every prediction is the gold answer
ACCURACY_METRICS = {
    "exact_match",
    "relaxed_accuracy",
    "contains_accuracy",
    "choice_accuracy",
    "mmmu_accuracy",
    "m3exam_accuracy",
}


@dataclass(frozen=True)
class Case:
    """One fixture file of one task: what must come out of it."""

    lang: str
    split: str
    #: image files to create under the image root, as the benchmark's archives name them
    images: tuple[str, ...]
    #: example id -> (exact prompt, references), in file order
    expected: dict[str, tuple[str, tuple[str, ...]]]


XM_KEYS = ("d89a4889331ce042", "74f94963ee1e135d", "eb4cdfd93268c52c")  # the first three of xm3600/image_ids.txt
XVNLI_PROMPT = 'Is it guaranteed true that "{}"? Yes, no, or maybe? Answer in English:'
MARVL_PROMPT = 'Based on the two images, is it correct to say "{}"? Yes or no?'
ZH_STATEMENT = "左圖有好幾隻不同顏色的鉛筆，右圖則只有一支鉛筆。"
HOTPOT = "至少有一张图里有人在用筷子涮火锅。"
TR_1 = "Sol resimde bir çaydanlık var, sağ resimde iki çaydanlık var."
TR_2 = "İki resimde de ocakta kaynayan çaydanlık görülüyor."
MAXM_PROMPT = "Question: {} Short answer in {}:"

CASES: dict[str, tuple[Case, ...]] = {
    "xm3600": (
        Case(
            "uk",  # mBLIP's spelling "Ukranian" is part of the prompt
            "test",
            tuple(f"xm3600/{k}.jpg" for k in XM_KEYS),
            {
                XM_KEYS[0]: ("Caption in Ukranian: ", ("Червоний трамвай на вулиці міста.",)),
                XM_KEYS[1]: ("Caption in Ukranian: ", ("Два собаки граються в снігу.",)),
                XM_KEYS[2]: ("Caption in Ukranian: ", ("Миска локшини на дерев'яному столі.",)),
            },
        ),
        Case(
            "de",
            "test",
            tuple(f"xm3600/{k}.jpg" for k in XM_KEYS),
            {
                XM_KEYS[0]: ("Caption in German: ", ("Eine rote Straßenbahn auf einer Stadtstraße.",)),
                XM_KEYS[1]: ("Caption in German: ", ("Zwei Hunde spielen im Schnee.", "Hunde toben im Schnee.")),
                XM_KEYS[2]: ("Caption in German: ", ("Eine Schüssel Nudeln auf einem Holztisch.",)),
            },
        ),
    ),
    "xflickrco": (
        Case(
            "de",
            "test",
            ("flickr30k/1007129816.jpg", "flickr30k/1009434119.jpg", "flickr30k/COCO_val2014_000000391895.jpg"),
            {
                "1007129816": ("Caption in German: ", ("Der Mann trägt eine orange Wollmütze.",)),
                "1009434119": ("Caption in German: ", ("Ein Hund läuft auf grünem Rasen vor einem weißen Zaun.",)),
                "391895": (  # a COCO row: its id is an integer in the file
                    "Caption in German: ",
                    ("Motorradfahrer schaut die Landschaft an und überlegt sich den besten Weg.",),
                ),
            },
        ),
        Case(
            "en",  # Flickr30k test, 5 references per image
            "test",
            ("flickr30k/1007129816.jpg", "flickr30k/1009434119.jpg"),
            {
                "1007129816": (
                    "Caption in English: ",
                    (
                        "The man with pierced ears is wearing glasses and an orange hat.",
                        "A man with glasses is wearing a beer can crocheted hat.",
                        "A man with gauges and glasses is wearing a Blitz hat.",
                        "A man in an orange hat starring at something.",
                        "A man wears an orange hat and glasses.",
                    ),
                ),
                "1009434119": (
                    "Caption in English: ",
                    (
                        "A black and white dog is running in a grassy garden surrounded by a white fence.",
                        "A Boston Terrier is running on lush green grass in front of a white fence.",
                        "A black and white dog is running through the grass.",
                        "A dog runs on the green grass near a wooden fence.",
                        "A Boston terrier is running in the grass.",
                    ),
                ),
            },
        ),
        Case(
            "de",
            "train_2",
            ("flickr30k/1244140539.jpg", "flickr30k/2931254547.jpg"),
            {
                "1244140539": ("Caption in German: ", ("Schlafender Hund auf dem Fell",)),
                "2931254547": ("Caption in German: ", ("Mehrere Menschen betrachten eine nackte Frau am Strand.",)),
            },
        ),
    ),
    "marvl": (
        Case(
            "zh",
            "test",
            (
                "marvl/zh/images/82-铅笔/82-6.jpg",
                "marvl/zh/images/82-铅笔/82-1.jpg",
                "marvl/zh/images/82-铅笔/82-10.jpg",
                "marvl/zh/images/82-铅笔/82-12.jpg",
            ),
            {
                "zh-0": (MARVL_PROMPT.format(ZH_STATEMENT), ("no",)),
                "zh-1": (MARVL_PROMPT.format(ZH_STATEMENT), ("no",)),
            },
        ),
        Case(
            "tr",
            "test",
            (
                "marvl/tr/images/14-Çaydanlık/14-3.jpg",
                "marvl/tr/images/14-Çaydanlık/14-7.jpg",
                "marvl/tr/images/14-Çaydanlık/14-1.jpg",
            ),
            {"tr-0": (MARVL_PROMPT.format(TR_1), ("yes",)), "tr-1": (MARVL_PROMPT.format(TR_2), ("no",))},
        ),
        Case(
            "zh",
            "train_1",  # few-shot files carry the concept folder in the file name
            (
                "marvl/zh/images/52-火锅/52-n-2.jpg",
                "marvl/zh/images/52-火锅/52-4.jpg",
                "marvl/zh/images/52-火锅/52-15.jpg",
                "marvl/zh/images/52-火锅/52-n-1.jpg",
            ),
            {"zh-0": (MARVL_PROMPT.format(HOTPOT), ("yes",)), "zh-1": (MARVL_PROMPT.format(HOTPOT), ("no",))},
        ),
    ),
    "xvnli": (
        Case(
            "en",
            "test",  # the fifth line has gold_label "-" and is dropped
            ("flickr30k/759822302.jpg", "flickr30k/2245916742.jpg"),
            {
                "759822302.jpg#2r1c": (XVNLI_PROMPT.format("He is wearing the newspaper on his head."), ("no",)),
                "759822302.jpg#2r1e": (XVNLI_PROMPT.format("He is reading the newspaper."), ("maybe",)),
                "759822302.jpg#2r1n": (XVNLI_PROMPT.format("He is jewish."), ("maybe",)),
                "2245916742.jpg#2r1e": (XVNLI_PROMPT.format("A man on Easter Island."), ("yes",)),
            },
        ),
        Case(
            "ar",
            "train_1",
            ("flickr30k/2487069642.jpg",),
            {
                "2487069642.jpg#1r1e": (XVNLI_PROMPT.format("مضيفة طيران وافقة أمام مسافرين."), ("maybe",)),
                "2487069642.jpg#1r1n": (
                    XVNLI_PROMPT.format("مضيفة طيران ترتدي الأصفر تشرح إجراءات السلامة قبل الاقلاع."),
                    ("maybe",),
                ),
                "2487069642.jpg#1r1c": (XVNLI_PROMPT.format("امرأة تعد مشروبات في الطيارة."), ("no",)),
            },
        ),
    ),
    "maxm": (
        Case(
            "fr",  # one example per QA pair, in file order, over two images
            "test",
            ("xm3600/d89a4889331ce042.jpg", "xm3600/74f94963ee1e135d.jpg"),
            {
                "fr-0001": (MAXM_PROMPT.format("De quelle couleur est le tramway ?", "French"), ("rouge",)),
                "fr-0002": (
                    MAXM_PROMPT.format("Où se trouve le tramway ?", "French"),
                    ("dans la rue", "sur une rue de la ville", "rue"),  # processed_answers, not the raw answers
                ),
                "fr-0003": (MAXM_PROMPT.format("Combien de chiens y a-t-il ?", "French"), ("deux", "2")),
            },
        ),
        Case(
            "iw",  # MaXM's code for Hebrew; mBLIP names it "Hebrew"
            "test",
            ("xm3600/eb4cdfd93268c52c.jpg",),
            {
                "iw-0001": (MAXM_PROMPT.format("מה יש בקערה?", "Hebrew"), ("אטריות",)),
                "iw-0002": (MAXM_PROMPT.format("אילו חפצים נמצאים על השולחן?", "Hebrew"), ("קערה ומקלות", "קערה")),
            },
        ),
        Case(
            "zh",  # the second image has no QA pairs: it contributes no example
            "test",
            ("xm3600/74f94963ee1e135d.jpg", "xm3600/d89a4889331ce042.jpg"),
            {
                "zh-0001": (MAXM_PROMPT.format("狗在哪里玩？", "Chinese"), ("雪地里", "在雪里", "雪地")),
                "zh-0002": (MAXM_PROMPT.format("电车是什么颜色的？", "Chinese"), ("红色", "红")),
            },
        ),
    ),
    "xgqa": (
        Case(
            "de",
            "test",
            ("gqa/n235859.jpg", "gqa/n179136.jpg", "gqa/n117888.jpg"),
            {
                "201640614": ("Question: Wer trägt das Kleid? Short answer in English:", ("women",)),
                "2062325": (
                    "Question: Trägt der Surfer, der nass aussieht, einen Neoprenanzug? Short answer in English:",
                    ("yes",),
                ),
                "20120533": (
                    "Question: Besteht der Zaun aus Zement oder Aluminium? Short answer in English:",
                    ("aluminum",),
                ),
            },
        ),
    ),
}

KAL_COT_DE = (
    "Im Folgenden ist eine Multiple-Choice-Frage. Denken Sie Schritt für Schritt nach und geben Sie dann Ihre "
    "ENDGÜLTIGE Antwort zwischen den Tags <ANSWER> X </ANSWER> an, wobei X NUR der korrekte Buchstabe Ihrer Wahl ist. "
    "Schreiben Sie keinen zusätzlichen Text zwischen den Tags."
)
# israfelsr/kaleidoscope model_zoo.py: SYS_MESSAGE (its "\\ONLY" kept), then INSTRUCTION, in one user turn
KAL_HEAD = (
    "You are a helpful assistant who answers multiple-choice questions. For each question, output your final answer in "
    'JSON format with the following structure:\n\n{"choice": "The correct option (e.g., A, B, C, or D)"}\n\\ONLY '
    "output this format exactly. Do not include any additional text or explanations outside the JSON structure.\n\n"
    "Output your choice in the specified JSON format.\n\n"
)
MTVQA_SUFFIX = "\nAnswer the question using a word or phrase in the language of the question."
CVQA_SUFFIX = "\nAnswer with the option's letter from the given choices directly."
CASES.update(
    {
        # tests/data/tasks/mtvqa and cvqa: parquet files in the published schemas, written by tests/helpers.py
        # (write_mtvqa, write_cvqa; rows made up in the style of the real ones); their images are embedded
        "mtvqa": (
            Case(
                "de",
                "test",
                (),
                {
                    "101_0": ("Was kostet der Kaffee?" + MTVQA_SUFFIX, ("2,50 €",)),
                    "101_1": ("Wie heißt das Café?" + MTVQA_SUFFIX, ("Kaffeehaus",)),
                    "102_0": ("Welche Zahl steht auf dem Schild?" + MTVQA_SUFFIX, ("3.5",)),
                },
            ),
            Case("th", "test", (), {"201_0": ("ร้านนี้ชื่ออะไร" + MTVQA_SUFFIX, ("ก๋วยเตี๋ยว",))}),
        ),
        "xmmmu": (
            Case(
                "en",
                "validation",
                (),
                {
                    "validation_Art_1": (
                        "<image 1> Which art movement does this painting belong to?\n(A) Cubism\n(B) Impressionism\n"
                        "(C) Baroque\n(D) Surrealism\n\nAnswer with the option's letter from the given choices directly.",
                        ("B",),
                    ),
                    "validation_Biology_3": (
                        "Which of the following cells is a neuron?\n(A) <image 1>\n(B) <image 2>\n(C) <image 3>\n\n"
                        "Answer with the option's letter from the given choices directly.",
                        ("C",),
                    ),
                    "validation_Math_7": (
                        "Compare <image 1> and <image 2>. What is the area of the shaded region?\n"
                        "Answer the question using a single word or phrase.",
                        ("12.5",),
                    ),
                    "validation_Economics_2": (
                        "If the price rises by 10% and demand falls by 5%, what is the elasticity?\n(A) 0.5\n(B) 2\n"
                        "(C) -0.5\n(D) 5\n\nAnswer with the option's letter from the given choices directly.",
                        ("C",),
                    ),
                },
            ),
        ),
        "m3exam": (
            Case(
                "th",
                "test",
                (),
                {
                    "th-0": (
                        "ต่อไปนี้เป็นคำถามแบบปรนัย วิชาคณิตศาสตร์. โปรดระบุคำตอบเป็นตัวเลือกที่ถูกต้องโดยไม่ต้องให้รายละเอียดอื่นเพิ่มเติม."
                        "\n\n\n<image 1> รูปนี้มีกี่ด้าน\n(1) 3\n(2) 4\n(3) 5\n(4) 6\nคำตอบ:",
                        ("2",),
                    )
                },
            ),
            Case(
                "en",
                "test",
                (),
                {
                    "en-0": (
                        "The following is a multiple choice question about Natural Science. Please only give the correct "
                        "option, without any other details or explanations.\n\n\nTwo animals were photographed.\n"
                        "Compare <image 1> and <image 2>. Which shows a mammal?\nA. the first\nB. the second\nAnswer:",
                        ("B",),
                    )
                },
            ),
        ),
        "kaleidoscope": (
            Case(
                "de",
                "test",
                (),
                {
                    "row-0": (
                        KAL_HEAD + "Frage: Welches Tier ist auf dem Bild zu sehen?\nOptionen:\nA. Hund\nB. Katze\n"
                        "C. Pferd\nD. Kuh\n\nANSWER:",
                        ("B",),
                    ),
                    "row-1": (
                        KAL_HEAD + "Frage: Wie viel ist 7 mal 8?\nOptionen:\nA. 54\nB. 56\nC. 58\nD. 64\n\nANSWER:",
                        ("B",),
                    ),
                    "row-2": (
                        KAL_HEAD + "Frage: Welche Abbildung zeigt ein Dreieck?\nOptionen:\nA. <image 1>\n"
                        "B. <image 2>\nC. <image 3>\n\nANSWER:",
                        ("C",),
                    ),
                },
            ),
            Case(
                "ru",
                "test",
                (),
                {
                    "row-3": (
                        KAL_HEAD + "Вопрос: Какой город является столицей России?\nВарианты:\nA. Киев\n"
                        "B. Москва\nC. Минск\nD. Рига\n\nANSWER:",
                        ("B",),
                    ),
                },
            ),
        ),
        # the chain-of-thought regime (model_zoo.py INSTRUCTIONS_COT and create_openai_prompt): the in-language
        # instruction, the question, its image after the question text, "Options:", an image option after its label
        "kaleidoscope_cot": (
            Case(
                "de",
                "test",
                (),
                {
                    "row-0": (
                        KAL_COT_DE + "\n\nWelches Tier ist auf dem Bild zu sehen?\n<image 1>\nOptions:\nA. Hund\n"
                        "B. Katze\nC. Pferd\nD. Kuh\n",
                        ("B",),
                    ),
                    "row-1": (
                        KAL_COT_DE + "\n\nWie viel ist 7 mal 8?\nOptions:\nA. 54\nB. 56\nC. 58\nD. 64\n",
                        ("B",),
                    ),
                    "row-2": (
                        KAL_COT_DE + "\n\nWelche Abbildung zeigt ein Dreieck?\nOptions:\nA. \n<image 1>\n"
                        "B. \n<image 2>\nC. \n<image 3>\n",
                        ("C",),
                    ),
                },
            ),
        ),
        "cvqa": (
            Case(
                "ja-JP",
                "test",
                (),
                {
                    "5919991144272485961_0": (
                        "この料理の名前は何ですか？\nA. 寿司\nB. 天ぷら\nC. ラーメン\nD. うどん" + CVQA_SUFFIX,
                        ("C",),
                    ),
                    "5919991144272485961_1": (
                        "この料理はどの地域の名物ですか？\nA. 北海道\nB. 沖縄\nC. 九州\nD. 四国" + CVQA_SUFFIX,
                        ("A",),
                    ),
                },
            ),
            Case(
                "ja-JP",
                "test_en",
                (),
                {
                    "5919991144272485961_0": (
                        "What is the name of this dish?\nA. Sushi\nB. Tempura\nC. Ramen\nD. Udon" + CVQA_SUFFIX,
                        ("C",),
                    ),
                    "5919991144272485961_1": (
                        "Which region is this dish a speciality of?\nA. Hokkaido\nB. Okinawa\nC. Kyushu\nD. Shikoku"
                        + CVQA_SUFFIX,
                        ("A",),
                    ),
                },
            ),
            Case(
                "es-MX",
                "test",
                (),
                {
                    "-1203948203948_0": (
                        "¿Qué se celebra en esta imagen?\nA. Navidad\nB. Día de Muertos\nC. Carnaval\nD. Semana Santa"
                        + CVQA_SUFFIX,
                        ("B",),
                    )
                },
            ),
            Case(
                "am-ET",
                "test",
                (),
                {"88812_0": ("ይህ ምን ዓይነት ምግብ ነው?\nA. እንጀራ\nB. ዶሮ ወጥ\nC. ክትፎ\nD. ሽሮ" + CVQA_SUFFIX, ("D",))},
            ),
        ),
    }
)

ALL_CASES = [
    pytest.param(name, case, id=f"{name}-{case.lang}-{case.split}") for name, cases in CASES.items() for case in cases
]


def _metrics_available() -> bool:
    try:
        import mvleval.metrics as m

        return all(hasattr(m, n) for n in ("Cider", "ExactMatch", "RelaxedAccuracy", "LanguageFidelity"))
    except ImportError:
        return False


needs_metrics = pytest.mark.skipif(
    not _metrics_available(),
    reason="mvleval.metrics (Cider, ExactMatch, RelaxedAccuracy, LanguageFidelity) not importable yet",
)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One image root holding a small JPEG for every image the fixtures reference (names as the archives spell them)."""
    root = tmp_path_factory.mktemp("images")
    placeholder_images(root / rel for cases in CASES.values() for case in cases for rel in case.images)
    return root


# -- the registry ----------------------------------------------------------------------------------------------------
def test_every_task_has_a_fixture() -> None:
    missing = set(task_names()) - set(CASES)
    assert not missing, f"add native-format fixtures and a Case for {sorted(missing)} in tests/test_task_contract.py"
    assert set(CASES) <= set(task_names()), (
        f"CASES names tasks that do not exist: {sorted(set(CASES) - set(task_names()))}"
    )


@pytest.mark.parametrize("name", task_names())
def test_task_declares_its_protocol(name: str) -> None:
    task = load_task(name)
    assert isinstance(task.version, int) and task.version >= 1
    assert task.default_split in [s for s in task.splits], "the default split must be one of the literal split names"
    assert len(set(task.languages)) == len(task.languages) and task.languages
    assert task.images_per_example >= 1
    assert task.prompt_template.strip() and task.description and task.source_url and task.licence and task.citation
    vocab = getattr(task, "label_vocabulary", "absent")
    assert vocab is None or (isinstance(vocab, frozenset) and vocab), (
        f"{name}: declare label_vocabulary (a frozenset of answers, or None for open answers)"
    )
    expected = ANSWER_LANGUAGE.get(name, "missing")
    assert expected != "missing", f"add {name!r} to ANSWER_LANGUAGE in tests/test_task_contract.py"
    for lang in task.languages:
        assert task.requested_language(lang) == (expected or lang)


# -- examples from the fixtures ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "case"), ALL_CASES)
def test_fixture_examples(name: str, case: Case, image_root: Path) -> None:
    task = load_task(name)
    examples = task.examples(FIXTURES, image_root, case.lang, case.split)

    assert [e.id for e in examples] == list(case.expected), "ids (and their order) differ from the fixture"
    assert len({e.id for e in examples}) == len(examples), "ids must be unique within a language and split"
    for e in examples:
        prompt, references = case.expected[e.id]
        assert e.prompt == prompt and e.prompt.strip()
        assert e.references == references
        assert e.target in e.references, "the training target must be one of the gold answers"
        assert e.lang == case.lang
        path = task.annotation_path(FIXTURES, case.lang, case.split)
        # a parquet split may come in shards beside the first one (the annotation path)
        assert e.source.startswith(str(path)) or (path.suffix == ".parquet" and e.source.startswith(str(path.parent)))
        # a task whose examples vary (text-only questions, MMMU's interleaved images) has at most images_per_example
        assert len(e.images) == task.images_per_example or (
            task.images_vary and len(e.images) < task.images_per_example
        )
        for image in e.images:
            assert image.is_file(), image
            # under the image root, or (images a dataset's parquet files embed) written once to the cache dir
            assert image.resolve().is_relative_to(image_root.resolve()) or image.is_relative_to(image_dir())
        vocab = getattr(task, "label_vocabulary", None)
        if vocab is not None:
            assert set(e.references) <= vocab and e.target in vocab


@pytest.mark.parametrize("name", task_names())
def test_closed_vocabularies_are_used_fully(name: str, image_root: Path) -> None:
    """A closed vocabulary lists exactly the answers the task can produce: here each of them occurs in the fixtures
    (the real files show every label too, see test_tasks_real_data.py), and nothing outside it does."""
    task = load_task(name)
    vocab = getattr(task, "label_vocabulary", None)
    if vocab is None:
        pytest.skip(f"{name} has an open answer vocabulary")
    seen = {
        r
        for case in CASES[name]
        for e in task.examples(FIXTURES, image_root, case.lang, case.split)
        for r in e.references
    }
    assert seen == vocab


# -- version pinning ---------------------------------------------------------------------------------------------------
@needs_metrics
@pytest.mark.parametrize("name", task_names())
@pytest.mark.parametrize("style", ["mblip", "chat"])
def test_protocol_hash_is_pinned_to_version(name: str, style: str) -> None:
    task = load_task(name, prompt_style=style)
    pinned = PINNED if style == "mblip" else PINNED_CHAT
    assert name in pinned, (
        f"add {name!r}: ({task.version}, {task.protocol_hash()!r}) to the pins in tests/test_task_contract.py"
    )
    version, digest = pinned[name]
    if task.protocol_hash() != digest and task.version == version:
        pytest.fail(
            f"the protocol of task {name!r} changed (hash {task.protocol_hash()}, pinned {digest}) but its version is still "
            f"{version}. Bump `version` in tasks/{name}.py and set PINNED[{name!r}] = ({version + 1}, {task.protocol_hash()!r})."
        )
    assert (task.version, task.protocol_hash()) == (version, digest), (
        f"task {name!r} is v{task.version} with hash {task.protocol_hash()}: update PINNED[{name!r}] to "
        f"({task.version}, {task.protocol_hash()!r}) in tests/test_task_contract.py"
    )


# -- an echo backend scores 1.0 -----------------------------------------------------------------------------------
@needs_metrics
@pytest.mark.parametrize(("name", "case"), ALL_CASES)
def test_echo_backend_scores_one(name: str, case: Case, image_root: Path) -> None:
    """Predictions equal to the gold answer score 1.0 on accuracy-type metrics; a wrong answer lowers the score."""
    task = load_task(name)
    metrics = [m for m in task.metrics() if m.name in ACCURACY_METRICS]
    if not metrics:
        pytest.skip(f"{name} has no accuracy-type metric ({', '.join(m.name for m in task.metrics())})")
    examples = task.examples(FIXTURES, image_root, case.lang, case.split)
    golds = [e.target for e in examples]
    refs = [list(e.references) for e in examples]
    wrong = ["zebra crossing"] + golds[1:]  # not a yes/no/maybe word, nor any fixture answer
    for metric in metrics:
        # MTVQA's rule removes periods from the prediction only: a gold answer with a period ("3.5") never matches
        unmatchable = [metric.name == "contains_accuracy" and "." in g for g in golds]
        perfect = 1.0 - sum(unmatchable) / len(golds)
        assert metric.score(golds, refs, case.lang).value == pytest.approx(perfect), metric.name
        score = metric.score(wrong, refs, case.lang).value
        assert score == pytest.approx(perfect - (0 if unmatchable[0] else 1) / len(golds)), metric.name


# -- hostile input ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hostile:
    """How to corrupt one JSONL task's fixture: the file to copy, a required field, and the image field to aim out."""

    lang: str
    split: str
    required: str
    image_field: str
    #: subfolder (under the image root) the image field is joined onto, and the suffix the task appends
    image_dir: str
    suffix: str


HOSTILE: dict[str, Hostile] = {
    "xm3600": Hostile("de", "test", "image/key", "image/key", "xm3600", ".jpg"),
    "xflickrco": Hostile("de", "test", "img_path", "img_path", "flickr30k", ""),
    "marvl": Hostile("zh", "test", "label", "left_img", "marvl/zh/images/82-铅笔", ""),
    "xvnli": Hostile("en", "test", "Flikr30kID", "Flikr30kID", "flickr30k", ".jpg"),
}


def _hostile_setup(tmp_path: Path, name: str) -> tuple[Task, Hostile, Path, Path, dict[str, object]]:
    """Copy the task's fixture file under a fresh data root; return (task, spec, file, image root, first record)."""
    task, spec = load_task(name), HOSTILE[name]
    source = task.annotation_path(FIXTURES, spec.lang, spec.split)
    data_root = tmp_path / "data"
    target = task.annotation_path(data_root, spec.lang, spec.split)
    target.parent.mkdir(parents=True)
    first = json.loads(source.read_text(encoding="utf-8").splitlines()[0])
    return task, spec, target, data_root, first


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _load(task: Task, spec: Hostile, data_root: Path, image_root: Path) -> None:
    task.examples(data_root, image_root, spec.lang, spec.split)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_truncated_line_names_file_and_line(name: str, tmp_path: Path) -> None:
    task, spec, path, data_root, first = _hostile_setup(tmp_path, name)
    good = json.dumps(first, ensure_ascii=False)
    _write(path, [good, good[: len(good) // 2]])
    with pytest.raises(MvlevalError, match="not valid JSON") as err:
        _load(task, spec, data_root, tmp_path)
    assert err.value.where == f"{path}:2"


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_non_object_line_names_file_and_line(name: str, tmp_path: Path) -> None:
    task, spec, path, data_root, first = _hostile_setup(tmp_path, name)
    _write(path, [json.dumps(first, ensure_ascii=False), "", '["a", "list"]'])
    with pytest.raises(MvlevalError, match="JSON object") as err:
        _load(task, spec, data_root, tmp_path)
    assert err.value.where == f"{path}:3"


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_missing_field_names_file_line_and_field(name: str, tmp_path: Path) -> None:
    task, spec, path, data_root, first = _hostile_setup(tmp_path, name)
    broken = {k: v for k, v in first.items() if k != spec.required}
    _write(path, [json.dumps(first, ensure_ascii=False), json.dumps(broken, ensure_ascii=False)])
    with pytest.raises(MvlevalError) as err:
        _load(task, spec, data_root, tmp_path)
    assert err.value.where == f"{path}:2" and repr(spec.required) in err.value.what


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_empty_file_is_refused(name: str, tmp_path: Path) -> None:
    task, spec, path, data_root, _ = _hostile_setup(tmp_path, name)
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(MvlevalError, match="no records") as err:
        _load(task, spec, data_root, tmp_path)
    assert err.value.where == str(path)


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("kind", ["dotdot", "absolute"])
def test_image_path_escaping_the_root_is_refused(name: str, kind: str, tmp_path: Path) -> None:
    """The annotation's path *text* must stay inside the image root."""
    task, spec, path, data_root, first = _hostile_setup(tmp_path, name)
    image_root = tmp_path / "images"
    outside = tmp_path / "outside" / "secret.jpg"
    placeholder_images([outside])
    value = "../../outside/secret" if kind == "dotdot" else str(outside.with_suffix(""))
    if not spec.suffix:  # fields that hold a file name rather than an id
        value += ".jpg"
    _write(
        path,
        [json.dumps(first, ensure_ascii=False), json.dumps({**first, spec.image_field: value}, ensure_ascii=False)],
    )
    with pytest.raises(MvlevalError, match="escapes the image root|outside the image root") as err:
        _load(task, spec, data_root, image_root)
    assert err.value.where == f"{path}:2"


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_an_image_linked_from_outside_the_root_is_followed(name: str, tmp_path: Path) -> None:
    """A link the user made inside the image root is theirs to make (one copy of a collection linked into each
    benchmark): the row loads and its image is the link, which resolves to the file outside (issue 21)."""
    task, spec, path, data_root, first = _hostile_setup(tmp_path, name)
    image_root = tmp_path / "images"
    outside = tmp_path / "outside" / "shared.jpg"
    placeholder_images([outside])
    link = image_root / spec.image_dir / f"linked{spec.suffix}"
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, link)
    _write(path, [json.dumps({**first, spec.image_field: "linked"}, ensure_ascii=False)])
    examples = task.examples(data_root, image_root, spec.lang, spec.split)
    assert any(image.resolve() == outside.resolve() for e in examples for image in e.images)


# -- task-specific validation ------------------------------------------------------------------------------------------
REMOVE = object()  # a value in `change` that deletes the field


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("marvl", {"label": "True"}, "'label' must be true or false"),
        ("marvl", {"caption": ""}, "'caption' must be a non-empty string"),
        ("xvnli", {"gold_label": "entailed"}, "unknown gold_label 'entailed'"),
        ("xvnli", {"gold_label": None}, "'gold_label' must be a string"),
        ("xvnli", {"gold_label": ["neutral"]}, "'gold_label' must be a string"),
        ("xvnli", {"sentence2": 7}, "'sentence2' must be a non-empty string"),
        ("xflickrco", {"sentences": []}, "'sentences' must be a non-empty list of strings"),
        ("xflickrco", {"sentences": "one caption"}, "'sentences' must be a non-empty list of strings"),
        ("xm3600", {"de": {"caption/tokenized": ["x"]}}, "needs a non-empty list of strings in 'caption'"),
        ("xm3600", {"de": REMOVE}, "has no 'de' captions"),
        ("xm3600", {"de": {"caption": []}}, "needs a non-empty list of strings in 'caption'"),
        ("xm3600", {"de": {"caption": ["ok", None]}}, "needs a non-empty list of strings in 'caption'"),
        ("xm3600", {"de": ["Ein Bild."]}, "is a list, expected an object"),
    ],
)
def test_bad_values_name_file_and_line(name: str, change: dict[str, object], message: str, tmp_path: Path) -> None:
    task, spec, path, data_root, first = _hostile_setup(tmp_path, name)
    bad = {k: v for k, v in {**first, **change}.items() if v is not REMOVE}
    _write(path, [json.dumps(first, ensure_ascii=False), json.dumps(bad, ensure_ascii=False)])
    with pytest.raises(MvlevalError) as err:
        _load(task, spec, data_root, tmp_path)
    assert message in err.value.what and err.value.where == f"{path}:2"


def test_xvnli_file_with_only_unlabelled_rows_is_refused(tmp_path: Path) -> None:
    task, spec, path, data_root, first = _hostile_setup(tmp_path, "xvnli")
    _write(path, [json.dumps({**first, "gold_label": "-"})])
    with pytest.raises(MvlevalError, match="no usable rows"):
        _load(task, spec, data_root, tmp_path)


def test_unknown_language_and_split_are_refused_with_a_suggestion() -> None:
    task = load_task("xvnli")
    with pytest.raises(MvlevalError, match="Did you mean 'fr'"):
        task.examples(FIXTURES, FIXTURES, "fra")
    with pytest.raises(MvlevalError, match="Did you mean 'test'"):
        task.examples(FIXTURES, FIXTURES, "en", "tset")


# -- MaRVL: Unicode forms of non-ASCII concept folders --------------------------------------------------------------------
@pytest.mark.parametrize("form", ["NFD", "NFC"])
def test_marvl_finds_images_in_either_unicode_form(form: str, tmp_path: Path) -> None:
    """MaRVL's archives store decomposed (NFD) names, which mBLIP reaches via NFKD; a re-encoded NFC tree works too."""
    relatives = ("marvl/tr/images/14-Çaydanlık/14-3.jpg", "marvl/tr/images/14-Çaydanlık/14-7.jpg",
                 "marvl/tr/images/14-Çaydanlık/14-1.jpg")  # fmt: skip
    assert unicodedata.normalize("NFD", relatives[0]) != relatives[0], "the fixture must contain a composed character"
    for rel in relatives:
        path = tmp_path / unicodedata.normalize(form, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    examples = load_task("marvl").examples(FIXTURES, tmp_path, "tr", "test")
    found = {p for e in examples for p in e.images}
    assert all(p.is_file() for p in found)
    assert {str(p.relative_to(tmp_path)) for p in found} == {unicodedata.normalize(form, r) for r in relatives}


def test_marvl_reports_mblips_nfkd_path_when_no_image_exists(tmp_path: Path) -> None:
    examples = load_task("marvl").examples(FIXTURES, tmp_path, "tr", "test")
    left = examples[0].images[0]
    assert not left.exists()
    assert str(left.relative_to(tmp_path)) == unicodedata.normalize("NFKD", "marvl/tr/images/14-Çaydanlık/14-3.jpg")


# -- mBLIP's language names -------------------------------------------------------------------------------------------
def test_mblip_language_names_and_their_deviations() -> None:
    """Hand-copied from mBLIP's data/xm3600/convert_xm3600_to_coco.py (xm3600_langs zipped with full_lang)."""
    from mvleval.benchmarks.languages import DEVIATIONS, MBLIP_LANGUAGE_NAMES, language_name

    assert set(MBLIP_LANGUAGE_NAMES) == set(load_task("xm3600").languages)
    assert set(load_task("xflickrco").languages) <= set(MBLIP_LANGUAGE_NAMES)
    assert dict(DEVIATIONS) == {
        "bn": ("Bengali", "Bangla"),
        "fa": ("Farsi", "Persian"),
        "mi": ("Maori", "Māori"),
        "pt": ("Portugese", "Portuguese"),
        "quz": ("Quechua", "Cusco Quechua"),
        "uk": ("Ukranian", "Ukrainian"),
    }
    # mBLIP's xFlickrCo table (generate_flickr.py, lang_code2lang) gives these for the xFlickrCo languages:
    flickr_table = {"de": "German", "en": "English", "es": "Spanish", "id": "Indonesian", "ja": "Japanese",
                    "ru": "Russian", "tr": "Turkish", "zh": "Chinese"}  # fmt: skip
    assert {code: language_name(code) for code in flickr_table} == flickr_table
    assert (language_name("fil"), language_name("no"), language_name("he")) == ("Filipino", "Norwegian", "Hebrew")
    with pytest.raises(MvlevalError, match="Did you mean 'fil'"):
        language_name("fill")


@pytest.mark.parametrize("name", task_names())
def test_chat_prompt_style_formats_every_example(name: str, image_root: Path) -> None:
    """The chat style changes only the prompt's wording: same examples, ids, images and references; another hash."""
    mblip, chat = load_task(name), load_task(name, prompt_style="chat")
    assert mblip.protocol_hash() != chat.protocol_hash()
    assert chat.template == chat.chat_prompt_template and "{" in chat.template
    case = CASES[name][0]
    a = mblip.examples(FIXTURES, image_root, case.lang, case.split)
    b = chat.examples(FIXTURES, image_root, case.lang, case.split)
    assert [(e.id, e.images, e.references) for e in a] == [(e.id, e.images, e.references) for e in b]
    if mblip.prompt_template == mblip.chat_prompt_template:
        # a benchmark of chat models (MTVQA, CVQA, ...): its authors' prompt in both styles; only the hash differs
        assert all(x.prompt == y.prompt for x, y in zip(a, b))
    else:
        assert all(x.prompt != y.prompt for x, y in zip(a, b))


def test_unknown_prompt_style() -> None:
    with pytest.raises(MvlevalError, match="Did you mean 'chat'"):
        load_task("xgqa", prompt_style="chatt")
