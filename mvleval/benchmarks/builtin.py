"""The built-in tasks: one module a task in the tasks folder (tasks/<name>.py, imported as mvleval.tasks.<name>), each
defining one Task subclass with its ``spec = TaskSpec(...)``; found by name (file stem = task name)."""

from __future__ import annotations

import importlib
import pkgutil

from mvleval.benchmarks.spec import TaskSpec
from mvleval.benchmarks.task import Task

_TASK_PACKAGE = "mvleval.tasks"


def task_names() -> list[str]:
    """Names of the tasks shipped in the tasks folder (file stem = task name)."""
    pkg = importlib.import_module(_TASK_PACKAGE)
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def load_builtin_task(name: str, prompt_style: str = "mblip") -> Task:
    """The built-in task `name` (one of task_names()), with a prompt style."""
    module = importlib.import_module(f"{_TASK_PACKAGE}.{name}")
    classes = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, Task) and obj is not Task and obj.__module__ == module.__name__
    ]
    if len(classes) != 1:
        raise RuntimeError(f"tasks/{name}.py must define exactly one Task subclass, found {len(classes)}")
    if not isinstance(getattr(classes[0], "spec", None), TaskSpec):
        raise RuntimeError(f"tasks/{name}.py: {classes[0].__name__} must set the class attribute spec = TaskSpec(...)")
    task = classes[0](prompt_style)
    if task.name != name:
        raise RuntimeError(f"tasks/{name}.py defines a task named {task.name!r}; the name must equal the file stem")
    return task
