"""`make tflite`: the exported checkpoint -> ``output/<run>/tflite/model_<quant>.tflite`` (toco image), then parity.

Quantizations (``quant=``, several comma-separated, or ``all``):

    float    no quantization                                   must match the SavedModel to ~1e-4
    fp16     float16 weights                                   ~1e-3, reported by parity
    dynamic  int8 weights, float activations (dynamic range)   reports its AP loss
    int8     int8 weights and activations, float I/O; calibrated on ``calibration_images`` val images

Engines:

- ``tfvision``: Model Garden's TFLite path: ``export_saved_model_lib`` with input type ``tflite`` (no
  preprocessing in the graph, hence no ``tf.map_fn`` batch loop, on which full-int8 calibration
  segfaults) and ``detection_generator.nms_version=tflite``, which ends the graph in TFLite's
  ``TFLite_Detection_PostProcess`` op: fast class-agnostic NMS, ``max_classes_per_detection=1`` (the
  default 5 pads every box to 5 rows and confuses parsers), anchors normalized so boxes come out
  normalized. Not ``use_regular_nms``: TFLite's multi-threaded regular NMS skips the class whose index
  equals the thread count (seen with ai-edge-litert 2.3 and TF 2.20's interpreter: num_threads=2 drops
  class 2). The SavedModel export uses class-agnostic NMS too, so both agree.
- ``odapi``: ``object_detection.export_tflite_graph_tf2`` (when the OD API is importable), then the same
  converter. TFLite takes the **SSD** family only (SSD MobileNet/ResNet-FPN/EfficientDet): Faster R-CNN
  and Mask R-CNN (two-stage, crop-and-resize over a dynamic number of proposals) and CenterNet are refused
  with a clear message.

The model takes what Model Garden's ``tflite`` input type takes: float32 [1, S, S, 3], RGB normalized as
(pixel - mean) / std, the image scaled to fit S x S keeping its aspect ratio (bilinear) and placed top-left,
the rest 0; :func:`preprocess` does exactly that, and ``model_info.json`` beside the models describes it
with the outputs (boxes normalized to the S x S input; :func:`postprocess` maps them back to the image).
``labels.txt``: line k names output class k.

``edgetpu=true`` compiles the int8 model with ``edgetpu_compiler`` when it is on PATH (the toco image's
``EDGETPU=1`` build arg installs it from Coral's package repository); otherwise the run fails up front.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from odstack import labelmap
from odstack.errors import ConfigError
from odstack.export import ExportError, path_size, resolve_run, timed
from odstack.fsio import write_json
from odstack.log import LOGGER

QUANTS = ("float", "fp16", "dynamic", "int8")
TFLITE_DIR = "tflite"
INFO_FILE = "model_info.json"
LABELS_FILE = "labels.txt"
POSTPROCESS_OP = "TFLite_Detection_PostProcess"
_PREFIX = "tflite"
# Model Garden's serving normalization (official.vision.ops.preprocess_ops.MEAN_RGB / STDDEV_RGB)
MEAN_RGB = [0.485 * 255, 0.456 * 255, 0.406 * 255]
STDDEV_RGB = [0.229 * 255, 0.224 * 255, 0.225 * 255]
LOOP_OPS = ("While", "StatelessWhile", "TensorListReserve", "TensorListFromTensor")
# the two bilinear resizes the engines' SavedModels do (model_info.json names the one an app must reproduce)
TF2_RESIZE = "bilinear_half_pixel_centers"      # tf.image.resize: Model Garden's resize_and_crop_image
ODAPI_RESIZE = "bilinear_v1"                    # tf.compat.v1.image.resize_images(align_corners=False)
# TFLite_Detection_PostProcess's outputs, in the op's own order (TFLite's detection_postprocess kernel)
POSTPROCESS_OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")
OUTPUTS_ABOUT = ["detection_boxes [1,N,4] ymin,xmin,ymax,xmax normalized to the model input",
                 "detection_classes [1,N] (labels.txt line; + class_offset = label-map id)",
                 "detection_scores [1,N]", "num_detections [1] (rows past it are undefined)",
                 "the outputs are those of the TFLite_Detection_PostProcess op, in this order; signature names "
                 "may differ (output_0..3 for OD API models)"]


@dataclass
class TFLiteSettings:
    """Settings of `make tflite` (section ``tflite`` of cfg/default.yaml)."""

    run: str = "auto"
    quant: str = "float"
    calibration_images: int = 100
    data: str = "auto"
    edgetpu: bool = False
    parity: bool = True


def quant_list(value: str) -> list[str]:
    names = QUANTS if value.strip() == "all" else [q.strip() for q in value.split(",") if q.strip()]
    unknown = [q for q in names if q not in QUANTS]
    if unknown or not names:
        raise ConfigError(f"quant={value!r}: use one or more of {', '.join(QUANTS)} (comma-separated) or all")
    return list(dict.fromkeys(names))


# ------------------------------------------------------------------------------------ entry point

def convert(settings: TFLiteSettings) -> dict[str, Path]:
    """`make tflite`: every requested quantization, labels, model_info.json, optional Edge TPU, then parity."""
    from odstack.export import saved_model as sm

    quants = quant_list(settings.quant)
    if settings.calibration_images < 1:
        raise ConfigError(f"calibration_images={settings.calibration_images} must be >= 1")
    if settings.edgetpu:
        if "int8" not in quants:
            raise ConfigError("edgetpu=true compiles the int8 model: add int8 to QUANT (e.g. QUANT=int8 EDGETPU=1)")
        edgetpu_compiler()  # fail before converting anything
    run = resolve_run(settings.run)
    info = run.info()
    engine = info["engine"]
    record = sm.read_export_record(run)
    if record is None or not (run.path / sm.SAVED_MODEL_DIR / "saved_model.pb").exists():
        LOGGER.info("%s: run %s has no SavedModel export yet: exporting it first (not published for serving)",
                    _PREFIX, run.path)
        sm.export(sm.ExportSettings(run=str(run.path), publish=False))
        record = sm.read_export_record(run)
    checkpoint, nms = Path(record["checkpoint"]), sm.Nms(**record["nms"])
    sm.require_trained(checkpoint)
    out_dir = run.path / TFLITE_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    LOGGER.info("%s: run %s, checkpoint %s (step %s), %s", _PREFIX, run.path, checkpoint, record.get("step"),
                ", ".join(quants))
    results: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix=".tflite-", dir=run.path) as scratch:
        graph, spec = tflite_saved_model(run, engine, checkpoint, nms, Path(scratch))
        model_info = {**spec, "engine": engine, "checkpoint": str(checkpoint), "step": record.get("step"),
                      "nms": record["nms"], "labels": LABELS_FILE, "variants": {}}
        previous = out_dir / INFO_FILE
        if previous.exists():  # keep variants converted earlier from the same checkpoint
            import json

            old = json.loads(previous.read_text(encoding="utf-8"))
            if old.get("checkpoint") == str(checkpoint):
                model_info["variants"] = old.get("variants", {})
        write_labels(run.label_map, out_dir / LABELS_FILE, spec["class_offset"])
        for quant in quants:
            path = export_tflite(graph, quant, out_dir / f"model_{quant}.tflite", run, spec, settings)
            check_nms_ops(path)
            results[quant] = path
            model_info["variants"][quant] = {"file": path.name, "size_bytes": path_size(path)}
        if settings.edgetpu:
            results["edgetpu"] = export_edgetpu(results["int8"])
            model_info["variants"]["edgetpu"] = {"file": results["edgetpu"].name,
                                                 "size_bytes": path_size(results["edgetpu"])}
        write_json(out_dir / INFO_FILE, model_info)
    lines = [f"{_PREFIX}: done -> {out_dir}"] + [f"  {q:<8} {p}" for q, p in results.items()]
    lines.append(f"  input: float32 {spec['input']['shape']} (see {out_dir / INFO_FILE}); labels: {LABELS_FILE}")
    LOGGER.info("\n".join(lines))
    if settings.parity:
        from odstack.export import parity

        parity.run_parity(parity.ParitySettings(run=str(run.path), data=settings.data))
    return results


# ------------------------------------------------------------------------------------ the graph

def tflite_saved_model(run, engine: str, checkpoint: Path, nms, scratch: Path) -> tuple[Path, dict[str, Any]]:
    """The SavedModel the converter reads (engine-specific) and the model's input/output spec."""
    if engine == "tfvision":
        return _tfvision_graph(run, checkpoint, nms, scratch)
    if engine == "odapi":
        return _odapi_graph(run, checkpoint, nms, scratch)
    raise ConfigError(f"run {run.path.name} was trained by engine {engine!r}, which has no TFLite path")


def _tfvision_graph(run, checkpoint: Path, nms, scratch: Path) -> tuple[Path, dict[str, Any]]:
    from odstack.export.saved_model import import_tensorflow, tfvision_params
    from odstack.train.engines.tfvision import CHATTER_FILE, _chatter_to

    import_tensorflow()
    from official.vision.serving import export_saved_model_lib

    params = tfvision_params(run, {"task": {
        "export_config": {"output_normalized_coordinates": False},
        "model": {"detection_generator": {"apply_nms": True, "nms_version": "tflite", "tflite_post_processing": {
            "max_detections": nms.max_detections, "max_classes_per_detection": 1, "use_regular_nms": False,
            "nms_score_threshold": nms.score_threshold, "nms_iou_threshold": nms.iou_threshold,
            "normalize_anchor_coordinates": True, "detections_per_class": nms.max_detections}}}}})
    size = [int(v) for v in params.task.model.input_size[:2]]
    out = scratch / "tflite_graph"
    with _chatter_to(run.path / CHATTER_FILE):
        export_saved_model_lib.export_inference_graph(
            input_type="tflite", batch_size=1, input_image_size=size, params=params,
            checkpoint_path=str(checkpoint), export_dir=str(out))
    spec = {
        "input": {"dtype": "float32", "shape": [1, size[0], size[1], 3], "color": "RGB", "mean": MEAN_RGB,
                  "std": STDDEV_RGB, "resize": "letterbox", "resize_method": TF2_RESIZE, "pad_value": 0.0,
                  "about": "(pixel - mean) / std; scaled to fit keeping the aspect ratio (bilinear with half-pixel "
                           "centres, tf.image.resize; scaled size rounded half to even), placed top-left, rest 0"},
        "outputs": OUTPUTS_ABOUT,
        "class_offset": 0,  # Model Garden's class channels include background at 0: channel k = label id k
    }
    return out, spec


ODAPI_REFUSED = {
    "faster_rcnn": "Faster R-CNN / Mask R-CNN are two-stage (crop-and-resize over a dynamic number of "
                   "proposals): the OD API has no TFLite export for them",
    "center_net": "CenterNet's TFLite export (other outputs, keypoints) is not wired into odstack",
}
# what the OD API's feature extractors do to pixels (their preprocess()), as (mean, std) per RGB channel
ODAPI_NORMALIZATION = {
    "efficientnet": (MEAN_RGB, STDDEV_RGB),
    "resnet": ([123.68, 116.779, 103.939], [1.0, 1.0, 1.0]),
    "mobilenet": ([127.5] * 3, [127.5] * 3),                       # (2 / 255) * pixel - 1
}


def odapi_tflite_spec(config_path: Path) -> dict[str, Any]:
    """The input/output spec of the OD API TFLite graph for this pipeline.config (model_info.json's), or an
    ExportError saying why TFLite cannot take the model. The rule is zoo.TFLITE_ARCHS, the one `make models`
    shows."""
    from odstack.train import pipeline_config, zoo

    text = config_path.read_text(encoding="utf-8") if config_path.exists() else ""
    config = pipeline_config.load(text, str(config_path))
    found = config.paths("model.{ssd|faster_rcnn|center_net}")
    arch = found[0].rpartition(".")[2] if found else "unknown"
    resizers = config.paths(f"model.{arch}.image_resizer.*")
    resizer = resizers[0].rpartition(".")[2] if resizers else "none"
    if not zoo.tflite_supported(arch, resizer):
        reason = ODAPI_REFUSED.get(arch) or (
            f"TFLite needs a fixed input size: this SSD config has a {resizer}, not a fixed_shape_resizer"
            if arch == "ssd" else f"meta-architecture {arch!r} has no TFLite path")
        raise ExportError(f"TFLite cannot take this model: {reason}", where=str(config_path),
                          hint="TFLite takes SSD models of a fixed size (MODEL=ssd_mobilenet_v2_320x320, "
                               "ssd_mobilenet_v2_fpnlite_320x320 or _640x640; `make models` lists them); serve "
                               "this one with TF Serving (make export)")
    height, width = (config.get(f"model.ssd.image_resizer.fixed_shape_resizer.{k}") for k in ("height", "width"))
    extractor = str(config.get("model.ssd.feature_extractor.type") or "")
    family = next((k for k in ODAPI_NORMALIZATION if k in extractor), "mobilenet")
    mean, std = ODAPI_NORMALIZATION[family]
    return {
        "input": {"dtype": "float32", "shape": [1, int(height), int(width), 3], "color": "RGB", "mean": mean,
                  "std": std, "resize": "stretch", "resize_method": ODAPI_RESIZE, "pad_value": 0.0,
                  "about": "(pixel - mean) / std; resized to the input size, aspect ratio not kept, bilinear "
                           "without half-pixel centres (tf.compat.v1.image.resize_images, align_corners=false: "
                           "what the OD API's fixed_shape_resizer does in the SavedModel)"},
        "outputs": OUTPUTS_ABOUT,
        "class_offset": 1,  # OD API TFLite classes are 0-based (background removed): label id = class + 1
        "feature_extractor": extractor,
    }


def _odapi_graph(run, checkpoint: Path, nms, scratch: Path) -> tuple[Path, dict[str, Any]]:
    from odstack.export.saved_model import odapi_checkpoint_dir
    from odstack.train.engines import odapi

    config = run.path / "pipeline.config"
    spec = odapi_tflite_spec(config)
    if not odapi.available():
        raise ConfigError("TFLite export of an ENGINE=odapi run needs the TF Object Detection API "
                          f"(object_detection.export_tflite_graph_tf2), not installed for {sys.executable}",
                          hint=odapi.GET_IT)
    out = scratch / "odapi_tflite"
    odapi._run([sys.executable, "-m", "object_detection.export_tflite_graph_tf2",
                f"--pipeline_config_path={config}", f"--trained_checkpoint_dir={odapi_checkpoint_dir(checkpoint, scratch)}",
                f"--output_directory={out}", f"--max_detections={nms.max_detections}"],
               odapi._environment(None), run.path / "export.log", "export_tflite_graph_tf2")
    return out / "saved_model", spec


# ------------------------------------------------------------------------------------ conversion

@timed(_PREFIX)
def export_tflite(graph: Path, quant: str, destination: Path, run, spec: dict[str, Any],
                  settings: TFLiteSettings) -> Path:
    """One quantization of ``graph`` -> ``destination`` (written beside, then renamed)."""
    from odstack.export.saved_model import import_tensorflow

    tf = import_tensorflow()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(graph))
    if quant == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quant == "int8":
        loops = graph_loop_ops(graph)
        if loops:  # docs/environment.md: full-int8 calibration segfaults on graphs with a tf.map_fn batch loop
            raise ExportError(f"int8 calibration would run a graph with a batch loop ({', '.join(loops)}), "
                              "on which the TFLite calibrator crashes", where=str(graph),
                              hint="export the TFLite graph without preprocessing (Model Garden input type tflite)")
        images = calibration_images(run, settings.data, settings.calibration_images)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: representative_dataset(images, spec)
    data = converter.convert()
    tmp = destination.with_name(f".{destination.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(destination)
    return destination


def graph_loop_ops(saved_model: Path) -> list[str]:
    """Loop ops (tf.map_fn/while) in a SavedModel's graph and functions, read from saved_model.pb."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(saved_model) / "saved_model.pb").read_bytes())
    ops = set()
    for meta in proto.meta_graphs:
        ops.update(node.op for node in meta.graph_def.node)
        for function in meta.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return sorted(ops & set(LOOP_OPS))


def calibration_images(run, data: str, count: int) -> list[np.ndarray]:
    """``count`` decoded val images (uint8 HxWx3) for int8 calibration, from the run's val TFRecords."""
    from odstack.export.parity import load_val_images

    images = [v.array for v in load_val_images(run, data, limit=count, ground_truth=False)]
    if not images:
        raise ExportError("no val images to calibrate int8 with", hint="re-run `make data` with VAL_FRACTION > 0")
    if len(images) < min(count, 20):
        LOGGER.warning("%s: int8 calibration on only %d images; quantization ranges may be poor", _PREFIX,
                       len(images))
    LOGGER.info("%s: int8 calibration on %d val images", _PREFIX, len(images))
    return images


def representative_dataset(images: Sequence[np.ndarray], spec: dict[str, Any]) -> Iterator[list[np.ndarray]]:
    for image in images:
        yield [preprocess(image, spec)[0]]


def check_nms_ops(path: Path) -> list[str]:
    """The model's ops; an ExportError unless NMS is TFLite_Detection_PostProcess (no Combined/V4/V5, no Flex)."""
    ops = tflite_ops(path)
    bad = [op for op in ops if "NonMaxSuppression" in op or "NON_MAX_SUPPRESSION" in op or op.startswith("Flex")]
    if bad or POSTPROCESS_OP not in ops:
        raise ExportError(f"unexpected NMS in the TFLite model: {bad or 'no ' + POSTPROCESS_OP}", where=str(path),
                          hint="TFLite builtins and TF.js need the TFLite_Detection_PostProcess path")
    return ops


def tflite_ops(path: Path) -> list[str]:
    interpreter = make_interpreter(path, threads=1)
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def make_interpreter(path: Path, threads: int):
    """A TFLite interpreter from ai-edge-litert (TF's own XNNPACK path miscomputes some strided convolutions:
    docs/environment.md); without it, TF's interpreter with the default delegates (XNNPACK) turned off."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_path=str(path), num_threads=threads)
    except ImportError:
        from odstack.export.saved_model import import_tensorflow

        tf = import_tensorflow()
        LOGGER.warning("%s: ai-edge-litert is not installed; using tf.lite.Interpreter without XNNPACK", _PREFIX)
        return tf.lite.Interpreter(model_path=str(path), num_threads=threads,
                                   experimental_op_resolver_type=tf.lite.experimental.OpResolverType
                                   .BUILTIN_WITHOUT_DEFAULT_DELEGATES)


def interpreter_name() -> str:
    try:
        from importlib.metadata import version

        import ai_edge_litert  # noqa: F401

        return f"ai-edge-litert {version('ai-edge-litert')}"
    except ImportError:
        return "tf.lite.Interpreter (no XNNPACK)"


def write_labels(label_map: Path, destination: Path, class_offset: int) -> Path:
    """labels.txt: line k names output class k (label-map id k + class_offset; gaps and background: ???)."""
    by_id = {i: n for n, i in labelmap.read(label_map).items()}
    lines = [by_id.get(k + class_offset, "???") for k in range(max(by_id) - class_offset + 1)]
    destination.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return destination


# ------------------------------------------------------------------------------------ Edge TPU

def edgetpu_compiler() -> str:
    path = shutil.which("edgetpu_compiler")
    if not path:
        raise ConfigError(
            "edgetpu=true needs edgetpu_compiler, which is not on PATH here",
            hint="build the toco image with --build-arg EDGETPU=1 on a host that reaches Coral's package "
                 "repository (packages.cloud.google.com), and run `make tflite QUANT=int8 EDGETPU=1 RUNNER=docker`")
    return path


@timed(_PREFIX)
def export_edgetpu(int8_model: Path) -> Path:
    result = subprocess.run([edgetpu_compiler(), "--out_dir", str(int8_model.parent), "--show_operations",
                             str(int8_model)], capture_output=True, text=True, timeout=900)
    output = int8_model.with_name(int8_model.stem + "_edgetpu.tflite")
    if result.returncode != 0 or not output.exists():
        raise ExportError(f"edgetpu_compiler failed (exit {result.returncode}): "
                          f"{(result.stderr or result.stdout).strip()[-800:]}", where=str(int8_model))
    LOGGER.info("%s: edgetpu_compiler: %s", _PREFIX, result.stdout.strip()[-1500:])
    return output


# ------------------------------------------------------------------------------------ pre/post

def preprocess(image: np.ndarray, spec: dict[str, Any]) -> tuple[np.ndarray, tuple[float, float]]:
    """uint8 HxWx3 -> the model's input [1, S, S, 3] and the (height, width) the image occupies in it.

    Letterbox = Model Garden's serving preprocessing (normalize, resize_and_crop_image without jitter):
    the scale is computed in float32 and the scaled size rounded half-to-even, as TensorFlow does.
    """
    from odstack.export.saved_model import import_tensorflow

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
