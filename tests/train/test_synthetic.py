"""The synthetic shapes dataset: deterministic, a COCO dataset the converter detects, and its boxes
arrive in the TFRecords exactly as drawn."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from odstack import formats, labelmap, tfrecord
from odstack.data.convert import DataSettings, convert
from odstack.data.synthetic import ANNOTATION_FILE, CLASSES, make_shapes
from odstack.tfrecord import Keys


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    a = make_shapes(tmp_path / "a", images=6, seed=3)
    b = make_shapes(tmp_path / "b", images=6, seed=3)
    c = make_shapes(tmp_path / "c", images=6, seed=4)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()) and len(names) == 7
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in names)
    assert (a / "shape_00000.jpg").read_bytes() != (c / "shape_00000.jpg").read_bytes()


def test_boxes_are_tight_and_disjoint(tmp_path):
    out = make_shapes(tmp_path / "s", images=30, size=96, seed=1)
    coco = json.loads((out / ANNOTATION_FILE).read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert list(names.values()) == list(CLASSES)
    per_image: dict[int, list] = {}
    for ann in coco["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann)
    assert len(per_image) == 30 and all(1 <= len(v) <= 3 for v in per_image.values())
    for image in coco["images"]:
        pixels = np.asarray(Image.open(out / image["file_name"]).convert("RGB"), dtype=int)
        assert pixels.shape == (96, 96, 3)
        boxes = per_image[image["id"]]
        for ann in boxes:
            x, y, w, h = ann["bbox"]
            assert x >= 0 and y >= 0 and x + w <= 96 and y + h <= 96 and w == h
            # the box centre is inside every shape and has the class colour (JPEG: a loose tolerance)
            centre = pixels[y + h // 2, x + w // 2]
            assert np.abs(centre - CLASSES[names[ann["category_id"]]]).max() < 40
            # the shape reaches the box's bottom edge (square, circle and triangle all touch it)
            bottom = pixels[y + h - 1, x:x + w]
            assert (np.abs(bottom - CLASSES[names[ann["category_id"]]]).max(axis=1) < 40).any()
        for i, first in enumerate(boxes):
            for second in boxes[i + 1:]:
                (x1, y1, w1, h1), (x2, y2, w2, h2) = first["bbox"], second["bbox"]
                assert x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1


def test_converts_as_coco_with_the_same_boxes(tmp_path):
    src = make_shapes(tmp_path / "shapes", images=40, size=128, seed=0)
    assert formats.detect(src) == "coco"
    report = convert(DataSettings(src=src, out=tmp_path / "records", val_fraction=0.25)).report
    coco = json.loads((src / ANNOTATION_FILE).read_text())
    assert report["splits"]["train"]["images"] == 30 and report["splits"]["val"]["images"] == 10
    assert report["splits"]["train"]["boxes"] + report["splits"]["val"]["boxes"] == len(coco["annotations"])
    assert report["issues"] == []  # nothing skipped, clipped or converted
    assert labelmap.read(tmp_path / "records" / "label_map.pbtxt") == {"square": 1, "circle": 2, "triangle": 3}

    expected: dict[str, list] = {image["file_name"]: [] for image in coco["images"]}
    by_id = {image["id"]: image["file_name"] for image in coco["images"]}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        expected[by_id[ann["image_id"]]].append((names[ann["category_id"]], x / 128, y / 128, (x + w) / 128,
                                                 (y + h) / 128))
    got = {}
    for example in tfrecord.read_examples(sorted((tmp_path / "records").glob("*.record"))):
        got[example[Keys.FILENAME][0].decode()] = [
            (text.decode(), *coords) for text, *coords in zip(example[Keys.CLASS_TEXT], example[Keys.XMIN],
                                                             example[Keys.YMIN], example[Keys.XMAX],
                                                             example[Keys.YMAX])]
        assert example[Keys.ENCODED][0] == (src / example[Keys.FILENAME][0].decode()).read_bytes()
    assert got.keys() == expected.keys()
    for name, boxes in expected.items():
        assert [b[0] for b in got[name]] == [b[0] for b in boxes]
        assert np.allclose([b[1:] for b in got[name]], [b[1:] for b in boxes], atol=1e-6)


def test_rejects_nonsense_arguments(tmp_path):
    with pytest.raises(ValueError):
        make_shapes(tmp_path / "x", images=0)
    with pytest.raises(ValueError):
        make_shapes(tmp_path / "x", size=16)
    shutil.rmtree(tmp_path / "x", ignore_errors=True)
