"""CVAT for images 1.1 XML reader: the checked-in task export (hand-written in CVAT's export shape, see
tests/fixtures/formats/README.md) and problem cases in tmp_path."""
from __future__ import annotations

from pathlib import Path

import pytest

from odstack.errors import DatasetError
from odstack.formats import cvat
from odstack.annotations import IssueLog, Reason

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "formats"
TASK = FIXTURES / "cvat" / "task"


def read_all(src: Path):
    issues = IssueLog()
    return list(cvat.read(src, issues)), issues


def test_detect():
    assert cvat.detect(TASK) and cvat.detect(TASK / "annotations.xml")
    for other in ("pascal_voc/labelimg", "pascal_voc/devkit", "coco/official", "labelme/project"):
        assert not cvat.detect(FIXTURES / other), other


def test_labels_in_meta_order():
    assert cvat.labels(TASK) == ["dog", "cat"]


def test_read_task():
    entries, issues = read_all(TASK)
    got = [(e.name, e.declared_size, e.subset,
            [(b.label, b.xmin, b.ymin, b.xmax, b.ymax, b.difficult) for b in e.boxes]) for e in entries]
    assert got == [
        ("images/cat.jpg", (32, 24), None, [("cat", 2, 3, 20, 18, False),
                                            ("dog", 13, 5, 17, 15, True)]),  # 10x4 turned 90 degrees
        ("images/street/dog 1.png", (40, 30), None, [("dog", 5.5, 4, 30, 26, False)]),
        ("images/empty.jpg", (32, 24), None, []),
    ]
    assert all(e.image.is_file() for e in entries)
    assert [(i.action, i.reason, i.where.item) for i in issues.issues] == [
        ("note", Reason.POLYGON_TO_BOX, "image id 0, shape 2"),
        ("note", Reason.POLYGON_TO_BOX, "image id 1, shape 1"),
        ("skipped_box", Reason.UNSUPPORTED_SHAPE, "image id 1, shape 2"),
    ]


def test_project_subsets_and_bad_values(tmp_path):
    (tmp_path / "images" / "Train").mkdir(parents=True)
    (tmp_path / "images" / "Train" / "a.jpg").write_bytes(b"x")
    (tmp_path / "annotations.xml").write_text(
        "<annotations><version>1.1</version>"
        "<image id='0' name='a.jpg' subset='Train' width='10' height='10'>"
        "<box label='a' xtl='1' ytl='x' xbr='5' ybr='5'/><ellipse label='a' cx='5' cy='5' rx='2' ry='3'/></image>"
        "<image id='1' name='b.jpg' subset='Validation'/><image id='2'/></annotations>")
    entries, issues = read_all(tmp_path)
    assert [(e.name, e.subset, [(b.xmin, b.ymin, b.xmax, b.ymax) for b in e.boxes]) for e in entries] == [
        ("images/Train/a.jpg", "train", [(3, 2, 7, 8)]), ("images/Validation/b.jpg", "val", [])]
    assert [(i.action, i.reason) for i in issues.issues] == [
        ("skipped_box", Reason.INVALID_VALUE), ("note", Reason.POLYGON_TO_BOX), ("skipped_image", Reason.INVALID_VALUE)]
    assert cvat.labels(tmp_path) is None


def test_broken_xml_is_a_dataset_error_with_its_line(tmp_path):
    (tmp_path / "annotations.xml").write_text("<annotations><version>1.1</version>\n<image id='0' name='a.jpg'>\n")
    with pytest.raises(DatasetError) as error:
        read_all(tmp_path)
    assert error.value.where.line == 3


def test_datumaro_export_one_xml_per_subset():
    # written by datumaro 1.13.12's CVAT exporter (tests/fixtures/formats/README.md)
    src = FIXTURES / "cvat" / "datumaro"
    assert cvat.detect(src) and cvat.labels(src) == ["dog", "cat"]
    entries, issues = read_all(src)
    assert [(e.name, e.subset, [(b.label, b.xmin, b.ymin, b.xmax, b.ymax) for b in e.boxes]) for e in entries] == [
        ("images/cat.jpg", "train", [("cat", 2, 3, 20, 18), ("dog", 10, 8, 20, 12)]),
        ("images/street/dog 1.jpg", "train", [("dog", 5.5, 4, 30, 26)]),
        ("images/empty.jpg", "val", []),
    ]
    assert all(e.image.is_file() for e in entries)
    assert [i.reason for i in issues.issues] == [Reason.POLYGON_TO_BOX, Reason.UNSUPPORTED_SHAPE]
