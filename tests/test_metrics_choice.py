"""Multiple-choice answer extraction: a table of real-looking answers in many languages and scripts, each with the label
a careful reader extracts (None: a format error the cascade must not guess), plus the metric's record-level facts.

The rows were written by hand from the answer styles chat models produce (plain labels, markdown, full-width letters,
answer phrases in the benchmark languages, answers given as the choice's text, thinking-style explanations, refusals);
the expected label is what a person reading the answer would mark, never what the code happens to return.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mvleval.metrics.choice import ChoiceAccuracy, extract_choice

ANIMALS = ["cat", "dog", "bird", "horse"]
COLOURS = ["red", "dark red", "blue", "green"]
DE = ["Hund", "Katze", "Vogel", "Pferd"]
FR = ["un chien", "un chat", "un oiseau", "un cheval"]
ES = ["perro", "gato", "pájaro", "caballo"]
ZH = ["猫", "狗", "鸟", "马"]
JA = ["猫", "犬", "鳥", "馬"]
KO = ["고양이", "개", "새", "말"]
SW = ["paka", "mbwa", "ndege", "farasi"]
HI = ["बिल्ली", "कुत्ता", "पक्षी", "घोड़ा"]
TR = ["kedi", "köpek", "kuş", "at"]
RU = ["кошка", "собака", "птица", "лошадь"]
ID = ["kucing", "anjing", "burung", "kuda"]
VI = ["con mèo", "con chó", "con chim", "con ngựa"]
AR = ["قطة", "كلب", "طائر", "حصان"]
TH = ["แมว", "สุนัข", "นก", "ม้า"]
TA = ["பூனை", "நாய்", "பறவை", "குதிரை"]
BN = ["বিড়াল", "কুকুর", "পাখি", "ঘোড়া"]
THAI_LABELS = ("ก", "ข", "ค", "ง")
ZH_LABELS = ("一", "二", "三", "四")

# (language, prediction, choices, expected label or None)
TABLE: list[tuple[str, str, list[str] | None, str | None]] = [
    # -- English: rule 1 (a label alone or leading) --------------------------------------------------------------------
    ("en", "B", ANIMALS, "B"),
    ("en", "b", ANIMALS, "B"),
    ("en", "(B)", ANIMALS, "B"),
    ("en", "B.", ANIMALS, "B"),
    ("en", "B)", ANIMALS, "B"),
    ("en", "**B**", ANIMALS, "B"),
    ("en", "[C]", ANIMALS, "C"),
    ("en", "  D  ", ANIMALS, "D"),
    ("en", "A", ANIMALS, "A"),
    ("en", "B. dog", ANIMALS, "B"),
    ("en", "B: dog", ANIMALS, "B"),
    ("en", "B dog", ANIMALS, "B"),
    ("en", "C) bird, because it has wings.", ANIMALS, "C"),
    ("en", "A - cat", ANIMALS, "A"),
    ("en", "**(D)** horse", ANIMALS, "D"),
    ("en", "'C'", ANIMALS, "C"),
    ("en", "B\n\nThe animal on the sofa is a dog.", ANIMALS, "B"),
    # -- English: rule 2 (answer phrases), the last one wins -----------------------------------------------------------
    ("en", "The answer is B.", ANIMALS, "B"),
    ("en", "The answer is (B).", ANIMALS, "B"),
    ("en", "Answer: (C)", ANIMALS, "C"),
    ("en", "Answer: C", ANIMALS, "C"),
    ("en", "answer: d", ANIMALS, "D"),
    ("en", "The correct answer is **A**.", ANIMALS, "A"),
    ("en", "Final answer: B", ANIMALS, "B"),
    ("en", "I would choose option C.", ANIMALS, "C"),
    ("en", "Option B is correct.", ANIMALS, "B"),
    ("en", "The best option is D because the animal has a mane.", ANIMALS, "D"),
    ("en", "Looking at the image, there is a small animal on the sofa. The answer is B.", ANIMALS, "B"),
    ("en", "The answer is not A. The answer is C.", ANIMALS, "C"),
    ("en", "Answer: A. Wait, looking again, final answer: D", ANIMALS, "D"),
    ("en", "\\boxed{C}", ANIMALS, "C"),
    ("en", "So the final answer is $\\boxed{B}$.", ANIMALS, "B"),
    ("en", "My answer would be B, the dog.", ANIMALS, "B"),
    ("en", "Choice (A)", ANIMALS, "A"),
    ("en", "The answer is B because the animal barks.", ANIMALS, "B"),
    # -- English: rule 3 (the choice's text) ---------------------------------------------------------------------------
    ("en", "dog", ANIMALS, "B"),
    ("en", "It is a horse.", ANIMALS, "D"),
    ("en", "The animal in the picture is a bird.", ANIMALS, "C"),
    ("en", "Dog.", ANIMALS, "B"),
    ("en", "dark red", COLOURS, "B"),
    ("en", "The car is dark red.", COLOURS, "B"),
    ("en", "It looks red to me.", COLOURS, "A"),
    ("en", "It's blue.", COLOURS, "C"),
    ("en", "GREEN", COLOURS, "D"),
    # -- English: rule 4 (a lone label) ---------------------------------------------------------------------------------
    ("en", "I think it's B.", ANIMALS, "B"),
    ("en", "Looking at the picture, C seems right.", ANIMALS, "C"),
    ("en", "A cat is on the sofa, so I pick D? No: D.", ANIMALS, "D"),
    # -- English: must stay format errors (never a guess) ---------------------------------------------------------------
    ("en", "A or B", ANIMALS, None),
    ("en", "Either A or C.", ANIMALS, None),
    ("en", "none of them", ANIMALS, None),
    ("en", "None of the above.", ANIMALS, None),
    ("en", "I'm sorry, but I can't help with identifying that.", ANIMALS, None),
    ("en", "I cannot determine the answer from the image.", ANIMALS, None),
    ("en", "", ANIMALS, None),
    ("en", "Both A and C are possible.", ANIMALS, None),
    ("en", "It could be a cat or a dog.", ANIMALS, None),
    ("en", "Blue", ANIMALS, None),
    ("en", "A small animal sits on the sofa.", ANIMALS, None),
    ("en", "The answer is a small furry animal.", ANIMALS, None),
    ("en", "unanswerable", ANIMALS, None),
    ("en", "E", ANIMALS, None),
    # -- full-width and other NFKC forms ---------------------------------------------------------------------------------
    ("zh", "Ｂ", ZH, "B"),
    ("zh", "（Ｃ）", ZH, "C"),
    ("ja", "Ａ．", JA, "A"),
    ("zh", "答案：Ｄ", ZH, "D"),
    # -- German -------------------------------------------------------------------------------------------------------------
    ("de", "B: Katze", DE, "B"),
    ("de", "Antwort: C", DE, "C"),
    ("de", "Die richtige Antwort ist D.", DE, "D"),
    ("de", "Die Antwort lautet A.", DE, "A"),
    ("de", "Auf dem Bild ist eine Katze.", DE, "B"),
    ("de", "Vogel", DE, "C"),
    ("de", "Ich denke, es ist B.", DE, "B"),
    ("de", "A oder B", DE, None),
    ("de", "Keine der Antworten.", DE, None),
    # -- French ---------------------------------------------------------------------------------------------------------------
    ("fr", "réponse : B", FR, "B"),
    ("fr", "Réponse: C", FR, "C"),
    ("fr", "La bonne réponse est A.", FR, "A"),
    ("fr", "La réponse est (D).", FR, "D"),
    ("fr", "C'est un chat.", FR, "B"),
    ("fr", "un oiseau", FR, "C"),
    ("fr", "Je ne peux pas répondre à cette question.", FR, None),
    # -- Spanish / Portuguese / Italian ---------------------------------------------------------------------------------------
    ("es", "respuesta: B", ES, "B"),
    ("es", "La respuesta correcta es C.", ES, "C"),
    ("es", "La respuesta es A", ES, "A"),
    ("es", "Es un caballo.", ES, "D"),
    ("es", "gato", ES, "B"),
    ("es", "A o B", ES, None),
    ("pt", "A resposta correta é D.", ES, "D"),
    ("pt", "Resposta: B", ES, "B"),
    ("it", "La risposta corretta è C.", ES, "C"),
    ("it", "Risposta: A", ES, "A"),
    # -- Chinese ----------------------------------------------------------------------------------------------------------------
    ("zh", "答案是B", ZH, "B"),
    ("zh", "答案：B", ZH, "B"),
    ("zh", "答案：C。", ZH, "C"),
    ("zh", "正确答案是A。", ZH, "A"),
    ("zh", "答案为 D", ZH, "D"),
    ("zh", "我认为答案是B，因为图中是一只狗。", ZH, "B"),
    ("zh", "选项C", ZH, "C"),
    ("zh", "我觉得是B", ZH, "B"),
    ("zh", "图中是一只鸟。", ZH, "C"),
    ("zh", "马", ZH, "D"),
    ("zh", "A或B", ZH, None),
    ("zh", "无法确定。", ZH, None),
    ("zh", "都不是", ZH, None),
    # -- Japanese -------------------------------------------------------------------------------------------------------------
    ("ja", "正解はB", JA, "B"),
    ("ja", "正解は C です。", JA, "C"),
    ("ja", "答えはA", JA, "A"),
    ("ja", "答え：D", JA, "D"),
    ("ja", "画像には犬が写っています。", JA, "B"),
    ("ja", "わかりません。", JA, None),
    # -- Korean -----------------------------------------------------------------------------------------------------------------
    ("ko", "정답은 B", KO, "B"),
    ("ko", "정답은 C입니다.", KO, "C"),
    ("ko", "정답: A", KO, "A"),
    ("ko", "답은 D입니다", KO, "D"),
    ("ko", "사진 속 동물은 고양이입니다.", KO, "A"),
    ("ko", "잘 모르겠습니다.", KO, None),
    # -- Swahili ------------------------------------------------------------------------------------------------------------------
    ("sw", "Jibu ni B", SW, "B"),
    ("sw", "jibu ni C.", SW, "C"),
    ("sw", "Jibu: A", SW, "A"),
    ("sw", "Jibu sahihi ni D", SW, "D"),
    ("sw", "Ni mbwa.", SW, "B"),
    ("sw", "Sijui.", SW, None),
    # -- Hindi / Bengali / Tamil -----------------------------------------------------------------------------------------------
    ("hi", "उत्तर: B", HI, "B"),
    ("hi", "सही उत्तर C है।", HI, "C"),
    ("hi", "उत्तर A", HI, "A"),
    ("hi", "चित्र में एक कुत्ता है।", HI, "B"),
    ("hi", "मुझे नहीं पता।", HI, None),
    ("bn", "উত্তর: D", BN, "D"),
    ("bn", "সঠিক উত্তর হল B", BN, "B"),
    ("bn", "ছবিতে একটি পাখি আছে।", BN, "C"),
    ("ta", "பதில்: C", TA, "C"),
    ("ta", "சரியான பதில் A", TA, "A"),
    ("ta", "நாய்", TA, "B"),
    # -- Turkish ------------------------------------------------------------------------------------------------------------------
    ("tr", "cevap: B", TR, "B"),
    ("tr", "Cevap: C", TR, "C"),
    ("tr", "Doğru cevap A.", TR, "A"),
    ("tr", "Resimde bir köpek var.", TR, "B"),
    ("tr", "A veya B", TR, None),
    # -- Russian / Ukrainian ----------------------------------------------------------------------------------------------------
    ("ru", "ответ: B", RU, "B"),
    ("ru", "Ответ: C", RU, "C"),
    ("ru", "Правильный ответ — D.", RU, "D"),
    ("ru", "На картинке кошка.", RU, "A"),
    ("ru", "Не могу сказать.", RU, None),
    ("uk", "Відповідь: B", RU, "B"),
    # -- Indonesian / Vietnamese / Filipino -------------------------------------------------------------------------------------
    ("id", "Jawaban: B", ID, "B"),
    ("id", "Jawabannya adalah C.", ID, "C"),
    ("id", "Jawaban yang benar adalah A", ID, "A"),
    ("id", "Itu adalah kuda.", ID, "D"),
    ("vi", "Đáp án: B", VI, "B"),
    ("vi", "Câu trả lời là C.", VI, "C"),
    ("vi", "Đáp án đúng là A", VI, "A"),
    ("vi", "Đó là con ngựa.", VI, "D"),
    ("fil", "Ang sagot ay B.", ID, "B"),
    # -- Arabic / Hebrew / Persian ------------------------------------------------------------------------------------------------
    ("ar", "الإجابة: B", AR, "B"),
    ("ar", "الإجابة الصحيحة هي C", AR, "C"),
    ("ar", "الجواب هو A", AR, "A"),
    ("ar", "في الصورة كلب.", AR, "B"),
    ("he", "התשובה היא D", AR, "D"),
    ("fa", "پاسخ: B", AR, "B"),
    # -- Polish / Czech / Dutch / Finnish / Swedish / Greek / Romanian ------------------------------------------------------------
    ("pl", "Odpowiedź: C", ANIMALS, "C"),
    ("cs", "Správná odpověď je B.", ANIMALS, "B"),
    ("nl", "Het antwoord is D.", ANIMALS, "D"),
    ("fi", "Vastaus on A.", ANIMALS, "A"),
    ("sv", "Svaret är B.", ANIMALS, "B"),
    ("el", "Η σωστή απάντηση είναι C.", ANIMALS, "C"),
    ("ro", "Răspunsul corect este D.", ANIMALS, "D"),
    # -- Thai with A-D labels ------------------------------------------------------------------------------------------------------
    ("th", "คำตอบคือ B", TH, "B"),
    ("th", "คำตอบ: C", TH, "C"),
    ("th", "ในภาพเป็นแมว", TH, "A"),
]

# Benchmark-defined labels (M3Exam's Thai ก ข ค ง, Chinese exams' 一二三四)
LABELLED: list[tuple[str, str, list[str], tuple[str, ...], str | None]] = [
    ("th", "ข", TH, THAI_LABELS, "ข"),
    ("th", "(ค)", TH, THAI_LABELS, "ค"),
    ("th", "ข.", TH, THAI_LABELS, "ข"),
    ("th", "คำตอบคือ ข", TH, THAI_LABELS, "ข"),
    ("th", "คำตอบคือ ข ครับ", TH, THAI_LABELS, "ข"),
    ("th", "คำตอบที่ถูกต้องคือ ง", TH, THAI_LABELS, "ง"),
    ("th", "ข. สุนัข", TH, THAI_LABELS, "ข"),
    ("th", "ในภาพเป็นนก", TH, THAI_LABELS, "ค"),
    ("th", "ตอบ ก ค่ะ", TH, THAI_LABELS, "ก"),
    ("th", "ไม่ทราบครับ", TH, THAI_LABELS, None),
    ("th", "ก หรือ ข", TH, THAI_LABELS, None),
    ("th", "B", TH, THAI_LABELS, None),  # not one of this benchmark's labels
    ("zh", "（二）", ZH, ZH_LABELS, "二"),
    ("zh", "答案是三", ZH, ZH_LABELS, "三"),
    ("zh", "四", ZH, ZH_LABELS, "四"),
    ("zh", "图中是一只猫。", ZH, ZH_LABELS, "一"),
]


def test_the_table_is_large_and_multilingual() -> None:
    assert len(TABLE) + len(LABELLED) >= 150
    languages = {row[0] for row in TABLE} | {row[0] for row in LABELLED}
    scripts = {
        "Latin",
        "Han",
        "Kana",
        "Hangul",
        "Devanagari",
        "Bengali",
        "Tamil",
        "Cyrillic",
        "Arabic",
        "Hebrew",
        "Greek",
        "Thai",
    }
    assert len(languages) >= 15 and len(scripts) >= 12
    assert sum(1 for row in TABLE if row[3] is None) >= 25  # the cases that must stay format errors


@pytest.mark.parametrize(
    ("lang", "prediction", "choices", "expected"), TABLE, ids=[f"{i:03d}-{row[0]}" for i, row in enumerate(TABLE)]
)
def test_a_careful_reader_s_label(lang: str, prediction: str, choices: list[str] | None, expected: str | None) -> None:
    found = extract_choice(prediction, choices)
    assert found.label == expected, (prediction, found)
    assert (found.rule == "format-error") == (expected is None)


@pytest.mark.parametrize(
    ("lang", "prediction", "choices", "labels", "expected"),
    LABELLED,
    ids=[f"{i:03d}-{row[0]}" for i, row in enumerate(LABELLED)],
)
def test_benchmark_labels(
    lang: str, prediction: str, choices: list[str], labels: tuple[str, ...], expected: str | None
) -> None:
    assert extract_choice(prediction, choices, labels).label == expected, prediction


@pytest.mark.parametrize(
    ("prediction", "rule"),
    [
        ("B", "label"),
        ("The answer is B", "answer-phrase"),
        ("It is a dog.", "choice-text"),
        ("I think B", "lone-label"),
        ("A or B", "format-error"),
    ],
)
def test_each_rule_is_named(prediction: str, rule: str) -> None:
    assert extract_choice(prediction, ANIMALS).rule == rule


def test_the_metric_reports_format_errors_and_the_rule_per_sample() -> None:
    metric = ChoiceAccuracy(bootstrap_resamples=0)
    predictions = ["The answer is B.", "A or B", "It is a cat.", "I'm sorry, I can't tell."]
    result = metric.score(predictions, [["B"], ["A"], ["A"], ["C"]], "en", choices=[ANIMALS] * 4)
    assert result.per_example == [1.0, 0.0, 1.0, 0.0]
    assert result.extra == {"format_error_rate": 0.5}
    assert result.per_example_extra == [
        {"label": "B", "rule": "answer-phrase"},
        {"label": "", "rule": "format-error"},
        {"label": "A", "rule": "choice-text"},
        {"label": "", "rule": "format-error"},
    ]
    assert "extract=cascade-1" in metric.signature() and "labels=A-Z" in metric.signature()
    assert "labels=ก,ข,ค,ง" in ChoiceAccuracy(labels=THAI_LABELS).signature()


def test_extraction_is_deterministic_never_random() -> None:
    # a format error is always the same format error: the same input gives the same result in any order, any number of times
    answers = [row[1] for row in TABLE]
    first = [extract_choice(a, ANIMALS) for a in answers]
    assert [extract_choice(a, ANIMALS) for a in reversed(answers)] == list(reversed(first))


def test_a_benchmark_folder_s_own_labels_and_cluster_field(tmp_path: Path) -> None:
    import json

    from mvleval.benchmarks.filetask import load_file_task
    from mvleval.util.errors import MvlevalError

    header = (
        "version: 1\ndescription: M3Exam-style Thai exam\nkind: multiple_choice\n"
        'prompt: "{question} {choices} ตอบ:"\nchoices_separator: " "\nlabels: [ก, ข, ค, ง]\ncluster: photo\n'
    )
    rows = [
        {
            "id": "1",
            "lang": "th",
            "images": ["a.png"],
            "question": "สัตว์อะไร",
            "choices": TH,
            "answers": ["สุนัข"],
            "photo": "p1",
        },
        {
            "id": "2",
            "lang": "th",
            "images": ["a.png"],
            "question": "สัตว์อะไร",
            "choices": TH,
            "answers": ["นก"],
            "photo": "p1",
        },
    ]
    folder = tmp_path / "thai-exam"
    folder.mkdir()
    (folder / "benchmark.yaml").write_text(header, encoding="utf-8")
    (folder / "data.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    task = load_file_task(folder)
    row = task.rows[0]
    assert task.format_prompt(row) == "สัตว์อะไร ก. แมว ข. สุนัข ค. นก ง. ม้า ตอบ:"
    assert task.references(row) == ("ข",) and task.references(task.rows[1]) == ("ค",)
    (metric,) = task.metrics()
    assert "labels=ก,ข,ค,ง" in metric.signature()
    assert task.cluster_unit() == "photo" and task.protocol_extra()["choices"]["labels"] == list(THAI_LABELS)
    # a header whose labels or cluster field cannot work is refused, naming the key
    for bad, message in (
        (
            header.replace("kind: multiple_choice", "kind: yesno").replace(" {choices}", ""),
            "labels apply to kind multiple_choice",
        ),
        (header.replace("cluster: photo", "cluster: id"), "cluster names the row field"),
        (header.replace("[ก, ข, ค, ง]", "[ก, ก]"), "a label is listed twice"),
    ):
        (folder / "benchmark.yaml").write_text(bad, encoding="utf-8")
        with pytest.raises(MvlevalError, match=message):
            load_file_task(folder)
    # every row needs the cluster field the header names
    (folder / "benchmark.yaml").write_text(header, encoding="utf-8")
    (folder / "data.jsonl").write_text(
        json.dumps({**rows[0], "photo": None}, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    with pytest.raises(MvlevalError, match="the header names 'photo' as the cluster field"):
        load_file_task(folder)


# Kaleidoscope's chain-of-thought regime: the last <ANSWER> pair decides; without it only a bare label or the direct
# regime's JSON counts (the authors' strict reading); reasoning that names letters is never read as an answer
COT_TABLE = [
    ("Hund ist falsch, A scheidet aus. Also <ANSWER> B </ANSWER>", "B", 1.0, "label"),
    ("<ANSWER> A </ANSWER> Nein, korrigiert: <ANSWER> C </ANSWER>", "C", 1.0, "label"),
    ("Думаю, ответ <ANSWER> Б </ANSWER>", "B", 1.0, "label"),  # the other-script letter, mapped first
    ("<answer>(d)</answer>", "D", 1.0, "label"),
    ("<ANSWER> Katze </ANSWER>", "B", 1.0, "choice-text"),  # inside the tags the cascade reads the option's text
    ("B", "B", 1.0, "label"),
    ('{"choice": "C"}', "C", 1.0, "label"),
    ("A. Hund ist falsch, also B.", "B", 0.0, "format-error"),  # rule 1 would have read "A"
    ("The answer is B", "B", 0.0, "format-error"),
    ("Katze", "B", 0.0, "format-error"),
    ("<ANSWER></ANSWER>", "B", 0.0, "format-error"),
]


@pytest.mark.parametrize(("prediction", "gold", "score", "rule"), COT_TABLE)
def test_answer_tags_read_only_the_final_answer(prediction: str, gold: str, score: float, rule: str) -> None:
    metric = ChoiceAccuracy(script_letters=True, answer_tags=True)
    result = metric.score([prediction], [[gold]], "de", [["Hund", "Katze", "Pferd", "Kuh"]])
    assert result.per_example == [score]
    assert result.per_example_extra is not None and result.per_example_extra[0]["rule"] == rule
    assert "answer-tags" in metric.signature() and "answer-tags" not in ChoiceAccuracy().signature()
