"""`make parity`: every exported format of a run against its SavedModel, on the run's val images.

    output/<run>/parity.json + a table: per format, the largest box and score difference against the
    SavedModel over matched detections, missing/extra detections, AP50 (pycocotools, against the val
    ground truth) and its change, mean latency of the model call, file size.

Matching: the SavedModel's detections scoring >= ``score_threshold`` are matched greedily (highest score
first) to the format's detections of the same class with IoU >= ``iou_threshold`` (any score, so a
score that crosses the threshold is a difference, not a miss). ``missing``: reference detections left
unmatched; ``extra``: the format's detections >= the threshold that match no reference detection.
Float formats pass with every difference <= ``tolerance`` (1e-4) and nothing missing or extra;
quantized ones (fp16, dynamic, int8, ...) report their differences and AP50 loss. ``strict=true``
(default) makes a failing float format fail the command, after parity.json is written.

Runtimes: one module per export format (odstack/export/runtimes/: saved_model, the reference; tflite,
ai-edge-litert's interpreter; tfjs, Node), each finding its artifacts in the run and predicting on the
val images; ``RUNNERS`` is that registry, iterated in order.
"""
from __future__ import annotations

import contextlib
import io
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from odstack import labelmap, tfrecord
from odstack.errors import ConfigError, ExportError
from odstack.export import human_size, resolve_run
from odstack.export.runtimes import RUNTIMES
from odstack.export.runtimes.base import Prediction, Runtime, ValImage
from odstack.fsio import write_json
from odstack.log import LOGGER, doing

PARITY_JSON = "parity.json"
REFERENCE = "saved_model"
#: the runtimes parity runs, the reference first (a copy: tests add a fake one)
RUNNERS: dict[str, Runtime] = dict(RUNTIMES)
_PREFIX = "parity"


@dataclass
class ParitySettings:
    """Settings of `make parity` (section ``parity`` of cfg/default.yaml)."""

    run: str = "auto"
    data: str = "auto"
    images: int = 0
    score_threshold: float = 0.3
    iou_threshold: float = 0.5
    tolerance: float = 1e-4
    threads: int | str = "auto"
    strict: bool = True


# ------------------------------------------------------------------------------------ settings

def _threads(value: int | str) -> int:
    if value == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if int(value) < 1:
        raise ConfigError(f"threads={value!r} must be >= 1 or auto")
    return int(value)


# ------------------------------------------------------------------------------------ val images

def load_val_images(run, data: str = "auto", limit: int = 0, ground_truth: bool = True) -> list[ValImage]:
    """The run's val images (decoded with PIL, no TensorFlow) with their ground truth; ``limit`` 0 = all."""
    from PIL import Image

    from odstack.train.run import DatasetInfo, resolve_data

    directory = resolve_data(data, run, _PREFIX)
    dataset = DatasetInfo.load(directory)
    shards = dataset.val_shards
    if not shards:
        LOGGER.warning("%s: %s has no val shards; using the train shards", _PREFIX, directory)
        shards = dataset.train_shards
    images: list[ValImage] = []
    for example in tfrecord.read_examples(shards):
        encoded = example[tfrecord.Keys.ENCODED][0]
        array = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))
        boxes = np.zeros((0, 4), np.float32)
        labels = np.zeros((0,), np.int64)
        if ground_truth:
            boxes = np.stack([np.asarray(example.get(k, []), np.float32) for k in
                              (tfrecord.Keys.YMIN, tfrecord.Keys.XMIN, tfrecord.Keys.YMAX, tfrecord.Keys.XMAX)],
                             axis=-1).reshape(-1, 4)
            labels = np.asarray(example.get(tfrecord.Keys.CLASS_LABEL, []), np.int64)
        name = (example.get(tfrecord.Keys.FILENAME) or [b""])[0].decode("utf-8", "replace")
        images.append(ValImage(len(images) + 1, name, array, encoded, boxes, labels))
        if limit and len(images) >= limit:
            break
    return images


# ------------------------------------------------------------------------------------ comparison

def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a [N,4] against b [M,4] (ymin, xmin, ymax, xmax) -> [N, M]."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    top = np.maximum(a[:, None, 0], b[None, :, 0])
    left = np.maximum(a[:, None, 1], b[None, :, 1])
    bottom = np.minimum(a[:, None, 2], b[None, :, 2])
    right = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def _match(ref: Prediction, other: Prediction, overlaps: np.ndarray, threshold: float,
           iou_threshold: float) -> list[tuple[int, int]]:
    """Greedy pairs (ref index, other index): ref detections >= threshold, best IoU (``overlaps``: ref x
    other) of the same class."""
    used: set[int] = set()
    pairs = []
    for i in np.argsort(-ref.scores, kind="stable"):
        if ref.scores[i] < threshold:
            continue
        candidates = [(overlaps[i, j], j) for j in range(len(other.scores))
                      if j not in used and other.classes[j] == ref.classes[i] and overlaps[i, j] >= iou_threshold]
        if candidates:
            j = max(candidates)[1]
            used.add(j)
            pairs.append((int(i), int(j)))
    return pairs


def compare(reference: Sequence[Prediction], other: Sequence[Prediction], threshold: float,
            iou_threshold: float) -> dict[str, Any]:
    """Largest box/score differences over matched detections, and missing/extra counts."""
    box_diff = score_diff = 0.0
    matched = missing = extra = 0
    for ref, pred in zip(reference, other):
        overlaps = iou(ref.boxes, pred.boxes)  # symmetric: its transpose serves the format's side
        pairs = _match(ref, pred, overlaps, threshold, iou_threshold)
        matched += len(pairs)
        missing += int((ref.scores >= threshold).sum()) - len(pairs)
        for i, j in pairs:
            box_diff = max(box_diff, float(np.abs(ref.boxes[i] - pred.boxes[j]).max()))
            score_diff = max(score_diff, float(abs(ref.scores[i] - pred.scores[j])))
        back = _match(pred, ref, overlaps.T, threshold, iou_threshold)  # the format's side, same rule
        extra += int((pred.scores >= threshold).sum()) - len(back)
    return {"max_box_diff": box_diff, "max_score_diff": score_diff, "matched": matched, "missing": missing,
            "extra": extra}


def ap50(images: Sequence[ValImage], predictions: Sequence[Prediction], label_map: Path) -> float:
    """COCO AP at IoU 0.5 (pycocotools) of ``predictions`` against the images' ground truth."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    categories = [{"id": i, "name": n} for n, i in sorted(labelmap.read(label_map).items(), key=lambda x: x[1])]
    annotations, results = [], []
    for image, pred in zip(images, predictions):
        h, w = image.height, image.width
        for box, label in zip(image.boxes, image.labels):
            y0, x0, y1, x1 = box * [h, w, h, w]
            annotations.append({"id": len(annotations) + 1, "image_id": image.image_id, "category_id": int(label),
                                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                                "area": float((x1 - x0) * (y1 - y0)), "iscrowd": 0})
        for box, score, label in zip(pred.boxes, pred.scores, pred.classes):
            y0, x0, y1, x1 = box * [h, w, h, w]
            results.append({"image_id": image.image_id, "category_id": int(label), "score": float(score),
                            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]})
    if not annotations:
        return float("nan")
    if not results:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {"images": [{"id": i.image_id, "height": i.height, "width": i.width} for i in images],
                         "annotations": annotations, "categories": categories}
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[1])


# ------------------------------------------------------------------------------------ entry point

def run_parity(settings: ParitySettings) -> dict[str, Any]:
    """`make parity`: run every format found in the run on the val images; write parity.json; print a table."""
    run = resolve_run(settings.run)
    threads = _threads(settings.threads)
    found: dict[str, tuple[str, Path]] = {}
    for name, runner in RUNNERS.items():
        for label, artifact in runner.find(run.path).items():
            found[label] = (name, artifact)
    if REFERENCE not in found:
        raise ConfigError("this run has no SavedModel to compare against", where=str(run.path),
                          hint=f"export it first: make export RUN={run.path.name}")
    images = load_val_images(run, settings.data, limit=settings.images)
    if not images:
        raise ConfigError("no val images to compare on", where=str(run.path))
    LOGGER.info("%s: run %s: %s on %d val images (%d threads)", _PREFIX, run.path, ", ".join(found), len(images),
                threads)
    predictions: dict[str, list[Prediction]] = {}
    formats: dict[str, dict[str, Any]] = {}
    for label, (name, artifact) in sorted(found.items(), key=lambda item: item[0] != REFERENCE):
        runner = RUNNERS[name]
        started = time.monotonic()
        try:
            doing(f"{label}: detecting on {len(images)} val images")
            preds = runner.predict(artifact, images, threads)
        except Exception as error:  # noqa: BLE001 - report the format as failed, keep comparing the others
            if label == REFERENCE:
                raise
            LOGGER.error("%s: %s failed: %s: %s", _PREFIX, label, type(error).__name__, error)
            formats[label] = {"path": str(artifact), "runner": name, "error": f"{type(error).__name__}: {error}",
                              "quantized": runner.quantized(label), "pass": False}
            continue
        if len(preds) != len(images):
            raise ExportError(f"runner {name} returned {len(preds)} predictions for {len(images)} images")
        predictions[label] = preds
        latencies = [p.seconds * 1000 for p in preds]
        entry: dict[str, Any] = {
            "path": str(artifact), "runner": name, "runtime": runner.runtime(), "size_bytes": runner.size(artifact),
            "quantized": runner.quantized(label), "ap50": ap50(images, preds, run.label_map),
            "latency_ms": {"mean": statistics.fmean(latencies), "median": statistics.median(latencies)},
            "preprocess_ms": statistics.fmean(p.preprocess_seconds * 1000 for p in preds),
            "detections": int(sum((p.scores >= settings.score_threshold).sum() for p in preds)),
            "seconds": round(time.monotonic() - started, 2),
        }
        if label != REFERENCE:
            entry.update(compare(predictions[REFERENCE], preds, settings.score_threshold, settings.iou_threshold))
            entry["ap50_delta"] = entry["ap50"] - formats[REFERENCE]["ap50"]
            entry["size_ratio"] = entry["size_bytes"] / formats[REFERENCE]["size_bytes"]
            entry["speedup"] = formats[REFERENCE]["latency_ms"]["mean"] / max(entry["latency_ms"]["mean"], 1e-9)
            within = entry["max_box_diff"] <= settings.tolerance and entry["max_score_diff"] <= settings.tolerance
            entry["pass"] = True if entry["quantized"] else bool(within and not entry["missing"] and not entry["extra"])
        formats[label] = entry
    report = {
        "run": run.path.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "images": len(images),
        "reference": REFERENCE, "score_threshold": settings.score_threshold,
        "iou_threshold": settings.iou_threshold, "tolerance": settings.tolerance, "threads": threads,
        "formats": formats,
    }
    write_json(run.path / PARITY_JSON, report)
    LOGGER.info(format_table(report) + f"\n{_PREFIX}: -> {run.path / PARITY_JSON}")
    failed = [label for label, entry in formats.items() if label != REFERENCE and not entry.get("pass", True)]
    if failed and settings.strict:
        raise ExportError(f"parity failed for {', '.join(failed)}: float formats must match the SavedModel "
                          f"within {settings.tolerance:g} with no missing or extra detection",
                          where=str(run.path / PARITY_JSON), hint="see the table above; strict=false only reports")
    return report


def format_table(report: dict[str, Any]) -> str:
    head = (f"{_PREFIX}: run {report['run']}, {report['images']} val images; detections compared at score >= "
            f"{report['score_threshold']:g} (same class, IoU >= {report['iou_threshold']:g}) against the SavedModel")
    rows = [("format", "size", "AP50", "dAP50", "max|dbox|", "max|dscore|", "miss/extra", "latency ms", "check")]
    for label, e in report["formats"].items():
        if "error" in e:
            rows.append((label, "-", "-", "-", "-", "-", "-", "-", "FAILED: " + e["error"][:60]))
            continue
        if label == report["reference"]:
            rows.append((label, human_size(e["size_bytes"]), f"{e['ap50']:.3f}", "ref", "-", "-", "-",
                         f"{e['latency_ms']['mean']:.1f}", "reference"))
            continue
        if e["quantized"]:
            check = f"AP50 {'loss' if e['ap50_delta'] <= 0 else 'gain'} {abs(e['ap50_delta']) * 100:.1f} points"
        else:
            check = f"ok (<= {report['tolerance']:g})" if e["pass"] else "MISMATCH"
        rows.append((label, human_size(e["size_bytes"]), f"{e['ap50']:.3f}", f"{e['ap50_delta']:+.3f}",
                     f"{e['max_box_diff']:.1e}", f"{e['max_score_diff']:.1e}", f"{e['missing']}/{e['extra']}",
                     f"{e['latency_ms']['mean']:.1f}", check))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  " + "  ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    return "\n".join([head] + lines)
