"""What a new user hit in the first hour (issue 16), each re-tried as the console script answers it (in-process through
`tests.helpers.run_cli`, which tests/test_cli_inprocess.py holds to the installed script; every command's help through
the installed script itself): finished records are never replaced silently, a merged adapter is not applied twice,
empty languages and bad flags are errors before anything is written, written files follow the umask, a failed run
leaves nothing behind, and the user is told what is happening."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.helpers import assert_user_error, console_script, run_cli, run_records


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from mvleval.demo.command import build_demo_data

    return build_demo_data(tmp_path_factory.mktemp("first-hour"), n_train=0, n_test=6)


def _run(model: Path, demo: tuple[Path, Path], out: Path, *extra: object) -> subprocess.CompletedProcess[str]:
    data_root, image_root = demo
    return run_cli(
        "run",
        "--task",
        "xgqa",
        "--model",
        model,
        "--data-root",
        data_root,
        "--image-root",
        image_root,
        "--lang",
        "en",
        "--out",
        out,
        "--num-beams",
        "1",
        "--max-new-tokens",
        "3",
        *extra,
    )


def test_a_finished_record_is_not_replaced_silently(
    demo: tuple[Path, Path], tiny_mt5_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    first = _run(tiny_mt5_dir, demo, out)
    assert first.returncode == 0, first.stderr
    [record] = run_records(out)
    before = record.read_bytes()
    again = _run(tiny_mt5_dir, demo, out)
    assert_user_error(again, "already exists", str(record), "--overwrite")
    # the plain-generate path has the same identity (same predictions): refused too, not written over the first
    assert_user_error(_run(tiny_mt5_dir, demo, out, "--no-shared-prefix"), "already exists")
    assert record.read_bytes() == before
    replaced = _run(tiny_mt5_dir, demo, out, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert run_records(out) == [record]


def test_an_adapter_merged_into_the_checkpoint_is_refused(
    demo: tuple[Path, Path], tiny_mt5_dir: Path, tmp_path: Path
) -> None:
    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    exported = tmp_path / "export4"
    shutil.copytree(tiny_mt5_dir, exported)
    (exported / "mvleval_export.json").write_text(json.dumps({"source": str(adapter.resolve()), "bits": 4}))
    out = tmp_path / "runs"
    assert_user_error(_run(exported, demo, out, "--adapter", adapter), "already merged", "drop --adapter")
    assert not list(out.glob("*"))
    # a copy of the adapter is the same adapter: recognised by its content (mvleval export records its fingerprint)
    from mvleval.backends.hf.adapter import adapter_fingerprint

    (adapter / "adapter_model.safetensors").write_bytes(b"lora weights")
    (exported / "mvleval_export.json").write_text(
        json.dumps({"source": str(adapter.resolve()), "source_fingerprint": adapter_fingerprint(adapter), "bits": 4})
    )
    copy = shutil.copytree(adapter, tmp_path / "elsewhere" / "lora-copy")
    assert_user_error(_run(exported, demo, out, "--adapter", copy), "already merged", "of which", "is a copy")
    assert not list(out.glob("*"))


def test_a_language_without_examples_is_an_error(demo: tuple[Path, Path], tiny_mt5_dir: Path, tmp_path: Path) -> None:
    data_root = tmp_path / "data"
    shutil.copytree(demo[0], data_root, ignore=shutil.ignore_patterns("images"))
    (data_root / "xgqa/data/few_shot/en/test.json").write_text("{}")
    out = tmp_path / "runs"
    assert_user_error(_run(tiny_mt5_dir, (data_root, demo[1]), out), "no examples of the language", "(en)", "test.json")
    assert not out.exists() or not list(out.glob("*"))


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (("--num-beams", "0"), "--num-beams must be at least 1"),
        (("--max-new-tokens", "0"), "--max-new-tokens must be at least 1"),
    ],
)
def test_generation_flags_are_checked_before_anything_is_loaded(
    flags: tuple[str, ...], needle: str, demo: tuple[Path, Path], tiny_mt5_dir: Path, tmp_path: Path
) -> None:
    data_root, image_root = demo
    out = tmp_path / "runs"
    r = run_cli(
        "run",
        "--task",
        "xgqa",
        "--model",
        tiny_mt5_dir,
        "--data-root",
        data_root,
        "--image-root",
        image_root,
        "--lang",
        "en",
        "--out",
        out,
        *flags,
    )
    assert_user_error(r, needle)
    assert not out.exists()


def test_a_truncated_weight_file_is_named(demo: tuple[Path, Path], tiny_mt5_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "truncated"
    shutil.copytree(tiny_mt5_dir, model)
    weights = next(model.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:5])
    assert_user_error(_run(model, demo, tmp_path / "runs"), str(weights), "truncated or damaged")


def test_written_files_follow_the_umask(demo: tuple[Path, Path], tiny_mt5_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    old = os.umask(0o022)
    try:
        assert _run(tiny_mt5_dir, demo, out).returncode == 0
    finally:
        os.umask(old)
    [record] = run_records(out)
    for path in (record, out / json.loads(record.read_text())["samples_file"]):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, (path, oct(path.stat().st_mode))


def test_a_run_that_fails_before_generating_leaves_nothing(
    demo: tuple[Path, Path], tiny_mt5_dir: Path, tmp_path: Path
) -> None:
    data_root, image_root = demo
    images = tmp_path / "images"
    shutil.copytree(image_root, images)
    questions = json.loads((data_root / "xgqa/data/few_shot/en/test.json").read_text())
    first = images / "gqa" / f"{sorted(q['imageId'] for q in questions.values())[0]}.jpg"
    good = first.read_bytes()
    first.write_text("not a jpeg")
    out = tmp_path / "runs"
    r = run_cli(
        "run",
        "--task",
        "xgqa",
        "--model",
        tiny_mt5_dir,
        "--data-root",
        data_root,
        "--image-root",
        images,
        "--lang",
        "en",
        "--out",
        out,
        "--num-beams",
        "1",
        "--batch-size",
        "64",
    )
    assert_user_error(r, str(first))
    assert not list(out.glob("*")), "no manifest or partial file after a run that generated nothing"
    first.write_bytes(good)  # the user fixes the image and runs the same command again
    r = run_cli(
        "run",
        "--task",
        "xgqa",
        "--model",
        tiny_mt5_dir,
        "--data-root",
        data_root,
        "--image-root",
        images,
        "--lang",
        "en",
        "--out",
        out,
        "--num-beams",
        "1",
        "--batch-size",
        "64",
    )
    assert r.returncode == 0, r.stderr


def test_the_user_is_told_what_loads_and_the_batch_size_is_recorded(
    demo: tuple[Path, Path], tiny_mt5_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    r = _run(tiny_mt5_dir, demo, out, "--batch-size", "auto")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stderr.split())
    assert f"loading {tiny_mt5_dir}" in text and "--batch-size auto:" in text
    [record] = run_records(out)
    picked = json.loads(record.read_text())["provenance"]["batch_size"]
    assert isinstance(picked, int) and picked >= 1 and f"--batch-size auto: {picked}" in text


def test_data_check_finds_an_image_pillow_cannot_open(demo: tuple[Path, Path], tmp_path: Path) -> None:
    data_root, image_root = demo
    images = tmp_path / "images"
    shutil.copytree(image_root, images)
    bad = next((images / "gqa").glob("*.jpg"))
    bad.write_text("a text file named .jpg")
    r = run_cli("data", "check", "--task", "xgqa", "--data-root", data_root, "--image-root", images, "--lang", "en")
    assert r.returncode == 1 and "unreadable" in r.stdout and bad.name in r.stdout
    r = run_cli("data", "check", "--task", "xgqa", "--data-root", tmp_path / "nope", "--lang", "en")
    assert_user_error(r, "data root not found")
    # a missing image root is named as such (the annotations are still checked: images may come later)
    r = run_cli(
        "data",
        "check",
        "--task",
        "xgqa",
        "--data-root",
        data_root,
        "--image-root",
        tmp_path / "no-images",
        "--lang",
        "en",
    )
    assert r.returncode == 1 and "image root not found" in r.stdout and "--image-root DIR" in r.stdout, r.stdout


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("--lang", "german"), ("its code is 'de'",)),
        (("--lang", "DE"), ("Did you mean 'de'?",)),
        (("--lang", "de,zh"), ("pass --lang de --lang zh",)),
        (("--lang", "en", "--split", "train_7"), ("holds the test split", "pass --split test")),
    ],
)
def test_helpful_errors_for_what_users_type(
    args: tuple[str, ...], needles: tuple[str, ...], demo: tuple[Path, Path], tmp_path: Path
) -> None:
    data_root, image_root = demo
    r = run_cli("run", "--task", "xgqa", "--model", tmp_path, "--data-root", data_root, "--out", tmp_path / "o", *args)
    assert_user_error(r, *needles)


def test_task_case_data_root_level_and_adapter_as_model(demo: tuple[Path, Path], tmp_path: Path) -> None:
    data_root, _ = demo
    assert_user_error(
        run_cli("run", "--task", "XGQA", "--model", "m", "--data-root", data_root), "Did you mean 'xgqa'?"
    )
    assert_user_error(
        run_cli("run", "--task", "xgqa", "--model", "m", "--data-root", data_root.parent, "--lang", "en"),
        "one level too shallow",
        f"--data-root {data_root}",
    )
    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "base_model_name_or_path": "base-ckpt"})
    )
    assert_user_error(
        run_cli(
            "run",
            "--task",
            "xgqa",
            "--model",
            adapter,
            "--data-root",
            data_root,
            "--lang",
            "en",
            "--out",
            tmp_path / "o",
        ),
        "LoRA adapter folder",
        "--adapter",
        "base-ckpt",
    )
    # an adapter made by `mvleval train` names its base in train_config.json
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": None}))
    (adapter / "train_config.json").write_text(json.dumps({"base_model": "/models/mblip-base"}))
    assert_user_error(
        run_cli(
            "run",
            "--task",
            "xgqa",
            "--model",
            adapter,
            "--data-root",
            data_root,
            "--lang",
            "en",
            "--out",
            tmp_path / "o",
        ),
        "LoRA adapter folder",
        "--adapter",
        "/models/mblip-base",
    )


def test_verbose_flag_after_the_command(demo: tuple[Path, Path], tiny_mt5_dir: Path, tmp_path: Path) -> None:
    r = _run(tiny_mt5_dir, demo, tmp_path / "runs", "-v")
    assert r.returncode == 0, r.stderr
    assert "INFO" in r.stderr or "loaded" in r.stderr


def test_a_dataset_folder_linked_into_the_image_root_is_accepted(demo: tuple[Path, Path], tmp_path: Path) -> None:
    """images/gqa -> /elsewhere/gqa (the images on another disk) is the user's layout: accepted. Links inside the
    dataset are followed too, wherever they lead (issue 21 item 2): what they point to must decode as an image, so a
    link to a private text file (something a downloaded dataset could ship) is reported as not an image."""
    data_root, image_root = demo
    elsewhere = tmp_path / "other-disk" / "gqa"
    shutil.copytree(image_root / "gqa", elsewhere)
    images = tmp_path / "images"
    images.mkdir()
    (images / "gqa").symlink_to(elsewhere, target_is_directory=True)
    r = run_cli("data", "check", "--task", "xgqa", "--data-root", data_root, "--image-root", images, "--lang", "en")
    assert r.returncode == 0, r.stdout + r.stderr
    kept_elsewhere = tmp_path / "kept-elsewhere.jpg"
    victim = sorted(elsewhere.glob("*.jpg"))[0]
    shutil.copy(victim, kept_elsewhere)
    victim.unlink()
    victim.symlink_to(kept_elsewhere)  # a link inside the dataset, leading out of it, to an image
    r = run_cli("data", "check", "--task", "xgqa", "--data-root", data_root, "--image-root", images, "--lang", "en")
    assert r.returncode == 0, r.stdout + r.stderr
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n", encoding="utf-8")
    victim.unlink()
    victim.symlink_to(secret)  # a link to a private text file
    r = run_cli("data", "check", "--task", "xgqa", "--data-root", data_root, "--image-root", images, "--lang", "en")
    text = " ".join(r.stdout.split())
    assert r.returncode == 1 and f"{victim.name}: not an image Pillow can read" in text and "hunter2" not in text, text


def test_train_and_export_refuse_an_unwritable_out_before_working(tiny_mt5_dir: Path, tmp_path: Path) -> None:
    from mvleval.demo.command import build_demo_data

    data_root, image_root = build_demo_data(tmp_path / "d", n_train=4, n_test=1)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    r = run_cli(
        "train",
        "--model",
        tiny_mt5_dir,
        "--task",
        "xgqa",
        "--split",
        "train_4",
        "--data-root",
        data_root,
        "--lang",
        "en",
        "--out",
        blocker / "ft",
        "--max-steps",
        "1",
    )
    assert_user_error(r, "not writable", str(blocker / "ft"), "--out")
    train_dir = tmp_path / "ft"
    r = run_cli(
        "train",
        "--model",
        tiny_mt5_dir,
        "--task",
        "xgqa",
        "--split",
        "train_4",
        "--data-root",
        data_root,
        "--lang",
        "en",
        "--out",
        train_dir,
        "--max-steps",
        "1",
    )
    assert r.returncode == 0, r.stderr
    r = run_cli("export", train_dir, "--out", blocker / "export", "--bits", "32")
    assert_user_error(r, "not writable", str(blocker / "export"))
    weights = train_dir / "adapter_model.safetensors"
    assert stat.S_IMODE(weights.stat().st_mode) == stat.S_IMODE(0o666 & ~_umask()), oct(weights.stat().st_mode)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _commands() -> list[tuple[str, ...]]:
    """Every command of the CLI, read from `mvleval -h` and the groups' own help (data, baseline)."""

    def listed(*group: str) -> list[str]:
        text = console_script(*group, "-h").stdout
        block = text.split("Commands:", 1)[1]
        return [line.split()[0] for line in block.splitlines() if line.startswith("  ") and line.split()]

    out: list[tuple[str, ...]] = []
    for name in listed():
        sub = console_script(name, "-h").stdout
        out += [(name, s) for s in listed(name)] if "Commands:" in sub else [(name,)]
    return out


def test_help_shows_plain_metavars_for_every_command() -> None:
    """Item 15: every command's --help, through the console script: the usage line names arguments as click does (RUN,
    [RECORDS...]; typer writes {RUN}), no type tags (<path>, <bool>, <list[str]>), required options marked, lines up
    to 120 columns on a wide terminal."""
    commands = _commands()
    assert {("run",), ("score",), ("export",), ("data", "check"), ("baseline", "bless")} <= set(commands), commands
    for cmd in commands:
        proc = console_script(*cmd, "-h")
        assert proc.returncode == 0, (cmd, proc.stderr)
        text = proc.stdout
        usage = text.splitlines()[0]
        assert usage.startswith(f"Usage: mvleval {' '.join(cmd)} [OPTIONS]") and "{" not in usage, (cmd, usage)
        for tag in ("<path>", "<bool>", "<list[", "<int>", "<str>", "<text>", "<float>"):
            assert tag not in text, (cmd, tag, text)
        assert max(len(line) for line in text.splitlines()) <= 120, cmd
    run_help = " ".join(console_script("run", "-h").stdout.split())
    assert "--model MODEL Checkpoint" in run_help and "[required]" in run_help
    assert "Usage: mvleval score [OPTIONS] RUN" in console_script("score", "-h").stdout
    assert "Usage: mvleval leaderboard [OPTIONS] [RECORDS...]" in console_script("leaderboard", "-h").stdout


def test_leaderboard_rows_follow_the_weights_not_the_typed_path(demo: tuple[Path, Path], tmp_path: Path) -> None:
    """Item 1, through the console script: two different checkpoints of the same shape (same file names and sizes),
    each run as `--model ckpt` from its own folder, are two leaderboard rows; the same checkpoint run as `ckpt` from
    its folder and as `a/ckpt` from the parent is one row (the older record superseded)."""
    from mvleval.testing.factory import build_tiny_checkpoint

    for name, seed in (("a", 0), ("b", 1)):
        build_tiny_checkpoint(tmp_path / name / "ckpt", "mt5", seed=seed)
    sizes = [sorted((p.name, p.stat().st_size) for p in (tmp_path / n / "ckpt").iterdir()) for n in ("a", "b")]
    assert sizes[0] == sizes[1]  # only the content tells them apart
    data_root, image_root = demo
    flags = (
        "--task",
        "xgqa",
        "--data-root",
        data_root,
        "--image-root",
        image_root,
        "--lang",
        "en",
        "--num-beams",
        "1",
        "--max-new-tokens",
        "3",
    )
    for name in ("a", "b"):
        proc = run_cli("run", "--model", "ckpt", *flags, "--out", tmp_path / "runs", cwd=tmp_path / name)
        assert proc.returncode == 0, proc.stderr

    def rows(*folders: Path) -> list[list[str]]:
        out = tmp_path / "board"
        proc = run_cli("leaderboard", *folders, "--out", out)
        assert proc.returncode == 0, proc.stderr
        import csv

        with (out / "leaderboard.csv").open(encoding="utf-8") as fh:
            return sorted({(r["row"], r["run_id"]) for r in csv.DictReader(fh)})  # type: ignore[return-value]

    two = rows(tmp_path / "runs")
    assert len(two) == 2 and len({label for label, _ in two}) == 2, two
    assert all("weights " in label for label, _ in two), two  # typed alike: the labels name the weights

    proc = run_cli("run", "--model", "a/ckpt", *flags, "--out", tmp_path / "runs2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    merged = rows(tmp_path / "runs", tmp_path / "runs2")
    assert len(merged) == 2, merged  # a's two records are one row (the newer wins), b's is the other
    board = (tmp_path / "board" / "leaderboard.md").read_text(encoding="utf-8")
    assert "Superseded" in board and board.count("| a/ckpt (32-bit)") + board.count("a/ckpt (32-bit)") >= 1, board


def test_train_says_what_loads_and_where_it_resumed(tiny_mt5_dir: Path, tmp_path: Path) -> None:
    """Item 11 for `train`, without -v: the base model being loaded is named before the bar, and --resume says which
    checkpoint and step it continues from."""
    from mvleval.demo.command import build_demo_data

    data_root, _ = build_demo_data(tmp_path / "data", n_train=4, n_test=1)
    flags = (
        "train",
        "--model",
        tiny_mt5_dir,
        "--task",
        "xgqa",
        "--split",
        "train_4",
        "--data-root",
        data_root,
        "--out",
        tmp_path / "ft",
        "--max-steps",
        "4",
        "--batch-size",
        "2",
        "--set",
        "save_every=2",
    )
    first = run_cli(*flags)
    assert first.returncode == 0, first.stderr
    assert f"loading {tiny_mt5_dir}" in first.stderr, first.stderr
    again = run_cli(*flags, "--resume")
    assert again.returncode == 0, again.stderr
    text = " ".join(again.stderr.split())
    assert "resumed from" in text and "step-4" in text and "(step 4 of 4)" in text, text


# -- the second hour (issue 29) ----------------------------------------------------------------------------------------
def test_score_says_it_rewrote_the_record_and_what_changed(
    demo: tuple[Path, Path], tiny_mt5_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    assert _run(tiny_mt5_dir, demo, out).returncode == 0
    [record] = run_records(out)
    samples = out / json.loads(record.read_text())["samples_file"]
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    for row in rows:
        row["prediction"] = row["references"][0]
    samples.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    before = json.loads(record.read_text())["scores"]["exact_match"]["mean"]
    r = run_cli("score", record)
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert f"Rewrote the run record {record} and its per-sample file {samples} in place" in text
    assert f"exact_match: mean {before * 100:.1f} -> 100.0; en {before * 100:.1f} -> 100.0" in text, text
    again = run_cli("score", record)
    assert again.returncode == 0 and "Scores unchanged." in again.stdout and "Rewrote the run record" in again.stdout


def test_overwrite_removes_the_replaced_runs_report(
    demo: tuple[Path, Path], tiny_mt5_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    assert _run(tiny_mt5_dir, demo, out).returncode == 0
    [record] = run_records(out)
    assert run_cli("report", record).returncode == 0
    page = record.with_suffix(".html")
    assert page.is_file()
    r = _run(tiny_mt5_dir, demo, out, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert not page.exists(), "the replaced run's report is left beside the new record"
    assert f"removed {page}" in " ".join(r.stderr.split())
    assert run_records(out) == [record]
