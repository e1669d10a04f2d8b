"""M3Exam (multimodal subset): real school exams in 7 languages with images, in PangeaBench's copy, prompted and scored
with the M3Exam authors' code (DAMO-NLP-SG/M3Exam main.py, zero-shot "default" setting, and eval.py).

Data (the dataset repo neulab/PangeaBench-m3exam as published, under <data-root>/m3exam; `mvleval data fetch --task
m3exam`): one split per language *name*, `m3exam/data/<name>-0000N-of-0000M.parquet` (chinese english afrikaans italian
portuguese thai vietnamese; the shard names are UNVERIFIED). Columns: `language`, `subject_category` (language, math,
social-science, natural-science), `question_text` (images marked `(image)[file.png]`), `options` (a list, or the
string of a list, of lines as the exam writes them: "(1) ..." or "A. ..."), `answer_text` (the label as the exam
writes it: a letter or a digit), `background_description` (a list of lines, possibly empty), `image_0` ... `image_9`
(base64 strings, or the string "None").

Protocol (the authors' zero-shot prompt for chat models): an in-language hint naming the subject plus "only give the
correct option", a blank line, the background lines, the question, the options one a line, and the in-language answer
cue ("Answer:", "答案：", "คำตอบ:", "Câu trả lời:", "La risposta:", "Antwoord:", "Responder:"); greedy (temperature 0),
at most 128 new tokens. Each `(image)[...]` marker, in order of appearance, becomes `<image k>` and gets the k-th
present image there. Scored as eval.py does (`m3exam_accuracy`): the prediction stripped; longer than one character:
its first character, or its second when it starts with "("; correct when equal to answer_text. Labels are the exam's
own: a digit answer needs a digit. Every metric is also given per `subject_category` (the record's `by_group`).
"""

from __future__ import annotations

import ast
import base64
import binascii
import re
from pathlib import Path

from mvleval.benchmarks.hubdata import first_shard, materialise_image, read_rows, shards
from mvleval.benchmarks.spec import TaskSpec
from mvleval.benchmarks.task import Example, GenerationSettings, Task
from mvleval.metrics.base import Metric
from mvleval.util.errors import MvlevalError

_FIX = "use the parquet files of neulab/PangeaBench-m3exam as published (`mvleval data fetch --task m3exam`)."
_MARKER = re.compile(r"\(image\)\[[^\]]*\]")
MAX_IMAGES = 10
#: code -> the dataset's language name (split name)
NAMES = {
    "zh": "chinese",
    "en": "english",
    "af": "afrikaans",
    "it": "italian",
    "pt": "portuguese",
    "th": "thai",
    "vi": "vietnamese",
}
ANSWER_WORD = {
    "en": "Answer:",
    "zh": "答案：",
    "vi": "Câu trả lời:",
    "th": "คำตอบ:",
    "it": "La risposta:",
    "af": "Antwoord:",
    "pt": "Responder:",
}
SUBJECTS = {
    "en": {
        "language": "English",
        "math": "Math",
        "social-science": "Social Science",
        "natural-science": "Natural Science",
    },
    "zh": {"language": "语文", "math": "数学", "social-science": "社会科学", "natural-science": "自然科学"},
    "th": {"language": "ภาษาไทย", "math": "คณิตศาสตร์", "social-science": "สังคมศึกษา", "natural-science": "วิทยาศาสตร์"},
    "vi": {
        "language": "Tiếng Việt",
        "math": "Toán",
        "social-science": "Khoa học xã hội",
        "natural-science": "Khoa học tự nhiên",
    },
    "it": {
        "language": "Italiano",
        "math": "Matematica",
        "social-science": "Scienze sociali",
        "natural-science": "Scienze naturali",
    },
    "af": {
        "language": "Afrikaans Huistaal",
        "math": "Wiskunde",
        "social-science": "Sosiale Wetenskappe",
        "natural-science": "Natuurwetenskap",
    },
    "pt": {
        "language": "Linguagens",
        "math": "Matemática",
        "social-science": "Ciências Humanas",
        "natural-science": "Ciências da Natureza",
    },
}
HINT = {
    "en": "The following is a multiple choice question about {subject}. Please only give the correct option, without any "
    "other details or explanations.",
    "zh": "以下是关于{subject}的单项选择题。 请仅给出正确选项对应的选项序号而非其他细节。",
    "th": "ต่อไปนี้เป็นคำถามแบบปรนัย วิชา{subject}. โปรดระบุคำตอบเป็นตัวเลือกที่ถูกต้องโดยไม่ต้องให้รายละเอียดอื่นเพิ่มเติม.",
    "vi": "Sau đây là các câu hỏi trắc nghiệm về {subject}. Vui lòng chỉ đưa ra phương án đúng, không có bất kỳ chi tiết "
    "hay giải thích nào khác.",
    "it": "Le seguenti sono domande a risposta multipla su {subject}. Dai solo l'opzione corretta, senza altri dettagli o "
    "spiegazioni",
    "af": "Die volgende is veelvuldige keuse vrae oor {subject}. Gee asseblief net die korrekte opsie, sonder enige ander "
    "besonderhede of verduidelikings.",
    "pt": "A seguir estão questões de múltipla escolha sobre {subject}. Por favor, dê apenas a opção correta, sem "
    "quaisquer outros detalhes ou explicações.",
}


class M3Exam(Task):
    spec = TaskSpec(
        name="m3exam",
        version=1,
        description="M3Exam: school-exam multiple choice with images, 7 languages; the authors' prompt and scoring",
        kind="multiple_choice",
        languages=tuple(sorted(NAMES)),
        default_split="test",
        splits=("test",),
        prompt_template="{hint}\n\n{background}\n{question}\n{options}\n{answer_word}",
        generation=GenerationSettings(num_beams=1, max_new_tokens=128, min_new_tokens=1, length_penalty=1.0),
        images_per_example=MAX_IMAGES,
        images_vary=True,
        image_subdir="m3exam",
        source_url="https://huggingface.co/datasets/neulab/PangeaBench-m3exam",
        licence="CC BY-NC-SA 4.0 (M3Exam; UNVERIFIED for PangeaBench's copy: read the card)",
        citation="Zhang et al. 2023, M3Exam: A Multilingual, Multimodal, Multilevel Benchmark, NeurIPS 2023 D&B",
        size="the multimodal subset: ~2,800 questions (UNVERIFIED)",
    )

    def annotation_path(self, data_root: Path, lang: str, split: str) -> Path:
        return first_shard(data_root / "m3exam" / "data", NAMES[lang])

    def read_examples(self, path: Path, lang: str, split: str, image_root: Path) -> list[Example]:
        columns = ("subject_category", "question_text", "options", "answer_text", "background_description") + tuple(
            f"image_{k}" for k in range(MAX_IMAGES)
        )
        examples: list[Example] = []
        files = shards(path.parent, NAMES[lang]) or [path]
        for n, (where, row) in enumerate(read_rows(files, columns, what="M3Exam parquet file", fix=_FIX)):
            subject = SUBJECTS[lang].get(str(row["subject_category"]))
            if subject is None:
                raise MvlevalError(
                    f"unknown subject_category {row['subject_category']!r} (known: {', '.join(SUBJECTS[lang])}).",
                    fix=_FIX,
                    where=where,
                )
            answer = str(row["answer_text"]).strip()
            if not answer:
                raise MvlevalError("'answer_text' is empty.", fix=_FIX, where=where)
            lines = _lines(row["background_description"], "background_description", where)
            options = _lines(row["options"], "options", where)
            if not options:
                raise MvlevalError("'options' is empty.", fix=_FIX, where=where)
            prompt = self.template.format(
                hint=HINT[lang].format(subject=subject),
                # the authors' background: "\n" + its lines, or "" (so the hint is followed by 3 newlines either way)
                background="\n" + "\n".join(lines) if lines else "",
                question=str(row["question_text"]),
                options="\n".join(options),
                answer_word=ANSWER_WORD[lang],
            )
            images = tuple(
                materialise_image(_decode(row[f"image_{k}"], where, k), where)
                for k in range(MAX_IMAGES)
                if row[f"image_{k}"] not in (None, "None", "")
            )
            prompt, markers = _number_markers(prompt)
            if markers > len(images):
                raise MvlevalError(
                    f"the question marks {markers} images but the row has {len(images)}.", fix=_FIX, where=where
                )
            examples.append(
                Example(
                    id=f"{lang}-{n}",
                    lang=lang,
                    prompt=prompt,
                    images=images,
                    references=(answer,),
                    target=answer,
                    source=where,
                    meta=(("subject_category", str(row["subject_category"])),),
                    group=str(row["subject_category"]),
                )
            )
        return examples

    def metrics(self) -> tuple[Metric, ...]:
        from mvleval.metrics.m3exam import M3ExamAccuracy

        return (M3ExamAccuracy(),)

    def protocol_extra(self) -> dict[str, object]:
        return {
            "data": "neulab/PangeaBench-m3exam parquet",
            "hints": HINT,
            "subjects": SUBJECTS,
            "answer_words": ANSWER_WORD,
            "images": "(image)[...] markers -> <image k> in order; base64 image_0..image_9",
            "images_vary": True,
        }


def _number_markers(prompt: str) -> tuple[str, int]:
    """The prompt with its `(image)[...]` markers numbered `<image 1>`, `<image 2>`, ... in order, and their count."""
    parts = _MARKER.split(prompt)
    numbered = parts[0] + "".join(f"<image {k}>{text}" for k, text in enumerate(parts[1:], start=1))
    return numbered, len(parts) - 1


def _lines(value: object, column: str, where: str) -> list[str]:
    parsed = value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                parsed = None
        else:
            parsed = [value] if text else []
    if parsed is None:
        parsed = []
    if not isinstance(parsed, (list, tuple)) or not all(isinstance(x, str) for x in parsed):
        raise MvlevalError(f"'{column}' must be a list of texts, found {value!r:.80}.", fix=_FIX, where=where)
    return list(parsed)


def _decode(value: object, where: str, k: int) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    try:
        text = str(value)
        return base64.b64decode(text.split(",", 1)[1] if text.startswith("data:") else text, validate=True)
    except (binascii.Error, ValueError):
        raise MvlevalError(f"'image_{k}' is not base64 image data.", fix=_FIX, where=where) from None
