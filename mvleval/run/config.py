"""`mvleval run --config run.yaml`: the run's flags read from a YAML file (flags given on the command line override
it); every unknown key and bad value is refused at once with its file:line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from mvleval.util.errors import MvlevalError, Problems, ProblemsError
from mvleval.util.yamlio import read_yaml


class RunConfig(BaseModel):
    """The keys of a run config: the names of `mvleval run`'s flags (``batch_size`` or ``batch-size``), and
    ``options``, the model's own options (what ``-M KEY=VALUE`` gives on the command line)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: list[str] | None = None
    model: str | None = None
    backend: str | None = None
    options: dict[str, Any] = {}
    adapter: str | None = None
    data_root: Path | None = None
    image_root: Path | None = None
    lang: list[str] | None = None
    split: list[str] | None = None
    limit: int | None = None
    batch_size: str | None = None
    bits: int | None = None
    out: Path | None = None
    seed: int | None = None
    num_beams: int | None = None
    max_new_tokens: int | None = None
    min_new_tokens: int | None = None
    length_penalty: float | None = None
    prompt_style: str | None = None
    cache: str | None = None
    allow_pickle: bool | None = None
    shared_prefix: bool | None = None
    resume: bool | None = None
    overwrite: bool | None = None

    @field_validator("task", "lang", "split", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("batch_size", mode="before")
    @classmethod
    def _number_or_auto(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def read_run_config(path: Path) -> tuple[RunConfig, dict[str, str]]:
    """The config file's values and where each key was given (``key`` or ``options.key`` -> ``FILE:LINE``).

    Raises:
        MvlevalError: an unreadable file, bad YAML, a key given twice, an unknown key or a bad value (all at once).
    """
    import yaml

    node, values = read_yaml(path, "the run config", "pass a readable UTF-8 YAML file.")
    if not isinstance(values, dict) or not isinstance(node, yaml.MappingNode):
        raise MvlevalError(
            "the run config is not a mapping of keys to values.",
            fix="write one `key: value` a line, e.g. `model: ./ckpt` and `task: [xgqa, marvl]`.",
            where=path,
        )
    problems = Problems()
    lines = _key_lines(node, path, problems)
    values = {str(key).replace("-", "_"): value for key, value in values.items()}
    options = values.get("options")
    if isinstance(options, dict):
        values["options"] = {str(key).replace("-", "_"): value for key, value in options.items()}
    try:
        config = RunConfig.model_validate(values)
    except ValidationError as exc:
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"][:2])
            where = lines.get(key) or lines.get(str(error["loc"][0])) or str(path)
            what = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            problems.add(f"{key}: {what}", where, fix=_fix(error["type"]), unit="key")
        config = RunConfig()
    if problems.items:
        raise ProblemsError(f"the run config {path} has problems:", problems.items)
    return config, lines


def _key_lines(node: Any, path: Path, problems: Problems) -> dict[str, str]:
    """``key`` and ``options.key`` -> ``FILE:LINE``; a key given twice is a problem."""
    import yaml

    lines: dict[str, str] = {}

    def walk(mapping: yaml.MappingNode, prefix: str) -> None:
        for key_node, value_node in mapping.value:
            key = prefix + str(key_node.value).replace("-", "_")
            where = f"{path}:{key_node.start_mark.line + 1}"
            if key in lines:
                problems.add(f"{key} is given twice (first at {lines[key]})", where, fix="keep one.", unit="key")
            lines.setdefault(key, where)
            if key == "options" and isinstance(value_node, yaml.MappingNode):
                walk(value_node, "options.")

    walk(node, "")
    return lines


def _fix(kind: str) -> str:
    if kind == "extra_forbidden":
        keys = ", ".join(sorted(RunConfig.model_fields))
        return f"use the names of `mvleval run`'s flags ({keys}); a model's own options go under `options:`."
    return "give a value of the key's type (`mvleval run --help` describes each flag)."
