"""Training examples for fine-tuning: mBLIP's task-mix files and mvleval tasks' training splits, tokenised for the loss.

Two sources, both yielding ``mvleval.benchmarks.task.Example`` (prompt, target, image paths, file:line source):

- mBLIP's task-mix format: a JSON list (or JSON Lines) of ``{"context": prompt, "label": target, "image_id": path}``,
  ``image_id`` relative to a list of image roots searched in order (first root holding the file wins). A list of two
  ids (``"image_id": ["left.jpg", "right.jpg"]``) makes a two-image example, encoded like MaRVL at inference.
- any mvleval task's split, through ``Task.examples`` for each of its languages that has the split, so training uses
  the task's own prompt and target and training and evaluation agree.

All bad rows and missing images of a file are reported together (up to a limit), each with its file:line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mvleval.benchmarks.annotations import image_path_escapes, safe_image_path
from mvleval.benchmarks.task import Example
from mvleval.util.errors import MvlevalError, Problems
from mvleval.util.jsonl import BadLine, parse_lines

if TYPE_CHECKING:
    from mvleval.finetune.config import TrainConfig

logger = logging.getLogger("mvleval.finetune.data")

#: Images per example the model input supports (MaRVL uses two).
MAX_IMAGES_PER_EXAMPLE = 2


def _iter_json_records(path: Path) -> list[tuple[int, Any]]:
    """(line, value) for each element of a JSON list file, or each non-blank line of a JSON Lines file.

    A JSON list is decoded element by element so every record keeps the line it starts on (json.load would lose it).
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MvlevalError(f"file is not UTF-8 text ({exc.reason}).", fix="save it as UTF-8.", where=path) from None
    stripped = text.lstrip()
    if not stripped:
        raise MvlevalError(
            "the task-mix file is empty.", fix="it must hold a JSON list or JSON Lines of records.", where=path
        )
    if not stripped.startswith("["):
        records: list[tuple[int, Any]] = []
        for lineno, obj in parse_lines(text):
            if isinstance(obj, BadLine):
                raise MvlevalError(
                    f"line is not valid JSON ({obj.reason}).",
                    fix="each line of a JSON Lines file must be one complete JSON object.",
                    where=f"{path}:{lineno}",
                )
            records.append((lineno, obj))
        return records

    decoder = json.JSONDecoder()
    records = []
    pos = len(text) - len(stripped) + 1  # just past '['
    line_no = text.count("\n", 0, pos) + 1
    counted_to = pos

    def skip_ws(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    def line_at(i: int) -> int:
        nonlocal line_no, counted_to
        line_no += text.count("\n", counted_to, i)
        counted_to = i
        return line_no

    pos = skip_ws(pos)
    if pos < len(text) and text[pos] == "]":
        return records
    while True:
        pos = skip_ws(pos)
        start_line = line_at(pos)
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise MvlevalError(
                f"the record starting on this line is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                "the file may be truncated.",
                fix="repair the record or re-export the file.",
                where=f"{path}:{start_line}",
            ) from None
        records.append((start_line, value))
        pos = skip_ws(pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        if pos < len(text) and text[pos] == "]":
            break
        raise MvlevalError(
            "expected ',' or ']' after a record; the file may be truncated.",
            fix="repair the JSON list.",
            where=f"{path}:{line_at(min(pos, len(text)))}",
        )
    return records


def find_image(image_id: str, image_roots: Sequence[Path], *, where: str) -> Path | None:
    """The first `root/image_id` that is a file, trying the roots in order; None when no root has it.

    Raises:
        MvlevalError: the id escapes the roots (absolute path, '..').
    """
    for root in image_roots:
        candidate = safe_image_path(Path(root), image_id, where=where)
        if candidate.is_file():
            return candidate
    return None


def read_task_mix(path: Path, image_roots: Sequence[Path]) -> list[Example]:
    """Read mBLIP's task-mix training file: records of {context, label, image_id}, images found under the roots.

    Args:
        path: a JSON list or JSON Lines file.
        image_roots: folders searched in order for each image_id.

    Returns:
        One Example per record, prompt = context (used verbatim, as mBLIP's template "{}" does), target = label.

    Raises:
        MvlevalError: listing every bad record and every image found in no root, each with file:line.
    """
    path = Path(path)
    if not path.is_file():
        raise MvlevalError("task-mix file not found.", fix="pass an existing file to --train-file.", where=path)
    if not image_roots:
        raise MvlevalError(
            "no image folder given for the task-mix file.", fix="pass --image-root (repeatable).", where=path
        )
    records = _iter_json_records(path)
    if not records:
        raise MvlevalError("the task-mix file holds no records.", fix="add training records.", where=path)
    examples: list[Example] = []
    problems = Problems()  # every bad record and missing image, reported together, each kind once
    shape_fix = (
        "each record needs a string 'context', a non-empty string 'label' and an 'image_id' (a relative path, "
        "or a list of two)."
    )
    roots = ", ".join(str(r) for r in image_roots)
    for lineno, row in records:
        where = f"{path}:{lineno}"
        if not isinstance(row, dict):
            problems.add("expected a JSON object", where, f"found {type(row).__name__}", fix=shape_fix)
            continue
        lacking = [k for k in ("context", "label", "image_id") if k not in row]
        if lacking:
            problems.add(
                "record lacks a required key",
                where,
                f"lacks {', '.join(repr(k) for k in lacking)}; has {', '.join(repr(k) for k in list(row)[:6])}",
                fix=shape_fix,
            )
            continue
        context, label, image_id = row["context"], row["label"], row["image_id"]
        n_before = len(problems)
        if not isinstance(context, str):
            problems.add("'context' must be a string", where, f"found {type(context).__name__}", fix=shape_fix)
        if not isinstance(label, str) or not label.strip():
            problems.add("'label' must be a non-empty string (the training target)", where, fix=shape_fix)
        ids = [image_id] if isinstance(image_id, str) else image_id
        if (
            not isinstance(ids, list)
            or not 1 <= len(ids) <= MAX_IMAGES_PER_EXAMPLE
            or not all(isinstance(i, str) and i for i in ids)
        ):
            problems.add(
                f"'image_id' must be a path string or a list of {MAX_IMAGES_PER_EXAMPLE} at most",
                where,
                f"found {image_id!r}",
                fix=shape_fix,
            )
        if len(problems) != n_before:
            continue
        images: list[Path] = []
        for one in ids:
            if image_path_escapes(one):
                problems.add(
                    "image path escapes the image root",
                    where,
                    repr(one),
                    fix="image paths must be relative and stay inside the image roots (no '..', no absolute paths).",
                )
                continue
            found = find_image(one, image_roots, where=where)
            if found is None:
                problems.add(
                    "image is in none of the image roots",
                    where,
                    repr(one),
                    fix=f"put the images under one of the image roots ({roots}) or add --image-root.",
                )
            else:
                images.append(found)
        if len(images) != len(ids):
            continue
        examples.append(
            Example(
                id=f"{path.name}:{lineno}",
                lang=str(row.get("lang", "")),
                prompt=context,
                images=tuple(images),
                references=(label,),
                target=label,
                source=where,
            )
        )
    problems.raise_if_any(f"the task-mix file {path} cannot be used:", base=path.parent)
    logger.info("read %d task-mix examples from %s", len(examples), path)
    return examples


def read_task_split(
    task_name: str,
    split: str,
    data_root: Path,
    image_root: Path,
    languages: Sequence[str] | None = None,
    prompt_style: str = "mblip",
) -> list[Example]:
    """A task's split for every language that has it (or the given ones), formatted with the task's prompt (in the
    given prompt style, as `mvleval run --prompt-style` formats it).

    Args:
        task_name: an mvleval task (e.g. "xgqa").
        split: the training split (e.g. "train_10").
        data_root: folder with the annotation files.
        image_root: folder with the images.
        languages: restrict to these; each must have the split. None: every task language whose file exists.

    Raises:
        MvlevalError: no language has the split, a requested language lacks it, or images are missing.
    """
    from mvleval.benchmarks.registry import load_task

    task = load_task(task_name, prompt_style=prompt_style)
    task.check_split(split)
    wanted = list(languages) if languages else list(task.languages)
    examples: list[Example] = []
    tried: list[str] = []
    for lang in wanted:
        task.check_language(lang)
        path = task.annotation_path(data_root, lang, split)
        if not path.is_file():
            if languages:
                raise MvlevalError(
                    f"task '{task.name}' has no '{split}' file for language '{lang}'.",
                    fix="drop the language or download the split (tasks/README.md shows the layout).",
                    where=path,
                )
            tried.append(str(path))
            continue
        examples.extend(task.examples(data_root, image_root, lang, split))
    if not examples:
        raise MvlevalError(
            f"no language of task '{task.name}' has the split '{split}' under {data_root} (looked for {tried[0] if tried else '-'} and "
            f"{max(len(tried) - 1, 0)} more).",
            fix="check --data-root and --split; tasks/README.md shows the layout.",
        )
    missing = Problems()
    for e in examples:
        for p in e.images:
            if not Path(p).is_file():
                missing.add("image not found", e.source, str(p))
    missing.raise_if_any(
        f"the '{split}' split of task '{task.name}' cannot be used for training:",
        fix=f"put the task's images under {image_root}.",
        base=data_root,
    )
    return examples


def load_examples(config: TrainConfig) -> list[Example]:
    """The training examples the config names (task-mix file or task split), validated."""
    if config.train_file is not None:
        return read_task_mix(config.train_file, config.image_roots)
    assert config.task is not None and config.split is not None  # config validation
    from mvleval.benchmarks.registry import load_task

    names = [n.strip() for n in config.task.split("+")]
    data_root = config.data_root or Path()  # None only when every task is a benchmark file, which reads its own rows

    def image_root(name: str) -> Path:
        # a benchmark file's images default to <its folder>/images, a built-in's to <data root>/images
        return config.image_roots[0] if config.image_roots else (load_task(name).data_dir() or data_root) / "images"

    if len(names) == 1:
        return read_task_split(
            names[0], config.split, data_root, image_root(names[0]), config.languages, config.prompt_style
        )
    # A mixture: each task's split, restricted to the requested languages that task has.
    examples: list[Example] = []
    for name in names:
        langs = [lang for lang in config.languages if lang in load_task(name).languages] if config.languages else None
        if config.languages and not langs:
            continue
        examples.extend(read_task_split(name, config.split, data_root, image_root(name), langs, config.prompt_style))
    return examples


@dataclass(frozen=True)
class TokenizedExample:
    """The text side of one training example, tokenised exactly as the backend tokenises prompts.

    Attributes:
        prompt_ids: the prompt as the backend's tokenizer call makes it (special tokens included, e.g. mT5's </s>).
        target_ids: the target followed by EOS (the model learns to stop).
        n_images: images of the example; each contributes num_query_tokens positions before the prompt.
    """

    prompt_ids: tuple[int, ...]
    target_ids: tuple[int, ...]
    n_images: int


def tokenize_examples(
    examples: Sequence[Example],
    tokenizer: Any,
    *,
    max_prompt_tokens: int,
    max_target_tokens: int,
    image_token_id: int,
) -> tuple[list[TokenizedExample], int]:
    """Tokenise prompts (as the backend does at inference) and targets (+ EOS), truncating to the limits.

    Returns:
        The tokenised examples and how many were truncated (logged by the caller).

    Raises:
        MvlevalError: a prompt containing the image token (it would be mistaken for an image position).
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise MvlevalError(
            "the tokenizer has no EOS token, so the model cannot learn where an answer ends.",
            fix="use a checkpoint whose tokenizer defines eos_token.",
        )
    from mvleval.backends.mblip import tokenize_prompts

    prompts = tokenize_prompts(tokenizer, [e.prompt for e in examples])  # the backend's own call
    # targets without special tokens, then EOS: a tokenizer that prepends BOS must not put one mid-sequence
    targets = tokenizer([e.target for e in examples], add_special_tokens=False, padding=False, truncation=False)[
        "input_ids"
    ]
    out: list[TokenizedExample] = []
    truncated = 0
    for example, p_ids, t_ids in zip(examples, prompts, targets):
        if image_token_id in p_ids:
            raise MvlevalError(
                f"the prompt {example.prompt!r} contains the model's image token.",
                fix="remove the image token text from the training data.",
                where=example.source or None,
            )
        p_ids, t_ids = list(p_ids), list(t_ids)
        if len(p_ids) > max_prompt_tokens or len(t_ids) + 1 > max_target_tokens:
            truncated += 1
            # keep the end of the prompt: special tokens (mT5's </s>) and the question sit there
            p_ids = p_ids[-max_prompt_tokens:]
            t_ids = t_ids[: max_target_tokens - 1]
        out.append(TokenizedExample(tuple(p_ids), tuple(t_ids) + (eos,), len(example.images)))
    return out, truncated
