"""The data stage on real exports' rough edges (issue 9): every skip explained, nothing outside the
dataset read, nothing half-written or left behind. Each test failed on the code before its fix."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from odstack import tfrecord
from odstack.data.convert import DataSettings, convert
from odstack.errors import DatasetError, StrictModeError
from odstack.tfrecord import Keys
from tests.data.test_convert import _cli, csv_dataset
from tests.helpers import make_image


def run(src: Path, out: Path, **settings) -> dict:
    return convert(DataSettings(src=src, out=out, **settings)).report


def names_in(out: Path) -> set[str]:
    return {e[Keys.FILENAME][0].decode() for e in tfrecord.read_examples(sorted(out.glob("*.record")))}


def voc_xml(filename: str, objects: list[tuple[str, int, int, int, int]], size=(64, 48)) -> str:
    body = "".join(f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>"
                   f"<ymax>{d}</ymax></bndbox></object>" for n, a, b, c, d in objects)
    return (f"<annotation><folder>images</folder><filename>{filename}</filename><size><width>{size[0]}</width>"
            f"<height>{size[1]}</height><depth>3</depth></size>{body}</annotation>")


# -- 1. all images skipped: the reasons are printed and kept -------------------------------------------

def test_everything_skipped_still_prints_the_summary_and_keeps_the_report(tmp_path, caplog):
    src = csv_dataset(tmp_path / "gone", [["nope.jpg", 64, 48, "a", 1, 1, 9, 9]])
    with caplog.at_level(logging.INFO, logger="odstack"), pytest.raises(DatasetError) as error:
        run(src, tmp_path / "out")
    assert "missing_image" in caplog.text and "nope.jpg" in caplog.text  # the reasons "above"
    kept = tmp_path / "out.failed-report.json"
    assert str(kept) in str(error.value)
    report = json.loads(kept.read_text())
    assert [(i["reason"], i["image"]) for i in report["issues"]] == [("missing_image", "nope.jpg")]
    assert (tmp_path / "out.failed-report.html").is_file()
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    # a later successful run removes the stale failure report
    make_image(src / "nope.jpg")
    run(src, tmp_path / "out", val_fraction=0)
    assert not kept.exists() and not (tmp_path / "out.failed-report.html").exists()


def test_cli_everything_skipped_exits_2_with_the_reasons(tmp_path):
    src = csv_dataset(tmp_path / "gone", [["nope.jpg", 64, 48, "a", 1, 1, 9, 9]])
    result = _cli("data", f"src={src}", f"out={tmp_path / 'out'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    summary = result.stderr.index("missing_image")
    assert summary < result.stderr.index("every image was skipped")
    assert "failed-report.json" in result.stderr


def test_strict_failure_keeps_its_report_too(tmp_path):
    src = csv_dataset(tmp_path / "ds", [["a.jpg", 64, 48, "a", 1, 1, 30, 30], ["a.jpg", 64, 48, "a", 9, 9, 9, 30]],
                      {"a.jpg": (64, 48)})
    with pytest.raises(StrictModeError):
        run(src, tmp_path / "out", strict=True)
    report = json.loads((tmp_path / "out.failed-report.json").read_text())
    assert [i["reason"] for i in report["issues"]] == ["zero_area_box"]


# -- 4. an image whose every object was rejected is not a negative ---------------------------------------

def test_image_with_every_box_rejected_is_skipped_not_written_as_negative(tmp_path):
    rows = [["bad.jpg", 64, 48, "a", 50, 10, 20, 40],   # inverted
            ["bad.jpg", 64, 48, "a", 10, 10, 10, 40],   # zero area
            ["neg.jpg", 64, 48, "", "", "", "", ""],    # a true negative
            ["ok.jpg", 64, 48, "a", 1, 1, 30, 30]]
    src = csv_dataset(tmp_path / "ds", rows, {n: (64, 48) for n in ("bad.jpg", "neg.jpg", "ok.jpg")})
    report = run(src, tmp_path / "out", val_fraction=0)
    assert names_in(tmp_path / "out") == {"neg.jpg", "ok.jpg"}
    (skipped,) = [i for i in report["issues"] if i["action"] == "skipped_image"]
    assert skipped["image"] == "bad.jpg" and skipped["reason"] == "all_boxes_rejected"
    assert "2" in skipped["message"]
    assert report["totals"]["negatives"] == 1


def test_image_whose_reader_rejected_every_line_is_skipped(tmp_path):
    src = tmp_path / "yolo"
    make_image(src / "images" / "a.jpg")
    make_image(src / "images" / "b.jpg")
    (src / "classes.txt").write_text("cat\n")
    (src / "labels").mkdir()
    (src / "labels" / "a.txt").write_text("0 0.5 0.5\n")           # unreadable line: rejected by the reader
    (src / "labels" / "b.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    report = run(src, tmp_path / "out", val_fraction=0)
    assert names_in(tmp_path / "out") == {"images/b.jpg"}
    assert [i["image"] for i in report["issues"] if i["reason"] == "all_boxes_rejected"] == ["images/a.jpg"]


# -- 5. images without an annotation file are reported; NEGATIVES=keep keeps them --------------------

def _labelimg_with_unsaved(root: Path) -> Path:
    make_image(root / "images" / "a.jpg")
    make_image(root / "images" / "never_saved.jpg")
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "a.xml").write_text(voc_xml("a.jpg", [("cat", 1, 1, 30, 30)]))
    return root


def test_image_beside_labelimg_xmls_without_xml_is_reported(tmp_path):
    src = _labelimg_with_unsaved(tmp_path / "ds")
    report = run(src, tmp_path / "out", val_fraction=0)
    assert names_in(tmp_path / "out") == {"images/a.jpg"}
    (issue,) = [i for i in report["issues"] if i["reason"] == "no_annotation"]
    assert issue["action"] == "skipped_image" and issue["image"] == "images/never_saved.jpg"
    assert "NEGATIVES=keep" in issue["message"]
    report = run(src, tmp_path / "out2", val_fraction=0, negatives="keep")
    assert names_in(tmp_path / "out2") == {"images/a.jpg", "images/never_saved.jpg"}
    assert report["totals"]["negatives"] == 1
    assert [i["action"] for i in report["issues"] if i["reason"] == "no_annotation"] == ["note"]


def test_voc_imageset_id_without_xml_is_reported(tmp_path):
    src = tmp_path / "VOC2012"
    for stem in ("2008_000001", "2008_000002"):
        make_image(src / "JPEGImages" / f"{stem}.jpg")
    (src / "Annotations").mkdir(parents=True)
    (src / "Annotations" / "2008_000001.xml").write_text(voc_xml("2008_000001.jpg", [("cat", 1, 1, 30, 30)]))
    main = src / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("2008_000001\n2008_000002\n")
    report = run(src, tmp_path / "out", val_fraction=0)
    (issue,) = [i for i in report["issues"] if i["reason"] == "no_annotation"]
    assert issue["image"] == "JPEGImages/2008_000002.jpg" and issue["where"] == "ImageSets/Main/train.txt:2"
    report = run(src, tmp_path / "out2", val_fraction=0, negatives="keep")
    assert names_in(tmp_path / "out2") == {"JPEGImages/2008_000001.jpg", "JPEGImages/2008_000002.jpg"}


# -- 6. nothing outside the dataset is read ------------------------------------------------------------

@pytest.fixture
def outside_image(tmp_path) -> Path:
    return make_image(tmp_path / "outside.jpg")


def test_voc_filename_leading_outside_is_refused(tmp_path, outside_image):
    src = tmp_path / "a" / "ds"
    make_image(src / "images" / "ok.jpg")
    (src / "annotations").mkdir(parents=True)
    (src / "annotations" / "ok.xml").write_text(voc_xml("ok.jpg", [("cat", 1, 1, 30, 30)]))
    (src / "annotations" / "evil.xml").write_text(voc_xml("../../../outside.jpg", [("cat", 1, 1, 30, 30)]))
    report = run(src, tmp_path / "out", val_fraction=0)
    assert names_in(tmp_path / "out") == {"images/ok.jpg"}
    (issue,) = [i for i in report["issues"] if i["reason"] == "outside_dataset"]
    assert issue["action"] == "skipped_image" and issue["where"] == "annotations/evil.xml"
    assert "ALLOW_OUTSIDE=1" in issue["message"]


def test_csv_rows_with_relative_and_absolute_paths_outside_are_refused(tmp_path, outside_image):
    src = csv_dataset(tmp_path / "a" / "b" / "ds", [["ok.jpg", 64, 48, "a", 1, 1, 30, 30],
                                                    ["../../../outside.jpg", 64, 48, "a", 1, 1, 30, 30],
                                                    [str(outside_image), 64, 48, "a", 1, 1, 30, 30]],
                      {"ok.jpg": (64, 48)})
    report = run(src, tmp_path / "out", val_fraction=0)
    assert names_in(tmp_path / "out") == {"ok.jpg"}
    refused = [i for i in report["issues"] if i["reason"] == "outside_dataset"]
    assert [i["where"] for i in refused] == ["annotations.csv:3", "annotations.csv:4"]
    # opted in: read, and every such path is listed
    report = run(src, tmp_path / "out2", val_fraction=0, allow_outside=True)
    assert len(names_in(tmp_path / "out2")) == 2  # the two rows name the same outside file
    listed = [i for i in report["issues"] if i["reason"] == "outside_dataset"]
    assert all(i["action"] == "note" and str(outside_image) in i["message"] for i in listed) and listed


def test_coco_file_name_outside_and_symlink_outside_are_refused(tmp_path, outside_image):
    src = tmp_path / "a" / "ds"
    make_image(src / "images" / "ok.jpg")
    (src / "images" / "link.jpg").symlink_to(outside_image)
    images = [{"id": 1, "file_name": "ok.jpg"}, {"id": 2, "file_name": "../../../outside.jpg"},
              {"id": 3, "file_name": "link.jpg"}, {"id": 4, "file_name": "/etc/hostname"}]
    annotations = [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 20, 20]} for i in (1, 2, 3, 4)]
    (src / "coco.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                               "categories": [{"id": 1, "name": "cat"}]}))
    report = run(src, tmp_path / "out", val_fraction=0)
    assert names_in(tmp_path / "out") == {"images/ok.jpg"}
    refused = sorted(i["item"] for i in report["issues"] if i["reason"] == "outside_dataset")
    assert refused == ["image id 2", "image id 3", "image id 4"]


# -- 7. messages name the image, in pixels, rounded ---------------------------------------------------

def test_three_identical_images_are_named_together(tmp_path):
    rows = [[n, 64, 48, "x", 1, 1, 30, 30] for n in ("a.jpg", "b.jpg", "c.jpg")]
    src = csv_dataset(tmp_path / "ds", rows, {"a.jpg": (64, 48)})
    shutil.copy(src / "a.jpg", src / "b.jpg")
    shutil.copy(src / "a.jpg", src / "c.jpg")
    report = run(src, tmp_path / "out", val_fraction=0)
    notes = [i for i in report["issues"] if i["reason"] == "duplicate_image_content"]
    assert notes and all(all(n in i["message"] for n in ("a.jpg", "b.jpg", "c.jpg")) for i in notes)
    assert {i["image"] for i in notes} == {"b.jpg", "c.jpg"}


def test_yolo_clip_message_is_in_pixels_and_names_the_image(tmp_path):
    src = tmp_path / "yolo"
    make_image(src / "images" / "a.jpg", 15, 10)
    (src / "classes.txt").write_text("cat\n")
    (src / "labels").mkdir()
    (src / "labels" / "a.txt").write_text("0 0.3 0.5 0.8 0.4\n0 0.5 0.5 1.000001 0.5\n")
    report = run(src, tmp_path / "out", val_fraction=0)
    clipped = [i for i in report["issues"] if i["reason"] == "box_clipped"]
    assert len(clipped) == 1, "sub-pixel float noise (line 2) is not a clipping worth reporting"
    message = clipped[0]["message"]
    assert "images/a.jpg" in message and "15x10" in message
    assert "(-1.5, 3, 10.5, 7)" in message and "e-" not in message


def test_corrupt_image_is_reported_against_the_image_without_python_reprs(tmp_path):
    src = tmp_path / "yolo"
    (src / "images").mkdir(parents=True)
    (src / "images" / "bad.jpg").write_text("not an image")
    make_image(src / "images" / "ok.jpg")
    (src / "classes.txt").write_text("cat\n")
    (src / "labels").mkdir()
    for stem in ("bad", "ok"):
        (src / "labels" / f"{stem}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    report = run(src, tmp_path / "out", val_fraction=0)
    (issue,) = [i for i in report["issues"] if i["reason"] == "corrupt_image"]
    assert issue["where"] == "images/bad.jpg" and issue["image"] == "images/bad.jpg"
    assert "0x" not in issue["message"] and "BytesIO" not in issue["message"]


# -- 8. stale temporary directories of killed runs are removed ----------------------------------------

def test_stale_temporary_directories_of_dead_runs_are_removed(tmp_path, caplog):
    src = csv_dataset(tmp_path / "ds", [["a.jpg", 64, 48, "a", 1, 1, 30, 30]], {"a.jpg": (64, 48)})
    dead = tmp_path / ".out.tmp-99999999"  # above Linux's pid_max: no such process
    (dead / "sub").mkdir(parents=True)
    (dead / "train-00000-of-00001.record").write_bytes(b"half")
    dead_old = tmp_path / ".out.old-99999998"
    dead_old.mkdir()
    alive = tmp_path / f".out.tmp-{os.getppid()}"  # a live process: maybe another run, left alone
    alive.mkdir()
    other = tmp_path / ".other.tmp-99999999"  # another output's: not ours to remove
    other.mkdir()
    with caplog.at_level(logging.INFO, logger="odstack"):
        run(src, tmp_path / "out", val_fraction=0)
    assert not dead.exists() and not dead_old.exists()
    assert alive.exists() and other.exists()
    assert ".out.tmp-99999999" in caplog.text and "removed" in caplog.text


# -- the names people type, and the report without records -------------------------------------------

@pytest.mark.parametrize("typed", ["voc", "VOC", "Pascal-VOC", "labelimg", "pascal_voc"])
def test_format_aliases(tmp_path, typed):
    src = _labelimg_with_unsaved(tmp_path / "ds")
    assert run(src, tmp_path / "out", format=typed, val_fraction=0)["source"]["format"] == "pascal_voc"


def test_unknown_format_suggests_a_name(tmp_path):
    src = _labelimg_with_unsaved(tmp_path / "ds")
    with pytest.raises(DatasetError, match="did you mean FORMAT=label_studio"):
        run(src, tmp_path / "out", format="labelstudo")


def test_cli_help_lists_formats_and_aliases():
    result = _cli("data", "--help")
    assert result.returncode == 0
    assert "yolo_darknet=darknet" in result.stdout and "labelstudio=label_studio" in result.stdout
    assert "negatives: skip" in result.stdout and "allow_outside: false" in result.stdout


def test_stats_writes_the_report_and_no_records(tmp_path):
    src = _labelimg_with_unsaved(tmp_path / "ds")
    result = _cli("stats", f"src={src}", f"out={tmp_path / 'stats'}")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "stats").iterdir()) == ["report.html", "report.json", "report_samples"]
    report = json.loads((tmp_path / "stats" / "report.json").read_text())
    assert report["totals"]["images"] == 1 and report["splits"]["train"]["shards"] == []
    assert "no_annotation" in result.stderr  # the same summary as `make data`
    records = tmp_path / "records"
    run(src, records, val_fraction=0)
    result = _cli("stats", f"src={src}", f"out={records}")
    assert result.returncode == 2 and "holds records" in result.stderr
    assert list(records.glob("*.record"))


def test_make_help_lists_every_format_and_alias():
    from odstack.formats import ALIASES, FORMAT_NAMES

    root = Path(__file__).resolve().parents[2]
    help_text = subprocess.run(["make", "--no-print-directory", "-f", str(root / "Makefile"), "help", "RUNNER=local"],
                               cwd=root, capture_output=True, text=True, timeout=60, check=True).stdout
    (line,) = [line for line in help_text.splitlines() if "annotation formats (FORMAT=)" in line]
    (aliases,) = [line for line in help_text.splitlines() if "format aliases" in line]
    listed = set((line + " " + aliases).replace(",", " ").replace("=", " ").split())
    assert set(FORMAT_NAMES) | set(ALIASES) <= listed
