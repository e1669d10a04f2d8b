"""The folder tree shows the architecture (issue 22, items 4 and 5): `ls mvleval` reads as the path of a run, the
builders of tiny models stay off it, and no module imports, even lazily, a module that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mvleval"

#: the top of mvleval/: the commands, then one folder a job (docs/architecture.md says what each holds)
TOP = {
    "__init__.py",
    "__main__.py",
    "cli.py",
    "py.typed",
    "benchmarks",
    "data",
    "backends",
    "run",
    "metrics",
    "record",
    "compare",
    "finetune",
    "demo",
    "util",
    "testing",
    "schemas",
}
#: the rooms a run goes through; none of them may reach the builders of tiny models or the demo
RUN_PATH = ("benchmarks", "data", "backends", "run", "metrics", "record", "compare")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "tasks" not in p.relative_to(PACKAGE).parts[:1]}


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at module level or inside a function, except those under `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def imports_of(module: str) -> set[str]:
    """The mvleval modules `module` imports (a `from package import submodule` counts as the submodule; a module's
    own parent packages, which Python loads first anyway, do not count)."""
    out: set[str] = set()
    for node in _runtime_imports(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif node.module and node.level == 0:
            submodules = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES]
            names = submodules if len(submodules) == len(node.names) else [node.module, *submodules]
        else:
            continue
        ancestors = {module.rsplit(".", k)[0] for k in range(1, module.count(".") + 1)}
        out.update(n for n in names if n in MODULES and n != module and n not in ancestors)
    return out


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return circles


def test_the_top_of_the_package_is_the_commands_and_one_folder_a_job() -> None:
    present = {p.name for p in PACKAGE.iterdir() if p.name != "__pycache__" and not p.name.startswith(".")}
    assert present - TOP == set(), f"flat modules or unknown folders at the top of mvleval/: {sorted(present - TOP)}"
    assert TOP - present == set()


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    graph = {m: imports_of(m) for m in MODULES}
    assert import_circles(graph) == []


def test_the_circle_finder_finds_a_circle() -> None:
    # the check above can fail: two modules importing each other, lazily or not, are one circle
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_circles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("room", RUN_PATH)
def test_the_run_path_never_imports_the_builders_of_tiny_models(room: str) -> None:
    for module in (m for m in MODULES if m.startswith(f"mvleval.{room}")):
        reached = {n for n in imports_of(module) if n.startswith(("mvleval.testing", "mvleval.demo"))}
        assert not reached, f"{module} imports {sorted(reached)}"
