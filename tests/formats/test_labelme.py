"""LabelMe reader: the checked-in project (saved by labelme 5.5.0, see tests/fixtures/formats/README.md)
and problem cases in tmp_path."""
from __future__ import annotations

import base64
import json
from pathlib import Path

from odstack import tfrecord
from odstack.data.convert import DataSettings, convert
from odstack.formats import labelme
from odstack.annotations import IssueLog, Reason
from odstack.tfrecord import Keys
from tests.helpers import make_image

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "formats"
PROJECT = FIXTURES / "labelme" / "project"


def read_all(src: Path):
    issues = IssueLog()
    return list(labelme.read(src, issues)), issues


def summary(entries):
    return [(e.name, e.declared_size, [(b.label, b.xmin, b.ymin, b.xmax, b.ymax, b.where.item) for b in e.boxes])
            for e in entries]


def test_detect():
    assert labelme.detect(PROJECT)
    for other in ("coco/official", "cloud_annotations", "supervisely/project", "label_studio/project",
                  "pascal_voc/labelimg"):
        assert not labelme.detect(FIXTURES / other), other


def test_labels_txt_is_the_class_list():
    assert labelme.labels(PROJECT) == ["cat", "dog"]


def test_read_project():
    entries, issues = read_all(PROJECT)
    assert summary(entries) == [
        ("cat.jpg", (32, 24), [("cat", 2, 3, 20, 18, "shape 1"), ("dog", 5, 5, 30, 22, "shape 2")]),
        ("street/dog.png", (40, 30), [("dog", 12, 7, 28, 23, "shape 1"),      # circle of radius 8 at (20, 15)
                                      ("dog", 2, 2, 14, 10, "shape 2")]),     # group 1: two polygons, one box
    ]
    assert all(e.image.is_file() for e in entries)
    assert [(i.action, i.reason, str(i.where)) for i in issues.issues] == [
        ("note", Reason.POLYGON_TO_BOX, "cat.json (shape 2)"),
        ("note", Reason.UNSUPPORTED_SHAPE, "cat.json (shape 3)"),      # __ignore__: not an object
        ("skipped_box", Reason.UNSUPPORTED_SHAPE, "cat.json (shape 4)"),  # a point
        ("note", Reason.POLYGON_TO_BOX, "street/dog.json (shape 1)"),
        ("note", Reason.POLYGON_TO_BOX, "street/dog.json (shape 2)"),
        ("note", Reason.POLYGON_TO_BOX, "street/dog.json (shape 3)"),
        ("skipped_box", Reason.UNKNOWN_LABEL, "street/dog.json (shape 4)"),  # horse is not in labels.txt
    ]


def test_class_ids_follow_labels_txt(tmp_path):
    report = convert(DataSettings(src=PROJECT, out=tmp_path / "out", val_fraction=0, min_examples=1)).report
    assert {name: info["id"] for name, info in report["classes"].items()} == {"cat": 1, "dog": 2}


def test_image_data_is_used_when_the_file_is_missing(tmp_path):
    src = tmp_path / "ds"
    jpeg = make_image(tmp_path / "elsewhere.jpg", 32, 24).read_bytes()
    src.mkdir()
    (src / "gone.json").write_text(json.dumps({
        "version": "5.5.0", "flags": {}, "imagePath": "gone.jpg", "imageHeight": 24, "imageWidth": 32,
        "imageData": base64.b64encode(jpeg).decode(),
        "shapes": [{"label": "a", "points": [[1, 1], [20, 20]], "shape_type": "rectangle", "group_id": None,
                    "flags": {}}]}))
    report = convert(DataSettings(src=src, out=tmp_path / "out", val_fraction=0, min_examples=1)).report
    (record,) = tfrecord.read_examples(sorted((tmp_path / "out").glob("*.record")))
    assert record[Keys.ENCODED][0] == jpeg and record[Keys.FILENAME] == [b"gone.jpg"]
    assert [i["reason"] for i in report["issues"]] == ["image_converted"]
    assert "imageData" in report["issues"][0]["message"]


def test_bad_files_cost_only_their_image(tmp_path):
    make_image(tmp_path / "a.jpg")
    (tmp_path / "a.json").write_text(json.dumps({"imagePath": "a.jpg", "shapes": [
        {"label": "x", "points": [[1, 1]], "shape_type": "rectangle"},
        {"label": "x", "points": [[1, "y"], [2, 2]], "shape_type": "rectangle"},
        {"label": "x", "points": [[1, 1], [9, 9]], "shape_type": "linestrip"}]}))
    (tmp_path / "broken.json").write_text('{"imagePath": "b.jpg",\n "shapes": [}')
    (tmp_path / "other.json").write_text('{"something": 1}')
    entries, issues = read_all(tmp_path)
    assert [(e.name, e.boxes) for e in entries] == [("a.jpg", [])]
    assert [(i.action, i.reason, str(i.where)) for i in issues.issues] == [
        ("skipped_box", Reason.INVALID_VALUE, "a.json (shape 1)"),
        ("skipped_box", Reason.INVALID_VALUE, "a.json (shape 2)"),
        ("skipped_box", Reason.UNSUPPORTED_SHAPE, "a.json (shape 3)"),
        ("skipped_image", Reason.UNREADABLE_ANNOTATION, "broken.json:2"),
        ("skipped_image", Reason.UNREADABLE_ANNOTATION, "other.json"),
    ]
