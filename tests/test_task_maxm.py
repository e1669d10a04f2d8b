"""MaXM: mBLIP's scoring rule (strip + lower-case, no VQA cleaning), the Hebrew code "iw", the release's layout, and
malformed files reported with their location.

The fixture (tests/data/tasks/maxm/maxm_v1_release/maxm_v1_{fr,iw,zh}.json) is hand-made in the schema the MaXM
README documents (no copy of the data is available here); the expected scores below were worked out by hand from
mBLIP's ``vqa_maxm_classification_evaluation`` (src/tasks/vllm/evaluation.py): ``caption.strip().lower()`` must equal
one of the ``processed_answers``, each ``lower().strip()``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from mvleval.benchmarks.languages import language_name
from mvleval.benchmarks.registry import load_task
from mvleval.metrics import ExactMatch, RelaxedAccuracy
from mvleval.util.errors import MvlevalError

FIXTURES = Path(__file__).resolve().parent / "data" / "tasks"
RELEASE = FIXTURES / "maxm" / "maxm_v1_release"


def test_hebrew_is_iw_and_named_as_mblip_names_it() -> None:
    task = load_task("maxm")
    assert "iw" in task.languages and "he" not in task.languages
    assert language_name("iw") == language_name("he") == "Hebrew"
    assert task.protocol()["extra"]["language_names"] == {
        "en": "English", "fr": "French", "hi": "Hindi", "iw": "Hebrew", "ro": "Romanian", "th": "Thai", "zh": "Chinese",
    }  # fmt: skip
    assert task.requested_language("iw") == "iw"  # language fidelity checks the question's language


def test_chat_prompt_names_the_language() -> None:
    [first, *_] = load_task("maxm", prompt_style="chat").examples(FIXTURES, FIXTURES, "iw")
    assert first.prompt == "מה יש בקערה?\nAnswer the question in Hebrew using a single word or phrase."


# (prediction, references, exact match, relaxed accuracy), by hand from mBLIP's rule
SCORING = [
    ("rouge", ["rouge"], 1.0, 1.0),
    ("  Rouge\n", ["rouge"], 1.0, 1.0),  # strip + lower-case
    ("rouge.", ["rouge"], 0.0, 1.0),  # no VQA cleaning: the period stays (xGQA's cleaning would drop it)
    ("deux", ["Deux ", "2"], 1.0, 1.0),  # labels are lower-cased and stripped too
    ("two", ["deux", "2"], 0.0, 0.0),  # no number-word mapping ("two" -> "2" is VQA cleaning)
    ("the rue", ["rue"], 0.0, 1.0),  # no article removal; relaxed: ends with "rue"
    ("红色的", ["红色", "红"], 0.0, 1.0),
    ("", ["rouge"], 0.0, 0.0),
]


@pytest.mark.parametrize(("prediction", "references", "exact", "relaxed"), SCORING)
def test_maxm_scoring_is_mblips(prediction: str, references: list[str], exact: float, relaxed: float) -> None:
    task = load_task("maxm")
    metrics = {m.name: m for m in task.metrics()}
    assert metrics["exact_match"].score([prediction], [references], "fr").per_example == [exact]
    assert metrics["relaxed_accuracy"].score([prediction], [references], "fr").per_example == [relaxed]


def test_signatures_name_the_processing_and_xgqa_keeps_its_own() -> None:
    assert ExactMatch(prediction="strip+lower").signature() == (
        "exact_match|clean=strip+lower|label=lower+strip|rule=equal|any-ref|boot=1000,seed=0,unit=example|mvleval-1"
    )
    # the signature xGQA / MaRVL / XVNLI records and baselines were made with (records add the unit of their clusters
    # and the answer rule: "unit=image|...|answer=think-1", see runner.task_signature)
    assert ExactMatch().signature() == (
        "exact_match|clean=vqa-lavis-mblip-1|label=lower+strip|rule=equal|any-ref|boot=1000,seed=0,unit=example|mvleval-1"
    )
    assert RelaxedAccuracy(prediction="strip+lower").signature().startswith("relaxed_accuracy|clean=strip+lower|")
    assert ExactMatch().score(["rouge."], [["rouge"]], "fr").value == 1.0  # the VQA cleaning drops the period
    with pytest.raises(MvlevalError, match="unknown prediction processing"):
        ExactMatch(prediction="lower")


def test_fixture_scores_by_hand() -> None:
    task = load_task("maxm")
    examples = task.examples(FIXTURES, FIXTURES, "fr")
    predictions = ["Rouge", "dans la rue.", "2"]  # right; right only relaxed; right (one of the processed answers)
    scores = {
        m.name: m.score(predictions, [list(e.references) for e in examples], "fr").value for m in task.metrics()[:2]
    }
    assert scores == {"exact_match": pytest.approx(2 / 3), "relaxed_accuracy": 1.0}


def test_unpacked_without_the_release_folder(tmp_path: Path) -> None:
    (tmp_path / "maxm").mkdir()
    shutil.copy(RELEASE / "maxm_v1_zh.json", tmp_path / "maxm" / "maxm_v1_zh.json")
    task = load_task("maxm")
    assert task.annotation_path(tmp_path, "zh", "test") == tmp_path / "maxm" / "maxm_v1_zh.json"
    assert [e.id for e in task.examples(tmp_path, tmp_path, "zh")] == ["zh-0001", "zh-0002"]
    # neither layout: the error names mBLIP's and shows what is there
    with pytest.raises(MvlevalError, match="not found") as err:
        task.examples(tmp_path, tmp_path, "fr")
    assert str(err.value.where).endswith("maxm/maxm_v1_release/maxm_v1_fr.json")


def _doc() -> dict[str, Any]:
    return json.loads((RELEASE / "maxm_v1_fr.json").read_text(encoding="utf-8"))


def _broken(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "maxm" / "maxm_v1_release" / "maxm_v1_fr.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


def _pair(**change: Any) -> dict[str, Any]:
    doc = _doc()
    doc["annotations"][1]["qa_pairs"][0].update(change)
    return doc


@pytest.mark.parametrize(
    ("doc", "message", "where"),
    [
        (
            _pair(processed_answers=[]),
            "'processed_answers' must be a non-empty list of strings",
            "annotations[1].qa_pairs[0]",
        ),
        (
            _pair(processed_answers="deux"),
            "'processed_answers' must be a non-empty list of strings",
            "annotations[1].qa_pairs[0]",
        ),
        (_pair(question=""), "'question' must be a non-empty string", "annotations[1].qa_pairs[0]"),
        (_pair(question_id="fr-0001"), "question id fr-0001 appears twice", "annotations[1].qa_pairs[0]"),
        (_pair(question_id=None), "'question_id' must be a non-empty string", "annotations[1].qa_pairs[0]"),
        ({**_doc(), "annotations": {"x": 1}}, "expected a JSON object with an 'annotations' list", ""),
        ([1, 2], "expected a JSON object with an 'annotations' list, found a list", ""),
        ({**_doc(), "annotations": []}, "holds no question-answer pairs", ""),
    ],
)
def test_malformed_files_name_the_place(doc: Any, message: str, where: str, tmp_path: Path) -> None:
    path = _broken(tmp_path, doc)
    with pytest.raises(MvlevalError) as err:
        load_task("maxm").examples(tmp_path, tmp_path, "fr")
    assert message in err.value.what
    assert str(err.value.where).startswith(str(path)) and where in str(err.value.where)


def test_missing_field_and_bad_image_id(tmp_path: Path) -> None:
    doc = _doc()
    del doc["annotations"][0]["qa_pairs"][1]["processed_answers"]
    _broken(tmp_path, doc)
    with pytest.raises(MvlevalError, match="lacks the field") as err:
        load_task("maxm").examples(tmp_path, tmp_path, "fr")
    assert "annotations[0].qa_pairs[1]" in str(err.value.where)
    for bad, message in (("../../etc/passwd", "escapes the image root"), (7, "'image_id' must be a non-empty string")):
        doc = _doc()
        doc["annotations"][1]["image_id"] = bad
        _broken(tmp_path, doc)
        with pytest.raises(MvlevalError, match=message) as err:
            load_task("maxm").examples(tmp_path, tmp_path, "fr")
        assert "annotations[1]" in str(err.value.where)
