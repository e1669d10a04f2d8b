"""One task model (issue 22 item 3): a built-in task is a TaskSpec plus a reader of its published files, a benchmark
folder is the same spec read from YAML; the kinds live in one place (mvleval/benchmarks/kinds.py), so a new kind is
one addition there, used by both; mvleval/benchmarks has no import circle and no `type: ignore`."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from mvleval.benchmarks import kinds
from mvleval.benchmarks.builtin import load_builtin_task, task_names
from mvleval.benchmarks.kinds import KINDS, Kind, get_kind
from mvleval.benchmarks.spec import GenerationSettings, TaskSpec
from mvleval.benchmarks.task import Example, Task
from mvleval.util.errors import MvlevalError
from tests.helpers import run_cli
from tests.test_file_task import write_benchmark

BENCHMARKS = Path(__file__).resolve().parent.parent / "mvleval" / "benchmarks"
PACKAGE = "mvleval.benchmarks"


def _imports(path: Path) -> set[str]:
    """The mvleval.benchmarks modules a file imports, at the top or inside a function (a lazy import is still a
    circle: it only moves the failure to run time)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        out |= {n.split(".")[2] for n in names if n.startswith(f"{PACKAGE}.")}
    return out


def import_graph(folder: Path = BENCHMARKS) -> dict[str, set[str]]:
    modules = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    return {p.stem: _imports(p) & modules - {p.stem} for p in sorted(folder.glob("*.py")) if p.stem in modules}


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph (a -> b -> ... -> a), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_find_circle_finds_one_and_only_one() -> None:
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_circle_in_benchmarks() -> None:
    graph = import_graph()
    assert {"task", "filetask", "registry", "spec", "kinds", "builtin"} <= set(graph)
    circle = find_circle(graph)
    assert circle is None, "import circle in mvleval/benchmarks: " + " -> ".join(circle or [])
    # the two task modules know nothing of each other's loading, nor of the registry that joins them
    assert not graph["task"] & {"filetask", "registry", "builtin"}
    assert "registry" not in graph["filetask"]
    assert graph["spec"] == set()


def test_no_type_ignore_in_benchmarks() -> None:
    hits = [
        f"{p.name}:{n}"
        for p in sorted(BENCHMARKS.glob("*.py"))
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1)
        if "type: ignore" in line
    ]
    assert hits == []


SPEC_FIELDS = {f.name for f in dataclasses.fields(TaskSpec)}


@pytest.mark.parametrize("name", task_names())
def test_a_built_in_task_is_a_spec_and_a_reader(name: str) -> None:
    task = load_builtin_task(name)
    cls = type(task)
    assert isinstance(cls.__dict__.get("spec"), TaskSpec), f"tasks/{name}.py: set spec = TaskSpec(...)"
    # nothing of the spec is written a second time as a class attribute of its own
    assert not SPEC_FIELDS & set(cls.__dict__), f"tasks/{name}.py sets {sorted(SPEC_FIELDS & set(cls.__dict__))}"
    assert task.spec.kind in KINDS
    assert task.kind is KINDS[task.spec.kind]
    # the reader: each built-in reads its own published files; another regime of a task (kaleidoscope_cot) reads the
    # files of the task it is a regime of, with that task's reader
    reader = cls if task.data_task() == name else type(load_builtin_task(task.data_task()))
    assert issubclass(cls, reader)
    assert "annotation_path" in reader.__dict__ and "read_examples" in reader.__dict__
    # a spec without decoding settings decodes as its kind does
    if task.spec.generation is None:
        assert task.generation == task.kind.generation


def test_a_benchmark_folder_builds_the_same_spec(tmp_path: Path) -> None:
    from mvleval.benchmarks.filetask import FileTask
    from mvleval.benchmarks.registry import load_task

    folder = write_benchmark(
        tmp_path / "shapes",
        "version: 2\ndescription: d\nkind: yesno\nprompt: '{question} Yes or no?'\nlicence: CC0\n",
        [{"id": "1", "lang": "de", "images": ["red.png"], "question": "Rot?", "answers": [" Yes"]}],
    )
    task = load_task(str(folder))
    assert isinstance(task, FileTask) and isinstance(task.spec, TaskSpec)
    assert (task.spec.name, task.spec.version, task.spec.kind, task.spec.languages) == ("shapes", 2, "yesno", ("de",))
    assert task.spec.label_vocabulary == KINDS["yesno"].vocabulary
    assert task.generation == KINDS["yesno"].generation
    [example] = task.examples(folder, folder / "images", "de")
    assert example.references == KINDS["yesno"].references([" Yes"]) == ("yes",)


def test_kind_rules() -> None:
    mc = get_kind("multiple_choice")
    assert mc.references(["blue"], ["red", "blue"], ["A", "B"]) == ("B",)
    assert mc.references(["blue"], ["red", "blue"], ["A", "B"], answer_with="choice") == ("blue",)
    assert mc.default_metrics("choice") == ("exact_match", "relaxed_accuracy")
    assert get_kind("caption").references([" A cat "]) == (" A cat ",)
    with pytest.raises(MvlevalError, match="unknown task kind 'yes_no'. Did you mean 'yesno'"):
        get_kind("yes_no")


# -- a new kind is one addition to KINDS, and both built-in tasks and benchmark folders have it ----------------------
SHORT_CAPTION = Kind(
    "short_caption",
    GenerationSettings(num_beams=1, max_new_tokens=7, min_new_tokens=1, length_penalty=1.0),
    ("exact_match",),
)


@pytest.fixture
def new_kind(monkeypatch: pytest.MonkeyPatch) -> Kind:
    monkeypatch.setitem(kinds.KINDS, SHORT_CAPTION.name, SHORT_CAPTION)
    return SHORT_CAPTION


class _Labels(Task):
    """A built-in-style task of the new kind that writes only its spec and its reader."""

    spec = TaskSpec(
        name="labels",
        version=1,
        description="d",
        kind="short_caption",
        languages=("en",),
        default_split="test",
        splits=("test",),
        prompt_template="Label:",
    )

    def annotation_path(self, data_root: Path, lang: str, split: str) -> Path:
        return data_root / "labels.txt"

    def read_examples(self, path: Path, lang: str, split: str, image_root: Path) -> list[Example]:
        return []


def test_a_new_kind_reaches_a_built_in_task(new_kind: Kind) -> None:
    task = _Labels()
    assert task.generation == new_kind.generation
    assert [m.name for m in task.metrics()] == ["exact_match"]
    assert task.chat_prompt_template == "Label:"


def test_a_new_kind_reaches_a_benchmark_folder_through_the_command(new_kind: Kind, tmp_path: Path) -> None:
    folder = write_benchmark(
        tmp_path / "labels",
        "version: 1\ndescription: d\nkind: short_caption\nprompt: 'Label:'\n",
        [{"id": "1", "lang": "en", "images": ["red.png"], "answers": ["red square"]}],
    )
    proc = run_cli("tasks", "--task", folder, "--json")
    assert proc.returncode == 0, proc.stderr
    [described] = json.loads(proc.stdout)["tasks"]
    assert described["generation"] == new_kind.generation.to_dict()
    assert described["metrics"] == ["exact_match"]
    # the header's kind check lists the new kind and suggests it
    (folder / "benchmark.yaml").write_text(
        "version: 1\ndescription: d\nkind: short_captoin\nprompt: 'Label:'\n", encoding="utf-8"
    )
    proc = run_cli("tasks", "--task", folder)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    text = " ".join(proc.stderr.split())
    assert "'multiple_choice' or 'short_caption', got 'short_captoin'. Did you mean 'short_caption'?" in text, text
