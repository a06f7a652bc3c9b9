"""Cloud Annotations reader: the checked-in export, error cases written to tmp_path."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from odstack.errors import DatasetError
from odstack.formats import cloud_annotations
from odstack.annotations import IssueLog, Location, Reason

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "formats"
EXPORT = FIXTURES / "cloud_annotations"


def summary(entries):
    return [(e.name, e.declared_size, e.subset,
             [(b.label, b.xmin, b.ymin, b.xmax, b.ymax, b.normalized, b.where.item) for b in e.boxes])
            for e in entries]


def read_all(src: Path):
    issues = IssueLog()
    return list(cloud_annotations.read(src, issues)), issues


def write_export(folder: Path, annotations, labels=("cat", "dog"), **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"version": "1.0", "type": "localization", "labels": list(labels), "annotations": annotations, **extra}
    (folder / "_annotations.json").write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
    return folder


def box(label="cat", x=0.1, y=0.2, x2=0.3, y2=0.4):
    return {"x": x, "x2": x2, "y": y, "y2": y2, "id": "0f6d4e3b", "label": label}


# -- detect ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("src", [EXPORT, EXPORT / "_annotations.json"])
def test_detect_accepts_export(src):
    assert cloud_annotations.detect(src)


@pytest.mark.parametrize("src", [FIXTURES / "coco" / "official", FIXTURES / "coco" / "roboflow",
                                 FIXTURES / "coco" / "roboflow" / "train" / "_annotations.coco.json",
                                 FIXTURES / "supervisely" / "project",
                                 FIXTURES / "supervisely" / "project" / "meta.json"])
def test_detect_rejects_other_formats(src):
    assert not cloud_annotations.detect(src)


def test_detect_rejects_empty_dir_and_other_json_shapes(tmp_path):
    assert not cloud_annotations.detect(tmp_path)
    (tmp_path / "_annotations.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    assert not cloud_annotations.detect(tmp_path)


# -- read ------------------------------------------------------------------------------------------

def test_read_export():
    entries, issues = read_all(EXPORT)
    assert issues.issues == []
    assert summary(entries) == [
        ("a.jpg", None, None, [("cat", 0.125, 0.25, 0.5, 0.75, True, "annotations['a.jpg'][0]"),
                               ("dog", 0.5625, 0.0, 0.9375, 0.5, True, "annotations['a.jpg'][1]")]),
        ("café photo.jpg", None, None, [("dog", 0.1, 0.2, 0.9, 0.8, True, "annotations['café photo.jpg'][0]")]),
        ("negative.jpg", None, None, []),  # an empty list: marked negative in Cloud Annotations
    ]
    for entry in entries:
        assert entry.image == EXPORT / entry.name and entry.image.is_file()
    assert entries[1].where == Location("_annotations.json", item="image 'café photo.jpg'")


def test_labels_in_file_order(tmp_path):
    assert cloud_annotations.labels(EXPORT) == ["cat", "dog"]
    write_export(tmp_path, {}, labels=["zebra", "ant", "zebra"])
    assert cloud_annotations.labels(tmp_path) == ["zebra", "ant"]


def test_file_order_kept_and_missing_images_still_yielded(tmp_path):
    write_export(tmp_path, {"z z.png": [box()], "sub/ü.jpg": [], "a.jpg": [box("dog")]})
    entries, issues = read_all(tmp_path / "_annotations.json")
    assert issues.issues == []
    assert [(e.name, e.image) for e in entries] == [
        ("z z.png", tmp_path / "z z.png"), ("sub/ü.jpg", tmp_path / "sub" / "ü.jpg"), ("a.jpg", tmp_path / "a.jpg")]


def test_invalid_values_and_unknown_labels(tmp_path):
    write_export(tmp_path, {
        "a.jpg": [box(), box(x="0.1"), {"x": 0.1, "y": 0.2, "x2": 0.3, "label": "cat"}, box(label="horse"),
                  box(label=None), "not a box", box(label="", x=0.5), box("dog", x=0.9, x2=0.1)],
        "b.jpg": {"x": 0.1},
    })
    entries, issues = read_all(tmp_path)
    assert summary(entries) == [("a.jpg", None, None, [
        ("cat", 0.1, 0.2, 0.3, 0.4, True, "annotations['a.jpg'][0]"),
        ("", 0.5, 0.2, 0.3, 0.4, True, "annotations['a.jpg'][6]"),  # empty label and inverted box: converter's job
        ("dog", 0.9, 0.2, 0.1, 0.4, True, "annotations['a.jpg'][7]")])]
    assert [(i.action, i.reason, i.where.item) for i in issues.issues] == [
        ("skipped_box", Reason.INVALID_VALUE, "annotations['a.jpg'][1]"),
        ("skipped_box", Reason.INVALID_VALUE, "annotations['a.jpg'][2]"),
        ("skipped_box", Reason.UNKNOWN_LABEL, "annotations['a.jpg'][3]"),
        ("skipped_box", Reason.INVALID_VALUE, "annotations['a.jpg'][4]"),
        ("skipped_box", Reason.INVALID_VALUE, "annotations['a.jpg'][5]"),
        ("skipped_image", Reason.INVALID_VALUE, "image 'b.jpg'"),
    ]
    assert "y2=None" in issues.issues[1].message and "'horse'" in issues.issues[2].message


# -- dataset errors --------------------------------------------------------------------------------

def test_unparseable_file_names_the_line(tmp_path):
    (tmp_path / "_annotations.json").write_text(
        '{"version": "1.0", "type": "localization",\n "labels": ["cat"],\n "annotations": {\n "a.jpg": [}\n}\n')
    assert cloud_annotations.detect(tmp_path)  # still recognized, so the user gets the line below
    with pytest.raises(DatasetError) as error:
        read_all(tmp_path)
    assert error.value.where == Location("_annotations.json", line=4)
    assert error.value.hint


def test_classification_project_is_a_dataset_error(tmp_path):
    write_export(tmp_path, {"a.jpg": [{"label": "cat"}]}, type="classification")
    with pytest.raises(DatasetError, match="'classification'") as error:
        read_all(tmp_path)
    assert "localization" in error.value.hint


def test_missing_file_and_missing_keys_are_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_all(tmp_path)
    (tmp_path / "_annotations.json").write_text(json.dumps({"type": "localization", "annotations": {}}))
    with pytest.raises(DatasetError, match='"labels"'):
        read_all(tmp_path)
    (tmp_path / "_annotations.json").write_text(json.dumps({"labels": [], "annotations": []}))
    with pytest.raises(DatasetError, match='"annotations"'):
        cloud_annotations.labels(tmp_path)
