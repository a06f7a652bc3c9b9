"""`make tflite`: the exported checkpoint -> ``output/<run>/tflite/model_<quant>.tflite`` (toco image), then parity.

Quantizations (``quant=``, several comma-separated, or ``all``):

    float    no quantization                                   must match the SavedModel to ~1e-4
    fp16     float16 weights                                   ~1e-3, reported by parity
    dynamic  int8 weights, float activations (dynamic range)   reports its AP loss
    int8     int8 weights and activations, float I/O; calibrated on ``calibration_images`` val images

The graph is the engine's (``tflite_graph`` of odstack/train/engines/<engine>.py: a SavedModel ending in
TFLite's ``TFLite_Detection_PostProcess`` op, and the spec of its input); this module converts it, checks
its NMS ops, writes ``labels.txt`` and ``model_info.json`` (that spec: what odstack/export/runtimes/tflite.py
and an app do to an image before and after the model), then runs parity.

``edgetpu=true`` compiles the int8 model with ``edgetpu_compiler`` when it is on PATH (the toco image's
``EDGETPU=1`` build arg installs it from Coral's package repository); otherwise the run fails up front.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from odstack import labelmap
from odstack.contract import Nms
from odstack.errors import ConfigError, ExportError
from odstack.export import parity, path_size, resolve_run, timed
from odstack.export.publish import SAVED_MODEL_DIR, read_export_record
from odstack.export.runtimes.tflite import INFO_FILE, POSTPROCESS_OP, TFLITE_DIR, make_interpreter, preprocess
from odstack.export.saved_model import ExportSettings, export, require_trained
from odstack.fsio import write_json
from odstack.log import LOGGER, doing
from odstack.tfruntime import import_tensorflow
from odstack.train import engines

QUANTS = ("float", "fp16", "dynamic", "int8")
LABELS_FILE = "labels.txt"
_PREFIX = "tflite"
LOOP_OPS = ("While", "StatelessWhile", "TensorListReserve", "TensorListFromTensor")


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
    record = read_export_record(run)
    if record is None or not (run.path / SAVED_MODEL_DIR / "saved_model.pb").exists():
        LOGGER.info("%s: run %s has no SavedModel export yet: exporting it first (not published for serving)",
                    _PREFIX, run.path)
        export(ExportSettings(run=str(run.path), publish=False))
        record = read_export_record(run)
    checkpoint, nms = Path(record["checkpoint"]), Nms(**record["nms"])
    require_trained(checkpoint)
    out_dir = run.path / TFLITE_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    LOGGER.info("%s: run %s, checkpoint %s (step %s), %s", _PREFIX, run.path, checkpoint, record.get("step"),
                ", ".join(quants))
    results: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix=".tflite-", dir=run.path) as scratch:
        doing(f"building the TFLite graph of {checkpoint.name} ({engine})")
        graph, spec = engines.get(engine).tflite_graph(run, checkpoint, nms, Path(scratch))
        model_info = {**spec, "engine": engine, "checkpoint": str(checkpoint), "step": record.get("step"),
                      "nms": record["nms"], "labels": LABELS_FILE, "variants": {}}
        previous = out_dir / INFO_FILE
        if previous.exists():  # keep variants converted earlier from the same checkpoint
            old = json.loads(previous.read_text(encoding="utf-8"))
            if old.get("checkpoint") == str(checkpoint):
                model_info["variants"] = old.get("variants", {})
        write_labels(run.label_map, out_dir / LABELS_FILE, spec["class_offset"])
        for quant in quants:
            doing(f"converting {quant}")
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
        parity.run_parity(parity.ParitySettings(run=str(run.path), data=settings.data))
    return results


# ------------------------------------------------------------------------------------ conversion

@timed(_PREFIX)
def export_tflite(graph: Path, quant: str, destination: Path, run, spec: dict[str, Any],
                  settings: TFLiteSettings) -> Path:
    """One quantization of ``graph`` -> ``destination`` (written beside, then renamed)."""
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
    images = [v.array for v in parity.load_val_images(run, data, limit=count, ground_truth=False)]
    if not images:
        raise ExportError("no val images to calibrate int8 with", hint="re-run `make data` with VAL_FRACTION > 0")
    if len(images) < min(count, 20):
        LOGGER.warning("%s: int8 calibration on only %d images; quantization ranges may be poor", _PREFIX,
                       len(images))
    LOGGER.info("%s: int8 calibration on %d val images", _PREFIX, len(images))
    return images


def representative_dataset(images: Sequence[np.ndarray], spec: dict[str, Any]) -> Iterator[list[np.ndarray]]:
    for number, image in enumerate(images, 1):
        doing(f"int8: calibrating on val image {number}/{len(images)}")
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


