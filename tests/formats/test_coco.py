"""COCO reader: official and Roboflow layouts from checked-in fixtures, error cases written to tmp_path."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from odstack.errors import DatasetError
from odstack.formats import coco
from odstack.annotations import IssueLog, Location, Reason

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "formats"
OFFICIAL = FIXTURES / "coco" / "official"
ROBOFLOW = FIXTURES / "coco" / "roboflow"
CATEGORIES = [{"supercategory": "animal", "id": 1, "name": "cat"}, {"supercategory": "animal", "id": 2, "name": "dog"}]


def boxes(entry):
    return [(b.label, b.xmin, b.ymin, b.xmax, b.ymax, b.is_crowd, b.normalized, b.where.item) for b in entry.boxes]


def summary(entries):
    return [(e.name, e.declared_size, e.subset, boxes(e)) for e in entries]


def write_coco(path: Path, images, annotations, categories=CATEGORIES) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}),
                    encoding="utf-8")
    return path


def read_all(src: Path):
    issues = IssueLog()
    return list(coco.read(src, issues)), issues


# -- detect ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("src", [OFFICIAL, ROBOFLOW, OFFICIAL / "annotations" / "instances_val2017.json",
                                 ROBOFLOW / "train" / "_annotations.coco.json"])
def test_detect_accepts_coco_layouts(src):
    assert coco.detect(src)


@pytest.mark.parametrize("src", [FIXTURES / "supervisely" / "project",
                                 FIXTURES / "supervisely" / "project" / "meta.json",
                                 FIXTURES / "cloud_annotations", FIXTURES / "cloud_annotations" / "_annotations.json"])
def test_detect_rejects_other_formats(src):
    assert not coco.detect(src)


def test_detect_rejects_empty_and_missing_dirs(tmp_path):
    assert not coco.detect(tmp_path)
    assert not coco.detect(tmp_path / "nope")


def test_detect_rejects_captions_file(tmp_path):
    # captions_*.json has images and annotations but no categories and no boxes
    (tmp_path / "captions.json").write_text(json.dumps({"images": [], "annotations": []}))
    assert not coco.detect(tmp_path)


def test_detect_big_file_in_official_key_order(tmp_path):
    # Over PARSE_LIMIT only the head and tail are read: images first, categories last, like instances_train2017.
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480,
               "coco_url": "http://images.cocodataset.org/train2017/x.jpg"} for i in range(60000)]
    annotations = [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 2, 3, 4], "iscrowd": 0, "area": 12}
                   for i in range(60000)]
    path = tmp_path / "annotations" / "instances_train2017.json"
    write_coco(path, images, annotations)
    assert path.stat().st_size > coco.CocoLayout.PARSE_LIMIT
    assert coco.detect(tmp_path) and coco.detect(path)
    big_ca = tmp_path / "ca" / "big.json"
    big_ca.parent.mkdir()
    big_ca.write_text(json.dumps({"labels": ["cat"], "annotations": {
        f"images_{i}.jpg": [{"x": 0.1, "y": 0.1, "x2": 0.2, "y2": 0.2, "label": "cat"}] for i in range(120000)}}))
    assert big_ca.stat().st_size > coco.CocoLayout.PARSE_LIMIT
    assert not coco.detect(big_ca)


# -- read: fixtures --------------------------------------------------------------------------------

def test_read_official_layout():
    entries, issues = read_all(OFFICIAL)
    assert issues.issues == []
    assert summary(entries) == [
        ("train2017/000000000139.jpg", (32, 24), "train", [
            ("person", 2.5, 3.0, 12.5, 15.5, False, False, "annotation id 101"),
            ("dog", 15.0, 4.0, 27.0, 14.0, False, False, "annotation id 102")]),
        ("train2017/000000000285.jpg", (32, 24), "train", [
            ("person", 0.0, 0.0, 32.0, 24.0, True, False, "annotation id 103")]),
        ("val2017/000000000632.jpg", (32, 24), "val", [
            ("car", 4.0, 5.0, 10.0, 12.0, False, False, "annotation id 201")]),
        ("val2017/café photo 1.jpg", (40, 30), "val", [
            ("dog", 1.0, 1.0, 31.0, 21.0, False, False, "annotation id 202")]),
        ("val2017/000000000776.jpg", (32, 24), "val", []),  # listed without annotations: a negative
    ]
    for entry in entries:
        assert entry.image == OFFICIAL / entry.name and entry.image.is_file()
    assert entries[0].where == Location("annotations/instances_train2017.json", item="image id 139")
    assert entries[0].boxes[0].where.file == "annotations/instances_train2017.json"


def test_read_roboflow_layout():
    entries, issues = read_all(ROBOFLOW)
    assert issues.issues == []
    assert summary(entries) == [
        ("test/img4_jpg.rf.0d0d13.jpg", (32, 24), "test", []),
        ("train/img1_jpg.rf.3f1a9c.jpg", (32, 24), "train", [
            ("cat", 1.5, 2.0, 11.5, 10.25, False, False, "annotation id 0"),
            ("dog", 14.0, 3.0, 26.0, 18.0, False, False, "annotation id 1")]),
        ("train/img 2_jpg.rf.9c2e01.jpg", (32, 24), "train", [
            ("dog", 0.0, 0.0, 31.0, 23.0, False, False, "annotation id 2")]),
        ("valid/img3_jpg.rf.77ab42.jpg", (32, 24), "val", [
            ("cat", 5.0, 6.0, 12.0, 14.0, False, False, "annotation id 0")]),
    ]
    assert all(entry.image.is_file() for entry in entries)


def test_single_file_has_no_subset_and_is_deterministic():
    src = OFFICIAL / "annotations" / "instances_val2017.json"
    first, _ = read_all(src)
    second, _ = read_all(src)
    assert [e.subset for e in first] == [None, None, None]
    assert [e.name for e in first] == [
        "val2017/000000000632.jpg", "val2017/café photo 1.jpg", "val2017/000000000776.jpg"]
    assert summary(first) == summary(second)


def test_labels_sorted_by_id_without_roboflow_placeholder(tmp_path):
    assert coco.labels(OFFICIAL) == ["person", "car", "dog"]
    assert coco.labels(ROBOFLOW) == ["cat", "dog"]
    cats = [{"id": 7, "name": "zebra"}, {"id": 2, "name": "ant"}, {"id": 4, "name": "cow"}]
    write_coco(tmp_path / "coco.json", [], [], cats)
    assert coco.labels(tmp_path) == ["ant", "cow", "zebra"]


def test_loose_json_with_images_folder(tmp_path):
    write_coco(tmp_path / "labels.json", [{"id": "x1", "file_name": "dir one/ñandú.jpg", "width": 8, "height": 6}],
               [{"id": 1, "image_id": "x1", "category_id": 2, "bbox": [0, 0, 4, 3], "iscrowd": 0}])
    image = tmp_path / "images" / "dir one" / "ñandú.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"not decoded by the reader")
    assert coco.detect(tmp_path)
    entries, issues = read_all(tmp_path)
    assert issues.issues == []
    assert summary(entries) == [
        ("images/dir one/ñandú.jpg", (8, 6), None, [("dog", 0, 0, 4, 3, False, False, "annotation id 1")])]
    assert entries[0].image == image


# -- read: problems --------------------------------------------------------------------------------

def test_unparseable_json_names_file_and_line(tmp_path):
    path = tmp_path / "annotations" / "instances_val.json"
    path.parent.mkdir()
    path.write_text('{\n  "images": [],\n  "annotations": [,],\n  "categories": []\n}\n')
    assert coco.detect(tmp_path)  # still recognized, so the user gets the line below
    with pytest.raises(DatasetError) as error:
        read_all(tmp_path)
    assert error.value.where == Location("annotations/instances_val.json", line=3)
    assert error.value.hint


def test_missing_keys_and_no_json_are_dataset_errors(tmp_path):
    path = tmp_path / "annotations" / "instances_train.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DatasetError, match="'categories'"):
        read_all(tmp_path)
    with pytest.raises(DatasetError, match="no COCO annotation JSON"):
        read_all(tmp_path / "annotations" / "elsewhere")


def test_invalid_values_skip_only_those_boxes(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg", "width": "wide", "height": 6}, {"file_name": "no_id.jpg"},
              {"id": 1, "file_name": "again.jpg"}]
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]},
        {"id": 11, "image_id": 1, "category_id": 1, "bbox": ["1", 2, 3, 4]},
        {"id": 12, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3]},
        {"id": 13, "image_id": 1, "category_id": 1},
        {"id": 14, "image_id": 99, "category_id": 1, "bbox": [1, 2, 3, 4]},
        {"id": 15, "image_id": 1, "category_id": "cat", "bbox": [1, 2, 3, 4]},
        {"id": 16, "image_id": 1, "category_id": 2, "bbox": [5, 5, 0, -1], "iscrowd": 1},  # geometry: converter's job
    ]
    write_coco(tmp_path / "coco.json", images, annotations)
    entries, issues = read_all(tmp_path)
    assert summary(entries) == [("a.jpg", None, None, [("cat", 1, 2, 4, 6, False, False, "annotation id 10"),
                                                       ("dog", 5, 5, 5, 4, True, False, "annotation id 16")])]
    found = [(i.action, i.reason, i.where.item) for i in issues.issues]
    assert found == [
        ("note", Reason.INVALID_VALUE, "image id 1"),
        ("skipped_image", Reason.INVALID_VALUE, "images[1]"),
        ("skipped_image", Reason.DUPLICATE_ENTRY, "image id 1"),
        ("skipped_box", Reason.INVALID_VALUE, "annotation id 11"),
        ("skipped_box", Reason.INVALID_VALUE, "annotation id 12"),
        ("skipped_box", Reason.INVALID_VALUE, "annotation id 13"),
        ("skipped_box", Reason.INVALID_VALUE, "annotation id 14"),
        ("skipped_box", Reason.INVALID_VALUE, "annotation id 15"),
    ]
    assert all(i.where.file == "coco.json" for i in issues.issues)


def test_unknown_category_and_segmentation_only(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 6}]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 5, "bbox": [1, 1, 2, 2]},
        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 4, 1, 4, 4]], "area": 4.5},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [], "segmentation": {"counts": "PPYo1", "size": [6, 8]}},
        {"id": 4, "image_id": 1, "category_id": 2, "bbox": [0, 0, 8, 6]},
    ]
    write_coco(tmp_path / "coco.json", images, annotations)
    entries, issues = read_all(tmp_path)
    assert summary(entries) == [("a.jpg", (8, 6), None, [("dog", 0, 0, 8, 6, False, False, "annotation id 4")])]
    assert [(i.reason, i.where.item, i.image) for i in issues.skips] == [
        (Reason.UNKNOWN_LABEL, "annotation id 1", "a.jpg"),
        (Reason.UNSUPPORTED_SHAPE, "annotation id 2", "a.jpg"),
        (Reason.UNSUPPORTED_SHAPE, "annotation id 3", "a.jpg"),
    ]
    assert "segmentation" in issues.skips[1].message


def test_instances_preferred_over_other_annotation_files(tmp_path):
    shutil.copytree(OFFICIAL / "annotations", tmp_path / "annotations")
    write_coco(tmp_path / "annotations" / "person_keypoints_val2017.json",
               [{"id": 1, "file_name": "k.jpg"}], [])
    entries, _ = read_all(tmp_path)
    assert len(entries) == 5 and "val2017/k.jpg" not in [e.name for e in entries]
    # without the image folders, images are placed in <split>/ for the converter to report missing
    assert entries[0].image == tmp_path / "train2017" / "000000000139.jpg"


# -- task files (issue 9) ------------------------------------------------------------------------------

def test_keypoint_task_file_gives_its_boxes_with_the_right_split_and_folder(tmp_path):
    # person_keypoints_val2017.json alone: the split is val2017, images are in val2017/
    (tmp_path / "val2017").mkdir()
    (tmp_path / "val2017" / "a.jpg").write_bytes(b"x")
    write_coco(tmp_path / "annotations" / "person_keypoints_val2017.json",
               [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
               [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 20], "num_keypoints": 1,
                 "keypoints": [5, 5, 2] + [0, 0, 0] * 16, "iscrowd": 0}],
               [{"supercategory": "person", "id": 1, "name": "person", "keypoints": ["nose"], "skeleton": []}])
    assert coco.detect(tmp_path)
    entries, issues = read_all(tmp_path)
    assert summary(entries) == [("val2017/a.jpg", (64, 48), None, [("person", 1, 2, 11, 22, False, False,
                                                                     "annotation id 5")])]
    assert entries[0].image == tmp_path / "val2017" / "a.jpg" and issues.issues == []


def test_task_files_per_split_instances_preferred(tmp_path):
    for split in ("train2017", "val2017"):
        (tmp_path / split).mkdir()
        (tmp_path / split / f"{split}.jpg").write_bytes(b"x")
    image = lambda split: [{"id": 1, "file_name": f"{split}.jpg"}]  # noqa: E731
    box = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}]
    write_coco(tmp_path / "annotations" / "instances_train2017.json", image("train2017"), box)
    write_coco(tmp_path / "annotations" / "stuff_train2017.json", image("train2017"), box)  # same images again
    write_coco(tmp_path / "annotations" / "stuff_val2017.json", image("val2017"), box)      # val only has stuff
    entries, issues = read_all(tmp_path)
    assert [(e.name, e.subset) for e in entries] == [("train2017/train2017.jpg", "train"),
                                                    ("val2017/val2017.jpg", "val")]
    assert issues.issues == []


def test_panoptic_only_is_explained(tmp_path):
    from odstack.data.convert import DataSettings, convert

    write_coco(tmp_path / "annotations" / "panoptic_val2017.json", [{"id": 1, "file_name": "a.jpg"}],
               [{"image_id": 1, "file_name": "a.png",
                 "segments_info": [{"id": 3, "category_id": 1, "bbox": [1, 1, 2, 2]}]}])
    assert not coco.detect(tmp_path)
    with pytest.raises(DatasetError, match="panoptic_val2017.json hold no box per annotation"):
        convert(DataSettings(src=tmp_path, out=tmp_path.parent / "out", format="coco"))
