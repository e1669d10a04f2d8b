"""The fine-tuning configuration: a pydantic TrainConfig, read from TOML/YAML plus overrides, validated in one pass.

``load_config`` merges (lowest precedence first) a TOML or YAML file, the CLI's flags and ``--set key=value``
overrides, then validates everything at once: every unknown key, bad type, out-of-range value, missing file and
inconsistent combination is collected and reported in ONE MvlevalError, each line naming the key, where the value
came from, and the fix (torchtune's rule: a config is validated in one pass that reports every problem at once).

The defaults are mBLIP's fine-tuning recipe (gregor-ge/mBLIP, NOTES.md): LoRA r=8, alpha=16, dropout 0.05 on every
linear layer of the language model, Q-Former + query tokens + language projection trained, ViT frozen, LoRA lr 2e-4,
lr 1e-5 for the BLIP-2 parts, AdamW with weight decay 0.1, cosine schedule with warm-up, gradient clipping at 1.0.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mvleval.util.errors import MvlevalError, did_you_mean

#: Keys that only change bookkeeping, not the trained weights: they may differ when a run is resumed.
BOOKKEEPING_KEYS = frozenset({"save_every", "keep_checkpoints", "log_every"})


class TrainConfig(BaseModel):
    """Everything that defines a fine-tuning run; saved as train_config.json next to its outputs.

    Data comes either from a task-mix file (mBLIP's format, ``train_file`` + ``image_roots``) or from an mvleval
    task's training split (``task`` + ``split`` + ``data_root``, images under the single ``image_roots`` entry or
    ``<data_root>/images``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    # -- what to train and where the outputs go ----------------------------------------------------------------------
    base_model: str = Field(description="BLIP-2/mBLIP checkpoint folder (or downloaded hub id) to fine-tune.")
    output_dir: Path = Field(description="Folder for the adapter, logs and checkpoints.")
    bits: Literal[4, 8, 16, 32] | None = Field(
        default=None,
        description="Base weights: 4 (QLoRA, nf4), 8 (int8), 16 (bf16), 32 (fp32); None: 4 on CUDA, 32 on CPU.",
    )
    device: str | None = Field(default=None, description="cpu, cuda or cuda:N; None: cuda if available.")

    # -- data ---------------------------------------------------------------------------------------------------------
    train_file: Path | None = Field(
        default=None, description="Task-mix file: JSON list or JSONL of {context, label, image_id}."
    )
    image_roots: list[Path] = Field(default_factory=list, description="Image folders searched in order.")
    task: str | None = Field(
        default=None,
        description="mvleval task whose split is trained on (instead of train_file); join several with '+' "
        "to train on a mixture, e.g. 'xgqa+xvnli' (each task's split of that name, every language that has it).",
    )
    split: str | None = Field(default=None, description="The task's training split, e.g. train_10 or dev.")
    data_root: Path | None = Field(default=None, description="Folder with the task's annotation files.")
    languages: list[str] | None = Field(
        default=None, description="Task languages to train on (default: all with the split)."
    )
    prompt_style: Literal["mblip", "chat"] = Field(
        default="mblip",
        description="The task prompt wording trained on (as `mvleval run --prompt-style`); evaluate with the same.",
    )
    max_prompt_tokens: int = Field(default=256, ge=1, description="Prompt tokens kept per example (longer: truncated).")
    max_target_tokens: int = Field(default=64, ge=1, description="Target tokens kept per example, EOS included.")

    # -- LoRA and what is trained -------------------------------------------------------------------------------------
    lora_r: int = Field(default=8, ge=1, description="LoRA rank.")
    lora_alpha: float = Field(default=16, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    lora_targets: Literal["all"] | list[str] = Field(
        default="all",
        description="'all': every linear layer of the language model's blocks, found by structure; "
        "or a list of module names such as ['q', 'v'].",
    )
    train_qformer: bool = Field(default=True, description="Train the Q-Former.")
    train_query_tokens: bool = Field(default=True, description="Train the 32 learned query tokens.")
    train_projection: bool = Field(default=True, description="Train the language projection.")

    # -- optimisation --------------------------------------------------------------------------------------------------
    lr_lora: float = Field(default=2e-4, gt=0, description="Learning rate of the LoRA weights.")
    lr_blip: float = Field(
        default=1e-5, gt=0, description="Learning rate of the Q-Former, query tokens and projection."
    )
    weight_decay: float = Field(default=0.1, ge=0, description="AdamW weight decay (not applied to biases and norms).")
    adam_betas: tuple[float, float] = Field(default=(0.9, 0.999), description="AdamW betas.")
    adam_eps: float = Field(default=1e-8, gt=0, description="AdamW epsilon.")
    warmup_steps: int | None = Field(default=None, ge=0, description="Linear warm-up steps (default: warmup_ratio).")
    warmup_ratio: float = Field(default=0.05, ge=0, le=1, description="Warm-up as a fraction of all steps.")
    max_grad_norm: float = Field(default=1.0, gt=0, description="Gradient clipping threshold (global L2 norm).")
    batch_size: int = Field(default=8, ge=1, description="Examples per forward pass.")
    grad_accum_steps: int = Field(default=1, ge=1, description="Forward passes per optimizer step.")
    max_steps: int | None = Field(default=None, ge=1, description="Optimizer steps (overrides epochs).")
    epochs: float = Field(default=1.0, gt=0, description="Passes over the data when max_steps is not set.")
    gradient_checkpointing: bool = Field(
        default=False, description="Recompute LLM activations in backward (less memory)."
    )
    seed: int = Field(default=0, ge=0, description="Seeds LoRA init, dropout and the data order.")

    # -- bookkeeping ---------------------------------------------------------------------------------------------------
    save_every: int = Field(default=100, ge=1, description="Save a resumable checkpoint every N optimizer steps.")
    keep_checkpoints: int = Field(default=2, ge=1, description="Checkpoints kept (oldest deleted first).")
    log_every: int = Field(default=1, ge=1, description="Write a train_log.jsonl line every N optimizer steps.")

    def to_json(self) -> str:
        """The config as pretty JSON (paths as strings), as written to train_config.json."""
        return json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"

    def without_bookkeeping(self) -> dict[str, Any]:
        """The keys that determine the trained weights (compared when a run is resumed)."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in BOOKKEEPING_KEYS}


#: CLI flag spellings of config keys, so error messages name what the user typed.
FLAG_NAMES: dict[str, str] = {
    "base_model": "--model",
    "output_dir": "--out",
    "train_file": "--train-file",
    "image_roots": "--image-root",
    "task": "--task",
    "split": "--split",
    "data_root": "--data-root",
    "languages": "--lang",
    "bits": "--bits",
    "max_steps": "--max-steps",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "seed": "--seed",
    "prompt_style": "--prompt-style",
}


def _parse_value(text: str) -> Any:
    """A --set value: JSON when it parses (numbers, true/false, lists), then YAML flow syntax, else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        import yaml

        return yaml.safe_load(text)
    except Exception:
        return text


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML (.toml) or YAML (.yaml/.yml) config file into a flat dict.

    Raises:
        MvlevalError: the file is missing, unreadable, has another suffix, or is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise MvlevalError(
            "config file not found.", fix="pass an existing .toml or .yaml file to --config.", where=path
        )
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise MvlevalError(f"cannot read the config file ({exc}).", fix="save it as UTF-8 text.", where=path) from None
    if suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # Python 3.10
            try:
                import tomli as tomllib
            except ImportError:
                from mvleval.util.errors import MissingDependencyError

                raise MissingDependencyError("tomli", "reading TOML config files on Python 3.10") from None
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise MvlevalError(f"not valid TOML ({exc}).", fix="fix the syntax error.", where=path) from None
    elif suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else path
            raise MvlevalError(
                f"not valid YAML ({getattr(exc, 'problem', exc)}).", fix="fix the syntax error.", where=where
            ) from None
    else:
        raise MvlevalError(
            f"unsupported config file type '{suffix}'.", fix="use a .toml, .yaml or .yml file.", where=path
        )
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MvlevalError(
            f"the config file must hold a mapping of keys to values, found a {type(data).__name__}.",
            fix="write one `key = value` (TOML) or `key: value` (YAML) line per setting.",
            where=path,
        )
    return data


def _describe(key: str, sources: Mapping[str, str]) -> str:
    """'max_steps (from --set max_steps=...)'; an indexed key such as image_roots[1] looks up image_roots."""
    origin = sources.get(key.split("[", 1)[0])
    return f"{key} (from {origin})" if origin else key


_UNION_MESSAGES = {
    "bits": "must be 4, 8, 16 or 32",
    "lora_targets": "must be 'all' or a list of module names such as ['q', 'v']",
}


def _pydantic_problems(exc: ValidationError, values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, message) for each problem pydantic found."""
    known = list(TrainConfig.model_fields)
    problems: list[tuple[str, str]] = []
    seen_unions: set[str] = set()
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = loc[0] if loc else "?"
        if err["type"] == "extra_forbidden":
            problems.append((key, f"unknown key.{did_you_mean(key, known)} Known keys: {', '.join(sorted(known))}."))
            continue
        if err["type"] == "missing":
            flag = FLAG_NAMES.get(key)
            problems.append((key, f"is required{f' (pass {flag})' if flag else ''}."))
            continue
        if key in _UNION_MESSAGES:
            # pydantic reports one error per branch of a Literal/union; one line saying what is allowed is clearer
            if key not in seen_unions:
                seen_unions.add(key)
                problems.append((key, f"{_UNION_MESSAGES[key]} (got {values.get(key)!r})."))
            continue
        sub = "".join(f"[{p}]" for p in loc[1:])
        problems.append((f"{key}{sub}", f"{err['msg']} (got {err.get('input')!r})."))
    return problems


def _cross_checks(values: Mapping[str, Any], config: TrainConfig | None) -> list[tuple[str, str]]:
    """Problems across keys and on the file system; runs on whatever validated, so all problems surface at once."""
    problems: list[tuple[str, str]] = []

    def get(key: str) -> Any:
        return getattr(config, key) if config is not None else values.get(key)

    # -- base model: the backend's own checks, so training refuses exactly what evaluation would refuse -------------
    base = get("base_model")
    if isinstance(base, str) and base:
        from mvleval.backends.hf.checkpoint import resolve_model_dir
        from mvleval.backends.mblip import check_checkpoint_dir
        from mvleval.finetune.base import check_generic_base, is_blip2

        try:
            if is_blip2(base):
                check_checkpoint_dir(resolve_model_dir(base), allow_pickle=False)
            else:  # any other vision-LLM: the generic backend's checks
                check_generic_base(base)
        except MvlevalError as exc:
            problems.append(("base_model", f"{exc.what}{f' ({exc.where})' if exc.where else ''}"))
    # -- data source: exactly one of train_file / task -------------------------------------------------------------
    train_file, task = get("train_file"), get("task")
    roots = get("image_roots") or []
    if train_file is None and task is None:
        problems.append(
            ("train_file", "no training data: give a task-mix file (--train-file) or a task (--task with --split).")
        )
    if train_file is not None and task is not None:
        problems.append(("task", "give either a task-mix file (--train-file) or a task (--task), not both."))
    if train_file is not None:
        if not Path(train_file).is_file():
            problems.append(("train_file", f"file {train_file} not found."))
        if not roots:
            problems.append(
                ("image_roots", "a task-mix file needs at least one image folder (--image-root, repeatable).")
            )
        for key in ("split", "data_root", "languages"):
            if get(key) is not None:
                problems.append((key, "only applies with --task; a task-mix file carries its own prompts."))
    for i, root in enumerate(roots):
        if not Path(root).is_dir():
            problems.append((f"image_roots[{i}]", f"folder {root} not found."))
    if task is not None:
        problems.extend(_task_checks(task, get("split"), get("data_root"), get("languages"), roots))
    # -- schedule ----------------------------------------------------------------------------------------------------
    warmup, max_steps = get("warmup_steps"), get("max_steps")
    if isinstance(warmup, int) and isinstance(max_steps, int) and warmup >= max_steps:
        problems.append(("warmup_steps", f"{warmup} warm-up steps leave no training in {max_steps} steps; use fewer."))
    betas = get("adam_betas")
    if isinstance(betas, (list, tuple)) and len(betas) == 2 and all(isinstance(b, (int, float)) for b in betas):
        if not all(0 <= b < 1 for b in betas):
            problems.append(("adam_betas", f"both betas must lie in [0, 1) (got {list(betas)})."))
    targets = get("lora_targets")
    if isinstance(targets, list) and not targets:
        problems.append(("lora_targets", "an empty list trains no LoRA weights; use 'all' or name modules."))
    device = get("device")
    if isinstance(device, str) and not (
        device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())
    ):
        problems.append(("device", f"unknown device {device!r}; use cpu, cuda or cuda:N."))
    return problems


def _task_checks(
    task_name: Any, split: Any, data_root: Any, languages: Any, roots: Sequence[Any]
) -> list[tuple[str, str]]:
    """Checks for task mode; `task_name` may join several tasks with '+' (a task mixture, e.g. 'xgqa+xvnli')."""
    from mvleval.benchmarks.registry import load_task

    problems: list[tuple[str, str]] = []
    tasks = []
    for name in str(task_name).split("+"):
        try:
            tasks.append(load_task(name.strip()))
        except MvlevalError as exc:
            problems.append(("task", exc.what))
    if problems:
        return problems
    for task in tasks:
        if split is None:
            problems.append(
                ("split", f"training on a task needs a split; '{task.name}' has {', '.join(task.split_names())}.")
            )
            continue
        try:
            task.check_split(str(split))
        except MvlevalError as exc:
            problems.append(("split", exc.what))
        else:
            if str(split) == task.default_split:
                # the default split is the one mvleval evaluates and reports: training on it would leak the test set
                problems.append(
                    (
                        "split",
                        f"'{split}' is the split '{task.name}' is evaluated on; training on it leaks the test set. "
                        f"Use a training split ({', '.join(s for s in task.split_names() if s != task.default_split)}).",
                    )
                )
    if data_root is None and any(t.data_dir() is None for t in tasks):
        problems.append(("data_root", "training on a task needs --data-root (or $MVLEVAL_DATA)."))
    elif data_root is None:
        pass  # benchmark files bring their own data

    elif not Path(data_root).is_dir():
        problems.append(("data_root", f"folder {data_root} not found."))
    if languages is not None:
        known = {lang for task in tasks for lang in task.languages}
        names = "+".join(t.name for t in tasks)
        for lang in languages:
            if lang not in known:
                problems.append(
                    ("languages", f"task '{names}' has no language '{lang}'.{did_you_mean(str(lang), sorted(known))}")
                )
    if len(roots) > 1:
        problems.append(("image_roots", f"a task reads its images from one folder; got {len(roots)}."))
    return problems


def validate_config(values: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> TrainConfig:
    """Validate a merged dict of settings into a TrainConfig, reporting every problem in one MvlevalError.

    Args:
        values: config keys and values (strings are coerced: "1e-5" -> 1e-05, "true" -> True).
        sources: where each key's value came from ("train.toml", "--set", "--max-steps"), for the message.

    Returns:
        The validated, frozen config (base_model and paths made absolute so the saved config stands alone).

    Raises:
        MvlevalError: one paragraph listing each problem as `key (from source): problem`.
    """
    sources = sources or {}
    config: TrainConfig | None = None
    problems: list[tuple[str, str]] = []
    try:
        config = TrainConfig.model_validate(dict(values))
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, values))
    problems.extend(_cross_checks(values, config))
    if problems:
        seen: set[tuple[str, str]] = set()
        lines = []
        for key, msg in problems:
            if (key, msg) in seen:
                continue
            seen.add((key, msg))
            lines.append(f"  - {_describe(key, sources)}: {msg}")
        raise MvlevalError(
            f"the training config has {len(lines)} problem{'s' if len(lines) != 1 else ''}:\n" + "\n".join(lines),
            fix="correct these keys in the config file, the flags or --set key=value, then rerun.",
        )
    assert config is not None
    return _absolutise(config)


def _absolutise(config: TrainConfig) -> TrainConfig:
    """Make paths absolute so train_config.json still points at the right files from another working directory."""
    updates: dict[str, Any] = {"output_dir": config.output_dir.expanduser().absolute()}
    base = Path(config.base_model).expanduser()
    if base.exists():
        updates["base_model"] = str(base.absolute())
    if config.train_file is not None:
        updates["train_file"] = config.train_file.expanduser().absolute()
    if config.data_root is not None:
        updates["data_root"] = config.data_root.expanduser().absolute()
    if config.task is not None:
        from mvleval.benchmarks.filetask import is_task_path

        # a benchmark file's path made absolute, like the other paths (built-in names stay names)
        parts = [p.strip() for p in config.task.split("+")]
        updates["task"] = "+".join(str(Path(p).expanduser().absolute()) if is_task_path(p) else p for p in parts)
    updates["image_roots"] = [p.expanduser().absolute() for p in config.image_roots]
    return config.model_copy(update=updates)


def load_config(
    config_file: Path | None = None,
    overrides: Sequence[str] = (),
    **values: Any,
) -> TrainConfig:
    """Build the training config from a file, the CLI flags and --set overrides, validated in one pass.

    Precedence, lowest first: the config file, then flag values (``None`` means "not given"), then ``--set``.

    Args:
        config_file: a .toml or .yaml file of `key = value` settings, or None.
        overrides: "key=value" strings from `--set` (values parsed as JSON, then YAML, else kept as text).
        **values: flag values by config key (base_model=..., output_dir=..., image_roots=[...], max_steps=...).

    Returns:
        The validated TrainConfig.

    Raises:
        MvlevalError: a malformed override or file, or (all at once) every invalid setting.
    """
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if config_file is not None:
        for key, value in read_config_file(Path(config_file)).items():
            merged[key] = value
            sources[key] = str(config_file)
    for key, value in values.items():
        if value is None or (isinstance(value, (list, tuple)) and not value and key in ("image_roots", "languages")):
            continue
        merged[key] = list(value) if isinstance(value, tuple) else value
        sources[key] = FLAG_NAMES.get(key, f"--{key.replace('_', '-')}")
    bad: list[str] = []
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            bad.append(item)
            continue
        merged[key] = _parse_value(text.strip())
        sources[key] = f"--set {key}=..."
    if bad:
        raise MvlevalError(
            f"--set expects key=value, got {', '.join(repr(b) for b in bad)}.",
            fix='write e.g. --set lr_lora=1e-4 --set lora_targets=\'["q","v"]\'.',
        )
    task = merged.get("task")
    if "data_root" not in merged and isinstance(task, str) and "+" not in task:
        from mvleval.benchmarks.filetask import is_task_path, locate

        if is_task_path(task.strip()):
            try:
                merged["data_root"] = locate(task.strip()).data_dir  # a benchmark file brings its own data
                sources["data_root"] = "the benchmark file's folder"
            except MvlevalError:
                pass  # reported with the other problems by the task check
    if "data_root" not in merged and merged.get("task") is not None and os.environ.get("MVLEVAL_DATA"):
        merged["data_root"] = os.environ["MVLEVAL_DATA"]
        sources["data_root"] = "$MVLEVAL_DATA"
    return validate_config(merged, sources)


def total_steps(config: TrainConfig, n_examples: int) -> int:
    """Optimizer steps of a run: max_steps, or ceil(epochs x examples / (batch size x accumulation))."""
    if config.max_steps is not None:
        return config.max_steps
    per_step = config.batch_size * config.grad_accum_steps
    return max(1, math.ceil(config.epochs * n_examples / per_step))


def warmup_steps(config: TrainConfig, steps: int) -> int:
    """Warm-up steps: warmup_steps if set, else round(warmup_ratio x steps), never all of them."""
    warm = config.warmup_steps if config.warmup_steps is not None else round(config.warmup_ratio * steps)
    return min(warm, max(steps - 1, 0))
