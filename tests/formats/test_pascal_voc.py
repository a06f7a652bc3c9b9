"""Pascal VOC reader: LabelImg (raccoon) and VOC devkit layouts from checked-in fixtures, errors in tmp_path."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from odstack.errors import DatasetError
from odstack.formats import pascal_voc
from odstack.annotations import IssueLog, Location, Reason

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "formats"
LABELIMG = FIXTURES / "pascal_voc" / "labelimg"
DEVKIT = FIXTURES / "pascal_voc" / "devkit"


def boxes(entry):
    return [(b.label, b.xmin, b.ymin, b.xmax, b.ymax, b.difficult, b.truncated, b.normalized, b.where.item)
            for b in entry.boxes]


def summary(entries):
    return [(e.name, e.where.file, e.declared_size, e.subset, boxes(e)) for e in entries]


def read_all(src: Path):
    issues = IssueLog()
    return list(pascal_voc.read(src, issues)), issues


def copy(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / src.name))


def voc_xml(filename: str, objects: str = "", size: str = "<size><width>32</width><height>24</height></size>") -> str:
    return f"<annotation><folder>images</folder><filename>{filename}</filename>{size}{objects}</annotation>\n"


# -- detect ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("src", [LABELIMG, LABELIMG / "annotations", DEVKIT, DEVKIT.parent])
def test_detect_accepts_voc_layouts(src):
    assert pascal_voc.detect(src)


@pytest.mark.parametrize("src", [FIXTURES / "tf_csv" / "split", FIXTURES / "tf_csv" / "vott",
                                 FIXTURES / "yolo" / "ultralytics", FIXTURES / "yolo" / "darknet",
                                 LABELIMG / "annotations" / "cat.xml"])
def test_detect_rejects_other_formats(src):
    assert not pascal_voc.detect(src)


def test_detect_rejects_empty_missing_and_foreign_xml(tmp_path):
    assert not pascal_voc.detect(tmp_path)
    assert not pascal_voc.detect(tmp_path / "nope")
    # CVAT's own XML has an <annotations> root: not VOC
    (tmp_path / "annotations.xml").write_text("<annotations><version>1.1</version><image id='0'/></annotations>")
    assert not pascal_voc.detect(tmp_path)


# -- read: fixtures --------------------------------------------------------------------------------

def test_read_labelimg_raccoon_layout():
    entries, issues = read_all(LABELIMG)
    assert summary(entries) == [
        ("images/cat.jpg", "annotations/cat.xml", (32, 24), None, [
            ("cat", 2, 3, 20, 18, False, True, False, "object 1"),
            ("dog", 5, 5, 30, 22, True, False, False, "object 2")]),
        ("images/chat noir é.jpg", "annotations/chat noir é.xml", (32, 24), None, [
            ("chat", 4, 4, 16, 16, False, False, False, "object 1")]),
        ("images/empty.jpg", "annotations/empty.xml", (32, 24), None, []),
    ]
    assert [e.image for e in entries] == [LABELIMG / "images" / n for n in ("cat.jpg", "chat noir é.jpg", "empty.jpg")]
    assert all(e.image.is_absolute() and e.image.is_file() for e in entries)
    assert issues.issues == []


def test_read_from_annotations_folder_finds_sibling_images():
    # SRC=annotations/: images are in ../images; names stay relative to the dataset folder
    entries, _ = read_all(LABELIMG / "annotations")
    assert [(e.name, e.image.is_file()) for e in entries] == [
        ("images/cat.jpg", True), ("images/chat noir é.jpg", True), ("images/empty.jpg", True)]


def test_read_devkit_subsets_from_imagesets():
    entries, issues = read_all(DEVKIT)
    assert summary(entries) == [
        ("JPEGImages/2008_000001.jpg", "Annotations/2008_000001.xml", (32, 24), "train", [
            ("person", 1, 2, 12, 20, False, False, False, "object 1")]),  # <part> boxes are not objects
        ("JPEGImages/2008_000002.jpg", "Annotations/2008_000002.xml", (32, 24), "val", [
            ("dog", 10.5, 3.25, 30, 23, False, True, False, "object 1"),
            ("person", 0, 0, 5, 5, True, False, False, "object 2")]),
        ("JPEGImages/2008_000003.jpg", "Annotations/2008_000003.xml", (32, 24), "test", [  # test.txt -> test
            ("cat", 4, 4, 28, 20, False, False, False, "object 1")]),
        ("JPEGImages/2008_000004.jpg", "Annotations/2008_000004.xml", (32, 24), None, [  # in no list
            ("cat", 1, 1, 9, 9, False, False, False, "object 1")]),
    ]
    assert all(e.image.is_file() for e in entries)
    assert issues.issues == []


def test_trainval_only_means_train(tmp_path):
    src = copy(DEVKIT, tmp_path)
    main = src / "ImageSets" / "Main"
    (main / "train.txt").unlink()
    (main / "val.txt").unlink()
    entries, _ = read_all(src)
    assert [e.subset for e in entries] == ["train", "train", "test", None]


def test_split_folders_without_imagesets(tmp_path):
    # Roboflow's VOC export: train/ valid/ test/ with images and XML side by side
    for split in ("train", "valid", "test"):
        (tmp_path / split).mkdir()
        (tmp_path / split / f"{split}.xml").write_text(voc_xml(f"{split}.jpg"))
    entries, _ = read_all(tmp_path)
    assert [(e.name, e.subset) for e in entries] == [
        ("test/test.jpg", "test"), ("train/train.jpg", "train"), ("valid/valid.jpg", "val")]


def test_labels_is_none():
    assert pascal_voc.labels(LABELIMG) is None


# -- image path resolution -------------------------------------------------------------------------

def test_image_resolution_order_and_fallbacks(tmp_path):
    (tmp_path / "ann").mkdir()
    (tmp_path / "pics").mkdir()
    (tmp_path / "ann" / "same_dir.jpg").write_bytes(b"x")
    (tmp_path / "ann" / "same_dir.xml").write_text(voc_xml("same_dir.jpg"))
    (tmp_path / "at_root.jpg").write_bytes(b"x")
    (tmp_path / "ann" / "at_root.xml").write_text(voc_xml("at_root.jpg"))
    # <filename> wrong, <path> (Windows, annotator's machine) right: its basename is found
    (tmp_path / "ann" / "real name.jpg").write_bytes(b"x")
    (tmp_path / "ann" / "by_path.xml").write_text(
        "<annotation><filename>renamed.jpg</filename><path>C:\\Users\\me\\real name.jpg</path></annotation>")
    # <filename> without extension
    (tmp_path / "pics" / "noext.png").write_bytes(b"x")
    (tmp_path / "ann" / "noext.xml").write_text("<annotation><folder>pics</folder><filename>noext</filename>"
                                                "<object><name>a</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                                                "<xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>")
    # nothing exists: the path next to the XML is returned, the converter reports it missing
    (tmp_path / "ann" / "ghost.xml").write_text(voc_xml("ghost.jpg"))
    entries, issues = read_all(tmp_path)
    assert [(e.where.file, e.name) for e in entries] == [
        ("ann/at_root.xml", "at_root.jpg"),
        ("ann/by_path.xml", "ann/real name.jpg"),
        ("ann/ghost.xml", "ann/ghost.jpg"),
        ("ann/noext.xml", "pics/noext.png"),
        ("ann/same_dir.xml", "ann/same_dir.jpg"),
    ]
    assert entries[2].image == tmp_path / "ann" / "ghost.jpg" and not entries[2].image.exists()
    assert issues.issues == []


def test_same_image_in_two_xml_files_yields_both(tmp_path):
    src = copy(LABELIMG, tmp_path)
    shutil.copy(src / "annotations" / "cat.xml", src / "annotations" / "cat copy.xml")
    entries, _ = read_all(src)
    assert [e.name for e in entries].count("images/cat.jpg") == 2


# -- problems --------------------------------------------------------------------------------------

def test_malformed_xml_reported_with_line_and_others_read(tmp_path):
    src = copy(LABELIMG, tmp_path)
    (src / "annotations" / "broken.xml").write_text("<annotation>\n  <filename>x.jpg</filename>\n  <object>\n")
    (src / "annotations" / "notes.xml").write_text("<notes><note>hi</note></notes>")
    entries, issues = read_all(src)
    assert [e.name for e in entries] == ["images/cat.jpg", "images/chat noir é.jpg", "images/empty.jpg"]
    assert [(i.action, i.reason, i.where.file, i.where.line) for i in issues.issues] == [
        ("skipped_image", Reason.UNREADABLE_ANNOTATION, "annotations/broken.xml", 4),
        ("skipped_image", Reason.UNREADABLE_ANNOTATION, "annotations/notes.xml", None),
    ]
    assert "<notes>" in issues.issues[1].message


def test_invalid_missing_coordinates_and_polygon_skip_only_that_box(tmp_path):
    def obj(name, shape):
        return f"<object><name>{name}</name>{shape}</object>"

    def bndbox(**coords):
        return "<bndbox>" + "".join(f"<{k}>{v}</{k}>" for k, v in coords.items()) + "</bndbox>"

    objects = (obj("ok", bndbox(xmin=1, ymin=2, xmax=3, ymax=4))
               + obj("bad", bndbox(xmin=1, ymin="two", xmax=3))
               + obj("poly", "<polygon><x1>1</x1><y1>1</y1></polygon>")
               + obj("nan", bndbox(xmin="nan", ymin=1, xmax=3, ymax=4))
               + obj(" ", bndbox(xmin=9, ymin=9, xmax=1, ymax=1)))
    (tmp_path / "a.xml").write_text(voc_xml("a.jpg", objects, size="<size><width>?</width><height>24</height></size>"))
    entries, issues = read_all(tmp_path)
    (entry,) = entries
    # geometry is not judged here (inverted box passes), an empty name passes as "" for the converter
    assert boxes(entry) == [("ok", 1, 2, 3, 4, False, False, False, "object 1"),
                            ("", 9, 9, 1, 1, False, False, False, "object 5")]
    assert entry.declared_size is None
    assert [(i.action, i.reason, str(i.where), i.image) for i in issues.issues] == [
        ("skipped_box", Reason.INVALID_VALUE, "a.xml (object 2)", "a.jpg"),
        ("skipped_box", Reason.UNSUPPORTED_SHAPE, "a.xml (object 3)", "a.jpg"),
        ("skipped_box", Reason.INVALID_VALUE, "a.xml (object 4)", "a.jpg"),
        ("note", Reason.INVALID_VALUE, "a.xml (size)", "a.jpg"),
    ]
    assert "ymin='two'" in issues.issues[0].message and "ymax missing" in issues.issues[0].message


def test_zero_size_means_unknown(tmp_path):
    (tmp_path / "a.xml").write_text(voc_xml("a.jpg", size="<size><width>0</width><height>0</height></size>"))
    entries, issues = read_all(tmp_path)
    assert entries[0].declared_size is None and issues.issues == []


def test_no_xml_is_a_dataset_error(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(DatasetError) as error:
        read_all(tmp_path)
    assert error.value.where == str(tmp_path) and error.value.hint


def test_hidden_and_macos_junk_ignored(tmp_path):
    (tmp_path / "a.xml").write_text(voc_xml("a.jpg"))
    (tmp_path / "._a.xml").write_bytes(b"\x00\x05\x16\x07junk")
    (tmp_path / "__MACOSX").mkdir()
    (tmp_path / "__MACOSX" / "b.xml").write_bytes(b"\x00junk")
    entries, issues = read_all(tmp_path)
    assert [e.name for e in entries] == ["a.jpg"] and issues.issues == []
    assert entries[0].where == Location("a.xml")
