"""Darknet / CVAT "YOLO 1.1" reader: the checked-in export (hand-written in CVAT's YOLO 1.1 layout, see
tests/fixtures/formats/README.md) and problem cases in tmp_path."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from odstack.data.convert import DataSettings, convert
from odstack.errors import DatasetError
from odstack.formats import darknet, yolo
from odstack.annotations import IssueLog, Reason

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "formats"
EXPORT = FIXTURES / "darknet" / "cvat_yolo"


def read_all(src: Path):
    issues = IssueLog()
    return list(darknet.read(src, issues)), issues


def test_detect_and_not_yolo():
    assert darknet.detect(EXPORT) and not yolo.detect(EXPORT)
    for other in ("yolo/darknet", "yolo/ultralytics", "pascal_voc/labelimg", "coco/official"):
        assert not darknet.detect(FIXTURES / other), other


def test_read_export():
    assert darknet.labels(EXPORT) == ["car", "person"]
    entries, issues = read_all(EXPORT)
    assert [(e.name, e.subset, [(b.label, *(round(v, 6) for v in (b.xmin, b.ymin, b.xmax, b.ymax))) for b in e.boxes])
            for e in entries] == [
        ("obj_train_data/frame_000000.jpg", "train", [("car", 0.25, 0.25, 0.75, 0.75),
                                                      ("person", 0.1875, 0.166666, 0.3125, 0.333334)]),
        ("obj_train_data/frame_000001.jpg", "train", [("person", 0.5, 0.0, 1.0, 1.0)]),
        ("obj_train_data/frame_000002.jpg", "train", []),
        ("obj_valid_data/frame_000003.png", "val", [("car", 0.375, 0.3, 0.625, 0.7)]),
    ]
    assert issues.issues == []


def test_format_yolo_on_it_says_what_is_missing(tmp_path):
    with pytest.raises(DatasetError) as error:
        convert(DataSettings(src=EXPORT, out=tmp_path / "out", format="yolo"))
    text = str(error.value)
    assert "missing a labels/ folder" in text and "FORMAT=darknet" in text


def test_lists_with_absolute_paths_missing_images_and_no_lists(tmp_path):
    src = Path(shutil.copytree(EXPORT, tmp_path / "export"))
    (src / "train.txt").write_text("/home/me/darknet/data/obj_train_data/frame_000000.jpg\n"  # found by its tail
                                   "data/obj_train_data/gone.jpg\n"
                                   f"{tmp_path}/elsewhere.jpg\n")
    (tmp_path / "elsewhere.jpg").write_bytes(b"x")
    entries, issues = read_all(src)
    assert [e.name for e in entries] == ["obj_train_data/frame_000000.jpg", "obj_valid_data/frame_000003.png"]
    assert [(i.reason, str(i.where)) for i in issues.issues] == [
        (Reason.MISSING_IMAGE, "train.txt:2"), (Reason.OUTSIDE_DATASET, "train.txt:3")]
    (src / "obj.data").unlink()
    (src / "train.txt").unlink()
    (src / "valid.txt").unlink()
    assert darknet.detect(src)  # obj.names + obj_*_data/
    entries, _ = read_all(src)
    assert [(e.name, e.subset) for e in entries] == [
        ("obj_train_data/frame_000000.jpg", "train"), ("obj_train_data/frame_000001.jpg", "train"),
        ("obj_train_data/frame_000002.jpg", "train"), ("obj_valid_data/frame_000003.png", "val")]


def test_datumaro_export():
    # written by datumaro 1.13.12's YOLO exporter (tests/fixtures/formats/README.md)
    src = FIXTURES / "darknet" / "datumaro"
    assert darknet.detect(src) and darknet.labels(src) == ["dog", "cat"]
    entries, issues = read_all(src)
    assert [(e.name, e.subset, [b.label for b in e.boxes]) for e in entries] == [
        ("obj_train_data/cat.jpg", "train", ["cat", "dog"]),
        ("obj_train_data/street/dog 1.jpg", "train", []),  # datumaro writes no polygon to YOLO
        ("obj_valid_data/empty.jpg", "val", [])]
    assert issues.issues == []
