"""YOLO reader: Ultralytics and darknet layouts from fixtures, Roboflow layout and errors in tmp_path."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from odstack.errors import DatasetError
from odstack.formats import yolo
from odstack.annotations import IssueLog, Location, Reason

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "formats"
ULTRALYTICS = FIXTURES / "yolo" / "ultralytics"
DARKNET = FIXTURES / "yolo" / "darknet"


def boxes(entry):
    return [(b.label, pytest.approx((b.xmin, b.ymin, b.xmax, b.ymax), abs=1e-6), b.normalized, str(b.where))
            for b in entry.boxes]


def summary(entries):
    return [(e.name, str(e.where), e.declared_size, e.subset, boxes(e)) for e in entries]


def read_all(src: Path):
    issues = IssueLog()
    return list(yolo.read(src, issues)), issues


def copy(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / src.name))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- detect ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("src", [ULTRALYTICS, DARKNET])
def test_detect_accepts_yolo_layouts(src):
    assert yolo.detect(src)


@pytest.mark.parametrize("src", [FIXTURES / "pascal_voc" / "labelimg", FIXTURES / "pascal_voc" / "devkit",
                                 FIXTURES / "tf_csv" / "split", FIXTURES / "tf_csv" / "vott",
                                 DARKNET / "classes.txt", DARKNET / "labels"])
def test_detect_rejects_other_formats(src):
    assert not yolo.detect(src)


def test_detect_rejects_empty_missing_and_label_less(tmp_path):
    assert not yolo.detect(tmp_path)
    assert not yolo.detect(tmp_path / "nope")
    write(tmp_path / "classes.txt", "cat\n")
    (tmp_path / "labels").mkdir()
    assert not yolo.detect(tmp_path)  # no .txt label file at all
    write(tmp_path / "labels" / "classes.txt", "cat\n")
    assert not yolo.detect(tmp_path)  # LabelImg's classes.txt is not a label file
    write(tmp_path / "labels" / "a.txt", "0 0.5 0.5 0.1 0.1\n")
    assert yolo.detect(tmp_path)


# -- read: fixtures --------------------------------------------------------------------------------

def test_read_ultralytics_split_layout():
    entries, issues = read_all(ULTRALYTICS)
    assert summary(entries) == [
        ("images/train/blank.jpg", "labels/train/blank.txt", None, "train", []),  # empty .txt: negative
        ("images/train/cat.jpg", "labels/train/cat.txt", None, "train", [
            ("cat", (0.0625, 0.125, 0.625, 0.75), True, "labels/train/cat.txt:1"),
            ("dog", (0.15625, 0.208333, 0.9375, 0.916666), True, "labels/train/cat.txt:2")]),
        ("images/train/chat noir é.jpg", "labels/train/chat noir é.txt", None, "train", [
            ("cat", (0.125, 0.166667, 0.5, 0.666667), True, "labels/train/chat noir é.txt:1")]),
        ("images/val/dog.png", "labels/val/dog.txt", None, "val", [
            ("dog", (0.375, 0.25, 0.625, 0.75), True, "labels/val/dog.txt:1")]),
        ("images/val/empty.jpg", "images/val/empty.jpg", None, "val", []),  # no .txt: negative
    ]
    assert all(e.image.is_absolute() and e.image.is_file() for e in entries)
    assert entries[3].image == ULTRALYTICS / "images" / "val" / "dog.png"
    assert issues.issues == []


def test_read_darknet_flat_layout():
    entries, issues = read_all(DARKNET)
    assert summary(entries) == [
        ("images/a.jpg", "labels/a.txt", None, None, [
            ("car", (0.25, 0.25, 0.75, 0.75), True, "labels/a.txt:1"),
            ("person", (0.2, 0.15, 0.3, 0.35), True, "labels/a.txt:2")]),
        ("images/b.jpg", "labels/b.txt", None, None, [
            ("bicycle", (0.5, 0.0, 1.0, 1.0), True, "labels/b.txt:1")]),
    ]
    assert issues.issues == []


def test_labels_in_id_order():
    assert yolo.labels(ULTRALYTICS) == ["cat", "dog"]
    assert yolo.labels(DARKNET) == ["person", "bicycle", "car"]


def test_roboflow_layout_and_names_list(tmp_path):
    write(tmp_path / "data.yaml", "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\n"
                                  "nc: 2\nnames: ['cat', 'dog']\n")
    for split in ("train", "valid", "test"):
        write(tmp_path / split / "images" / f"{split}.jpg", "x")
        write(tmp_path / split / "labels" / f"{split}.txt", "1 0.5 0.5 0.2 0.2\n")
    assert yolo.detect(tmp_path)
    assert yolo.labels(tmp_path) == ["cat", "dog"]
    entries, issues = read_all(tmp_path)
    assert [(e.name, e.subset, [b.label for b in e.boxes]) for e in entries] == [
        ("test/images/test.jpg", "test", ["dog"]), ("train/images/train.jpg", "train", ["dog"]),
        ("valid/images/valid.jpg", "val", ["dog"])]
    assert issues.issues == []


@pytest.mark.parametrize("names_file, text", [("obj.names", "cat\ndog\n\n"),
                                              ("labels/classes.txt", "cat\ndog\n"),
                                              ("data.yaml", "names:\n  1: dog\n  0: cat\n")])
def test_names_files(tmp_path, names_file, text):
    write(tmp_path / names_file, text)
    write(tmp_path / "images" / "a.jpg", "x")
    write(tmp_path / "labels" / "a.txt", "1 0.5 0.5 0.2 0.2\n")
    assert yolo.labels(tmp_path) == ["cat", "dog"]
    entries, issues = read_all(tmp_path)
    assert [b.label for b in entries[0].boxes] == ["dog"] and issues.issues == []


# -- problems --------------------------------------------------------------------------------------

def test_invalid_lines_unknown_classes_and_polygons(tmp_path):
    src = copy(DARKNET, tmp_path)
    write(src / "labels" / "a.txt", "2 0.5 0.5 0.5 0.5\n"        # 1 ok
                                    "0 0.5 0.5 0.5\n"            # 2 four fields
                                    "\n"                         # 3 blank: ignored
                                    "1 0.5 x 0.5 0.5\n"          # 4 not a number
                                    "7 0.5 0.5 0.1 0.1\n"        # 5 class 7 of 0..2
                                    "0.5 0.5 0.5 0.1 0.1\n"      # 6 fractional class
                                    "0 0.1 0.1 0.2 0.1 0.2 0.2\n"  # 7 segmentation polygon: its box
                                    "1 0.9 0.9 0.4 0.4\n")       # 8 reaches outside: passes through
    entries, issues = read_all(src)
    assert summary(entries)[0] == ("images/a.jpg", "labels/a.txt", None, None, [
        ("car", (0.25, 0.25, 0.75, 0.75), True, "labels/a.txt:1"),
        ("person", (0.1, 0.1, 0.2, 0.2), True, "labels/a.txt:7"),
        ("bicycle", (0.7, 0.7, 1.1, 1.1), True, "labels/a.txt:8")])
    assert [(i.action, i.reason, str(i.where), i.image) for i in issues.issues] == [
        ("skipped_box", Reason.INVALID_VALUE, "labels/a.txt:2", "images/a.jpg"),
        ("skipped_box", Reason.INVALID_VALUE, "labels/a.txt:4", "images/a.jpg"),
        ("skipped_box", Reason.UNKNOWN_LABEL, "labels/a.txt:5", "images/a.jpg"),
        ("skipped_box", Reason.INVALID_VALUE, "labels/a.txt:6", "images/a.jpg"),
        ("note", Reason.POLYGON_TO_BOX, "labels/a.txt:7", "images/a.jpg"),
    ]
    assert "class id 7" in issues.issues[2].message


def test_unreadable_label_file_skips_that_image_only(tmp_path):
    src = copy(DARKNET, tmp_path)
    (src / "labels" / "a.txt").write_bytes(b"0 0.5 0.5 0.1 0.1\n\x89PNG\x00\xff\n")
    entries, issues = read_all(src)
    assert [e.name for e in entries] == ["images/b.jpg"]
    assert [(i.action, i.reason, i.where, i.image) for i in issues.issues] == [
        ("skipped_image", Reason.UNREADABLE_ANNOTATION, Location("labels/a.txt", line=2), "images/a.jpg")]


def test_label_without_image_is_reported(tmp_path):
    src = copy(DARKNET, tmp_path)
    write(src / "labels" / "orphan.txt", "0 0.5 0.5 0.1 0.1\n")
    entries, issues = read_all(src)
    assert [e.name for e in entries] == ["images/a.jpg", "images/b.jpg"]
    assert [(i.reason, i.where.file) for i in issues.issues] == [(Reason.MISSING_IMAGE, "labels/orphan.txt")]


def test_missing_names_file_is_a_dataset_error(tmp_path):
    src = copy(DARKNET, tmp_path)
    (src / "classes.txt").unlink()
    assert yolo.detect(src)  # images/ + labels/ still say YOLO, so the error below reaches the user
    for call in (lambda: read_all(src), lambda: yolo.labels(src)):
        with pytest.raises(DatasetError) as error:
            call()
        assert "classes.txt" in error.value.hint


@pytest.mark.parametrize("text, message", [("names: [cat\n", "YAML"), ("nc: 2\n", "names:"),
                                           ("names:\n  a: cat\n", "class ids")])
def test_bad_data_yaml_is_a_dataset_error(tmp_path, text, message):
    write(tmp_path / "data.yaml", text)
    write(tmp_path / "images" / "a.jpg", "x")
    with pytest.raises(DatasetError) as error:
        read_all(tmp_path)
    assert message in str(error.value)


def test_no_images_folder_is_a_dataset_error(tmp_path):
    write(tmp_path / "classes.txt", "cat\n")
    write(tmp_path / "labels" / "a.txt", "0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DatasetError) as error:
        read_all(tmp_path)
    assert "images/" in error.value.hint


# -- pose and segmentation labels (issue 9) -------------------------------------------------------------

def test_pose_lines_give_their_box(tmp_path):
    write(tmp_path / "data.yaml", "kpt_shape: [3, 3]\nflip_idx: [0, 2, 1]\nnames:\n  0: person\n")
    write(tmp_path / "images" / "a.jpg", "x")
    write(tmp_path / "labels" / "a.txt", "0 0.5 0.5 0.2 0.4 0.5 0.4 2 0.45 0.5 2 0.55 0.5 1\n"
                                         "0 0.5 0.5 0.2 0.4 0.5 0.4\n")  # 7 fields: not 5 + 3x3
    entries, issues = read_all(tmp_path)
    assert boxes(entries[0]) == [("person", (0.4, 0.3, 0.6, 0.7), True, "labels/a.txt:1")]
    assert [(i.reason, str(i.where)) for i in issues.issues] == [(Reason.INVALID_VALUE, "labels/a.txt:2")]
    assert "kpt_shape" in issues.issues[0].message


def test_pose_lines_with_two_value_keypoints_are_not_polygons(tmp_path):
    write(tmp_path / "data.yaml", "kpt_shape: [2, 2]\nnames: ['hand']\n")
    write(tmp_path / "images" / "a.jpg", "x")
    write(tmp_path / "labels" / "a.txt", "0 0.5 0.5 0.2 0.2 0.45 0.45 0.55 0.55\n")
    entries, issues = read_all(tmp_path)
    assert boxes(entries[0]) == [("hand", (0.4, 0.4, 0.6, 0.6), True, "labels/a.txt:1")]
    assert issues.issues == []


def test_segmentation_polygons_give_their_bounding_box(tmp_path):
    write(tmp_path / "classes.txt", "cat\n")
    write(tmp_path / "images" / "a.jpg", "x")
    write(tmp_path / "labels" / "a.txt", "0 0.1 0.2 0.5 0.1 0.4 0.6 0.2 0.5\n")
    entries, issues = read_all(tmp_path)
    assert boxes(entries[0]) == [("cat", (0.1, 0.1, 0.5, 0.6), True, "labels/a.txt:1")]
    assert [(i.action, i.reason) for i in issues.issues] == [("note", Reason.POLYGON_TO_BOX)]
    assert "4 points" in issues.issues[0].message


def test_pose_like_line_without_kpt_shape_says_what_to_add(tmp_path):
    write(tmp_path / "classes.txt", "person\n")
    write(tmp_path / "images" / "a.jpg", "x")
    write(tmp_path / "labels" / "a.txt", "0 0.5 0.5 0.2 0.4 0.5 0.4 2 0.45 0.5 2 0.55 0.5 1\n")  # 14 fields
    entries, issues = read_all(tmp_path)
    assert entries[0].boxes == []
    assert issues.issues[0].reason == Reason.INVALID_VALUE and "kpt_shape" in issues.issues[0].message


def test_split_folders_with_years_state_the_split(tmp_path):
    write(tmp_path / "data.yaml", "path: .\ntrain: images/train2017\nval: images/val2017\nnames: ['cat']\n")
    for split in ("train2017", "val2017"):
        write(tmp_path / "images" / split / "a.jpg", "x")
        write(tmp_path / "labels" / split / "a.txt", "0 0.5 0.5 0.2 0.2\n")
    entries, _ = read_all(tmp_path)
    assert [(e.name, e.subset) for e in entries] == [("images/train2017/a.jpg", "train"),
                                                    ("images/val2017/a.jpg", "val")]
