"""The TFLite runtime: ``output/<run>/tflite/model_<quant>.tflite`` run with ai-edge-litert's interpreter (TF's
own interpreter mis-computes some strided convolutions with XNNPACK: docs/environment.md), with the
pre/post-processing ``model_info.json`` describes, as an app must reproduce it.

The model takes what Model Garden's ``tflite`` input type takes: float32 [1, S, S, 3], RGB normalized as
(pixel - mean) / std, the image scaled to fit S x S keeping its aspect ratio (bilinear) and placed top-left,
the rest 0 (OD API models: stretched to S x S); :func:`preprocess` does exactly that, and
:func:`postprocess` maps the boxes (normalized to the S x S input) back to the image. ``labels.txt``: line
k names output class k.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from odstack.contract import ODAPI_RESIZE
from odstack.errors import ExportError
from odstack.export import path_size
from odstack.export.runtimes.base import Prediction, ValImage
from odstack.log import LOGGER
from odstack.tfruntime import import_tensorflow

NAME = "tflite"
TFLITE_DIR = "tflite"
INFO_FILE = "model_info.json"
POSTPROCESS_OP = "TFLite_Detection_PostProcess"
# TFLite_Detection_PostProcess's outputs, in the op's own order (TFLite's detection_postprocess kernel)
POSTPROCESS_OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")
_PREFIX = "tflite"


# ------------------------------------------------------------------------------------ runner protocol

def find(run_dir: Path) -> dict[str, Path]:
    return {f"tflite_{p.stem[len('model_'):]}": p for p in sorted((run_dir / TFLITE_DIR).glob("model_*.tflite"))
            if not p.stem.endswith("_edgetpu")}  # Edge TPU models need the TPU to run


def predict(path: Path, images: Sequence[ValImage], threads: int) -> list[Prediction]:
    spec = json.loads((path.parent / INFO_FILE).read_text(encoding="utf-8"))
    interpreter = make_interpreter(path, threads)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]

    def call(image: ValImage) -> tuple[dict[str, np.ndarray], tuple[float, float], float, float]:
        started = time.perf_counter()
        x, occupied = preprocess(image.array, spec)
        ready = time.perf_counter()
        interpreter.set_tensor(index, x)
        interpreter.invoke()
        outputs = read_outputs(interpreter)
        return outputs, occupied, time.perf_counter() - ready, ready - started

    if images:
        call(images[0])  # warm-up
    predictions = []
    for image in images:
        outputs, occupied, seconds, pre = call(image)
        predictions.append(Prediction.from_od_api(postprocess(outputs, spec, occupied), seconds, pre))
    return predictions


def quantized(label: str) -> bool:
    return label != "tflite_float"


def size(artifact: Path) -> int:
    return path_size(artifact)


# ------------------------------------------------------------------------------------ interpreter

def make_interpreter(path: Path, threads: int):
    """A TFLite interpreter from ai-edge-litert (TF's own XNNPACK path miscomputes some strided convolutions:
    docs/environment.md); without it, TF's interpreter with the default delegates (XNNPACK) turned off."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_path=str(path), num_threads=threads)
    except ImportError:
        tf = import_tensorflow()
        LOGGER.warning("%s: ai-edge-litert is not installed; using tf.lite.Interpreter without XNNPACK", _PREFIX)
        return tf.lite.Interpreter(model_path=str(path), num_threads=threads,
                                   experimental_op_resolver_type=tf.lite.experimental.OpResolverType
                                   .BUILTIN_WITHOUT_DEFAULT_DELEGATES)


def runtime() -> str:
    """The interpreter that runs the models here (parity.json's ``runtime``)."""
    try:
        from importlib.metadata import version

        import ai_edge_litert  # noqa: F401

        return f"ai-edge-litert {version('ai-edge-litert')}"
    except ImportError:
        return "tf.lite.Interpreter (no XNNPACK)"


# ------------------------------------------------------------------------------------ pre/post

def preprocess(image: np.ndarray, spec: dict[str, Any]) -> tuple[np.ndarray, tuple[float, float]]:
    """uint8 HxWx3 -> the model's input [1, S, S, 3] and the (height, width) the image occupies in it.

    Letterbox = Model Garden's serving preprocessing (normalize, resize_and_crop_image without jitter):
    the scale is computed in float32 and the scaled size rounded half-to-even, as TensorFlow does.
    """
    tf = import_tensorflow()
    shape = spec["input"]["shape"]
    size = np.array(shape[1:3], np.float32)
    x = (image.astype(np.float32) - np.asarray(spec["input"]["mean"], np.float32)) / np.asarray(
        spec["input"]["std"], np.float32)
    hw = np.array(image.shape[:2], np.float32)
    if spec["input"]["resize"] == "letterbox":
        scale = np.float32(min(size[0] / hw[0], size[1] / hw[1]))
        scaled = np.round(hw * scale).astype(np.int32)
    else:
        scaled = size.astype(np.int32)
    if spec["input"].get("resize_method") == ODAPI_RESIZE:
        x = tf.compat.v1.image.resize_images(x, scaled, method=tf.compat.v1.image.ResizeMethod.BILINEAR,
                                             align_corners=False).numpy()
    else:
        x = tf.image.resize(x, scaled, method="bilinear").numpy()
    out = np.full((1, int(size[0]), int(size[1]), 3), spec["input"].get("pad_value", 0.0), np.float32)
    out[0, :scaled[0], :scaled[1]] = x
    return out, (float(scaled[0]), float(scaled[1]))


def postprocess(outputs: dict[str, np.ndarray], spec: dict[str, Any],
                occupied: tuple[float, float]) -> dict[str, np.ndarray]:
    """The interpreter's outputs -> OD API arrays (boxes normalized to the original image, 1-based classes)."""
    num = int(np.asarray(outputs["num_detections"]).reshape(-1)[0])
    shape = spec["input"]["shape"]
    boxes = np.asarray(outputs["detection_boxes"], np.float32).reshape(-1, 4)[:num]
    scale = np.array([shape[1] / occupied[0], shape[2] / occupied[1]] * 2, np.float32)
    boxes = np.clip(boxes * scale, 0.0, 1.0)
    classes = np.asarray(outputs["detection_classes"]).reshape(-1)[:num] + spec["class_offset"]
    return {"detection_boxes": boxes, "detection_scores": np.asarray(outputs["detection_scores"]).reshape(-1)[:num],
            "detection_classes": classes.astype(np.float32), "num_detections": np.array([num], np.float32)}


def read_outputs(interpreter) -> dict[str, np.ndarray]:
    """The four detection outputs by their role: the tensors TFLite_Detection_PostProcess writes, in the op's
    own order (boxes, classes, scores, count). Signature names are not trusted: the OD API's converted models
    call them output_0..3, in an order that is not the op's."""
    post = [op for op in interpreter._get_ops_details() if op["op_name"] == POSTPROCESS_OP]
    if len(post) != 1:
        raise ExportError(f"expected one {POSTPROCESS_OP} op in the TFLite model, found {len(post)}")
    roles = dict(zip(post[0]["outputs"], POSTPROCESS_OUTPUTS))
    outputs = {roles[d["index"]]: interpreter.get_tensor(d["index"])
               for d in interpreter.get_output_details() if d["index"] in roles}
    if set(outputs) != set(POSTPROCESS_OUTPUTS):
        raise ExportError(f"the TFLite model's outputs are not those of its {POSTPROCESS_OP} op "
                          f"(found {sorted(outputs)})")
    boxes, count = outputs["detection_boxes"], outputs["num_detections"]
    if boxes.shape[-1] != 4 or np.asarray(count).size != 1:
        raise ExportError(f"unexpected TFLite output shapes: boxes {boxes.shape}, num_detections {np.shape(count)}")
    return outputs
