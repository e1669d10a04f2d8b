"""check_data / render_report: counts per language, missing files, bad annotations, escapes; all reported at once.

Uses the native-format fixtures in tests/data/tasks (see test_task_contract.py); expected counts were read off those
files by hand (XVNLI en test: 5 lines, one with gold_label "-", 4 pairs over 2 images; MaRVL zh test: 2 statements
over 4 images; xFlickrCo de test: 3 images).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from mvleval.benchmarks.datacheck import MAX_MISSING_SHOWN, DataReport, check_data, render_report
from mvleval.benchmarks.registry import load_task
from mvleval.util.errors import MvlevalError

FIXTURES = Path(__file__).resolve().parent / "data" / "tasks"


def _touch(root: Path, *relatives: str) -> None:
    """Real (small) JPEGs: data check opens every image."""
    from tests.helpers import placeholder_images

    placeholder_images([root / rel for rel in relatives], size=16)


def _copy_fixtures(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data)
    return data


def test_complete_data_is_ok(tmp_path: Path) -> None:
    _touch(tmp_path, "flickr30k/759822302.jpg", "flickr30k/2245916742.jpg")
    report = check_data(load_task("xvnli"), FIXTURES, tmp_path, languages=["en"])
    assert report.ok and report.split == "test" and report.task == "xvnli"
    (en,) = report.languages
    # 4 usable pairs (the "-" line is dropped), 2 distinct images (3 pairs share 759822302)
    assert (en.n_examples, en.n_images_referenced, en.n_missing_images, en.error) == (4, 2, 0, None)
    assert en.annotation_file == FIXTURES / "iglue/datasets/XVNLI/annotations/en/test.jsonl"
    assert report.source_url == load_task("xvnli").source_url
    text = render_report(report)
    assert "All annotation and image files are present." in text and "Problems" not in text


def test_missing_images_are_counted_and_the_first_few_listed(tmp_path: Path) -> None:
    _touch(tmp_path, "marvl/zh/images/82-铅笔/82-6.jpg")
    report = check_data(load_task("marvl"), FIXTURES, tmp_path, languages=["zh"])
    (zh,) = report.languages
    assert (zh.n_examples, zh.n_images_referenced, zh.n_missing_images) == (2, 4, 3)
    assert [p.name for p in zh.missing_images] == ["82-1.jpg", "82-10.jpg", "82-12.jpg"]
    assert not zh.ok and not report.ok
    assert "zh: 3 images missing, e.g. " in render_report(report)


def test_only_the_first_missing_paths_are_kept(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = load_task("xvnli").annotation_path(data, "fr", "test")
    path.parent.mkdir(parents=True)
    rows = [
        {"gold_label": "neutral", "sentence2": f"Phrase {i}.", "pairID": f"p{i}", "Flikr30kID": str(1000 + i)}
        for i in range(8)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (fr,) = check_data(load_task("xvnli"), data, tmp_path / "images", languages=["fr"]).languages
    assert fr.n_missing_images == 8 and len(fr.missing_images) == MAX_MISSING_SHOWN == 5
    assert [p.name for p in fr.missing_images] == [f"{1000 + i}.jpg" for i in range(5)]
    assert "(+3 more)" in render_report(check_data(load_task("xvnli"), data, tmp_path / "images", languages=["fr"]))


def test_every_language_is_checked_even_after_a_failure(tmp_path: Path) -> None:
    _touch(tmp_path, "flickr30k/759822302.jpg", "flickr30k/2245916742.jpg")
    report = check_data(load_task("xvnli"), FIXTURES, tmp_path)  # fixtures hold only en (test) and ar (train_1)
    by_lang = {r.lang: r for r in report.languages}
    assert list(by_lang) == ["ar", "en", "es", "fr", "ru"]
    assert by_lang["en"].ok
    for lang in ("ar", "es", "fr", "ru"):
        assert by_lang[lang].n_examples == 0 and "not found" in (by_lang[lang].error or "")
        assert str(by_lang[lang].annotation_file) in (by_lang[lang].error or "")
        assert not by_lang[lang].annotation_found
    assert not report.ok
    text = render_report(report)
    assert text.count("not found") == 4 and text.count("no annotation file") == 4 and "github.com/e-bug/iglue" in text


def test_a_bad_line_is_reported_with_file_and_line(tmp_path: Path) -> None:
    data = _copy_fixtures(tmp_path)
    path = load_task("xflickrco").annotation_path(data, "de", "test")
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"sentences": ["abgeschnitten"\n')
    (de,) = check_data(load_task("xflickrco"), data, tmp_path / "images", languages=["de"]).languages
    assert de.error is not None and f"{path}:4" in de.error and "not valid JSON" in de.error
    assert de.n_examples == 0 and not de.ok and de.annotation_found
    assert "bad annotations" in render_report(
        check_data(load_task("xflickrco"), data, tmp_path / "images", languages=["de"])
    )


@pytest.mark.parametrize("value", ["../../etc/passwd", "/etc/passwd"])
def test_escaping_image_paths_are_reported_with_file_and_line(tmp_path: Path, value: str) -> None:
    data = _copy_fixtures(tmp_path)
    images = tmp_path / "images"
    outside = tmp_path / "outside.jpg"
    outside.touch()
    (images / "flickr30k").mkdir(parents=True)
    os.symlink(outside, images / "flickr30k" / "link.jpg")
    path = load_task("xflickrco").annotation_path(data, "de", "test")
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"sentences": ["x"], "id": "evil", "img_path": value}) + "\n")
    (de,) = check_data(load_task("xflickrco"), data, images, languages=["de"]).languages
    assert de.error is not None and f"{path}:4" in de.error
    assert "image root" in de.error


def test_duplicate_ids_are_reported(tmp_path: Path) -> None:
    data = _copy_fixtures(tmp_path)
    path = load_task("xflickrco").annotation_path(data, "de", "test")
    first = path.read_text(encoding="utf-8").splitlines()[0]
    with path.open("a", encoding="utf-8") as fh:
        fh.write(first + "\n")
    (de,) = check_data(load_task("xflickrco"), data, tmp_path, languages=["de"]).languages
    assert de.error is not None and "'1007129816' already used" in de.error
    assert f"{path}:4" in de.error and f"{path}:1" in de.error


def test_requested_split_and_languages_are_used(tmp_path: Path) -> None:
    _touch(tmp_path, "flickr30k/2487069642.jpg")
    report = check_data(load_task("xvnli"), FIXTURES, tmp_path, languages=["ar", "ar"], split="train_1")
    assert report.split == "train_1" and [r.lang for r in report.languages] == ["ar"]
    assert report.ok and report.languages[0].n_examples == 3


def test_wrong_requests_raise() -> None:
    task = load_task("marvl")
    with pytest.raises(MvlevalError, match="no language 'xx'"):
        check_data(task, FIXTURES, FIXTURES, languages=["xx"])
    with pytest.raises(MvlevalError, match="no split 'dev'"):
        check_data(task, FIXTURES, FIXTURES, split="dev")


def test_report_is_a_frozen_json_ready_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = check_data(load_task("xm3600"), FIXTURES, tmp_path, languages=["de", "zh"])
    assert isinstance(report, DataReport)
    with pytest.raises(AttributeError):
        report.split = "x"  # type: ignore[misc]
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["ok"] is False and [r["n_missing_images"] for r in as_dict["languages"]] == [3, 3]
    assert [r["n_examples"] for r in as_dict["languages"]] == [3, 3]
    render_report(report)
    assert capsys.readouterr() == ("", ""), "check_data and render_report must not print"


def test_render_report_lists_one_row_per_language(tmp_path: Path) -> None:
    _touch(tmp_path, *(f"xm3600/{k}.jpg" for k in ("d89a4889331ce042", "74f94963ee1e135d", "eb4cdfd93268c52c")))
    text = render_report(check_data(load_task("xm3600"), FIXTURES, tmp_path, languages=["de", "uk"]))
    rows = [line.split() for line in text.splitlines() if line.split()[:1] in (["de"], ["uk"])]
    assert rows == [["de", "3", "3", "0", "ok"], ["uk", "3", "3", "0", "ok"]]
    assert text.splitlines()[0] == "xm3600 v2, split test"


def test_unreadable_images_are_reported(tmp_path: Path) -> None:
    """A text file named .jpg and a truncated JPEG exist but cannot be used: data check fails and names them."""
    _touch(tmp_path, "flickr30k/759822302.jpg", "flickr30k/2245916742.jpg")
    (tmp_path / "flickr30k/759822302.jpg").write_text("not an image")
    good = tmp_path / "flickr30k/2245916742.jpg"
    from PIL import Image

    Image.effect_noise((64, 64), 40).convert("RGB").save(good, quality=90)
    good.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # truncated
    report = check_data(load_task("xvnli"), FIXTURES, tmp_path, languages=["en"])
    (en,) = report.languages
    assert not report.ok and en.n_unreadable_images == 2 and en.n_missing_images == 0
    text = render_report(report)
    assert (
        "en: 2 unreadable images; replace them" in text
        and "flickr30k/759822302.jpg: not an image Pillow can read." in text
    )
    assert "flickr30k/2245916742.jpg: cannot be decoded (" in text


def test_a_link_out_of_the_image_root_is_followed_and_its_target_checked(tmp_path: Path) -> None:
    """A symbolic link the user made is followed wherever it leads (issue 21 item 2); what it points to must still be
    an image: a link to a private text file is reported as not an image, a link to a real image is fine."""
    data = _copy_fixtures(tmp_path)
    images = tmp_path / "images"
    (images / "flickr30k").mkdir(parents=True)
    secret = tmp_path / "elsewhere" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("password=hunter2\n")
    os.symlink(secret, images / "flickr30k" / "link.jpg")
    path = load_task("xflickrco").annotation_path(data, "de", "test")
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"sentences": ["x"], "id": "evil", "img_path": "link.jpg"}) + "\n")
    report = check_data(load_task("xflickrco"), data, images, languages=["de"])
    (de,) = report.languages
    assert de.error is None and de.n_unreadable_images == 1 and not report.ok
    assert "flickr30k/link.jpg: not an image Pillow can read." in render_report(report)
    assert "hunter2" not in render_report(report)
    from PIL import Image

    Image.new("RGB", (8, 8), (1, 2, 3)).save(secret.parent / "real.png")
    (images / "flickr30k" / "link.jpg").unlink()
    os.symlink(secret.parent / "real.png", images / "flickr30k" / "link.jpg")
    (de,) = check_data(load_task("xflickrco"), data, images, languages=["de"]).languages
    assert de.error is None and de.n_unreadable_images == 0


def test_missing_data_root(tmp_path: Path) -> None:
    with pytest.raises(MvlevalError, match="data root not found"):
        check_data(load_task("xvnli"), tmp_path / "nope", tmp_path, languages=["en"])


# -- files saved with a UTF-8 byte-order mark (Windows exports) --------------------------------------------------------
@pytest.mark.parametrize("task", ["xgqa", "xm3600", "xvnli", "xflickrco", "marvl", "maxm"])
def test_files_with_a_byte_order_mark_are_read_like_the_others(
    task: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 29: an annotation file with a BOM was refused ('not valid JSON', 'line is not valid JSON')."""
    from tests.helpers import cli

    data = _copy_fixtures(tmp_path)
    for path in data.rglob("*.json*"):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())

    def check(root: Path) -> list[tuple[str, int, str | None]]:
        code, out, err = cli(
            capsys, "data", "check", "--task", task, "--data-root", root, "--image-root", tmp_path / "img", "--json"
        )
        assert code in (0, 1) and "Traceback" not in err, err
        return [(r["lang"], r["n_examples"], r["error"]) for r in json.loads(out)["languages"] if r["annotation_found"]]

    plain, with_bom = check(FIXTURES), check(data)
    assert with_bom == plain and any(n for _, n, _ in plain), with_bom


def test_a_benchmark_folder_with_a_byte_order_mark_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.helpers import cli
    from tests.test_custom_benchmark import make_chart_benchmark

    folder = make_chart_benchmark(tmp_path / "charts", [])
    for name in ("benchmark.yaml", "data.jsonl"):
        (folder / name).write_bytes(b"\xef\xbb\xbf" + (folder / name).read_bytes())
    code, out, err = cli(capsys, "data", "check", "--task", folder, "--json")
    assert code == 0, err
    assert json.loads(out)["ok"] is True
    code, out, err = cli(capsys, "tasks", "--task", folder, "--json")
    assert code == 0, err
