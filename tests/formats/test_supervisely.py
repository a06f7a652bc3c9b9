"""Supervisely reader: the checked-in project fixture, error cases on copies of it in tmp_path."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from odstack.errors import DatasetError
from odstack.formats import supervisely
from odstack.annotations import IssueLog, Location, Reason

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "formats"
PROJECT = FIXTURES / "supervisely" / "project"


def summary(entries):
    return [(e.name, e.declared_size, e.subset,
             [(b.label, b.xmin, b.ymin, b.xmax, b.ymax, b.normalized, b.where.item) for b in e.boxes])
            for e in entries]


def read_all(src: Path):
    issues = IssueLog()
    return list(supervisely.read(src, issues)), issues


@pytest.fixture
def project(tmp_path) -> Path:
    """A writable copy of the fixture project."""
    return Path(shutil.copytree(PROJECT, tmp_path / "project"))


def rect(title, exterior, geometry="rectangle"):
    return {"geometryType": geometry, "classTitle": title, "points": {"exterior": exterior, "interior": []}}


def write_ann(project: Path, dataset: str, image: str, objects, size=None) -> Path:
    path = project / dataset / "ann" / f"{image}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"description": "", "tags": [], "size": size or {"height": 24, "width": 32},
                                "objects": objects}, indent=4), encoding="utf-8")
    return path


# -- detect ----------------------------------------------------------------------------------------

def test_detect_accepts_project():
    assert supervisely.detect(PROJECT)


@pytest.mark.parametrize("src", [FIXTURES / "coco" / "official", FIXTURES / "coco" / "roboflow",
                                 FIXTURES / "cloud_annotations", FIXTURES / "cloud_annotations" / "_annotations.json",
                                 PROJECT / "meta.json", PROJECT / "train"])
def test_detect_rejects_other_layouts(src):
    assert not supervisely.detect(src)


def test_detect_needs_meta_and_an_ann_dir(tmp_path):
    assert not supervisely.detect(tmp_path)
    (tmp_path / "meta.json").write_text('{"classes": []}')
    assert not supervisely.detect(tmp_path)
    (tmp_path / "ds0" / "ann").mkdir(parents=True)
    assert supervisely.detect(tmp_path)


# -- read ------------------------------------------------------------------------------------------

def test_read_fixture_project():
    entries, issues = read_all(PROJECT)
    assert summary(entries) == [
        ("train/img/a.jpg", (32, 24), "train", [
            ("cat", 3.0, 4.0, 20.0, 18.0, False, "objects[0]"),
            ("dog", 16.0, 2.0, 30.0, 22.0, False, "objects[1]")]),  # corners given bottom-right first
        ("train/img/café photo.png", (40, 30), "train", [("dog", 0.0, 0.0, 39.0, 29.0, False, "objects[0]")]),
        ("valid/img/b.jpg", (32, 24), "val", []),  # no objects: a negative
    ]
    for entry in entries:
        assert entry.image == PROJECT / entry.name and entry.image.is_file()
    assert entries[1].where == Location("train/ann/café photo.png.json")
    # the fixture's polygon ("road") is reported, naming the shape and the object index
    assert [(i.action, i.reason, i.where, i.image) for i in issues.issues] == [
        ("skipped_box", Reason.UNSUPPORTED_SHAPE, Location("train/ann/a.jpg.json", item="objects[2]"),
         "train/img/a.jpg")]
    assert "'polygon'" in issues.issues[0].message and "objects[2]" in issues.issues[0].message


def test_labels_in_meta_order():
    assert supervisely.labels(PROJECT) == ["cat", "dog", "road"]


def test_subset_from_dataset_name(project):
    for dataset in ("ds 0", "test", "Validation"):
        write_ann(project, dataset, f"{dataset}.jpg", [])
    entries, _ = read_all(project)
    assert [(e.name, e.subset) for e in entries] == [
        ("Validation/img/Validation.jpg", "val"), ("ds 0/img/ds 0.jpg", None), ("test/img/test.jpg", "test"),
        ("train/img/a.jpg", "train"), ("train/img/café photo.png", "train"), ("valid/img/b.jpg", "val")]


def test_unparseable_ann_is_skipped_with_line_and_others_continue(project):
    path = project / "train" / "ann" / "a.jpg.json"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[10] == '            "classId": 9912,'
    lines[10] = '            "classId" 9912,'  # a lost colon on line 11
    path.write_text("\n".join(lines), encoding="utf-8")
    entries, issues = read_all(project)
    assert [e.name for e in entries] == ["train/img/café photo.png", "valid/img/b.jpg"]
    assert [(i.action, i.reason, i.where, i.image) for i in issues.issues] == [
        ("skipped_image", Reason.UNREADABLE_ANNOTATION, Location("train/ann/a.jpg.json", line=11), "train/img/a.jpg")]


def test_ann_without_objects_is_unreadable(project):
    (project / "valid" / "ann" / "b.jpg.json").write_text('{"size": {"height": 24, "width": 32}}')
    entries, issues = read_all(project)
    assert "valid/img/b.jpg" not in [e.name for e in entries]
    assert [(i.action, i.reason) for i in issues.issues if i.where.file == "valid/ann/b.jpg.json"] == [
        ("skipped_image", Reason.UNREADABLE_ANNOTATION)]


def test_invalid_values_unknown_labels_and_shapes(project):
    shutil.rmtree(project / "train")
    write_ann(project, "train", "x.jpg", [
        rect("cat", [[1, 2], [5, 6]]),
        rect("cat", [[1, "2"], [5, 6]]),
        rect("cat", [[1, 2]]),
        {"geometryType": "rectangle", "classTitle": "cat"},
        rect("horse", [[1, 2], [5, 6]]),
        rect("dog", [[1, 2], [1, 2]], geometry="point"),
        rect("dog", [], geometry="bitmap"),
        rect("", [[7, 7], [9, 9]]),  # empty label passes through for the converter
        rect("dog", [[9, 9], [3, 3]]),
    ], size={"height": "tall", "width": 32})
    entries, issues = read_all(project)
    assert summary(entries)[0] == ("train/img/x.jpg", None, "train", [
        ("cat", 1.0, 2.0, 5.0, 6.0, False, "objects[0]"),
        ("", 7.0, 7.0, 9.0, 9.0, False, "objects[7]"),
        ("dog", 3.0, 3.0, 9.0, 9.0, False, "objects[8]")])
    assert [(i.action, i.reason, i.where.item) for i in issues.issues] == [
        ("skipped_box", Reason.INVALID_VALUE, "objects[1]"),
        ("skipped_box", Reason.INVALID_VALUE, "objects[2]"),
        ("skipped_box", Reason.INVALID_VALUE, "objects[3]"),
        ("skipped_box", Reason.UNKNOWN_LABEL, "objects[4]"),
        ("skipped_box", Reason.UNSUPPORTED_SHAPE, "objects[5]"),
        ("skipped_box", Reason.UNSUPPORTED_SHAPE, "objects[6]"),
        ("note", Reason.INVALID_VALUE, None),
    ]
    assert "'bitmap'" in issues.issues[5].message


# -- dataset errors --------------------------------------------------------------------------------

def test_missing_meta_is_a_dataset_error(project):
    (project / "meta.json").unlink()
    with pytest.raises(DatasetError, match="meta.json not found") as error:
        read_all(project)
    assert error.value.hint


def test_unparseable_meta_names_the_line(project):
    (project / "meta.json").write_text('{\n    "classes": [\n        {"title": "cat",}\n    ]\n}\n')
    with pytest.raises(DatasetError) as error:
        supervisely.labels(project)
    assert error.value.where == Location("meta.json", line=3)


def test_meta_without_classes_and_project_without_datasets(project, tmp_path):
    (project / "meta.json").write_text('{"tags": []}')
    with pytest.raises(DatasetError, match="'classes'"):
        read_all(project)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "meta.json").write_text('{"classes": []}')
    with pytest.raises(DatasetError, match="no dataset folder"):
        read_all(empty)
