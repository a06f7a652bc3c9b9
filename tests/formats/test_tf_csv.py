"""TF/VoTT CSV reader: raccoon-style split CSVs and a VoTT export from fixtures, errors in tmp_path."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from odstack.errors import DatasetError
from odstack.formats import tf_csv
from odstack.annotations import IssueLog, Reason

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "formats"
SPLIT = FIXTURES / "tf_csv" / "split"  # raccoon layout: data/*.csv, images in ../images
VOTT = FIXTURES / "tf_csv" / "vott"
HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax\n"


def boxes(entry):
    return [(b.label, b.xmin, b.ymin, b.xmax, b.ymax, b.normalized, b.where.file, b.where.line) for b in entry.boxes]


def summary(entries):
    return [(e.name, str(e.where), e.declared_size, e.subset, boxes(e)) for e in entries]


def read_all(src: Path):
    issues = IssueLog()
    return list(tf_csv.read(src, issues)), issues


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


# -- detect ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("src", [SPLIT / "data", SPLIT / "data" / "train_labels.csv", VOTT, VOTT / "Pets-export.csv"])
def test_detect_accepts_csv_layouts(src):
    assert tf_csv.detect(src)


@pytest.mark.parametrize("src", [FIXTURES / "pascal_voc" / "labelimg", FIXTURES / "pascal_voc" / "devkit",
                                 FIXTURES / "yolo" / "ultralytics", FIXTURES / "yolo" / "darknet",
                                 FIXTURES / "yolo" / "darknet" / "classes.txt"])
def test_detect_rejects_other_formats(src):
    assert not tf_csv.detect(src)


def test_detect_rejects_empty_missing_and_foreign_csv(tmp_path):
    assert not tf_csv.detect(tmp_path)
    assert not tf_csv.detect(tmp_path / "nope.csv")
    write(tmp_path / "metrics.csv", "epoch,loss\n1,0.5\n")
    assert not tf_csv.detect(tmp_path)
    assert not tf_csv.detect(tmp_path / "metrics.csv")


def test_detect_roboflow_split_folders(tmp_path):
    write(tmp_path / "train" / "_annotations.csv", HEADER)
    assert tf_csv.detect(tmp_path)


# -- read: fixtures --------------------------------------------------------------------------------

def test_read_split_csvs_groups_rows_and_ignores_union_file():
    entries, issues = read_all(SPLIT / "data")
    # all_labels.csv (the union, like raccoon_labels.csv) is ignored: train/test files state the split.
    # CSVs in sorted order (test_labels before train_labels), images in first-seen row order.
    assert summary(entries) == [
        ("images/empty.jpg", "test_labels.csv:2", (32, 24), "test", []),
        ("images/cat.jpg", "train_labels.csv:2", (32, 24), "train", [
            ("cat", 2, 3, 20, 18, False, "train_labels.csv", 2),
            ("dog", 5, 5, 30, 22, False, "train_labels.csv", 4)]),
        ("images/two.jpg", "train_labels.csv:3", (32, 24), "train", [
            ("cat", 1, 1, 10, 10, False, "train_labels.csv", 3),
            ("dog", 12, 2, 31, 23, False, "train_labels.csv", 5)]),
        ("images/chat noir é.jpg", "train_labels.csv:6", (32, 24), "train", [
            ("chat", 4, 4, 16, 16, False, "train_labels.csv", 6)]),
    ]
    assert all(e.image.is_absolute() and e.image.is_file() for e in entries)
    assert entries[1].image == SPLIT / "images" / "cat.jpg"
    assert issues.issues == []


def test_read_single_csv_has_no_subset():
    entries, issues = read_all(SPLIT / "data" / "all_labels.csv")
    assert [(e.name, e.subset, len(e.boxes)) for e in entries] == [
        ("images/cat.jpg", None, 2), ("images/two.jpg", None, 2), ("images/chat noir é.jpg", None, 1),
        ("images/empty.jpg", None, 0)]
    assert issues.issues == []


def test_read_vott_export():
    entries, issues = read_all(VOTT)
    assert summary(entries) == [
        ("dog.jpg", "Pets-export.csv:2", None, None, [
            ("dog", 1.5, 2.25, 20.75, 18, False, "Pets-export.csv", 2),
            ("cat", 0, 0, 8, 8, False, "Pets-export.csv", 4)]),
        ("my cat ü.jpg", "Pets-export.csv:3", None, None, [
            ("cat", 3, 4, 28.5, 22, False, "Pets-export.csv", 3)]),
    ]
    assert all(e.image.is_file() for e in entries)
    assert issues.issues == []


def test_labels_is_none():
    assert tf_csv.labels(VOTT) is None


def test_roboflow_folders_and_images_next_to_csv(tmp_path):
    for split in ("train", "valid", "test"):
        write(tmp_path / split / "_annotations.csv", HEADER + f"{split} img.jpg,32,24,cat,1,2,3,4\n")
        (tmp_path / split / f"{split} img.jpg").write_bytes(b"x")
    entries, _ = read_all(tmp_path)
    assert [(e.name, e.subset, e.where.file, e.image.is_file()) for e in entries] == [
        ("test/test img.jpg", "test", "test/_annotations.csv", True),
        ("train/train img.jpg", "train", "train/_annotations.csv", True),
        ("valid/valid img.jpg", "val", "valid/_annotations.csv", True)]


def test_several_unsplit_csvs_are_all_read(tmp_path):
    write(tmp_path / "a.csv", HEADER + "x.jpg,32,24,cat,1,2,3,4\n")
    write(tmp_path / "b.csv", HEADER + "x.jpg,32,24,dog,1,2,3,4\n")
    entries, _ = read_all(tmp_path)
    # same image in two files: both yielded (the converter reports duplicate_entry)
    assert [(e.name, e.subset, e.where.file, e.boxes[0].label) for e in entries] == [
        ("x.jpg", None, "a.csv", "cat"), ("x.jpg", None, "b.csv", "dog")]


def test_image_resolution_paths_in_filename(tmp_path):
    (tmp_path / "images" / "sub").mkdir(parents=True)
    (tmp_path / "images" / "sub" / "in sub.jpg").write_bytes(b"x")
    (tmp_path / "images" / "base.jpg").write_bytes(b"x")
    write(tmp_path / "labels.csv", HEADER + "sub/in sub.jpg,32,24,a,1,2,3,4\n"
                                            "C:\\data\\base.jpg,32,24,a,1,2,3,4\n"
                                            "missing.jpg,32,24,a,1,2,3,4\n")
    entries, _ = read_all(tmp_path)
    assert [(e.name, e.image.exists()) for e in entries] == [
        ("images/sub/in sub.jpg", True), ("images/base.jpg", True), ("missing.jpg", False)]
    assert entries[2].image == tmp_path / "missing.jpg"


# -- problems --------------------------------------------------------------------------------------

def test_bom_negatives_empty_labels_and_invalid_values(tmp_path):
    write(tmp_path / "labels.csv",
          HEADER + "a.jpg,32,24,cat,1,2,3,4\n"
                   "a.jpg,32,24,cat,1,two,3,4\n"   # line 3: bad coordinate
                   "b.jpg,32,24,,,,,\n"            # line 4: negative
                   "\n"                            # line 5: blank, skipped
                   "c.jpg,32,24,,5,6,7,8\n"        # line 6: empty label passes through
                   "d.jpg,wide,24,cat,9,9,1,1\n"   # line 7: bad width (note), inverted box passes through
                   "e.jpg,32,24,cat,1,2\n"         # line 8: short row
                   ",32,24,cat,1,2,3,4\n",         # line 9: no file name
          encoding="utf-8-sig")
    entries, issues = read_all(tmp_path / "labels.csv")
    assert [(e.name, e.declared_size, [(b.label, b.xmin, b.ymin, b.xmax, b.ymax, b.where.line) for b in e.boxes])
            for e in entries] == [
        ("a.jpg", (32, 24), [("cat", 1, 2, 3, 4, 2)]),
        ("b.jpg", (32, 24), []),
        ("c.jpg", (32, 24), [("", 5, 6, 7, 8, 6)]),
        ("d.jpg", None, [("cat", 9, 9, 1, 1, 7)]),
        ("e.jpg", (32, 24), []),
    ]
    assert [(i.action, i.reason, str(i.where), i.image) for i in issues.issues] == [
        ("skipped_box", Reason.INVALID_VALUE, "labels.csv:3", "a.jpg"),
        ("note", Reason.INVALID_VALUE, "labels.csv:7", "d.jpg"),
        ("skipped_box", Reason.INVALID_VALUE, "labels.csv:8", "e.jpg"),
        ("skipped_box", Reason.INVALID_VALUE, "labels.csv:9", None),
    ]
    assert "ymin='two'" in issues.issues[0].message
    assert "xmax missing" in issues.issues[2].message


def test_multiline_quoted_field_keeps_physical_line_numbers(tmp_path):
    write(tmp_path / "labels.csv", HEADER + '"a\nb.jpg",32,24,cat,1,2,3,4\nc.jpg,32,24,cat,1,2,3,x\n')
    entries, issues = read_all(tmp_path)
    assert [e.name for e in entries] == ["a\nb.jpg", "c.jpg"]
    assert entries[0].boxes[0].where.line == 2
    assert issues.issues[0].where.line == 4


def test_malformed_csv_reported_with_line_and_others_read(tmp_path):
    write(tmp_path / "a.csv", HEADER + "ok.jpg,32,24,cat,1,2,3,4\n")
    write(tmp_path / "b.csv", HEADER + "x.jpg,32,24,cat,1,2,3,4\n\"y.jpg\"oops,32,24,cat,1,2,3,4\n")
    write(tmp_path / "c.csv", HEADER + "z.jpg,32,24,cat,1,2,3,4\n")
    (tmp_path / "d.csv").write_bytes(HEADER.encode() + b"ok.jpg,32,24,cat,1,2,3,4\n\xff\xfe.jpg,32,24,cat,1,2,3,4\n")
    entries, issues = read_all(tmp_path)
    assert [(e.where.file, e.name) for e in entries] == [("a.csv", "ok.jpg"), ("c.csv", "z.jpg")]
    assert [(i.action, i.reason, i.where.file, i.where.line) for i in issues.issues] == [
        ("skipped_image", Reason.UNREADABLE_ANNOTATION, "b.csv", 3),
        ("skipped_image", Reason.UNREADABLE_ANNOTATION, "d.csv", 3),
    ]


def test_header_without_required_columns_is_a_dataset_error(tmp_path):
    path = write(tmp_path / "labels.csv", "filename,class,x,y\na.jpg,cat,1,2\n")
    with pytest.raises(DatasetError) as error:
        read_all(path)
    assert error.value.where.line == 1 and "xmin" in error.value.hint
    # in a folder too: a CSV that looks like annotations but misses columns is not silently skipped
    with pytest.raises(DatasetError):
        read_all(tmp_path)


def test_foreign_csv_in_folder_is_ignored(tmp_path):
    write(tmp_path / "labels.csv", HEADER + "a.jpg,32,24,cat,1,2,3,4\n")
    write(tmp_path / "metrics.csv", "epoch,loss\n1,0.5\n")
    entries, issues = read_all(tmp_path)
    assert [e.name for e in entries] == ["a.jpg"] and issues.issues == []


def test_no_csv_is_a_dataset_error_pointing_at_subfolder(tmp_path):
    write(tmp_path / "data" / "labels.csv", HEADER)
    with pytest.raises(DatasetError) as error:
        read_all(tmp_path)
    assert "data" in error.value.hint
    with pytest.raises(DatasetError):
        read_all(tmp_path / "missing")


def test_reading_is_deterministic(tmp_path):
    src = Path(shutil.copytree(SPLIT, tmp_path / "copy"))
    assert summary(read_all(src / "data")[0]) == summary(read_all(SPLIT / "data")[0])
