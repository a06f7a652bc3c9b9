"""Label Studio JSON export reader: the checked-in export (hand-written in the shape Label Studio 1.x
exports, see tests/fixtures/formats/README.md) and problem cases in tmp_path."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from odstack.data.convert import DataSettings, convert
from odstack.errors import DatasetError
from odstack.formats import label_studio
from odstack.annotations import IssueLog, Reason

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "formats"
PROJECT = FIXTURES / "label_studio" / "project"


def read_all(src: Path):
    issues = IssueLog()
    return list(label_studio.read(src, issues)), issues


def boxes(entry):
    return [(b.label, pytest.approx((b.xmin, b.ymin, b.xmax, b.ymax), abs=1e-6), b.normalized) for b in entry.boxes]


def test_detect():
    assert label_studio.detect(PROJECT)
    assert label_studio.detect(next(PROJECT.glob("*.json")))
    for other in ("coco/official", "coco/roboflow", "cloud_annotations", "supervisely/project", "yolo/ultralytics"):
        assert not label_studio.detect(FIXTURES / other), other


def test_read_export():
    entries, issues = read_all(PROJECT)
    assert [(e.name, e.annotated, e.declared_size, str(e.where).split("json ")[1]) for e in entries] == [
        ("upload/1/4f2a9c1e-cat.jpg", True, (32, 24), "(task 1)"),
        ("images/dog.jpg", True, (40, 30), "(task 2)"),       # local-files path below a folder above SRC
        ("images/empty.jpg", True, None, "(task 3)"),          # submitted with no region: a negative
        ("images/never labelled.jpg", False, None, "(task 4)"),  # no annotation: reported by the converter
    ]
    assert all(e.image.is_file() for e in entries)
    cat, dog = entries[0], entries[1]
    assert boxes(cat)[0] == ("cat", (0.0625, 0.125, 0.5625, 0.75), True)
    # rotated 30 degrees about its top-left corner (16, 6) px, 8x6 px: the envelope, in pixels
    rotated = cat.boxes[1]
    assert (rotated.label, rotated.normalized) == ("dog", False)
    cos, sin = 3 ** 0.5 / 2, 0.5
    assert (rotated.xmin, rotated.ymin, rotated.xmax, rotated.ymax) == pytest.approx(
        (16 - 6 * sin, 6, 16 + 8 * cos, 6 + 8 * sin + 6 * cos))
    assert boxes(dog) == [("dog", (0.25, 0.2, 0.75, 0.8), True)]
    assert [(i.action, i.reason, i.where.item) for i in issues.issues] == [
        ("note", Reason.POLYGON_TO_BOX, "task 1, result 1"),
        ("skipped_box", Reason.UNSUPPORTED_SHAPE, "task 2, result 1"),  # polygonlabels: reported, not read
    ]


def test_convert_reports_the_unlabelled_task_and_keeps_it_on_request(tmp_path):
    report = convert(DataSettings(src=PROJECT, out=tmp_path / "out", val_fraction=0, min_examples=1)).report
    (issue,) = [i for i in report["issues"] if i["reason"] == "no_annotation"]
    assert issue["image"] == "images/never labelled.jpg" and issue["action"] == "skipped_image"
    assert report["totals"]["images"] == 3 and report["totals"]["negatives"] == 1
    report = convert(DataSettings(src=PROJECT, out=tmp_path / "out2", val_fraction=0, min_examples=1,
                                  negatives="keep")).report
    assert report["totals"]["images"] == 4 and report["totals"]["negatives"] == 2


def write(path: Path, tasks) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tasks), encoding="utf-8")
    return path


def test_remote_urls_cancelled_and_broken_results(tmp_path):
    rect = {"type": "rectanglelabels", "original_width": 10, "original_height": 10,
            "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rectanglelabels": ["a"]}}
    write(tmp_path / "export.json", [
        {"id": 1, "data": {"image": "https://example.com/a.jpg"}, "annotations": [{"result": [rect]}]},
        {"id": 2, "data": {"image": "/data/upload/2/b.jpg"},
         "annotations": [{"was_cancelled": True, "result": [rect]}]},
        {"id": 3, "data": {"image": "c.jpg"}, "annotations": [{"result": [
            {"type": "rectanglelabels", "value": {"x": "1", "y": 1, "width": 1, "height": 1, "rectanglelabels": ["a"]}},
            {"type": "rectanglelabels", "value": {"x": 1, "y": 1, "width": 1, "height": 1, "rectanglelabels": []}},
            {"type": "keypointlabels", "value": {"x": 1, "y": 1, "keypointlabels": ["a"]}}]},
            {"result": [rect]}]},
        {"id": 4, "data": {}},
    ])
    entries, issues = read_all(tmp_path)
    assert [(e.name, e.annotated, len(e.boxes)) for e in entries] == [("upload/2/b.jpg", False, 0), ("c.jpg", True, 0)]
    assert [(i.action, i.reason, i.where.item) for i in issues.issues] == [
        ("skipped_image", Reason.MISSING_IMAGE, "task 1"),
        ("note", Reason.DUPLICATE_ENTRY, "task 3"),
        ("skipped_box", Reason.INVALID_VALUE, "task 3, result 0"),
        ("skipped_box", Reason.EMPTY_LABEL, "task 3, result 1"),
        ("skipped_box", Reason.UNSUPPORTED_SHAPE, "task 3, result 2"),
        ("skipped_image", Reason.INVALID_VALUE, "task 4"),
    ]
    assert "does not download" in issues.issues[0].message


def test_broken_json_is_a_dataset_error_with_the_line(tmp_path):
    (tmp_path / "export.json").write_text('[{"id": 1, "data": {"image": "a.jpg"},\n "annotations": [}]')
    assert label_studio.detect(tmp_path) is False  # unparseable small file: not claimed
    with pytest.raises(DatasetError, match="no Label Studio JSON export"):
        read_all(tmp_path)
