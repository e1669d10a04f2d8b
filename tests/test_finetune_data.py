"""Fine-tuning data: mBLIP's task-mix reader (file:line errors, image roots in order), task splits, tokenisation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mvleval.benchmarks.task import Example
from mvleval.finetune.data import read_task_mix, read_task_split, tokenize_examples
from mvleval.util.errors import MvlevalError

DATA = Path(__file__).parent / "data" / "finetune"
TASK_MIX = DATA / "task_mix.json"
COLOURS = {"red": (220, 40, 40), "blue": (40, 70, 220), "green": (40, 170, 60), "yellow": (235, 210, 40)}
SHAPES = ("circle", "square", "triangle")


def draw_shape_images(root: Path) -> tuple[Path, Path]:
    """Draw the images task_mix.json references: shapes/ in a first root, pairs/ (second images) in a second root.

    Returns:
        (first root, second root).
    """
    from PIL import Image, ImageDraw

    first, second = root / "root_a", root / "root_b"
    for colour, rgb in COLOURS.items():
        for shape in SHAPES:
            img = Image.new("RGB", (32, 32), (255, 255, 255))
            draw = ImageDraw.Draw(img)
            if shape == "circle":
                draw.ellipse((6, 6, 26, 26), fill=rgb)
            elif shape == "square":
                draw.rectangle((6, 6, 26, 26), fill=rgb)
            else:
                draw.polygon([(16, 4), (28, 28), (4, 28)], fill=rgb)
            for folder in (first / "shapes", second / "pairs"):
                folder.mkdir(parents=True, exist_ok=True)
                img.save(folder / f"{colour}_{shape}.png")
    return first, second


@pytest.fixture(scope="session")
def shape_roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return draw_shape_images(tmp_path_factory.mktemp("finetune_images"))


def test_task_mix_json_list_keeps_line_numbers_and_two_image_rows(shape_roots: tuple[Path, Path]) -> None:
    examples = read_task_mix(TASK_MIX, list(shape_roots))
    assert len(examples) == 28
    first = examples[0]
    # hand-checked against tests/data/finetune/task_mix.json: record 1 starts on line 2 (line 1 is '[')
    assert first.source == f"{TASK_MIX}:2"
    assert first.prompt == "Caption in English: " and first.target == "red circle"
    assert first.images == (shape_roots[0] / "shapes" / "red_circle.png",)
    assert examples[-1].source == f"{TASK_MIX}:29"
    two = [e for e in examples if len(e.images) == 2]
    assert len(two) == 4
    # the second image exists only under the second root: roots are searched in order
    assert two[0].images == (shape_roots[0] / "shapes" / "red_circle.png", shape_roots[1] / "pairs" / "blue_circle.png")
    assert {e.target for e in two} == {"yes", "no"}


def test_first_root_holding_the_image_wins(tmp_path: Path, shape_roots: tuple[Path, Path]) -> None:
    override = tmp_path / "override"
    (override / "shapes").mkdir(parents=True)
    shutil.copy(shape_roots[0] / "shapes" / "red_circle.png", override / "shapes" / "red_circle.png")
    examples = read_task_mix(TASK_MIX, [override, *shape_roots])
    assert examples[0].images == (override / "shapes" / "red_circle.png",)
    assert examples[2].images == (shape_roots[0] / "shapes" / "red_square.png",)  # not in override: next root


def test_task_mix_jsonl_reports_every_bad_row_with_file_and_line(shape_roots: tuple[Path, Path]) -> None:
    path = DATA / "task_mix_bad.jsonl"
    with pytest.raises(MvlevalError) as info:
        read_task_mix(path, list(shape_roots))
    message = info.value.render()
    assert f"the task-mix file {path} cannot be used:" in message and "problem(s)" not in message
    # one entry per bad line, in file order (lines 1 and 9 are fine; line 7 is blank); each kind once, each of
    # these lines' problems being the only one of its kind here
    expected = [
        (2, "lacks 'label'"),
        (3, "expected a JSON object (found list)"),
        (4, "'label' must be a non-empty string"),
        (5, "'context' must be a string"),
        (6, "image is in none of the image roots ('shapes/purple_circle.png')"),
        (8, "escapes the image root"),
    ]
    positions = []
    for line, text in expected:
        entry = f"{path.name}:{line}: "
        assert entry in message, (line, message)
        start = message.index(entry)
        assert text in message[start : message.find("\n", start) if "\n" in message[start:] else None]
        positions.append(start)
    assert positions == sorted(positions)
    assert f"{path.name}:1:" not in message and f"{path.name}:9:" not in message
    assert "'image_id' must be a path string or a list of 2 at most" in message  # line 5's second problem


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        # a JSON list whose third record (starting on line 6) is cut off mid-object
        (
            '[\n  {"context": "a", "label": "b",\n   "image_id": "shapes/red_circle.png"},\n  {"context": "a", "label": "b", "image_id": "shapes/red_circle.png"}\n  ,\n  {"context": "a", "label"\n',
            6,
            "not valid JSON",
        ),
        # JSON Lines with a broken second line
        (
            '{"context": "a", "label": "b", "image_id": "shapes/red_circle.png"}\n{"context": "a",\n',
            2,
            "not valid JSON",
        ),
        # a list record that is valid JSON but lacks a key, on line 4
        (
            '[\n  {"context": "a", "label": "b", "image_id": "shapes/red_circle.png"},\n\n  {"context": "a", "image_id": "shapes/red_circle.png"}\n]\n',
            4,
            "lacks 'label'",
        ),
        # missing comma between records
        (
            '[\n  {"context": "a", "label": "b", "image_id": "shapes/red_circle.png"}\n  {"context": "a", "label": "b", "image_id": "x.png"}\n]',
            3,
            "expected ',' or ']'",
        ),
    ],
)
def test_malformed_files_name_the_line(
    tmp_path: Path, shape_roots: tuple[Path, Path], text: str, line: int, what: str
) -> None:
    path = tmp_path / "mix.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MvlevalError) as info:
        read_task_mix(path, list(shape_roots))
    assert f"{path.name}:{line}" in info.value.render() and str(path) in info.value.render()
    assert what in info.value.render()


def test_empty_and_missing_files_are_refused(tmp_path: Path, shape_roots: tuple[Path, Path]) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("[]\n", encoding="utf-8")
    with pytest.raises(MvlevalError, match="holds no records"):
        read_task_mix(empty, list(shape_roots))
    with pytest.raises(MvlevalError, match="task-mix file not found"):
        read_task_mix(tmp_path / "nope.json", list(shape_roots))
    with pytest.raises(MvlevalError, match="no image folder"):
        read_task_mix(TASK_MIX, [])


def test_task_split_uses_the_tasks_own_prompt_for_languages_that_have_it(shared_data: Path, tmp_path: Path) -> None:
    from mvleval.benchmarks.registry import load_task
    from tests.helpers import placeholder_images

    image_root = tmp_path / "images"
    task = load_task("xgqa")
    # xGQA's few-shot train_1 exists for de, en, zh in ../shared/data (README.md of shared/)
    langs_with_split = [lang for lang in task.languages if task.annotation_path(shared_data, lang, "train_1").is_file()]
    assert langs_with_split == ["de", "en", "zh"]
    expected = [e for lang in langs_with_split for e in task.examples(shared_data, image_root, lang, "train_1")]
    with pytest.raises(MvlevalError, match="image not found"):
        read_task_split("xgqa", "train_1", shared_data, image_root)
    placeholder_images(sorted({p for e in expected for p in e.images}))
    examples = read_task_split("xgqa", "train_1", shared_data, image_root)
    assert examples == expected  # the task's own prompts and targets, so training and evaluation agree
    assert all(e.prompt.startswith("Question: ") and e.prompt.endswith(" Short answer in English:") for e in examples)
    assert {e.lang for e in examples} == {"de", "en", "zh"}
    only_de = read_task_split("xgqa", "train_1", shared_data, image_root, ["de"])
    assert {e.lang for e in only_de} == {"de"}
    with pytest.raises(MvlevalError, match="no 'train_1' file for language 'bn'"):
        read_task_split("xgqa", "train_1", shared_data, image_root, ["bn"])
    with pytest.raises(MvlevalError, match="no language of task 'xgqa' has the split 'train_999'"):
        read_task_split("xgqa", "train_999", shared_data, image_root)


class _CharTokenizer:
    """A stand-in with the tokenizer call signature: one id per character (+100), EOS 1, optional BOS 2."""

    eos_token_id = 1

    def __init__(self, bos: bool = False, eos_on_prompt: bool = False) -> None:
        self.bos, self.eos_on_prompt = bos, eos_on_prompt

    def __call__(
        self, texts: list[str], add_special_tokens: bool, padding: bool, truncation: bool
    ) -> dict[str, list[list[int]]]:
        out = []
        for text in texts:
            ids = [100 + ord(c) % 50 for c in text]
            if add_special_tokens and self.bos:
                ids = [2, *ids]
            if add_special_tokens and self.eos_on_prompt:
                ids = [*ids, 1]
            out.append(ids)
        return {"input_ids": out}


def _example(prompt: str, target: str, n_images: int = 1) -> Example:
    return Example(
        id="x",
        lang="en",
        prompt=prompt,
        images=tuple(Path(f"{i}.png") for i in range(n_images)),
        references=(target,),
        target=target,
        source="mix.json:7",
    )


def test_tokenize_appends_eos_to_target_and_never_bos() -> None:
    tok = _CharTokenizer(bos=True)
    (ex,), truncated = tokenize_examples(
        [_example("ab", "cd", 2)], tok, max_prompt_tokens=10, max_target_tokens=10, image_token_id=99
    )
    assert truncated == 0
    assert ex.prompt_ids == (2, 100 + ord("a") % 50, 100 + ord("b") % 50)  # prompt exactly as the tokenizer makes it
    assert ex.target_ids == (100 + ord("c") % 50, 100 + ord("d") % 50, 1)  # no BOS mid-sequence, EOS learned
    assert ex.n_images == 2


def test_tokenize_truncates_prompt_from_the_left_and_target_keeping_eos() -> None:
    tok = _CharTokenizer(eos_on_prompt=True)
    (ex,), truncated = tokenize_examples(
        [_example("abcdef", "ghijk")], tok, max_prompt_tokens=3, max_target_tokens=3, image_token_id=99
    )
    assert truncated == 1
    assert ex.prompt_ids == (100 + ord("e") % 50, 100 + ord("f") % 50, 1)  # the end (and mT5's </s>) survives
    assert ex.target_ids == (100 + ord("g") % 50, 100 + ord("h") % 50, 1)


def test_tokenize_refuses_a_prompt_containing_the_image_token() -> None:
    tok = _CharTokenizer()
    image_token = 100 + ord("z") % 50
    with pytest.raises(MvlevalError) as info:
        tokenize_examples(
            [_example("a z", "b")], tok, max_prompt_tokens=10, max_target_tokens=10, image_token_id=image_token
        )
    assert info.value.where == "mix.json:7"


def test_task_mix_file_is_what_the_tests_claim() -> None:
    # guards the hand-checked line numbers above against an edit of the data file
    rows = json.loads(TASK_MIX.read_text(encoding="utf-8"))
    assert len(rows) == 28 and TASK_MIX.read_text(encoding="utf-8").splitlines()[0] == "["
