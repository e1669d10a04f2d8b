"""Test helpers: placeholder images for the ids real annotation files reference, CLI invokers (in-process and the
installed console script), the checks of a user error and of a finished run, and the plumbing of the
chat-completions servers the tests start on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result


def placeholder_images(paths: Iterable[Path], size: int = 48) -> int:
    """Write a small, distinct JPEG at each path (colour and a bar position derived from the path)."""
    from PIL import Image, ImageDraw

    n = 0
    for path in paths:
        if path.exists():
            continue
        h = hashlib.sha256(str(path.name).encode()).digest()
        img = Image.new("RGB", (size, size), (h[0], h[1], h[2]))
        draw = ImageDraw.Draw(img)
        x = h[3] % (size - 8)
        draw.rectangle((x, 0, x + 8, size), fill=(255 - h[0], 255 - h[1], 255 - h[2]))
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, format="JPEG", quality=90)
        n += 1
    return n


def invoke(*args: str) -> Result:
    """Run the CLI in-process (the same code path as the console script, minus the exit-code wrapper)."""
    from mvleval.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def cli(capsys: Any, *args: object) -> tuple[int, str, str]:
    """The console script's entry point (`mvleval.cli.main`, with its exit-code handling) in-process, captured by
    pytest's `capsys`: (exit code, stdout, stderr)."""
    import pytest

    from mvleval.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def stub_provenance(fingerprint: str) -> dict[str, object]:
    """A minimal, valid provenance block for hand-built run records (only the data fingerprint carries meaning)."""
    return {
        "mvleval_version": "0.2.0",
        "git_commit": None,
        "git_dirty": None,
        "python": "3.11.7",
        "packages": {},
        "device": "cpu",
        "data_fingerprint": fingerprint,
        "annotation_files": {},
        "prompt_hash": "h",
        "seed": 0,
        "command": ["mvleval", "run"],
    }


class ChatHandler(BaseHTTPRequestHandler):
    """An OpenAI-compatible server's plumbing: quiet, keep-alive, ``GET /v1/models`` listing `served_model`, and JSON
    replies; a test's server subclasses it and answers ``POST /v1/chat/completions`` in ``do_POST``."""

    protocol_version = "HTTP/1.1"
    served_model = "test-vlm"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/v1/models":
            self._send(
                200,
                {
                    "object": "list",
                    "data": [{"id": self.served_model, "object": "model", "owned_by": "tests", "max_model_len": 4096}],
                },
            )
        else:
            self._send(404, {"error": "not found"})

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), headers)

    def _send_raw(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (a timeout test)


def perfect_copy(run: Path, base_dir: Path, name: str = "perfect.json") -> Path:
    """A copy of a finished run in `base_dir` whose every prediction is its first reference (rescore it with `mvleval
    score` to make the perfect baseline a regression is measured against)."""
    import json
    import shutil

    base_dir.mkdir(parents=True, exist_ok=True)
    record = json.loads(run.read_text(encoding="utf-8"))
    perfect = base_dir / name
    shutil.copy(run, perfect)
    rows = [json.loads(line) for line in (run.parent / record["samples_file"]).read_text(encoding="utf-8").splitlines()]
    for row in rows:
        row["prediction"] = row["references"][0]
    (base_dir / record["samples_file"]).write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return perfect


def console_script(
    *args: object,
    cwd: Path | None = None,
    timeout: float = 600,
    drop_env: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``mvleval`` console script as a user would (one OpenMP thread, a 200-column terminal), the
    environment variables in `drop_env` unset, then those in `env` set."""
    exe = shutil.which("mvleval")
    assert exe, "the mvleval console script is not installed (pip install -e .)"
    child_env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    for name in drop_env:
        child_env.pop(name, None)
    child_env.update(env or {})
    return subprocess.run(
        [exe, *map(str, args)], capture_output=True, text=True, env=child_env, timeout=timeout, cwd=cwd
    )


# Python's default warning filters in a fresh interpreter (no -W, no PYTHONWARNINGS), in their order
_FRESH_WARNING_FILTERS: tuple[tuple[str, type[Warning], str], ...] = (
    ("default", DeprecationWarning, "__main__"),
    ("ignore", DeprecationWarning, ""),
    ("ignore", PendingDeprecationWarning, ""),
    ("ignore", ImportWarning, ""),
    ("ignore", ResourceWarning, ""),
)


def run_cli(
    *args: object,
    cwd: Path | None = None,
    timeout: float | None = None,
    drop_env: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``mvleval ARGS`` in this process, answered as `console_script` answers it: the console script's own entry point
    (`mvleval.cli.main`) with the same argv, the same environment (one OpenMP thread, a 200-column terminal, `drop_env`
    unset, then `env` set), `cwd` as the working directory, program name ``mvleval``, stdout and stderr pipes that
    are no terminal (captured in Python and on file descriptors 1 and 2, so a child process's or a C library's output
    is caught too), a fresh interpreter's warning filters (a warning is printed on stderr, once per place, not recorded
    by pytest), and the exit code `sys.exit` gives. The text is decoded as `subprocess.run(text=True)` decodes it
    (UTF-8, universal newlines). Everything it changed (environment, working directory, warning filters, logging,
    `sys.argv`, `__main__`) is restored afterwards; a bug in mvleval raises here with its traceback (the process would
    print it and exit 1). `timeout` is accepted for the console script's signature and unused in-process.
    ``MVLEVAL_TEST_CLI=subprocess`` sends every call to the installed script instead (`console_script`): the same
    tests then check the real process, and bench/bench_suite.py measures what the in-process route saves.

    What stays with the installed console script (`console_script`): signals and Ctrl-C, what a fresh process imports
    (lazy imports, a model or detector loaded once per process), library logging configured at import time, and one
    test per command and exit path."""
    if os.environ.get("MVLEVAL_TEST_CLI") == "subprocess":  # every run_cli test through the installed script
        return console_script(*args, cwd=cwd, timeout=timeout or 600, drop_env=drop_env, env=env)
    import io
    import logging
    import sys
    import tempfile
    import types
    import warnings

    from mvleval.cli import main

    argv = [str(a) for a in args]
    new_env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    for name in drop_env:
        new_env.pop(name, None)
    new_env.update(env or {})
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    saved_argv, saved_main = sys.argv, sys.modules["__main__"]
    saved_streams = sys.stdout, sys.stderr
    root = logging.getLogger()
    saved_logging = (
        root.handlers[:],
        root.level,
        {name: logging.getLogger(name).level for name in ("mvleval", "bitsandbytes")},
    )
    out_buf, err_buf = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_buf, encoding="utf-8", write_through=True)
    err = io.TextIOWrapper(err_buf, encoding="utf-8", write_through=True)
    code: int = 0
    with tempfile.TemporaryFile() as fd_out, tempfile.TemporaryFile() as fd_err, warnings.catch_warnings():
        warnings.resetwarnings()
        for action, category, module in _FRESH_WARNING_FILTERS:
            warnings.filterwarnings(action, category=category, module=module, append=True)  # type: ignore[arg-type]
        # pytest records warnings instead of printing them; a process prints them on its stderr
        warnings._showwarnmsg_impl = lambda msg: sys.stderr.write(warnings._formatwarnmsg(msg))  # type: ignore[attr-defined]
        for stream in saved_streams:
            stream.flush()
        saved_fds = os.dup(1), os.dup(2)
        try:
            os.dup2(fd_out.fileno(), 1)
            os.dup2(fd_err.fileno(), 2)
            os.environ.clear()
            os.environ.update(new_env)
            if cwd is not None:
                os.chdir(cwd)
            sys.argv = [shutil.which("mvleval") or "mvleval", *argv]
            sys.modules["__main__"] = types.ModuleType("__main__")  # a script's __main__: click says "mvleval"
            sys.stdout, sys.stderr = out, err
            try:
                main(argv)
            except SystemExit as exc:
                if exc.code is None or isinstance(exc.code, int):
                    code = int(exc.code or 0)
                else:  # sys.exit("message"): printed on stderr, exit 1
                    err.write(f"{exc.code}\n")
                    code = 1
        finally:
            sys.stdout, sys.stderr = saved_streams
            sys.argv, sys.modules["__main__"] = saved_argv, saved_main
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            for fd in saved_fds:
                os.close(fd)
            root.handlers[:] = saved_logging[0]
            root.setLevel(saved_logging[1])
            for name, level in saved_logging[2].items():
                logging.getLogger(name).setLevel(level)
        out.flush()
        err.flush()
        fd_out.seek(0)
        fd_err.seek(0)
        stdout = out_buf.getvalue() + fd_out.read()
        stderr = err_buf.getvalue() + fd_err.read()

    def text(data: bytes) -> str:  # subprocess.run(text=True): locale encoding (UTF-8 here), universal newlines
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")

    return subprocess.CompletedProcess(["mvleval", *argv], code, text(stdout), text(stderr))


def assert_user_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Assert that a console run ended as a user error (exit 2, no traceback) whose message holds every needle;
    returns the message with its white space folded."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    text = " ".join(result.stderr.split())
    for needle in needles:
        assert needle in text, text
    return text


def invoke_run(args: list[object], langs: Iterable[str]) -> Path:
    """Run ``mvleval run`` in-process with `args` plus a ``--lang`` per language; assert it succeeded and return the
    path of the run record it printed."""
    for lang in langs:
        args += ["--lang", lang]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    match = re.search(r"Run record: (\S+\.json)", result.output.replace("\n", ""))
    assert match, result.output
    return Path(match.group(1))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, one a non-blank line."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sample_rows(record_path: Path) -> list[dict[str, Any]]:
    """The rows of a run record's per-sample file (named by the record's ``samples_file``, beside it)."""
    record = json.loads(record_path.read_text(encoding="utf-8"))
    return read_jsonl(record_path.parent / record["samples_file"])


def run_records(out: Path) -> list[Path]:
    """The run records in an output folder (``*.json`` but the manifests)."""
    return [p for p in out.glob("*.json") if not p.name.endswith(".manifest.json")]


_TINY_MODELS: dict[tuple[str, str, tuple[tuple[str, object], ...]], Path] = {}
_TINY_ROOT: list[Path] = []


def tiny_model(builder: str, name: str, /, **options: object) -> Path:
    """A tiny checkpoint built once per test session (each pytest-xdist worker is one) and shared by every test and
    module that asks for the same builder inputs: `builder` "vlm" (`build_tiny_vlm(name, ...)`, `name` a family) or
    "mblip" (`build_tiny_checkpoint(..., name, ...)`, `name` "mt5" or "bloom"), `options` the builder's keywords.
    Shared: never write into it; `shutil.copytree` it first to change a file."""
    import atexit
    import tempfile

    key = (builder, name, tuple(sorted(options.items())))
    if key not in _TINY_MODELS:
        if not _TINY_ROOT:
            _TINY_ROOT.append(Path(tempfile.mkdtemp(prefix="mvleval-tiny-models-")))
            atexit.register(shutil.rmtree, _TINY_ROOT[0], ignore_errors=True)
        folder = _TINY_ROOT[0] / f"tiny_{name}{len(_TINY_MODELS)}"  # as tmp_path_factory.mktemp("tiny_mt5") named it
        if builder == "vlm":
            from mvleval.testing.tiny_vlm import build_tiny_vlm

            _TINY_MODELS[key] = build_tiny_vlm(name, folder, **options)  # type: ignore[arg-type]
        elif builder == "mblip":
            from mvleval.testing.factory import build_tiny_checkpoint

            _TINY_MODELS[key] = build_tiny_checkpoint(folder, name, **options)  # type: ignore[arg-type]
        else:
            raise ValueError(f"unknown builder {builder!r}: 'vlm' or 'mblip'")
    return _TINY_MODELS[key]


# -- hub datasets in their published parquet schemas (the new benchmarks' tests) --------------------------------------
def image_png(seed: int, size: int = 32) -> bytes:
    """The bytes of a small, distinct PNG (colour from `seed`), as a dataset's parquet ``Image`` struct embeds them."""
    import io

    from PIL import Image

    h = hashlib.sha256(str(seed).encode()).digest()
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (h[0], h[1], h[2])).save(buf, format="PNG")
    return buf.getvalue()


def write_parquet(path: Path, rows: list[dict[str, Any]], schema: Any) -> Path:
    """Write `rows` to one parquet file with the given pyarrow schema (image columns as ``{bytes, path}`` structs)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def hub_image_type() -> Any:
    """The ``datasets`` Image feature as its parquet files store it."""
    import pyarrow as pa

    return pa.struct([("bytes", pa.binary()), ("path", pa.string())])


#: MTVQA rows (ByteDance/MTVQA's test schema; `qa_pairs` is a string, as published): texts made up in the style of the
#: real rows, including an answer with a period, a multi-pair image and a Thai row.
MTVQA_ROWS: list[dict[str, Any]] = [
    {
        "id": 101,
        "lang": "DE",
        "qa_pairs": str(
            [
                {"question": "Was kostet der Kaffee?", "answer": "2,50 €"},
                {"question": "Wie heißt das Café?", "answer": "Kaffeehaus"},
            ]
        ),
    },
    {"id": 102, "lang": "DE", "qa_pairs": str([{"question": "Welche Zahl steht auf dem Schild?", "answer": "3.5"}])},
    {"id": 201, "lang": "TH", "qa_pairs": str([{"question": "ร้านนี้ชื่ออะไร", "answer": "ก๋วยเตี๋ยว"}])},
    {"id": 301, "lang": "JA", "qa_pairs": str([{"question": "看板には何と書いてありますか？", "answer": "営業中"}])},
]


def write_mtvqa(data_root: Path, rows: list[dict[str, Any]] | None = None, shards: int = 2) -> Path:
    """ByteDance/MTVQA's test split as published (``mtvqa/data/test-0000N-of-0000M.parquet``), rows spread over
    `shards` files; each row's image a distinct PNG. Returns the data root."""
    import pyarrow as pa

    rows = [dict(r, image={"bytes": image_png(r["id"]), "path": f"{r['id']}.png"}) for r in (rows or MTVQA_ROWS)]
    schema = pa.schema(
        [("image", hub_image_type()), ("qa_pairs", pa.string()), ("lang", pa.string()), ("id", pa.int64())]
    )
    for k in range(shards):
        part = rows[k::shards]
        write_parquet(data_root / "mtvqa" / "data" / f"test-{k:05d}-of-{shards:05d}.parquet", part, schema)
    return data_root


#: CVQA rows (afaji/cvqa's schema): two pairs, a question whose options are in another script, a shared image.
CVQA_ROWS: list[dict[str, Any]] = [
    {
        "ID": "5919991144272485961_0",
        "Subset": "('Japanese', 'Japan')",
        "Question": "この料理の名前は何ですか？",
        "Translated Question": "What is the name of this dish?",
        "Options": ["寿司", "天ぷら", "ラーメン", "うどん"],
        "Translated Options": ["Sushi", "Tempura", "Ramen", "Udon"],
        "Label": 2,
        "Category": "Food",
        "img": 1,
    },
    {
        "ID": "5919991144272485961_1",
        "Subset": "('Japanese', 'Japan')",
        "Question": "この料理はどの地域の名物ですか？",
        "Translated Question": "Which region is this dish a speciality of?",
        "Options": ["北海道", "沖縄", "九州", "四国"],
        "Translated Options": ["Hokkaido", "Okinawa", "Kyushu", "Shikoku"],
        "Label": 0,
        "Category": "Traditions",
        "img": 1,
    },
    {
        "ID": "-1203948203948_0",
        "Subset": "('Spanish', 'Mexico')",
        "Question": "¿Qué se celebra en esta imagen?",
        "Translated Question": "What is celebrated in this picture?",
        "Options": ["Navidad", "Día de Muertos", "Carnaval", "Semana Santa"],
        "Translated Options": ["Christmas", "Day of the Dead", "Carnival", "Holy Week"],
        "Label": 1,
        "Category": "Traditions",
        "img": 2,
    },
    {
        "ID": "88812_0",
        "Subset": "('Amharic', 'Ethiopia')",
        "Question": "ይህ ምን ዓይነት ምግብ ነው?",
        "Translated Question": "What kind of food is this?",
        "Options": ["እንጀራ", "ዶሮ ወጥ", "ክትፎ", "ሽሮ"],
        "Translated Options": ["Injera", "Doro wat", "Kitfo", "Shiro"],
        "Label": 3,
        "Category": "Food",
        "img": 3,
    },
]


def write_cvqa(data_root: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    """afaji/cvqa's test split as published (``cvqa/data/test-00000-of-00001.parquet``). Returns the data root."""
    import pyarrow as pa

    out = []
    for r in rows or CVQA_ROWS:
        row = {k: v for k, v in r.items() if k != "img"}
        row.update(
            image={"bytes": image_png(1000 + r.get("img", 0)), "path": None},
            **{"Image Type": "Self", "Image Source": "", "License": "CC BY-SA 4.0"},
        )
        out.append(row)
    schema = pa.schema(
        [
            ("image", hub_image_type()),
            ("ID", pa.string()),
            ("Subset", pa.string()),
            ("Question", pa.string()),
            ("Translated Question", pa.string()),
            ("Options", pa.list_(pa.string())),
            ("Translated Options", pa.list_(pa.string())),
            ("Label", pa.int64()),
            ("Category", pa.string()),
            ("Image Type", pa.string()),
            ("Image Source", pa.string()),
            ("License", pa.string()),
        ]
    )
    write_parquet(data_root / "cvqa" / "data" / "test-00000-of-00001.parquet", out, schema)
    return data_root


#: xMMMU rows (neulab/PangeaBench-xmmmu's schema; `options` is a string, as published): an image in the question, images
#: as options, several images, an open numeric question, a question without an image.
XMMMU_ROWS: list[dict[str, Any]] = [
    {
        "id": "validation_Art_1",
        "question": "<image 1> Which art movement does this painting belong to?",
        "options": str(["Cubism", "Impressionism", "Baroque", "Surrealism"]),
        "answer": "B",
        "question_type": "multiple-choice",
        "images": 1,
    },
    {
        "id": "validation_Biology_3",
        "question": "Which of the following cells is a neuron?",
        "options": str(["<image 1>", "<image 2>", "<image 3>"]),
        "answer": "C",
        "question_type": "multiple-choice",
        "images": 3,
    },
    {
        "id": "validation_Math_7",
        "question": "Compare <image 1> and <image 2>. What is the area of the shaded region?",
        "options": "[]",
        "answer": "12.5",
        "question_type": "open",
        "images": 2,
    },
    {
        "id": "validation_Economics_2",
        "question": "If the price rises by 10% and demand falls by 5%, what is the elasticity?",
        "options": str(["0.5", "2", "-0.5", "5"]),
        "answer": "C",
        "question_type": "multiple-choice",
        "images": 0,
    },
]


def write_xmmmu(data_root: Path, lang: str = "en", rows: list[dict[str, Any]] | None = None) -> Path:
    """One language of neulab/PangeaBench-xmmmu as published (``xmmmu/data/<lang>-00000-of-00001.parquet``)."""
    import pyarrow as pa

    out = []
    for n, r in enumerate(rows or XMMMU_ROWS):
        row = {k: v for k, v in r.items() if k != "images"}
        for k in range(1, 8):
            row[f"image_{k}"] = {"bytes": image_png(2000 + 10 * n + k), "path": None} if k <= r["images"] else None
        out.append(row)
    fields = [
        ("id", pa.string()),
        ("question", pa.string()),
        ("options", pa.string()),
        ("answer", pa.string()),
        ("question_type", pa.string()),
    ]
    schema = pa.schema(fields + [(f"image_{k}", hub_image_type()) for k in range(1, 8)])
    write_parquet(data_root / "xmmmu" / "data" / f"{lang}-00000-of-00001.parquet", out, schema)
    return data_root


#: Kaleidoscope rows (CohereLabs/kaleidoscope's schema): an image question, a text-only question, image options, an
#: Arabic and a Russian row (answers that may come back in other scripts' letters).
KALEIDOSCOPE_ROWS: list[dict[str, Any]] = [
    {
        "question": "Welches Tier ist auf dem Bild zu sehen?",
        "options": ["Hund", "Katze", "Pferd", "Kuh"],
        "answer": 1,
        "language": "de",
        "image": "de/bio_1.png",
    },
    {
        "question": "Wie viel ist 7 mal 8?",
        "options": ["54", "56", "58", "64"],
        "answer": 1,
        "language": "de",
        "image": None,
    },
    {
        "question": "Welche Abbildung zeigt ein Dreieck?",
        "options": ["de/opt_a.png", "de/opt_b.png", "de/opt_c.png"],
        "answer": 2,
        "language": "de",
        "image": None,
    },
    {
        "question": "Какой город является столицей России?",
        "options": ["Киев", "Москва", "Минск", "Рига"],
        "answer": 1,
        "language": "ru",
        "image": None,
    },
    {
        "question": "ما هي عاصمة مصر؟",
        "options": ["القاهرة", "الرياض", "بغداد", "دمشق"],
        "answer": 0,
        "language": "ar",
        "image": "ar/geo_2.png",
    },
]


def write_kaleidoscope(data_root: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    """CohereLabs/kaleidoscope as published: ``kaleidoscope/data/train-00000-of-00001.parquet`` (metadata, image paths)
    and ``kaleidoscope/data.zip`` (the pixels, members under ``final_data/``). Returns the data root."""
    import zipfile

    import pyarrow as pa

    rows = rows or KALEIDOSCOPE_ROWS
    folder = data_root / "kaleidoscope"
    names = sorted(
        {r["image"] for r in rows if r["image"]} | {o for r in rows for o in r["options"] if o.endswith(".png")}
    )
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / "data.zip", "w") as archive:
        for n, name in enumerate(names):
            archive.writestr(f"final_data/{name}", image_png(3000 + n))
    meta = {
        "country": "x",
        "level": "secondary",
        "category_en": "Biology",
        "general_category_en": "STEM",
        "image_type": "diagram",
        "image_information": "useful",
    }
    schema = pa.schema(
        [
            ("question", pa.string()),
            ("options", pa.list_(pa.string())),
            ("answer", pa.int64()),
            ("language", pa.string()),
            ("image", pa.string()),
        ]
        + [(k, pa.string()) for k in meta]
    )
    write_parquet(folder / "data" / "train-00000-of-00001.parquet", [dict(r, **meta) for r in rows], schema)
    return data_root


#: M3Exam rows (neulab/PangeaBench-m3exam's schema; images as base64 strings, "None" where absent): digit labels (Thai),
#: letter labels, a background, two images marked in the question.
M3EXAM_ROWS: dict[str, list[dict[str, Any]]] = {
    "thai": [
        {
            "language": "thai",
            "subject_category": "math",
            "question_text": "(image)[q1.png] รูปนี้มีกี่ด้าน",
            "options": ["(1) 3", "(2) 4", "(3) 5", "(4) 6"],
            "answer_text": "2",
            "background_description": [],
            "images": 1,
        },
    ],
    "english": [
        {
            "language": "english",
            "subject_category": "natural-science",
            "question_text": "Compare (image)[a.png] and (image)[b.png]. Which shows a mammal?",
            "options": ["A. the first", "B. the second"],
            "answer_text": "B",
            "background_description": ["Two animals were photographed."],
            "images": 2,
        },
    ],
}


def write_m3exam(data_root: Path) -> Path:
    """neulab/PangeaBench-m3exam as published, one split per language name (``m3exam/data/<name>-00000-of-00001.parquet``)."""
    import base64

    import pyarrow as pa

    fields = [
        ("language", pa.string()),
        ("subject_category", pa.string()),
        ("question_text", pa.string()),
        ("options", pa.list_(pa.string())),
        ("answer_text", pa.string()),
        ("background_description", pa.list_(pa.string())),
    ]
    schema = pa.schema(fields + [(f"image_{k}", pa.string()) for k in range(10)])
    for name, rows in M3EXAM_ROWS.items():
        out = []
        for n, r in enumerate(rows):
            row = {k: v for k, v in r.items() if k != "images"}
            for k in range(10):
                row[f"image_{k}"] = (
                    base64.b64encode(image_png(4000 + 10 * n + k)).decode() if k < r["images"] else "None"
                )
            out.append(row)
        write_parquet(data_root / "m3exam" / "data" / f"{name}-00000-of-00001.parquet", out, schema)
    return data_root


# -- a real `transformers serve` on 127.0.0.1 ---------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TransformersServe:
    """`transformers serve MODEL_DIR` on 127.0.0.1 (CPU, float32, offline, its own hub cache under `root`), started by
    `start()` and stopped by `stop()`; `url` is its OpenAI-compatible base URL. Starting takes ~25 s on 2 cores."""

    def __init__(self, model_dir: Path, root: Path) -> None:
        import pytest

        exe = shutil.which("transformers")
        if exe is None:
            pytest.skip("the transformers CLI is not installed")
        pytest.importorskip("fastapi")
        pytest.importorskip("uvicorn")
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "hf-cache").mkdir(exist_ok=True)  # /v1/models lists the hub cache, and fails when there is none
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(root / "hf-cache")}
        self.log = (root / "serve.log").open("w")
        argv = [exe, "serve", str(model_dir), "--device", "cpu", "--dtype", "float32", "--host", "127.0.0.1"]
        self.proc = subprocess.Popen(
            [*argv, "--port", str(self.port)], stdout=self.log, stderr=subprocess.STDOUT, env=env
        )

    def wait(self, timeout: float = 180) -> TransformersServe:
        """Block until the server answers /health (fail the test if it exits or takes longer than `timeout`)."""
        import time

        import httpx
        import pytest

        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"transformers serve exited: {(self.root / 'serve.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not start within {timeout:.0f} s")
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
