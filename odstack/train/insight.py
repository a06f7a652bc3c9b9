"""How good is the model, per class, and where does it fail: the read-out after every evaluation.

Input is engine-independent: the val ground truth as a COCO dataset and the detections as COCO results
(what pycocotools evaluates), plus optionally a few decoded val images for the mosaic. Written to
``output/<run>/eval/`` (beside the TensorBoard eval events) and to TensorBoard:

    per-class AP / AP50 / AR     pycocotools' precision/recall arrays (area all, 100 detections)
    pr_curves.png                precision-recall per class at IoU 0.5 (the precision array's row)
    f1_curve.png                 F1 vs score threshold (per class and their mean); best-F1 threshold
    confusion_matrix.png/.json   at IoU 0.5 and the best-F1 threshold, with a background row/column
    val_mosaic.png               val images: predictions (left) beside ground truth (right)
    results.png                  losses and AP over steps (TensorBoard train events + metrics.json)
    insight.json                 all of the numbers above for this step
    TensorBoard                  pr_curves (one per class), the mosaic as an image, in <run>/eval

F1 and the PR counts for TensorBoard are counted from pycocotools' own matching (``evalImgs``: which
detection matched which box at IoU 0.5), so they agree with its AP50.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from odstack.fsio import write_json
from odstack.log import LOGGER

INSIGHT_JSON = "insight.json"
THRESHOLDS = np.linspace(0.0, 1.0, 101)  # score thresholds of the F1 curve and TensorBoard's pr_curves
MOSAIC_IMAGES = 8
IOU = 0.5


def coco_eval(ground_truth: dict[str, Any], detections: Sequence[dict[str, Any]]):
    """pycocotools' COCOeval (bbox), evaluated and accumulated, over every val image and class."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints every step
        truth = COCO()
        truth.dataset = ground_truth
        truth.createIndex()
        if detections:
            found = truth.loadRes([dict(d) for d in detections])
        else:  # loadRes cannot take an empty list
            found = COCO()
            found.dataset = {"images": ground_truth["images"], "categories": ground_truth["categories"],
                             "annotations": []}
            found.createIndex()
        evaluation = COCOeval(truth, found, iouType="bbox")
        evaluation.params.imgIds = sorted(image["id"] for image in ground_truth["images"])
        evaluation.params.catIds = sorted(c["id"] for c in ground_truth["categories"])
        evaluation.evaluate()
        evaluation.accumulate()
    return evaluation


def per_class(evaluation, names: dict[int, str]) -> dict[str, dict[str, float]]:
    """AP (IoU .5:.95), AP50, AR (100 detections) per class from the precision/recall arrays; -1: no val box."""
    precision = evaluation.eval["precision"]  # [IoU, recall, class, area, max detections]
    recall = evaluation.eval["recall"]        # [IoU, class, area, max detections]
    boxes = _val_boxes(evaluation)
    rows = {}
    for k, class_id in enumerate(evaluation.params.catIds):
        p, p50, r = precision[:, :, k, 0, -1], precision[0, :, k, 0, -1], recall[:, k, 0, -1]
        rows[names.get(class_id, str(class_id))] = {
            "id": int(class_id), "val_boxes": int(boxes.get(class_id, 0)),
            "AP": _mean(p), "AP50": _mean(p50), "AR": _mean(r)}
    return rows


def _mean(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else -1.0


def _val_boxes(evaluation) -> dict[int, int]:
    counts: dict[int, int] = {}
    for annotation in evaluation.cocoGt.dataset["annotations"]:
        if not annotation.get("iscrowd", 0):
            counts[annotation["category_id"]] = counts.get(annotation["category_id"], 0) + 1
    return counts


def counts_at_thresholds(evaluation) -> dict[int, dict[str, np.ndarray]]:
    """Per class: TP, FP, FN at every score threshold, from pycocotools' matches at IoU 0.5."""
    params = evaluation.params
    all_area, max_det = params.areaRng[0], params.maxDets[-1]
    scores: dict[int, list] = {c: [] for c in params.catIds}
    matched: dict[int, list] = {c: [] for c in params.catIds}
    truth: dict[int, int] = {c: 0 for c in params.catIds}
    for entry in evaluation.evalImgs:
        if entry is None or entry["aRng"] != all_area or entry["maxDet"] != max_det:
            continue
        keep = ~np.asarray(entry["dtIgnore"][0], bool).reshape(-1) if len(entry["dtIds"]) else np.zeros(0, bool)
        scores[entry["category_id"]] += list(np.asarray(entry["dtScores"])[keep])
        matched[entry["category_id"]] += list(np.asarray(entry["dtMatches"][0])[keep] > 0)
        truth[entry["category_id"]] += int((~np.asarray(entry["gtIgnore"], bool)).sum())
    result = {}
    for class_id in params.catIds:
        s, m = np.asarray(scores[class_id], float), np.asarray(matched[class_id], bool)
        above = s[None, :] >= THRESHOLDS[:, None]
        tp = (above & m[None, :]).sum(axis=1)
        fp = (above & ~m[None, :]).sum(axis=1)
        result[class_id] = {"tp": tp, "fp": fp, "fn": truth[class_id] - tp, "boxes": truth[class_id]}
    return result


def f1_curves(counts: dict[int, dict[str, np.ndarray]]) -> dict[int, dict[str, np.ndarray]]:
    curves = {}
    for class_id, c in counts.items():
        found = c["tp"] + c["fp"]
        precision = np.where(found > 0, c["tp"] / np.maximum(found, 1), 1.0)
        recall = c["tp"] / c["boxes"] if c["boxes"] else np.zeros_like(THRESHOLDS)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
        curves[class_id] = {"precision": precision, "recall": recall, "f1": f1}
    return curves


def best_f1(curves: dict[int, dict[str, np.ndarray]], counts) -> dict[str, float]:
    """The score threshold with the highest mean F1 over the classes that have val boxes."""
    present = [k for k in curves if counts[k]["boxes"]]
    if not present:
        return {"threshold": 0.5, "f1": 0.0, "precision": 0.0, "recall": 0.0}
    mean = {key: np.mean([curves[k][key] for k in present], axis=0) for key in ("f1", "precision", "recall")}
    i = int(np.argmax(mean["f1"]))
    return {"threshold": round(float(THRESHOLDS[i]), 2), "f1": float(mean["f1"][i]),
            "precision": float(mean["precision"][i]), "recall": float(mean["recall"][i])}


def _xyxy(bbox: Sequence[float]) -> list[float]:
    x, y, w, h = bbox
    return [y, x, y + h, x + w]  # ymin, xmin, ymax, xmax (parity.iou's order)


def confusion_matrix(ground_truth, detections, class_ids: list[int], threshold: float) -> np.ndarray:
    """[predicted, true] counts at IoU 0.5 (any class), detections scoring >= threshold; the last
    row/column is background: a box nothing found (missed), a detection of nothing (spurious)."""
    from odstack.export.parity import iou

    index = {c: i for i, c in enumerate(class_ids)}
    background = len(class_ids)
    matrix = np.zeros((background + 1, background + 1), np.int64)
    truth_of: dict[int, list] = {}
    for annotation in ground_truth["annotations"]:
        truth_of.setdefault(annotation["image_id"], []).append(annotation)
    found_of: dict[int, list] = {}
    for detection in detections:
        if detection["score"] >= threshold:
            found_of.setdefault(detection["image_id"], []).append(detection)
    for image in ground_truth["images"]:
        truth, found = truth_of.get(image["id"], []), found_of.get(image["id"], [])
        pairs = []
        if truth and found:
            overlaps = iou(np.array([_xyxy(d["bbox"]) for d in found], float),
                           np.array([_xyxy(t["bbox"]) for t in truth], float))
            pairs = sorted(((overlaps[i, j], i, j) for i in range(len(found)) for j in range(len(truth))
                            if overlaps[i, j] >= IOU), reverse=True)
        used_found, used_truth = set(), set()
        for _, i, j in pairs:  # greedy, highest IoU first, each box and detection once
            if i in used_found or j in used_truth:
                continue
            used_found.add(i)
            used_truth.add(j)
            matrix[index[found[i]["category_id"]], index[truth[j]["category_id"]]] += 1
        for j, t in enumerate(truth):
            if j not in used_truth:
                matrix[background, index[t["category_id"]]] += 1
        for i, d in enumerate(found):
            if i not in used_found:
                matrix[index[d["category_id"]], background] += 1
    return matrix


# ------------------------------------------------------------------------------------------ plots

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> int:
    """Write the figure as PNG (atomically); returns how many curves (lines) it draws."""
    curves = sum(len([line for line in axes.lines if line.get_label() and not line.get_label().startswith("_")])
                 for axes in figure.axes)
    tmp = path.with_name(path.name + ".tmp")
    figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    tmp.replace(path)
    _pyplot().close(figure)
    return curves


def plot_pr(evaluation, names: dict[int, str], rows: dict[str, dict], path: Path) -> int:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 5))
    precision = evaluation.eval["precision"]
    for k, class_id in enumerate(evaluation.params.catIds):
        curve = precision[0, :, k, 0, -1]
        name = names.get(class_id, str(class_id))
        if (curve > -1).any():
            axes.plot(evaluation.params.recThrs, np.where(curve > -1, curve, np.nan),
                      label=f"{name} AP50 {rows[name]['AP50']:.3f}")
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision-recall, IoU 0.5")
    axes.legend(loc="lower left", fontsize="small")
    return _save(figure, path)


def plot_f1(curves, names: dict[int, str], best: dict[str, float], counts, path: Path) -> int:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 5))
    present = [k for k in curves if counts[k]["boxes"]]
    for class_id in present:
        axes.plot(THRESHOLDS, curves[class_id]["f1"], linewidth=1, label=names.get(class_id, str(class_id)))
    if present:
        axes.plot(THRESHOLDS, np.mean([curves[k]["f1"] for k in present], axis=0), color="black", linewidth=2.5,
                  label=f"all classes: best F1 {best['f1']:.2f} at {best['threshold']:.2f}")
    axes.axvline(best["threshold"], color="grey", linestyle=":", label="_best")
    axes.set(xlabel="score threshold", ylabel="F1", xlim=(0, 1), ylim=(0, 1.02), title="F1 vs score threshold")
    axes.legend(loc="lower left", fontsize="small")
    return _save(figure, path)


def plot_confusion(matrix: np.ndarray, labels: list[str], threshold: float, path: Path) -> int:
    """The matrix as an annotated heat map; returns the number of cells drawn."""
    plt = _pyplot()
    size = 2 + 0.6 * len(labels)
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(matrix, cmap="Blues")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            axes.text(j, i, str(matrix[i, j]), ha="center", va="center",
                      color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set(xlabel="true", ylabel="predicted",
             title=f"confusion at IoU {IOU}, score >= {threshold:.2f}")
    cells = len(axes.texts)
    _save(figure, path)
    return cells


def mosaic(images: Sequence[tuple[np.ndarray, list[dict], list[dict]]], names: dict[int, str],
           threshold: float) -> np.ndarray:
    """One RGB array: per val image, its detections >= threshold (left) beside its ground truth (right)."""
    from PIL import Image, ImageDraw

    tiles = []
    for array, found, truth in images[:MOSAIC_IMAGES]:
        pair = []
        for boxes, colour in ((found, (255, 60, 60)), (truth, (60, 220, 60))):
            tile = Image.fromarray(array).convert("RGB").resize((192, 192))
            sx, sy = 192 / array.shape[1], 192 / array.shape[0]
            draw = ImageDraw.Draw(tile)
            for box in boxes:
                x, y, w, h = box["bbox"]
                draw.rectangle([x * sx, y * sy, (x + w) * sx, (y + h) * sy], outline=colour, width=2)
                text = names.get(box["category_id"], str(box["category_id"]))
                if "score" in box:
                    text += f" {box['score']:.2f}"
                draw.text((x * sx + 2, y * sy + 1), text, fill=colour)
            pair.append(np.asarray(tile))
        tiles.append(np.concatenate([pair[0], np.full((192, 4, 3), 255, np.uint8), pair[1]], axis=1))
    if not tiles:
        return np.zeros((1, 1, 3), np.uint8)
    columns = min(2, len(tiles))
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + columns], axis=1) for i in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


def _train_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Loss scalars of the run's TensorBoard train events (scalar or TF2 tensor summaries)."""
    from tensorboard.backend.event_processing import event_accumulator

    train = run_dir / "train"
    if not train.is_dir():
        return {}
    events = event_accumulator.EventAccumulator(str(train), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    series: dict[str, list[tuple[int, float]]] = {}
    tags = events.Tags()
    for tag in tags.get("scalars", []):
        if "loss" in tag.lower():
            series[tag] = [(e.step, e.value) for e in events.Scalars(tag)]
    for tag in tags.get("tensors", []):
        if "loss" in tag.lower():
            from tensorboard.util import tensor_util

            series[tag] = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto).reshape(()))) for e in
                           events.Tensors(tag)]
    return series


def plot_results(run_dir: Path, history: list[dict], path: Path) -> int:
    """results.png: training losses, val losses, AP/AP50 over steps. Returns the number of curves."""
    plt = _pyplot()
    figure, (losses, val, ap) = plt.subplots(1, 3, figsize=(15, 4))
    curves = 0
    for tag, points in sorted(_train_scalars(run_dir).items()):
        losses.plot([p[0] for p in points], [p[1] for p in points], label=tag)
        curves += 1
    steps = [h["step"] for h in history]
    for key in sorted({k for h in history for k in h if k.startswith("val_") and "loss" in k}):
        val.plot(steps, [h.get(key, np.nan) for h in history], marker="o", label=key)
        curves += 1
    for key in ("AP", "AP50"):
        if any(key in h for h in history):
            ap.plot(steps, [h.get(key, np.nan) for h in history], marker="o", label=key)
            curves += 1
    for axes, title in ((losses, "train losses"), (val, "val losses"), (ap, "val AP")):
        axes.set(xlabel="step", title=title)
        if axes.lines:
            axes.legend(fontsize="small")
    _save(figure, path)
    return curves


# ------------------------------------------------------------------------------------------ TensorBoard

def write_tensorboard(log_dir: Path, step: int, counts, curves, names: dict[int, str], picture: np.ndarray) -> None:
    """pr_curves (one per class, 101 thresholds) and the mosaic image, in ``log_dir``'s event files."""
    import tensorflow as tf
    from tensorboard.plugins.pr_curve import summary as pr_summary

    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        for class_id, c in counts.items():
            name = names.get(class_id, str(class_id))
            summary = pr_summary.raw_data_pb(
                name=f"pr_curve/{name}", true_positive_counts=c["tp"].astype(float),
                false_positive_counts=c["fp"].astype(float), true_negative_counts=np.zeros(len(THRESHOLDS)),
                false_negative_counts=c["fn"].astype(float), precision=curves[class_id]["precision"],
                recall=curves[class_id]["recall"], num_thresholds=len(THRESHOLDS),
                display_name=name, description=f"class {name}, IoU 0.5, by score threshold")
            tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)
        tf.summary.image("val_predictions_vs_ground_truth", picture[None], step=step)
    writer.flush()
    writer.close()


# ------------------------------------------------------------------------------------------ entry point

def analyze(run_dir: Path, step: int, ground_truth: dict[str, Any], detections: Sequence[dict[str, Any]],
            names: dict[int, str], images: dict[int, np.ndarray] | None = None,
            history: list[dict] | None = None, tensorboard: bool = True) -> dict[str, Any]:
    """Every read-out of one evaluation; returns what goes into metrics.json (per_class, best_f1, files).

    ``names``: label-map id -> name (every class is reported, also those val has no box of).
    ``images``: COCO image id -> RGB array, for the mosaic (the first few val images).
    """
    out = Path(run_dir) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    ground_truth = dict(ground_truth, categories=[{"id": int(i), "name": n} for i, n in sorted(names.items())])
    detections = [{"image_id": int(d["image_id"]), "category_id": int(d["category_id"]), "score": float(d["score"]),
                   "bbox": [float(v) for v in d["bbox"]]} for d in detections]
    evaluation = coco_eval(ground_truth, detections)
    rows = per_class(evaluation, names)
    counts = counts_at_thresholds(evaluation)
    curves = f1_curves(counts)
    best = best_f1(curves, counts)
    class_ids = list(evaluation.params.catIds)
    labels = [names.get(c, str(c)) for c in class_ids] + ["background"]
    matrix = confusion_matrix(ground_truth, detections, class_ids, best["threshold"])
    warnings = [f"class {name!r} has no boxes in the val split: its AP is -1 (undefined, not 0); give val some "
                f"of its images (make data VAL_FRACTION=..., or SPLIT=source with a val split that has it)"
                for name, row in rows.items() if row["val_boxes"] == 0]
    for warning in warnings:
        LOGGER.warning("eval: %s", warning)

    drawn = {"pr_curves.png": plot_pr(evaluation, names, rows, out / "pr_curves.png"),
             "f1_curve.png": plot_f1(curves, names, best, counts, out / "f1_curve.png"),
             "confusion_matrix.png": plot_confusion(matrix, labels, best["threshold"], out / "confusion_matrix.png")}
    write_json(out / "confusion_matrix.json", {
        "step": step, "iou": IOU, "score_threshold": best["threshold"], "labels": labels,
        "rows": "predicted", "columns": "true", "matrix": matrix.tolist(),
        "note": "last row: true boxes nothing found (missed); last column: detections of nothing (spurious)"})
    found_of: dict[int, list] = {}
    for detection in detections:
        if detection["score"] >= best["threshold"]:
            found_of.setdefault(detection["image_id"], []).append(detection)
    truth_of: dict[int, list] = {}
    for annotation in ground_truth["annotations"]:
        truth_of.setdefault(annotation["image_id"], []).append(annotation)
    picture = mosaic([(array, found_of.get(i, []), truth_of.get(i, [])) for i, array in (images or {}).items()],
                     names, best["threshold"])
    from PIL import Image

    tmp = out / "val_mosaic.png.tmp"
    Image.fromarray(picture).save(tmp, format="PNG")
    tmp.replace(out / "val_mosaic.png")
    by_step = {h["step"]: h for h in history or []}  # metrics.json so far, plus this evaluation
    by_step[step] = dict(by_step.get(step, {}), step=step, AP=_mean(evaluation.eval["precision"][:, :, :, 0, -1]),
                         AP50=_mean(evaluation.eval["precision"][0, :, :, 0, -1]))
    drawn["results.png"] = plot_results(Path(run_dir), [by_step[s] for s in sorted(by_step)], out / "results.png")
    drawn["val_mosaic.png"] = min(len(images or {}), MOSAIC_IMAGES)  # image pairs
    if tensorboard:
        write_tensorboard(out, step, counts, curves, names, picture)
    record = {"step": step, "per_class": rows, "best_f1": best, "warnings": warnings,
              "drawn": drawn,  # curves per plot; cells of the confusion matrix; image pairs of the mosaic
              "files": sorted(drawn) + ["confusion_matrix.json", INSIGHT_JSON]}
    write_json(out / INSIGHT_JSON, record)
    LOGGER.info("%s", table(rows, best, out))
    return {"per_class": rows, "best_f1": best}


def table(rows: dict[str, dict], best: dict[str, float], out: Path) -> str:
    width = max([5] + [len(n) for n in rows])
    lines = [f"  {'class':<{width}}  {'val boxes':>9}  {'AP':>6}  {'AP50':>6}  {'AR':>6}"]
    for name, row in rows.items():
        cells = [f"{row[k]:6.3f}" if row[k] >= 0 else f"{'n/a':>6}" for k in ("AP", "AP50", "AR")]
        lines.append(f"  {name:<{width}}  {row['val_boxes']:>9}  {'  '.join(cells)}")
    lines.append(f"  best-F1 score threshold {best['threshold']:.2f} (F1 {best['f1']:.3f}, precision "
                 f"{best['precision']:.3f}, recall {best['recall']:.3f})")
    lines.append(f"  plots: {out}/ (pr_curves, f1_curve, confusion_matrix, val_mosaic, results .png)")
    return "\n".join(lines)


def read(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "eval" / INSIGHT_JSON
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
