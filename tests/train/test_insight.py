"""odstack.train.insight on hand-made COCO ground truth and detections whose answers are known: per-class
AP from pycocotools' precision array, F1 and the best-F1 threshold, the confusion matrix with background,
plots checked for their curves/cells, TensorBoard pr_curves and images, and the no-val-boxes warning."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from odstack.train import insight

NAMES = {1: "cat", 2: "dog", 3: "bird"}  # bird: no box in val


def _truth() -> dict:
    images = [{"id": i, "height": 100, "width": 100} for i in (1, 2)]
    boxes = [(1, 1, [10, 10, 30, 30]), (1, 2, [50, 50, 40, 40]), (2, 1, [5, 5, 20, 20]), (2, 2, [60, 10, 30, 30])]
    annotations = [{"id": n + 1, "image_id": image, "category_id": cls, "bbox": bbox, "area": bbox[2] * bbox[3],
                    "iscrowd": 0} for n, (image, cls, bbox) in enumerate(boxes)]
    return {"images": images, "annotations": annotations, "categories": []}


def _detections() -> list[dict]:
    return [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9},   # cat found
        {"image_id": 1, "category_id": 1, "bbox": [50, 50, 40, 40], "score": 0.8},   # the dog, called a cat
        {"image_id": 2, "category_id": 1, "bbox": [5, 5, 20, 20], "score": 0.7},     # cat found
        {"image_id": 2, "category_id": 2, "bbox": [0, 70, 20, 20], "score": 0.6},    # a dog where nothing is
        # the dog of image 2 (60,10,30,30) is missed
    ]


@pytest.fixture()
def analyzed(tmp_path, caplog):
    logging.getLogger("odstack").propagate = True
    caplog.set_level("INFO", logger="odstack")
    images = {1: np.full((100, 100, 3), 120, np.uint8), 2: np.full((100, 100, 3), 60, np.uint8)}
    history = [{"step": 10, "AP": 0.1, "AP50": 0.2, "val_loss": 1.0}]
    result = insight.analyze(tmp_path, 20, _truth(), _detections(), NAMES, images, history)
    return tmp_path / "eval", result, caplog


def test_per_class_ap_from_the_precision_array(analyzed):
    out, result, _ = analyzed
    rows = result["per_class"]
    assert rows["cat"]["val_boxes"] == 2 and rows["dog"]["val_boxes"] == 2 and rows["bird"]["val_boxes"] == 0
    # cats by score: found (0.9), the dog (0.8), found (0.7): interpolated precision 1 up to recall 0.5,
    # 2/3 up to 1, on pycocotools' 101 recall points
    assert rows["cat"]["AP50"] == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)
    assert rows["dog"]["AP50"] == pytest.approx(0.0)   # the only dog detection is on nothing
    assert rows["cat"]["AR"] == pytest.approx(1.0) and rows["dog"]["AR"] == pytest.approx(0.0)
    assert rows["bird"] == {"id": 3, "val_boxes": 0, "AP": -1.0, "AP50": -1.0, "AR": -1.0}
    assert json.loads((out / insight.INSIGHT_JSON).read_text())["per_class"] == rows


def test_best_f1_threshold_and_curve(analyzed):
    _, result, _ = analyzed
    best = result["best_f1"]
    # cat at t <= 0.7: P 2/3, R 1 -> F1 0.8; at 0.8 < t <= 0.9: P 1, R 0.5 -> 0.667. dog: F1 0 everywhere.
    # mean over the classes with val boxes (bird has none): 0.4 at t <= 0.7, the first such threshold: 0.0
    assert best["f1"] == pytest.approx(0.4) and best["threshold"] == pytest.approx(0.0)
    assert best["precision"] == pytest.approx((2 / 3 + 0.0) / 2)  # dog: its one detection is wrong
    assert best["recall"] == pytest.approx((1.0 + 0.0) / 2)


def test_confusion_matrix_with_background(analyzed):
    out, _, _ = analyzed
    saved = json.loads((out / "confusion_matrix.json").read_text())
    assert saved["labels"] == ["cat", "dog", "bird", "background"]
    matrix = np.array(saved["matrix"])  # rows predicted, columns true
    assert matrix[0, 0] == 2        # cats called cats
    assert matrix[0, 1] == 1        # the dog called a cat
    assert matrix[3, 1] == 1        # the dog nothing found (missed)
    assert matrix[1, 3] == 1        # the dog detection on nothing (spurious)
    assert matrix.sum() == 5 and saved["score_threshold"] == 0.0


def test_plots_have_their_curves_and_cells(analyzed):
    out, _, _ = analyzed
    drawn = json.loads((out / insight.INSIGHT_JSON).read_text())["drawn"]
    assert drawn["pr_curves.png"] == 2          # one per class with val boxes (cat, dog)
    assert drawn["f1_curve.png"] == 3           # cat, dog, and their mean
    assert drawn["confusion_matrix.png"] == 16  # (3 classes + background) squared
    assert drawn["results.png"] == 3            # val_loss, AP, AP50 (no train events in this run)
    assert drawn["val_mosaic.png"] == 2
    for name in drawn:
        picture = np.asarray(Image.open(out / name).convert("L"), float)
        assert picture.size > 10_000 and picture.std() > 1, name  # drawn, not blank
    mosaic = Image.open(out / "val_mosaic.png")
    assert mosaic.size == (2 * (192 * 2 + 4), 192)  # two pairs side by side: prediction | ground truth


def test_no_val_boxes_warning_and_table(analyzed):
    _, _, caplog = analyzed
    text = "\n".join(r.getMessage() for r in caplog.get_records("setup"))  # logged by the fixture
    assert "class 'bird' has no boxes in the val split: its AP is -1" in text
    assert "best-F1 score threshold 0.00" in text
    assert any(line.split()[:2] == ["bird", "0"] and line.split()[2:] == ["n/a"] * 3 for line in text.splitlines())


def test_tensorboard_pr_curves_per_class_and_the_mosaic(analyzed):
    import tensorflow as tf

    out, _, _ = analyzed
    tags = {}
    for path in out.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags[value.tag] = value.metadata.plugin_data.plugin_name
    assert tags["pr_curve/cat/pr_curves"] == "pr_curves" and tags["pr_curve/dog/pr_curves"] == "pr_curves"
    assert tags["val_predictions_vs_ground_truth"] == "images"


def test_no_detections_at_all(tmp_path):
    result = insight.analyze(tmp_path, 1, _truth(), [], NAMES, {}, [], tensorboard=False)
    assert result["per_class"]["cat"]["AP50"] == 0.0 and result["best_f1"]["f1"] == 0.0
    matrix = np.array(json.loads((tmp_path / "eval" / "confusion_matrix.json").read_text())["matrix"])
    assert matrix[3].sum() == 4 and matrix.sum() == 4  # every box missed
