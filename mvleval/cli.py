"""The typer command-line app; the only module that prints to the terminal or calls exit."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import typer
from typer.core import TyperArgument, TyperCommand

from mvleval.util.errors import MvlevalError

if TYPE_CHECKING:
    from rich.console import Console

    from mvleval.record.schema import RunRecord


class _PlainArgument(TyperArgument):
    """A positional argument shown as click shows it: ``RUN`` in the usage line (``[RUN]`` when optional), and no
    ``<path>`` type tag beside its metavar in the Arguments section (typer >= 0.20 writes ``{RUN}`` and ``RUN <path>``)."""

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        if self.nargs != 1 and not name.endswith("..."):
            name += "..."
        return name if self.required else f"[{name}]"

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


class _Command(TyperCommand):
    """typer's command with _PlainArgument positional arguments (every command of the CLI is one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is TyperArgument:
                param.__class__ = _PlainArgument

    def invoke(self, ctx: Any) -> Any:
        import math

        # click's FLOAT accepts nan and inf; no numeric option means either (a nan length penalty was recorded as null)
        for name, value in ctx.params.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise MvlevalError(
                    f"--{name.replace('_', '-')} must be a finite number, got {value}.",
                    fix=f"pass a number such as 1.0 to --{name.replace('_', '-')}.",
                )
        return super().invoke(ctx)


class _RunCommand(_Command):
    """`mvleval run`: ``--config FILE`` supplies the defaults of every flag it names (click's default_map), so a flag
    given on the command line overrides the file; the file's ``options:`` join the model's -M options."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        path = _config_argument(args)
        if path is not None and not {"-h", "--help"} & set(args):
            from mvleval.run.config import read_run_config

            config, lines = read_run_config(Path(path))
            values = config.model_dump(exclude_unset=True, exclude={"options"})
            ctx.default_map = {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}
            ctx.meta["mvleval.config_options"] = (dict(config.options), lines)
        return super().parse_args(ctx, args)


def _config_argument(args: list[str]) -> str | None:
    """The value of ``--config FILE`` / ``--config=FILE`` in a command line (the last one given), else None."""
    found = None
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith("--config="):
            found = arg.split("=", 1)[1]
    return found


app = typer.Typer(
    name="mvleval",
    help="Evaluate multilingual vision-LLMs (mBLIP, any Hugging Face vision-LLM, served models) on XM3600, xFlickrCo, xGQA, "
    "MaRVL, XVNLI, MaXM, MTVQA, CVQA, xMMMU, M3Exam and Kaleidoscope (also its chain-of-thought regime, kaleidoscope_cot), and on your own benchmarks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help: metavars as written (no <bool>/<list[str]> type tags), required options marked, and the
    # terminal's width up to 120 columns instead of a fixed 80
    rich_markup_mode=None,
    context_settings={"max_content_width": 120, "help_option_names": ["-h", "--help"]},
)
_HELP_SETTINGS: dict[str, Any] = {"max_content_width": 120, "help_option_names": ["-h", "--help"]}
data_app = typer.Typer(
    help="Get (fetch, lock) and inspect (check) benchmark data.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings=_HELP_SETTINGS,
)
app.add_typer(data_app, name="data")
baseline_app = typer.Typer(
    help="Manage committed baselines for regression gates.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings=_HELP_SETTINGS,
)
app.add_typer(baseline_app, name="baseline")
cache_app = typer.Typer(
    help="Inspect or clear the response cache (answers of served and local models, shared by every run).",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings=_HELP_SETTINGS,
)
app.add_typer(cache_app, name="cache")

_state: dict[str, Any] = {"verbose": 0}


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


#: --json: the same option on every command that has machine-readable output (docs/json-output.md)
JSON_HELP = (
    "Print one JSON document on stdout instead of the tables (schema: mvleval/schemas/<command>.json, "
    "docs/json-output.md); messages go to stderr."
)


def _print_json(command: str, payload: dict[str, Any]) -> None:
    """The one JSON document of a command's --json output on stdout: its schema's name first, then the payload."""
    import json

    document = {"schema": f"mvleval/{command}/v1", **payload}
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    sys.stdout.flush()


@app.callback()
def _main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="-v: info logging, -vv: debug.")] = 0,
) -> None:
    _state["verbose"] = verbose
    _setup_logging(verbose)


def _setup_logging(verbose: int) -> None:
    from rich.logging import RichHandler

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = RichHandler(console=_console(stderr=True), show_path=verbose > 1, rich_tracebacks=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s", force=True)
    logging.getLogger("mvleval").setLevel(level)
    if verbose < 2:
        import warnings

        # libraries' FutureWarnings/DeprecationWarnings (e.g. transformers renaming generate's past_key_values) speak
        # to the developers who call them, not to the user of the command; -vv shows them
        warnings.filterwarnings(
            "ignore", module=r"(transformers|peft|bitsandbytes|accelerate|torch|huggingface_hub)(\.|$)"
        )
        # transformers/peft warnings about unused weights etc. and their per-file progress bars are noise next to
        # mvleval's own progress; -vv shows them. bitsandbytes warns on CPU that an optional kernel package is absent.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def _data_root(value: Path | None, task: str | None = None, *, writing: bool = False) -> Path:
    """--data-root, else $MVLEVAL_DATA, else the default data root where `data fetch` writes (when it exists, or
    `writing`); a benchmark file (`task` a path) brings its own: the folder holding its rows."""
    if task is not None:
        from mvleval.benchmarks.filetask import is_task_path, locate

        if is_task_path(task):
            if value is not None:
                raise MvlevalError(
                    f"--data-root does not apply to the benchmark file {task}: its rows are the file itself.",
                    fix="drop --data-root (images are read from --image-root, default <benchmark folder>/images).",
                )
            return locate(task).data_dir
    if value is not None:
        return value
    env = os.environ.get("MVLEVAL_DATA")
    if env:
        return Path(env)
    from mvleval.util.cachedir import default_data_root

    default = default_data_root()
    if writing or default.is_dir():
        return default
    raise MvlevalError(
        f"no data root given, and `mvleval data fetch` has not written the default one ({default}).",
        fix="fetch the task's data first (`mvleval data fetch --task NAME`, pinned and verified), or pass "
        "--data-root DIR / set MVLEVAL_DATA to a folder holding the benchmarks' annotation files (tasks/README.md).",
    )


class RichProgress:
    """Renders the runner's progress as one rich bar per language with rate and ETA."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task_id: Any = None
        self._started = 0.0
        self._count = 0
        self._live = False

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live:
            self._progress.stop()

    def start(self, label: str, total: int, done: int) -> None:
        import time

        if not self._live:  # started on first use, so another live display (training) can run before it
            self._progress.start()
            self._live = True
        self._task_id = self._progress.add_task(label, total=total, completed=done, rate="")
        self._started = time.monotonic()
        self._count = 0

    def advance(self, n: int, status: str = "") -> None:
        import time

        self._count += n
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = f"{self._count / elapsed:.1f} ex/s" + (f" ({status})" if status else "")
        self._progress.update(self._task_id, advance=n, rate=rate)

    def finish(self) -> None:
        pass

    def note(self, message: str) -> None:
        from rich.markup import escape

        self._progress.console.print(f"[dim]{escape(message)}[/dim]")


#: metrics shown as points x100 on their own scale (not percentages): CIDEr, and BLEU / chrF++ on sacrebleu's 0-100
POINT_METRICS = frozenset({"cider", "bleu", "chrfpp"})


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "—"
    if metric == "cider":
        return f"{value * 100:.1f}"
    return f"{value * 100:.1f}"


def print_summary(record: RunRecord, console: Console) -> None:
    """One table: languages as rows, metrics as columns (CIDEr x100, accuracies in %), mean last."""
    from rich.table import Table

    metrics = list(record.scores)
    from rich.markup import escape

    style = "" if record.task.prompt_style == "mblip" else f" ({record.task.prompt_style} prompts)"
    family = f" [{record.model.family}]" if record.model.family and record.model.backend != "mblip" else ""
    table = Table(
        title=escape(
            f"{record.task.name} v{record.task.version} [{record.task.split}]{style} — {record.model.path}{family}"
        )
    )
    table.add_column("lang")
    table.add_column("n", justify="right")
    for m in metrics:
        table.add_column(m + (" (x100)" if m in POINT_METRICS else " (%)"), justify="right")
    for lang in record.task.languages:
        row = [lang, str(record.task.n_examples[lang])]
        for m in metrics:
            row.append(_fmt(record.scores[m].per_lang.get(lang), m))
        table.add_row(*row)
    table.add_row(
        "mean",
        str(sum(record.task.n_examples.values())),
        *[_fmt(record.scores[m].mean, m) for m in metrics],
        style="bold",
    )
    console.print(table)
    notes = {f"{m}/{lang}": n for m in metrics for lang, n in record.scores[m].notes.items()}
    for key, note in notes.items():
        console.print(f"[dim]{key}: {note}[/dim]")


def _generation_overrides(
    num_beams: int | None, max_new_tokens: int | None, min_new_tokens: int | None, length_penalty: float | None
) -> dict[str, Any]:
    values = {
        "num_beams": num_beams,
        "max_new_tokens": max_new_tokens,
        "min_new_tokens": min_new_tokens,
        "length_penalty": length_penalty,
    }
    return {k: v for k, v in values.items() if v is not None}


SERVED_PANEL = "Served models (--model openai:NAME)"


def _public_args(args: list[str]) -> list[str]:
    """The command line as recorded: a --base-url value without user name, password or query (they may hold keys)."""
    from mvleval.backends.openai_api import public_url

    out: list[str] = []
    for i, arg in enumerate(args):
        if arg.startswith("--base-url="):
            arg = "--base-url=" + public_url(arg.split("=", 1)[1])
        elif i > 0 and args[i - 1] == "--base-url":
            arg = public_url(arg)
        elif i > 0 and args[i - 1] in ("-M", "--model-option"):
            arg = _public_option(arg)
        elif arg.startswith(("-M", "--model-option=")) and "=" in arg and arg != "--model-option":
            flag = "--model-option=" if arg.startswith("--model-option=") else "-M"
            arg = flag + _public_option(arg[len(flag) :])
        out.append(arg)
    return out


def _public_option(value: str) -> str:
    """A -M KEY=VALUE as recorded: a base_url without user name, password or query."""
    from mvleval.backends.openai_api import public_url
    from mvleval.backends.spec import option_key

    key, sep, text = value.partition("=")
    return f"{key}={public_url(text)}" if sep and option_key(key) == "base_url" else value


#: the old family-specific flags of `mvleval run`, kept for one release as aliases of the model's -M options:
#: parameter name -> (flag, -M key, what its value looks like)
RUN_ALIASES: dict[str, tuple[str, str, str]] = {
    "base_url": ("--base-url", "base_url", "URL"),
    "api_key_env": ("--api-key-env", "api_key_env", "NAME"),
    "concurrency": ("--concurrency", "max_concurrency", "N"),
    "timeout": ("--timeout", "timeout", "SECONDS"),
    "max_retries": ("--max-retries", "max_retries", "N"),
    "max_image_side": ("--max-image-side", "max_image_side", "PIXELS"),
    "server_extensions": ("--server-extensions", "server_extensions", "NAME"),
    "trust_remote_code": ("--trust-remote-code", "trust_remote_code", "true"),
    "image_handling": ("--image-handling", "image_handling", "side-by-side"),
}


def _model_spec(ctx: Any, model: str, backend: str | None, flags: list[str]) -> Any:
    """The run's ModelSpec: --model, --backend, and the model's options from the config file's ``options:``, the old
    flags (aliases; one line on stderr says which -M to use) and -M KEY=VALUE, in that order of precedence."""
    from mvleval.backends.spec import ModelSpec, option_key, parse_model_options

    config_options, lines = ctx.meta.get("mvleval.config_options", ({}, {}))
    options = {option_key(k): v for k, v in config_options.items()}
    origins = {key: lines.get(f"options.{key}", "the run config") for key in options}
    flag_options, flag_origins = parse_model_options(flags)
    # typer may vendor its own click: its ParameterSource is compared by name
    used = [p for p in RUN_ALIASES if getattr(ctx.get_parameter_source(p), "name", None) == "COMMANDLINE"]
    for param in used:
        flag, key, _ = RUN_ALIASES[param]
        if key in flag_options:
            raise MvlevalError(f"{flag} and -M {key} both give {key}.", fix=f"pass only -M {key}=VALUE.")
        options[key], origins[key] = ctx.params[param], flag
    if used:
        instead = ", ".join(f"-M {RUN_ALIASES[p][1]}={RUN_ALIASES[p][2]}" for p in used)
        _console(stderr=True).print(
            f"note: {', '.join(RUN_ALIASES[p][0] for p in used)}: old flag(s), kept for one release; use {instead} "
            "instead.",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    return ModelSpec(
        model=model, backend=backend, options={**options, **flag_options}, origins={**origins, **flag_origins}
    )


BITS_HELP = "Weights: 4 (nf4, bitsandbytes), 8 (int8), 16 (bf16), 32 (fp32). Default: 4 on CUDA, 32 on CPU; a quantised checkpoint loads as it is."


def _languages_for(task: str, lang: list[str] | None, *, several: bool, prompt_style: str) -> tuple[str, ...] | None:
    """--lang for one task of a run: with several tasks, each task evaluates the given languages it has."""
    if not lang:
        return None
    if not several:
        return tuple(lang)
    from mvleval.benchmarks.registry import load_task

    known = load_task(task, prompt_style=prompt_style).languages
    return tuple(code for code in lang if code in known)  # () when it has none of them: the task is skipped


def _splits_for(names: list[str], specs: list[str]) -> dict[str, str]:
    """--split values -> the split of each task: a plain SPLIT for every task, TASK=SPLIT for one (taking precedence)."""
    plain = [spec for spec in specs if "=" not in spec]
    if len(plain) > 1:
        raise MvlevalError(
            f"--split is given {len(plain)} times without a task ({', '.join(plain)}).",
            fix="pass one plain --split SPLIT for every task, and TASK=SPLIT for a task that differs.",
        )
    out = {name: plain[0] for name in names} if plain else {}
    per_task: dict[str, str] = {}
    for spec in specs:
        if "=" not in spec:
            continue
        task, _, value = spec.partition("=")
        task, value = task.strip(), value.strip()
        if task not in names or not value:
            from mvleval.util.errors import did_you_mean

            what = (
                f"names task '{task}', which is not run here.{did_you_mean(task, names)}"
                if value
                else "gives no split."
            )
            raise MvlevalError(
                f"--split {spec!r} {what}", fix=f"pass TASK=SPLIT with one of the tasks run: {', '.join(names)}."
            )
        if per_task.get(task, value) != value:
            raise MvlevalError(f"--split gives task '{task}' two splits ({per_task[task]}, {value}).", fix="pass one.")
        per_task[task] = value
    return {**out, **per_task}


@app.command(cls=_RunCommand)
def run(
    ctx: typer.Context,
    task: Annotated[
        list[str],
        typer.Option(
            "--task",
            "-t",
            metavar="TASK",
            help="Task name (see `mvleval tasks`) or a benchmark file: ./my-bench/ (benchmark.yaml + data.jsonl) or ./bench.jsonl (+ bench.yaml beside it); repeat for several, or 'all'. The model loads once.",
        ),
    ],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            metavar="MODEL",
            help="Checkpoint: a local Hugging Face folder or a downloaded hub id (BLIP-2/mBLIP or any AutoModelForImageTextToText vision-LLM), or openai:NAME for a model served behind an OpenAI-compatible endpoint (-M base_url=URL).",
        ),
    ],
    model_option: Annotated[
        list[str] | None,
        typer.Option(
            "--model-option",
            "-M",
            metavar="KEY=VALUE",
            help="An option of the model's own backend, repeatable (a key given twice makes a list, e.g. replicas' base_url), e.g. hf: trust_remote_code=true, image_handling=side-by-side; openai: base_url=URL, api_key_env=NAME, max_concurrency=N, timeout=SECONDS, max_retries=N, max_image_side=PIXELS, server_extensions=vllm. A key the backend does not have is refused with the list of its keys. Recorded (without credentials).",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="A YAML file with this command's settings (keys: the flags' names, e.g. task, model, lang, batch_size; the model's -M options under `options:`); flags given here override it.",
        ),
    ] = None,
    adapter: Annotated[
        str | None, typer.Option(metavar="DIR", help="LoRA adapter folder (peft format, e.g. from `mvleval train`).")
    ] = None,
    data_root: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Folder with the annotation files (default: $MVLEVAL_DATA, else where `data fetch` wrote).",
        ),
    ] = None,
    image_root: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Folder with the images (default: <data-root>/images).")
    ] = None,
    lang: Annotated[
        list[str] | None,
        typer.Option("--lang", "-l", metavar="CODE", help="Language code; repeat for several (default: all)."),
    ] = None,
    split: Annotated[
        list[str] | None,
        typer.Option(
            metavar="[TASK=]SPLIT",
            help="Split (default: the task's, as mBLIP reports); TASK=SPLIT for one task of several (--split xgqa=dev), repeatable.",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(metavar="N", help="Evaluate only the first N examples of each language.")
    ] = None,
    batch_size: Annotated[
        str | None,
        typer.Option(
            metavar="N|auto",
            help="Samples per generate call, or 'auto' for the largest that fits. Default: 8; served models: 4 x --concurrency x replicas (adaptive: 4 x 128 x replicas).",
        ),
    ] = None,
    bits: Annotated[int | None, typer.Option(metavar="4|8|16|32", help=BITS_HELP)] = None,
    out: Annotated[Path, typer.Option(metavar="DIR", help="Folder for the run record and per-sample file.")] = Path(
        "results/runs"
    ),
    seed: Annotated[int, typer.Option(metavar="N", help="Random seed (recorded).")] = 0,
    num_beams: Annotated[int | None, typer.Option(metavar="N", help="Override the task's beam count.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(metavar="N", help="Override the task's max new tokens.")] = None,
    min_new_tokens: Annotated[int | None, typer.Option(metavar="N", help="Override the task's min new tokens.")] = None,
    length_penalty: Annotated[
        float | None, typer.Option(metavar="X", help="Override the task's length penalty.")
    ] = None,
    prompt_style: Annotated[
        str,
        typer.Option(
            metavar="mblip|chat",
            help="'mblip' (mBLIP's prompts, the default) or 'chat' (wording for instruction-tuned chat models); recorded, and runs of different styles are never compared.",
        ),
    ] = "mblip",
    backend: Annotated[
        str | None,
        typer.Option(
            metavar="mblip|hf|openai",
            help="Force a backend: 'mblip' (BLIP-2), 'hf' (any AutoModelForImageTextToText) or 'openai' (a served model); default: openai for openai:NAME, else by the checkpoint's config.json.",
        ),
    ] = None,
    image_handling: Annotated[
        str,
        typer.Option(
            metavar="native|side-by-side",
            help="Old name of -M image_handling=native|side-by-side, kept for one release. Several images per example (MaRVL): 'native' (all given to the model, in order) or 'side-by-side' (pasted into one, for one-image families; recorded).",
        ),
    ] = "native",
    trust_remote_code: Annotated[
        bool,
        typer.Option(
            "--trust-remote-code",
            help="Old name of -M trust_remote_code=true, kept for one release. Run the checkpoint's own Python code (auto_map in config.json); recorded in the run.",
        ),
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run with the same settings.")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Replace a finished run record with exactly these settings (refused otherwise)."
        ),
    ] = False,
    allow_pickle: Annotated[
        bool,
        typer.Option("--allow-pickle", help="Allow loading pickle (*.bin) weights; only for checkpoints you trust."),
    ] = False,
    shared_prefix: Annotated[
        bool,
        typer.Option(
            "--shared-prefix/--no-shared-prefix",
            help="Beam search computes the prompt once per sample, not once per beam (the same token ids); --no-shared-prefix runs transformers' plain generate.",
        ),
    ] = True,
    gate_baseline: Annotated[
        Path | None,
        typer.Option(
            "--gate",
            metavar="BASELINE",
            help="After the run, gate it against this baseline record (exit 1 on regression).",
        ),
    ] = None,
    max_drop: Annotated[
        list[str] | None,
        typer.Option(metavar="[METRIC=]X", help="With --gate: allowed drop in points, X or metric=X (repeatable)."),
    ] = None,
    lang_tolerance: Annotated[
        list[str] | None,
        typer.Option(metavar="LANG[:METRIC]=X", help="With --gate: per-language tolerance, zh=3 or zh:cider=5."),
    ] = None,
    paired: Annotated[
        bool, typer.Option("--paired", help="With --gate: also require a significant paired-bootstrap drop.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    report: Annotated[
        Path | None, typer.Option(metavar="FILE", help="With --gate: also write the gate's Markdown report here.")
    ] = None,
    report_html: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="With --gate: also write the HTML comparison of the run with the baseline here."
        ),
    ] = None,
    base_url: Annotated[
        list[str] | None,
        typer.Option(
            metavar="URL",
            help="Old name of -M base_url=URL, kept for one release. OpenAI-compatible endpoint, e.g. http://HOST:8000/v1 (default: $OPENAI_BASE_URL, else OpenAI's API); repeat for replicas of the same model (data-parallel servers): requests go to the one with the fewest in flight, a failing one is taken out for a while. Recorded without credentials.",
            rich_help_panel=SERVED_PANEL,
        ),
    ] = None,
    api_key_env: Annotated[
        str,
        typer.Option(
            metavar="NAME",
            help="Old name of -M api_key_env=NAME, kept for one release. Name of the environment variable holding the API key (sent as a bearer token; never written anywhere).",
            rich_help_panel=SERVED_PANEL,
        ),
    ] = "OPENAI_API_KEY",
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            "--max-concurrency",
            metavar="N",
            help="Old name of -M max_concurrency=N, kept for one release. Requests in flight per replica. Default: adaptive (each replica's window grows while latency stays flat and shrinks on 429, 503 and timeouts; docs/served-models.md).",
            rich_help_panel=SERVED_PANEL,
        ),
    ] = None,
    cache: Annotated[
        str | None,
        typer.Option(
            metavar="read-write|read|off",
            help="The response cache shared by runs, tasks and prompt styles (`mvleval cache info`), for served and local models (keyed by the weights' fingerprint, precision, device kind and versions): 'read-write' (default: answers found there are not generated or asked again, new ones are kept), 'read' (look up only) or 'off'.",
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="Old name of -M timeout=SECONDS, kept for one release. Seconds one request attempt may take.",
            rich_help_panel=SERVED_PANEL,
        ),
    ] = 120.0,
    max_retries: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="Old name of -M max_retries=N, kept for one release. Retries per request on 429 / 5xx / connection errors / timeouts / malformed answers (back-off with jitter, honouring Retry-After); then the run stops unscored and --resume continues.",
            rich_help_panel=SERVED_PANEL,
        ),
    ] = 5,
    max_image_side: Annotated[
        int | None,
        typer.Option(
            metavar="PIXELS",
            help="Old name of -M max_image_side=PIXELS, kept for one release. Downsize images so the longer side is at most this many pixels before sending (recorded).",
            rich_help_panel=SERVED_PANEL,
        ),
    ] = None,
    server_extensions: Annotated[
        str,
        typer.Option(
            metavar="none|vllm|transformers",
            help="Old name of -M server_extensions=NAME, kept for one release. Non-standard request fields to send: 'none' (plain OpenAI API: greedy, num_beams 1), 'vllm' (beam search, min_tokens) or 'transformers' (transformers serve's generation_config). Recorded.",
            rich_help_panel=SERVED_PANEL,
        ),
    ] = "none",
) -> None:
    """Evaluate a model on one or more tasks; writes a run record (JSON) and a per-sample file (JSONL) per task."""
    from mvleval.backends.registry import is_served

    spec = _model_spec(ctx, model, backend, model_option or [])
    model_options = None
    if spec.options:
        from mvleval.backends.registry import resolve

        _, model_options = resolve(spec)  # refused here, in a second, before any data is read
        values = model_options.model_dump()
        base_url = values.get("base_url") or None
        api_key_env = values.get("api_key_env", api_key_env)
        concurrency = values.get("max_concurrency", concurrency)
        timeout = values.get("timeout", timeout)
        max_retries = values.get("max_retries", max_retries)
        max_image_side = values.get("max_image_side", max_image_side)
        server_extensions = values.get("server_extensions", server_extensions)
        trust_remote_code = values.get("trust_remote_code", trust_remote_code)
        image_handling = values.get("image_handling", image_handling)
    from mvleval.benchmarks.registry import task_names
    from mvleval.run.evaluate import evaluate, finished_record
    from mvleval.run.generate import load_run_backend
    from mvleval.run.plan import RunOptions, planned_comparable, prepare

    if bits is not None and bits not in (4, 8, 16, 32):
        raise MvlevalError(f"--bits must be 4, 8, 16 or 32, got {bits}.", fix="pick one of these.")
    if batch_size is not None and batch_size != "auto" and not batch_size.isdigit():
        raise MvlevalError(
            f"--batch-size must be a positive number or 'auto', got {batch_size!r}.", fix="e.g. --batch-size 16."
        )
    served = is_served(model, backend)
    endpoint = None
    if served:
        from mvleval.backends.base import EndpointOptions
        from mvleval.backends.openai_api import default_batch_size

        local_flags = {
            "--adapter": adapter,
            "--bits": bits,
            "--allow-pickle": allow_pickle or None,
            "--trust-remote-code": trust_remote_code or None,
        }
        given = [flag for flag, value in local_flags.items() if value is not None]
        if given:
            raise MvlevalError(
                f"{', '.join(given)} only apply to a model loaded here, not to a served model ({model}).",
                fix="drop them; the server decides how its model is loaded.",
            )
        from mvleval.run.cache import check_mode

        urls = tuple(base_url or [os.environ.get("OPENAI_BASE_URL") or EndpointOptions.base_url])
        endpoint = EndpointOptions(
            base_url=urls[0],
            base_urls=urls,
            api_key_env=api_key_env,
            concurrency=concurrency,
            timeout_s=timeout,
            max_retries=max_retries,
            max_image_side=max_image_side,
            server_extensions=server_extensions,
            seed=seed,
            cache=check_mode(cache or "read-write"),
        )
        if num_beams is None and server_extensions == "none":
            num_beams = 1  # a plain OpenAI API has no beam search: greedy, and the record and leaderboard say so
        batch_size = batch_size or str(default_batch_size(concurrency, len(urls)))
    elif base_url is not None or max_image_side is not None or server_extensions != "none" or concurrency is not None:
        raise MvlevalError(
            "--base-url, --concurrency, --max-image-side and --server-extensions apply to served models only.",
            fix="pass --model openai:NAME for a model behind an OpenAI-compatible endpoint, or drop them.",
        )
    from mvleval.run.cache import check_mode

    cache_mode = check_mode(cache or "read-write")  # a local model's answers too (mvleval/backends/local_cache.py)
    if not served:
        from mvleval.util.extras import require_hf

        require_hf(f"a model run on this machine (--model {model})")  # before any data is read
    batch_size = batch_size or "8"
    names = task_names() if task == ["all"] else list(dict.fromkeys(task))
    if "all" in names:
        raise MvlevalError("--task all cannot be combined with other --task values.", fix="pass --task all alone.")
    if gate_baseline is None and (report is not None or report_html is not None):
        raise MvlevalError(
            "--report and --report-html write the gate's reports, but no --gate baseline was given.",
            fix="add --gate BASELINE, or make a report of the run afterwards with `mvleval report RUN`.",
        )
    if gate_baseline is not None and len(names) > 1:
        raise MvlevalError(
            "--gate compares one task's run with its baseline, but several tasks were given.",
            fix="run the tasks, then `mvleval gate RUN --baseline BASELINE` for each.",
        )
    from mvleval.benchmarks.filetask import is_task_path

    builtins = [name for name in names if not is_task_path(name)]
    for name in builtins:
        if name not in task_names():
            from mvleval.benchmarks.registry import load_task

            load_task(name)  # an unknown task is named first (with a suggestion), not blamed on a missing data root
    if data_root is not None and not builtins:
        _data_root(data_root, names[0])  # says that --data-root does not apply to a benchmark file
    data = _data_root(data_root) if builtins else None
    # data is None only when every name is a benchmark file
    roots = {name: _data_root(None, name) if is_task_path(name) or data is None else data for name in names}
    splits = _splits_for(names, split or [])
    languages = {name: _languages_for(name, lang, several=len(names) > 1, prompt_style=prompt_style) for name in names}
    if len(names) > 1 and lang:
        # each task takes the --lang codes it has; one that has none is skipped, saying so (all skipped: an error)
        skipped = {name: langs for name, langs in languages.items() if langs == ()}
        if len(skipped) == len(names):
            raise MvlevalError(
                f"none of the tasks has any of the languages given with --lang ({' '.join(lang)}).",
                fix="pass a language code one of them has (`mvleval tasks` lists them).",
            )
        for name in skipped:
            _console(stderr=True).print(
                f"{name}: skipped: it has none of the languages given with --lang ({' '.join(lang)})",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        names = [name for name in names if name not in skipped]
    runs = [
        RunOptions(
            task=name,
            model=model,
            adapter=adapter,
            data_root=roots[name],
            image_root=image_root,
            languages=languages[name],
            split=splits.get(name),
            limit=limit,
            batch_size=None if batch_size == "auto" else int(batch_size),
            bits=bits,
            out_dir=out,
            seed=seed,
            generation=_generation_overrides(num_beams, max_new_tokens, min_new_tokens, length_penalty),
            allow_pickle=allow_pickle,
            resume=resume,
            command=tuple(["mvleval", *_public_args(sys.argv[1:])]),
            shared_prefix=shared_prefix,
            prompt_style=prompt_style,
            backend=backend,
            trust_remote_code=trust_remote_code,
            image_handling=image_handling,
            overwrite=overwrite,
            endpoint=endpoint,
            cache=cache_mode,
            model_options=model_options,
        )
        for name in names
    ]
    # every task's data is checked before the model loads (hours later is too late), and read only this once
    try:
        prepared = [prepare(options) for options in runs]
    except KeyboardInterrupt:
        _state["interrupt_hint"] = " Nothing was written: rerun the same command without --resume to start again."
        raise
    if gate_baseline is not None:
        from mvleval.compare.gate import check_planned
        from mvleval.record.schema import read_record

        # a bad baseline path, or one the finished run could not be gated against (another --limit, split, data,
        # task version or metric), fails in a second, before the model loads and before anything is written
        check_planned(planned_comparable(runs[0], prepared[0]), read_record(gate_baseline))
    console = _console(stderr=json_out)
    loaded: list[Any] = []
    summaries: list[dict[str, Any]] = []

    def shared_backend() -> Any:
        if not loaded:  # one load for every task: for a 7B model the load dominates a short run
            from rich.markup import escape

            what = model + (f" with adapter {adapter}" if adapter else "")
            _console(stderr=True).print(f"[dim]loading {escape(what)} ...[/dim]", soft_wrap=True)
            loaded.append(load_run_backend(runs[0]))
        return loaded[0]

    written: list[Path] = []  # records this command wrote or found finished, for the Ctrl-C hint
    try:
        for options, ready in zip(runs, prepared):
            # a finished run with the same settings is nothing to do for --resume (a CI step retried after a crash
            # at the very end succeeds); without --resume, evaluate refuses to replace it silently
            done = finished_record(options, ready) if resume else None
            if done is not None:
                console.print(f"{options.task}: nothing to do: a finished run with these settings exists: {done}")
                path = done
                written.append(done)
                if json_out:
                    from mvleval.record.schema import read_record

                    summaries.append({**read_record(done).summary(done), "status": "already finished"})
                continue
            with RichProgress(_console(stderr=True)) as progress:
                record, path = evaluate(options, progress=progress, backend_factory=shared_backend, prepared=ready)
            written.append(path)
            if json_out:
                summaries.append({**record.summary(path), "status": "evaluated"})
            else:
                print_summary(record, console)
                console.print(f"Run record: {path}")
    except KeyboardInterrupt:
        _state["interrupt_hint"] = _run_interrupt_hint(runs, prepared, written)
        raise
    if gate_baseline is not None:
        _gate(
            path,
            gate_baseline,
            max_drop or [],
            None,
            lang_tolerance or [],
            paired,
            0.95,
            report,
            report_html=report_html,
            image_root=runs[0].resolved_image_root,
            json_document=("run", {"runs": summaries}) if json_out else None,
        )
    elif json_out:
        _print_json("run", {"runs": summaries, "gate": None})


def _run_interrupt_hint(runs: list[Any], prepared: list[Any], written: list[Path]) -> str:
    """What is true after Ctrl-C in `run`: which tasks can be continued with --resume, and what was not written."""
    from mvleval.run.evaluate import interrupted_run

    resumable = [o.task for o, ready in zip(runs, prepared) if interrupted_run(o, ready) is not None]
    if resumable:
        return " Rerun the same command with --resume to continue where it stopped."
    if written:
        rest = [o.task for o in runs[len(written) :]]
        return (
            f" Finished before the interrupt: {', '.join(str(p) for p in written)}; nothing of {', '.join(rest)} "
            f"was written: rerun it without --resume ({' '.join('--task ' + t for t in rest)})."
        )
    return " Nothing was written: rerun the same command without --resume to start again."


@app.command(cls=_Command)
def score(
    record: Annotated[Path, typer.Argument(metavar="RUN", help="A run record written by `mvleval run`.")],
    data_root: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Folder with the annotation files the run read (default: $MVLEVAL_DATA); references and labels are read from it again. A benchmark file's record keeps its own.",
        ),
    ] = None,
    image_root: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR", help="Folder with the images (default: <data-root>/images), for the data fingerprint."
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Recompute a run's scores from its predictions and the task's data with the installed metrics (no model is
    loaded); the record and its per-sample file are rewritten in place."""
    from rich.markup import escape

    from mvleval.record.schema import read_record, score_changes
    from mvleval.run.rescore import rescore

    before = read_record(record, verify_scores=False)  # score recomputes them: an edited record is what it mends
    updated, path = rescore(record, data_root, image_root)
    changes = score_changes(before, updated)
    # the record is rewritten in place: say so, and what changed, on stderr with --json (stdout holds the document)
    console = _console(stderr=json_out)
    if not json_out:
        print_summary(updated, console)
    samples = path.parent / updated.samples_file
    console.print(
        escape(
            f"Rewrote the run record {path} and its per-sample file {samples} in place "
            f"(rescored_at {updated.rescored_at})."
        ),
        soft_wrap=True,
    )
    if changes:
        console.print(
            escape(
                "Changed scores (x100): " + "; ".join(changes)
                if len(changes) == 1
                else "Changed scores (x100):\n" + "\n".join(f"  {line}" for line in changes)
            ),
            soft_wrap=True,
        )
    else:
        console.print("Scores unchanged.")
    if json_out:
        _print_json("score", {"runs": [{**updated.summary(path), "status": "rescored"}]})


@app.command(cls=_Command)
def leaderboard(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(metavar="RECORDS...", help="Run records or folders of them (default: results/runs)."),
    ] = None,
    out: Annotated[
        Path, typer.Option(metavar="DIR", help="Folder for leaderboard.md, leaderboard.csv and the heatmaps.")
    ] = Path("results/leaderboard"),
    json_out: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad",
            help="Rank the readable records and list the unreadable ones (default: refuse, listing every unreadable file).",
        ),
    ] = False,
) -> None:
    """Write Markdown and CSV leaderboards (and per-task heatmaps) from run records; only comparable numbers share a column."""
    from mvleval.compare.leaderboard import build_leaderboard, find_records
    from mvleval.compare.leaderboard_files import write_leaderboard
    from mvleval.util.errors import Problems, plural

    bad = Problems() if skip_bad else None
    records = find_records(paths or [Path("results/runs")], bad=bad)
    if bad:
        from rich.markup import escape

        lines = "\n".join(f"  {line}" for line in bad.lines())
        _console(stderr=True).print(
            escape(f"Skipped {plural(len(bad), 'unreadable file')} (--skip-bad):\n{lines}"), soft_wrap=True
        )
    if not records:
        raise MvlevalError(
            "no run records found.",
            fix="pass the folder holding the records written by `mvleval run`.",
            where=", ".join(str(p) for p in (paths or [Path("results/runs")])),
        )
    board = build_leaderboard(records)
    written = write_leaderboard(board, out)
    if json_out:
        from mvleval.compare.leaderboard import leaderboard_dict

        _print_json(
            "leaderboard", {"n_records": len(records), "written": [str(p) for p in written], **leaderboard_dict(board)}
        )
        return
    console = _console()
    console.print(f"Leaderboard from {len(records)} run record(s):")
    for path in written:
        console.print(f"  {path}")


def _gate(
    run_path: Path,
    baseline_path: Path,
    max_drop: list[str],
    metric: list[str] | None,
    lang_tolerance: list[str],
    paired: bool,
    confidence: float,
    report: Path | None,
    *,
    report_html: Path | None = None,
    image_root: Path | None = None,
    json_document: tuple[str, dict[str, Any]] | None = None,
) -> None:
    """Gate a run and print the verdict table, or with `json_document` (command, payload) print that command's JSON
    document with the verdicts under "gate"; exits 1 on regression."""
    from mvleval.compare.gate import gate as run_gate
    from mvleval.compare.gate import parse_lang_tolerances, parse_max_drop, render_rich, report_dict, write_summary
    from mvleval.record.schema import read_record

    run_record, baseline_record = read_record(run_path), read_record(baseline_path)
    result = run_gate(
        run_record,
        baseline_record,
        run_dir=run_path.parent,
        baseline_dir=baseline_path.parent,
        max_drop=parse_max_drop(max_drop) if max_drop else 1.0,
        metrics=metric or None,
        per_lang_tolerance=parse_lang_tolerances(lang_tolerance) if lang_tolerance else None,
        paired=paired,
        confidence=confidence,
    )
    console = _console(stderr=json_document is not None)
    if json_document is None:
        console.print(render_rich(result))
    for written in write_summary(result, report):
        console.print(f"Gate report: {written}")
    if report_html is not None:
        from mvleval.compare.report import write_compare_report

        summary = write_compare_report(
            run_path,
            baseline_path,
            report_html,
            image_root=image_root,
            metrics=metric or None,
            gate_report=result,
            run=run_record,
            baseline=baseline_record,
        )
        _print_report_summary(console, summary)
    if json_document is not None:
        command, payload = json_document
        _print_json(command, {**payload, "gate": report_dict(result)} if command != "gate" else report_dict(result))
    else:
        console.print("[bold green]PASS[/bold green]" if result.passed else "[bold red]REGRESSION[/bold red]")
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@app.command(cls=_Command)
def gate(
    run_record: Annotated[Path, typer.Argument(metavar="RUN", help="The run record to check.")],
    baseline: Annotated[
        Path, typer.Option(metavar="BASELINE", help="The baseline record (e.g. results/baselines/xgqa/main.json).")
    ],
    max_drop: Annotated[
        list[str] | None,
        typer.Option(
            metavar="[METRIC=]X",
            help="Allowed drop in points (x100): X for all metrics or metric=X; repeatable. Default 1.",
        ),
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option(metavar="METRIC", help="Gate only these metrics (repeatable; default: all).")
    ] = None,
    lang_tolerance: Annotated[
        list[str] | None,
        typer.Option(metavar="LANG[:METRIC]=X", help="Per-language tolerance: zh=3 or zh:cider=5 (repeatable)."),
    ] = None,
    paired: Annotated[
        bool,
        typer.Option(
            "--paired", help="Fail only when a paired bootstrap on per-sample scores says the drop is significant."
        ),
    ] = False,
    confidence: Annotated[float, typer.Option(metavar="P", help="Confidence level of the paired test.")] = 0.95,
    report: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="Also write the Markdown report here (and to $GITHUB_STEP_SUMMARY when set)."
        ),
    ] = None,
    report_html: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Also write the HTML comparison (flipped samples per language, largest drops, every sample) here.",
        ),
    ] = None,
    image_root: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR", help="With --report-html: the images' folder, for thumbnails and links to the full images."
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Compare a run with a baseline: exit 0 on pass, 1 on regression, 2 when the two are not comparable."""
    _gate(
        run_record,
        baseline,
        max_drop or [],
        metric,
        lang_tolerance or [],
        paired,
        confidence,
        report,
        report_html=report_html,
        image_root=image_root,
        json_document=("gate", {}) if json_out else None,
    )


def _print_report_summary(console: Console, summary: Any) -> None:
    from rich.markup import escape

    size = summary.size_bytes / 1e6
    flips = "" if summary.n_flipped is None else f", {summary.n_flipped} flipped verdict(s)"
    console.print(escape(f"HTML report: {summary.path} ({summary.n_samples} samples{flips}, {size:.1f} MB)"))
    if summary.image_root_recorded:
        console.print(
            escape(f"Images from the run's image folder (kept in its record): {summary.image_root}"),
            style="dim",
            soft_wrap=True,
        )
    if summary.image_root is None and summary.n_images:
        console.print(
            "[dim]No thumbnails: the run's image folder is not recorded or no longer there; pass --image-root DIR "
            "to embed them.[/dim]"
        )
    elif summary.missing_images:
        shown = ", ".join(summary.missing_images[:3])
        console.print(
            escape(
                f"Warning: {len(summary.missing_images)} of {summary.n_images} images not found or unreadable "
                f"under {summary.image_root} (e.g. {shown}); the report names them instead."
            )
        )


@app.command("report", cls=_Command)
def report_command(
    run_record: Annotated[
        Path,
        typer.Argument(metavar="RUN", help="A run record written by `mvleval run` (its per-sample file next to it)."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="The HTML file to write (default: next to the record, RUN.html or RUN.compare.html)."
        ),
    ] = None,
    compare: Annotated[
        Path | None,
        typer.Option(
            metavar="BASELINE",
            help="Compare with this baseline record: flipped verdicts per language, then the largest drops.",
        ),
    ] = None,
    image_root: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="The images' folder: thumbnails are embedded from it, with links to the full images (default: the run's, kept in its record).",
        ),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            metavar="METRIC",
            help="With --compare: compare only these metrics (repeatable; default: all of the baseline's).",
        ),
    ] = None,
) -> None:
    """Write one self-contained HTML page of a run (every sample, filterable), or of a run against a baseline."""
    from mvleval.compare.report import write_compare_report, write_run_report

    if metric and compare is None:
        raise MvlevalError(
            "--metric selects what --compare compares, but no --compare baseline was given.",
            fix="add --compare BASELINE, or leave --metric out.",
        )
    from mvleval.record.schema import report_paths

    run_page, compare_page = report_paths(run_record)
    if compare is None:
        target = out or run_page
        summary = write_run_report(run_record, target, image_root=image_root)
    else:
        target = out or compare_page
        summary = write_compare_report(run_record, compare, target, image_root=image_root, metrics=metric or None)
    _print_report_summary(_console(), summary)


@baseline_app.command("bless", cls=_Command)
def baseline_bless(
    run_record: Annotated[Path, typer.Argument(metavar="RUN", help="The run record to make the baseline.")],
    note: Annotated[str, typer.Option(metavar="TEXT", help="Why this run is the new baseline (kept next to it).")],
    name: Annotated[str, typer.Option(metavar="NAME", help="Baseline name.")] = "main",
    baselines_dir: Annotated[
        Path, typer.Option("--dir", metavar="DIR", help="Root of the committed baselines.")
    ] = Path("results/baselines"),
) -> None:
    """Copy a run record (and its per-sample file) into results/baselines/<task>/<name>.json with a note."""
    from mvleval.compare.baseline import bless

    path = bless(run_record, baselines_dir, note=note, name=name)
    _console().print(f"Baseline: {path}")


class RichTrainProgress:
    """Renders training progress (step, loss, lr, throughput, ETA) as one rich bar."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self._task_id: Any = None

    def __enter__(self) -> RichTrainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start(self, label: str, total: int, done: int) -> None:
        self._progress.start()
        self._task_id = self._progress.add_task(label, total=total, completed=done, loss="-", lr="-", rate="")

    def update(self, step: int, loss: float, lr: float, examples_per_s: float) -> None:
        self._progress.update(
            self._task_id, completed=step, loss=f"{loss:.4f}", lr=f"{lr:.2e}", rate=f"{examples_per_s:.1f} ex/s"
        )

    def finish(self) -> None:
        self._progress.stop()

    def note(self, message: str) -> None:
        from rich.markup import escape

        self._progress.console.print(f"[dim]{escape(message)}[/dim]", soft_wrap=True)


@app.command(cls=_Command)
def train(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            metavar="MODEL",
            help="Base checkpoint folder: BLIP-2/mBLIP (mBLIP's recipe) or any vision-LLM the generic backend runs.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Output folder: adapter, blip_parts, config, log, loss curve, checkpoints."),
    ] = None,
    train_file: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="mBLIP task-mix file: JSON list or JSONL of {context, label, image_id}."),
    ] = None,
    image_root: Annotated[
        list[Path] | None,
        typer.Option(metavar="DIR", help="Image folder; repeat to search several in order (task-mix)."),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            "-t",
            metavar="TASK",
            help="Train on an mvleval task's split instead (a name or a benchmark file, ./my-bench/); join tasks with '+' for a mixture.",
        ),
    ] = None,
    split: Annotated[
        str | None, typer.Option(metavar="SPLIT", help="The task's training split, e.g. train_10.")
    ] = None,
    data_root: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Folder with the task's annotation files (default: $MVLEVAL_DATA, else where `data fetch` wrote).",
        ),
    ] = None,
    lang: Annotated[
        list[str] | None,
        typer.Option("--lang", "-l", metavar="CODE", help="Train only on these languages (repeatable)."),
    ] = None,
    bits: Annotated[
        int | None,
        typer.Option(
            metavar="4|8|16|32", help="Base weights: 4 (QLoRA nf4), 8, 16 (bf16), 32. Default: 4 on CUDA, 32 on CPU."
        ),
    ] = None,
    max_steps: Annotated[int | None, typer.Option(metavar="N", help="Optimizer steps (overrides --epochs).")] = None,
    epochs: Annotated[float | None, typer.Option(metavar="X", help="Passes over the data.")] = None,
    batch_size: Annotated[int | None, typer.Option(metavar="N", help="Examples per forward pass.")] = None,
    seed: Annotated[int | None, typer.Option(metavar="N", help="Seed for LoRA init, dropout and data order.")] = None,
    prompt_style: Annotated[
        str | None,
        typer.Option(
            metavar="mblip|chat", help="The task's prompt wording to train on (evaluate with the same --prompt-style)."
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(metavar="FILE", help="TOML or YAML config file (flags and --set override it).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE", help="Override any config key: key=value (repeatable)."),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a killed run from its last checkpoint.")] = False,
) -> None:
    """Fine-tune a vision-LLM with LoRA (QLoRA with --bits 4): mBLIP's recipe for BLIP-2, the evaluation's own conversation for every other family."""
    from mvleval.util.extras import require_hf

    require_hf("mvleval train", ("torch", "transformers", "peft", "safetensors"))
    from mvleval.finetune import load_config
    from mvleval.finetune import train as run_training

    cfg = load_config(
        config,
        set_ or [],
        base_model=model,
        output_dir=out,
        train_file=train_file,
        image_roots=image_root or None,
        task=task,
        split=split,
        data_root=data_root,
        languages=lang or None,
        bits=bits,
        max_steps=max_steps,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        prompt_style=prompt_style,
    )
    with RichTrainProgress(_console(stderr=True)) as progress:
        path = run_training(cfg, resume=resume, progress=progress)
    _console().print(
        f"Trained adapter: {path}\nEvaluate it with `mvleval run --model {cfg.base_model} --adapter {path} ...` "
        f"or merge it with `mvleval export {path} --out DIR`."
    )


@app.command(cls=_Command)
def export(
    train_dir: Annotated[Path, typer.Argument(metavar="TRAIN_DIR", help="Output folder of `mvleval train`.")],
    out: Annotated[Path, typer.Option(metavar="DIR", help="Folder for the merged checkpoint (with its processor).")],
    bits: Annotated[
        int, typer.Option(metavar="4|8|16|32", help="4 (nf4, bitsandbytes), 8 (int8), 16 (bf16) or 32 (fp32).")
    ] = 4,
    model: Annotated[
        str | None, typer.Option("--model", "-m", metavar="MODEL", help="Base checkpoint, if it moved since training.")
    ] = None,
) -> None:
    """Merge a LoRA adapter (and the trained BLIP parts or projector) into the base model and save a loadable checkpoint."""
    from mvleval.util.extras import require_hf

    require_hf("mvleval export", ("torch", "transformers", "peft", "safetensors"))
    from mvleval.finetune import export as run_export

    if bits not in (4, 8, 16, 32):
        raise MvlevalError(f"--bits must be 4, 8, 16 or 32, got {bits}.", fix="pick one of these.")
    path = run_export(train_dir, out, cast(Literal[4, 8, 16, 32], bits), base_model=model)
    _console().print(f"Exported checkpoint: {path}\nEvaluate it with `mvleval run --model {path} --task ...`.")


@app.command(cls=_Command)
def tasks(
    task: Annotated[
        list[str] | None,
        typer.Option(
            "--task",
            "-t",
            metavar="PATH",
            help="Show (and validate) these benchmark files instead of the built-in tasks: ./my-bench/ or ./bench.jsonl; repeatable.",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List the tasks with their version, languages, splits and metrics; --task PATH shows a benchmark file."""
    from rich.table import Table

    from mvleval.benchmarks.registry import load_task, task_names

    loaded = [load_task(name) for name in (task or task_names())]
    if json_out:
        _print_json("tasks", {"tasks": [t.describe() for t in loaded]})
        return
    console = _console()
    described = [t.describe() for t in loaded]
    if console.width >= TASKS_TABLE_MIN_WIDTH:
        table = Table(title="mvleval tasks" if not task else "benchmark files")
        # names a user copies (task, split and metric names: `gate --metric` takes them) are never cut or folded:
        # one per line, no wrap; the languages and the description wrap at spaces
        for col in ("task", "version", "languages", "splits (default first)", "metrics", "description"):
            name_column = col in ("task", "splits (default first)", "metrics")
            # a licence's URL longer than the column is folded onto the next line, never cut
            table.add_column(
                col, no_wrap=name_column, min_width=None, overflow="fold" if col == "description" else "ellipsis"
            )
        for d in described:
            table.add_row(
                d["name"],
                str(d["version"]),
                f"{len(d['languages'])}: {' '.join(d['languages'])}",
                "\n".join(d["splits"]),
                "\n".join(d["metrics"]),
                d["description"] + (f"\n{extra}" if (extra := _size_licence(d)) else ""),
            )
        console.print(table)
    else:
        # too narrow for the table without cutting names: a list, wrapped at spaces only
        from rich.markup import escape

        console.print(escape("mvleval tasks" if not task else "benchmark files"), style="bold")
        for d in described:
            console.print(
                escape(_wrap(f"{d['name']} v{d['version']}: {d['description']}", console.width, indent="  ")),
                style="bold",
                soft_wrap=True,
            )
            for label, value in (
                ("languages", f"{len(d['languages'])}: {' '.join(d['languages'])}"),
                ("splits", ", ".join(d["splits"]) + " (the first is the default)"),
                ("metrics", ", ".join(d["metrics"])),
                ("data", _size_licence(d)),
            ):
                console.print(escape(_wrap(f"  {label}: {value}", console.width, indent="    ")), soft_wrap=True)
    for t in loaded:
        if t.location() is None:
            continue
        from rich.markup import escape

        from mvleval.benchmarks.filetask import FileTask

        assert isinstance(t, FileTask)
        lines = [
            f"{t.name} v{t.version} ({t.header.kind}) from {t.location()}: protocol {t.protocol_hash()}, "
            f"{t.images_per_example} image(s) per example at most, generation {t.generation.to_dict()}",
            f"  prompt: {t.prompt_template!r}"
            + (f"; chat prompt: {t.chat_prompt_template!r}" if t.header.chat_prompt else ""),
        ]
        lines += [
            f"  {split}: {sum(counts.values())} rows ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})"
            for split, counts in t.row_counts().items()
        ]
        for line in lines:
            console.print(escape(_wrap(line, console.width, indent="  ")), soft_wrap=True)


#: the tasks table needs this many columns to show every task, split and metric name whole; narrower: a list
TASKS_TABLE_MIN_WIDTH = 110


def _size_licence(described: dict[str, Any]) -> str:
    """A task's size and licence as `mvleval tasks` shows them ("" for a task that states neither)."""
    return "; ".join(x for x in (described.get("size"), described.get("licence")) if x)


def _wrap(text: str, width: int, indent: str = "") -> str:
    """Text wrapped at spaces only: a path or name longer than the line stays whole on a line of its own (rich and
    terminals would break it mid-name, e.g. 'marvl-id.json' / 'l:'); each line of `text` keeps its own indentation."""
    import textwrap

    out: list[str] = []
    for line in text.splitlines() or [""]:
        lead = line[: len(line) - len(line.lstrip())]
        out.append(
            textwrap.fill(
                line,
                width=max(width, 20),
                initial_indent="",
                subsequent_indent=lead + indent,
                break_long_words=False,
                break_on_hyphens=False,
                drop_whitespace=True,
            )
            or line
        )
    return "\n".join(out)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@cache_app.command("info", cls=_Command)
def cache_info() -> None:
    """Where the response cache is, its size, and how many answers it holds per model."""
    from mvleval.run.cache import ResponseCache
    from mvleval.util.cachedir import CACHE_ENV

    info = ResponseCache("read").info()
    console = _console()
    console.print(
        f"Response cache: {info.path}" + ("" if info.exists else " (empty: nothing cached yet)"), soft_wrap=True
    )
    console.print(
        f"  entries: {info.entries}, on disk: {_size(info.bytes_on_disk)} (answers: {_size(info.answer_bytes)})",
        soft_wrap=True,
    )
    for model, count in info.models.items():
        console.print(f"  {model}: {count}", markup=False, soft_wrap=True)
    console.print(
        f"[dim]set ${CACHE_ENV} to use another folder; `mvleval cache clear [--model NAME]` empties it[/dim]",
        soft_wrap=True,
    )


@cache_app.command("clear", cls=_Command)
def cache_clear(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            metavar="NAME",
            help="Remove only this model's answers (the name `cache info` lists, e.g. the served model id).",
        ),
    ] = None,
) -> None:
    """Remove the cached answers (all, or one model's)."""
    from mvleval.run.cache import ResponseCache

    cache = ResponseCache("read-write")
    known = cache.info().models
    if model is not None and model not in known:
        from mvleval.util.errors import did_you_mean

        raise MvlevalError(
            f"the response cache holds no answers of model {model!r}.{did_you_mean(model, list(known))}",
            fix="pass a name that `mvleval cache info` lists"
            + (f" ({', '.join(known)})." if known else "; the cache is empty."),
        )
    removed = cache.clear(model)
    _console().print(
        f"removed {removed} cached answer(s)" + (f" of {model}" if model else "") + f" from {cache.path}",
        markup=False,
        soft_wrap=True,
    )


@data_app.command("check", cls=_Command)
def data_check(
    task: Annotated[
        str,
        typer.Option(
            "--task", "-t", metavar="TASK", help="Task name, or a benchmark file (./my-bench/, ./bench.jsonl)."
        ),
    ],
    data_root: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Folder with the annotation files (default: $MVLEVAL_DATA, else where `data fetch` wrote).",
        ),
    ] = None,
    image_root: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Folder with the images (default: <data-root>/images).")
    ] = None,
    lang: Annotated[
        list[str] | None, typer.Option("--lang", "-l", metavar="CODE", help="Language code; repeat for several.")
    ] = None,
    split: Annotated[str | None, typer.Option(metavar="SPLIT", help="Split (default: the task's).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Verify every annotation and image file a task needs; report counts per language and what is missing."""
    from mvleval.benchmarks.datacheck import check_data, render_report
    from mvleval.benchmarks.registry import load_task

    loaded = load_task(task)  # an unknown task is named before a missing data root
    root = _data_root(data_root, task)
    report = check_data(loaded, root, image_root or root / "images", languages=lang, split=split)
    if json_out:
        _print_json("data-check", report.to_dict())
    else:
        _console().print(render_report(report), markup=False, highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@data_app.command("fetch", cls=_Command)
def data_fetch(
    task: Annotated[
        list[str] | None,
        typer.Option("--task", "-t", metavar="TASK", help="Task to fetch (repeat for several), or 'all'."),
    ] = None,
    lang: Annotated[
        list[str] | None, typer.Option("--lang", "-l", metavar="CODE", help="Language code; repeat for several.")
    ] = None,
    data_root: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR", help="Folder to write into (default: $MVLEVAL_DATA, else mvleval's user data folder)."
        ),
    ] = None,
    revision: Annotated[
        str | None,
        typer.Option(metavar="SHA", help="Fetch this commit of the task's source instead of the pinned one."),
    ] = None,
    accept_terms: Annotated[
        bool, typer.Option("--accept-terms", help="Accept the terms shown for sources beyond an open licence.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; download and write nothing.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="Show every task's sources, languages and licences.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Download a task's data from its pinned Hugging Face sources, verified, into the layout `run` reads."""
    from mvleval.data import command, fetch

    console = _console(stderr=json_out)  # with --json, the plan and notes are messages on stderr
    if list_ and json_out:
        _print_json("data-fetch", {"sources": command.list_rows()})
        return
    if list_:
        for row in command.list_rows():
            console.print(
                f"{row['task']}: {row['repo']}@{row['revision'] or 'main (not pinned by mvleval)'} [{row['layout']}]\n"
                f"  languages: {' '.join(row['languages']) or '(not split by language)'}\n"
                f"  size: {command.human(row['size']) if row['size'] else 'unknown until listed'}\n"
                f"  licence: {row['licence']}"
                + (f"\n  terms (needs --accept-terms): {row['terms']}" if row["terms"] else "")
                + "".join(f"\n  + upstream: {u}" for u in row["upstream"]),
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        return
    root = _data_root(data_root, writing=True)
    notes: list[str] = []
    with fetch.no_library_noise():
        plans = command.make_plans(command.select_sources(task or []), lang, root, revision, notes)
        for line in [*notes, *command.plan_lines(plans, root)]:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        if dry_run or not any(p.todo for p in plans):
            if not dry_run:
                console.print("nothing to do: every requested language is already in the data root.", soft_wrap=True)
            if json_out:
                _print_json("data-fetch", command.json_document(plans, root, dry_run, None))
            return
        need = sum(p.disk_bytes for p in plans)
        if need > fetch.free_bytes(root):
            raise MvlevalError(
                f"the download ({command.human(need)} on disk) does not fit the free disk at {root}.",
                fix="free some space or pick fewer languages (--lang).",
            )
        accepted = fetch.check_terms(plans, root, accept_terms)
        with _file_progress() as progress:
            report = command.run_fetch(plans, root, accepted=accepted, notes=[], file_progress=progress)
    if json_out:
        _print_json("data-fetch", command.json_document(plans, root, dry_run, report))
    for line in report.notes:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for t in report.tasks:
        if t["written"]:
            console.print(
                f"{t['task']}: wrote {' '.join(t['written'])} from {t['repo']}@{t['revision']} into {root}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )


@contextlib.contextmanager
def _file_progress() -> Iterator[Any]:
    """One rich bar per downloaded file on a terminal (stderr); nothing when stderr is not one."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    console = _console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        disable=not console.is_terminal,
    )

    @contextlib.contextmanager
    def per_file(path: str, size: int) -> Iterator[Any]:
        task_id = progress.add_task(path, total=size)
        yield lambda n: progress.advance(task_id, n)
        progress.update(task_id, completed=size)

    with progress:
        yield per_file


@data_app.command("lock", cls=_Command)
def data_lock(
    task: Annotated[str, typer.Option("--task", "-t", metavar="TASK", help="Task whose source to pin.")],
    revision: Annotated[
        str | None, typer.Option(metavar="SHA", help="Commit to pin (default: the lock's, else main now).")
    ] = None,
    lock_file: Annotated[
        Path | None, typer.Option("--lock", metavar="FILE", help="Lock file to update (default: the package's).")
    ] = None,
) -> None:
    """Maintainers: pin a task's commit and write its files' SHA-256 and sizes from the hub into the lock."""
    from mvleval.data import fetch

    with fetch.no_library_noise():
        result = fetch.update_lock(task, lock_file or fetch.lock_path(), revision)
    _console().print(
        f"{result['task']}: {result['repo']}@{result['revision']}, {result['files']} file(s) hashed into "
        f"{lock_file or fetch.lock_path()}",
        markup=False,
        highlight=False,
    )


@app.command(cls=_Command)
def demo(
    out: Annotated[
        Path, typer.Option(metavar="DIR", help="Folder for the demo's data, models, runs and leaderboard.")
    ] = Path("mvleval-demo"),
    seed: Annotated[
        int, typer.Option(metavar="N", help="Seed for the synthetic data, the tiny model and training (with --train).")
    ] = 0,
    train_model: Annotated[
        bool,
        typer.Option(
            "--train",
            help="Fine-tune the demo model here (~2 min on 2 cores) instead of using the packaged one; its numbers then depend on this CPU's floating-point kernels (docs/ci.md).",
        ),
    ] = False,
    native_kernels: Annotated[
        bool,
        typer.Option(
            "--native-kernels", help="Use this CPU's fastest kernels (e.g. AVX-512) instead of the portable AVX2 ones."
        ),
    ] = False,
) -> None:
    """Offline end to end: synthetic 5-task benchmark, tiny models (untrained, and fine-tuned with LoRA and exported 4-bit by mvleval), evaluation, leaderboard."""
    from rich.table import Table

    from mvleval.util.extras import require_hf

    require_hf("mvleval demo", ("torch", "transformers", "peft", "safetensors", "bitsandbytes"))
    if not native_kernels:
        # before torch is imported: the same vectorised kernels on every x86-64 CPU with AVX2 (mvleval/util/numerics.py)
        from mvleval.util.numerics import pin_portable_cpu_kernels

        pin_portable_cpu_kernels()

    from mvleval.demo.command import run_demo

    console = _console()
    console.print(
        f"[bold]mvleval demo[/bold]: synthetic benchmark, tiny mBLIP-shaped model, fine-tuning and evaluation in {out}/"
    )
    err = _console(stderr=True)
    with RichProgress(err) as progress:
        result = run_demo(
            out,
            seed=seed,
            train_model=train_model,
            progress=progress,
            train_progress=RichTrainProgress(err),
            log=lambda msg: console.print(msg),
        )
    for record, _path in result.trained.values():
        print_summary(record, console)
    table = Table(title="Untrained vs fine-tuned (4-bit export): headline metric, mean over languages")
    for col in ("task", "metric", "untrained", "fine-tuned"):
        table.add_column(col, justify="left" if col in ("task", "metric") else "right")
    for task, (record, _) in result.trained.items():
        metric = record.headline()
        before = result.untrained[task][0].scores[metric].mean
        table.add_row(
            task,
            metric + (" (x100)" if metric in POINT_METRICS else " (%)"),
            _fmt(before, metric),
            _fmt(record.scores[metric].mean, metric),
        )
    console.print(table)
    console.print("Run records:")
    for _, path in list(result.untrained.values()) + list(result.trained.values()):
        console.print(f"  {path}")
    console.print(f"Leaderboard: {result.leaderboard[0]}")


def _click_exception_types() -> tuple[type[BaseException], ...]:
    """ClickException classes of every click the installed typer may use.

    typer < 0.20 uses the `click` package; newer typer ships its own copy as `typer._click`, whose exceptions are
    other classes. Both are caught, so usage errors look the same whichever typer a user's resolver picked.
    """
    types: list[type[BaseException]] = []
    try:  # imported by name: mypy sees typer._click only on the typer versions that have it
        vendored = importlib.import_module("typer._click.exceptions")
        types.append(vendored.ClickException)
    except ImportError:
        pass
    try:
        from click.exceptions import ClickException

        types.append(ClickException)
    except ImportError:
        pass
    return tuple(types)


def _abort_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [typer.Abort]
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            types.append(__import__(module, fromlist=["Abort"]).Abort)
        except (ImportError, AttributeError):
            pass
    return tuple(types)


#: Exit code of a run stopped by Ctrl-C (SIGINT), as shells report 128 + signal number.
EXIT_INTERRUPTED = 130


def _interrupted() -> int:
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    hint = " Rerun the same command with --resume to continue where it stopped." if command in ("run", "train") else ""
    # `run` knows what it wrote before the interrupt (nothing, during data checks or the model load)
    hint = _state.pop("interrupt_hint", None) or hint
    _console(stderr=True).print(f"Interrupted.{hint}")
    return EXIT_INTERRUPTED


_VERBOSITY_FLAGS = ("-v", "-vv", "-vvv", "--verbose")


def _verbosity_first(args: list[str]) -> list[str]:
    """Accept -v/-vv/--verbose wherever users put them (`mvleval run ... -v`): they belong to the app, not to a
    command, so they are moved in front of the command. Values of options are never flags starting with '-v', and
    everything after '--' is left alone."""
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in _VERBOSITY_FLAGS]
    if not flags:
        return args
    rest = [a for a in args[:end] if a not in _VERBOSITY_FLAGS] + args[end:]
    return flags + rest


def _exit_code(value: object) -> int:
    """The process exit code for what a command returned (non-standalone click returns an Exit's code)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    return 0


def _print_error(exc: MvlevalError) -> int:
    """Print a user error as one paragraph on stderr; returns its exit code, 2."""
    from rich.markup import escape

    err = _console(stderr=True)
    # on a terminal, wrapped at spaces here (the terminal would break a long path mid-name); piped or redirected,
    # one line per paragraph, for logs and grep
    text = _wrap("error: " + exc.render(), err.width, indent="  ") if err.is_terminal else "error: " + exc.render()
    err.print(f"[bold red]error:[/bold red]{escape(text[len('error:') :])}", soft_wrap=True)
    return 2


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; every documented exit code reaches the shell.

    0 success (gate: pass), 1 gate regression or `data check` problems, 2 a user error (one paragraph, no
    traceback) or a usage error (click's usage message), 130 Ctrl-C. Bugs still raise with their traceback.
    """
    click_errors = _click_exception_types()
    args = _verbosity_first(list(sys.argv[1:] if argv is None else argv))
    if not args:
        # the help, and the usage-error code click >= 8.2 gives (8.1 gave 0): the same whichever click is installed
        app(args=["--help"], standalone_mode=False)
        sys.exit(2)
    try:
        code = _exit_code(app(args=args, standalone_mode=False))
        # typer >= 0.20 turns KeyboardInterrupt into Exit(130), which non-standalone click returns as a value;
        # mvleval never exits with 130 itself, so 130 here is always an interrupt
        if code == EXIT_INTERRUPTED:
            code = _interrupted()
    except MvlevalError as exc:
        code = _print_error(exc)
    except ModuleNotFoundError as exc:
        # a package of the hf extra imported on a core install (`pip install mvleval`) by a path the command's own
        # check did not foresee: the same one line naming the extra, not a traceback; any other missing module is a bug
        from mvleval.util.extras import missing_extra

        command = next((arg for arg in args if not arg.startswith("-")), None)
        error = missing_extra(exc, f"mvleval {command}" if command else "this command")
        if error is None:
            raise
        code = _print_error(error)
    except KeyboardInterrupt:
        code = _interrupted()
    except click_errors as exc:  # usage errors (unknown option/command, bad value, no arguments): click's message
        exc.show()  # type: ignore[attr-defined]
        code = int(getattr(exc, "exit_code", 2))
    except _abort_types():  # older click turns Ctrl-C into Abort
        code = _interrupted()
    except typer.Exit as exc:
        code = int(exc.exit_code)
    sys.exit(code)


if __name__ == "__main__":
    main()
