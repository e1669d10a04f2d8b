"""Finding a task: load_task(name | path), a built-in task by name (builtin.py) or a benchmark folder or file by path
(filetask.py), and the task a run record was made with. The one module importing both kinds of task: neither
task.py nor filetask.py imports this one or each other's loaders, so mvleval/benchmarks has no import circle."""

from __future__ import annotations

from pathlib import Path

from mvleval.benchmarks.builtin import load_builtin_task, task_names
from mvleval.benchmarks.filetask import is_task_path, load_file_task
from mvleval.benchmarks.task import Task
from mvleval.util.errors import MvlevalError, did_you_mean

__all__ = ["load_task", "load_task_of_record", "task_names"]


def load_task(name: str, prompt_style: str = "mblip") -> Task:
    """Instantiate a task by name, e.g. load_task("xgqa"), or read a benchmark file by path (a value with a '/' or
    ending in .jsonl/.yaml: load_task("./my-bench")), with a prompt style; unknown names get a suggestion."""
    if is_task_path(name):
        return load_file_task(name, prompt_style)
    names = task_names()
    if name not in names:
        hint = (
            f" Did you mean '{name.lower()}'? (task names are lower-case)"
            if name.lower() in names
            else did_you_mean(name, names)
        )
        if Path(name).exists():
            hint += f" For the benchmark file or folder '{name}', pass it as a path: ./{name}."
        raise MvlevalError(
            f"unknown task '{name}'.{hint} Known tasks: {', '.join(names)}.",
            fix="run `mvleval tasks` to list them.",
        )
    return load_builtin_task(name, prompt_style)


def load_task_of_record(name: str, prompt_style: str, source: str | None, *, where: Path | str | None = None) -> Task:
    """The task a run record was made with: a built-in by name, a benchmark file from the path the record keeps.

    Raises:
        MvlevalError: the benchmark file is no longer where the run read it, or the file there is another benchmark.
    """
    if source is None:
        return load_task(name, prompt_style=prompt_style)
    if not Path(source).exists():
        raise MvlevalError(
            f"the run was made on the benchmark file '{name}' at {source}, which is no longer there (moved or deleted).",
            fix=f"put the benchmark back at {source}: the record keeps where its task was read from.",
            where=where,
        )
    task = load_file_task(source, prompt_style)
    if task.name != name:
        raise MvlevalError(
            f"the benchmark at {source} is now named '{task.name}', but the run was made on '{name}'.",
            fix="restore the benchmark the run was made on at that path.",
            where=where,
        )
    return task
