"""`make export`: a run's checkpoint -> ``output/<run>/saved_model/`` with the OD API serving signature, and
the same model published for TF Serving as ``output/serving/<model>/<version>/``.

    serving_default: input_tensor uint8 [1, H, W, 3]
      -> detection_boxes   float32 [1, N, 4]  normalized [ymin, xmin, ymax, xmax] of the input image
         detection_scores  float32 [1, N]     highest first; padding rows 0
         detection_classes float32 [1, N]     1-based label-map ids; padding rows 1.0 (as the OD API's)
         num_detections    float32 [1]        how many leading rows are real
    image_bytes (tfvision): encoded_image_string_tensor string [1] (JPEG/PNG/GIF/BMP) -> the same outputs

The SavedModel itself is the engine's (``export_saved_model`` of odstack/train/engines/<engine>.py, which
says how it meets the contract); this module picks and checks the checkpoint, checks the signature
(odstack/contract.py) and publishes the result (odstack/export/publish.py).

A checkpoint that holds no trained weights (no checkpoint at all, or global step 0: e.g. the OD API's
initial checkpoint of a run shorter than its checkpoint interval) is refused, never exported silently.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from odstack.contract import INPUT_KEY, OUTPUT_KEYS, SIGNATURE_KEY, ExportedSavedModel, Nms, check_signature
from odstack.errors import ExportError
from odstack.export import resolve_run, timed
from odstack.export.publish import (EXPORT_JSON, LABEL_MAP_ASSET, export_serving, swap_in_saved_model,
                                    write_thresholds)
from odstack.fsio import check_name, write_json
from odstack.log import LOGGER, doing
from odstack.tfruntime import import_tensorflow
from odstack.train import engines
from odstack.train.run import select_checkpoint

_PREFIX = "export"


@dataclass
class ExportSettings:
    """Settings of `make export` (section ``export`` of cfg/default.yaml)."""

    run: str = "auto"
    checkpoint: str = "best"
    model_name: str = "auto"
    serving_dir: Path = Path("output/serving")
    publish: bool = True
    tf1: bool = False
    max_detections: int = 100
    score_threshold: float = 0.05
    iou_threshold: float = 0.5


@dataclass
class ExportResult:
    run: Path
    saved_model: Path
    checkpoint: Path
    step: int
    serving: Path | None


# ------------------------------------------------------------------------------------ entry point

def export(settings: ExportSettings) -> ExportResult:
    """`make export`: SavedModel (+ the serving copy unless ``publish=false``) of one run."""
    run = resolve_run(settings.run)
    info = run.info()
    engine = info["engine"]
    model_name = check_name(run.path.name if settings.model_name == "auto" else settings.model_name, "model_name")
    nms = Nms(settings.max_detections, settings.score_threshold, settings.iou_threshold).check()
    tf = import_tensorflow()
    checkpoint = select_checkpoint(run, settings.checkpoint, latest_if_no_best=True)
    step = require_trained(checkpoint)
    LOGGER.info("%s: run %s (engine %s, model %s), checkpoint %s (step %d)", _PREFIX, run.path, engine,
                info.get("model"), checkpoint, step)
    doing(f"exporting {checkpoint.name} of run {run.path.name} to a SavedModel ({engine}'s exporter)")
    saved_model, exported = export_saved_model(run, engines.get(engine), checkpoint, nms)
    doing("checking the SavedModel's serving signature")
    check_signature(saved_model, strict=exported.exact_outputs)
    thresholds = write_thresholds(saved_model, run, step)
    record: dict[str, Any] = {
        "engine": engine, "model": info.get("model"), "checkpoint": str(checkpoint), "step": step,
        "metrics": _metrics_of(run, step), "saved_model": str(saved_model), "nms": asdict(nms),
        "image_size": exported.image_size, "tensorflow": tf.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "serving": None, "thresholds": thresholds,
    }
    serving = None
    if settings.publish:
        doing(f"publishing for TF Serving as {model_name} (warm-up requests, label map)")
        serving = export_serving(saved_model, Path(settings.serving_dir), model_name, run.label_map,
                                 record["image_size"])
        record["serving"] = {"model_name": model_name, "version": int(serving.name), "path": str(serving)}
    write_json(run.path / EXPORT_JSON, record)
    lines = [f"{_PREFIX}: done. SavedModel: {saved_model} (signature {SIGNATURE_KEY}: {INPUT_KEY} uint8 "
             f"[1,H,W,3] -> {', '.join(OUTPUT_KEYS)})"]
    if serving:
        lines.append(f"  TF Serving: {serving} (model_name={model_name}, version {serving.name}; "
                     f"label map in {LABEL_MAP_ASSET})")
    lines.append(f"  next: make tflite RUN={run.path.name}  |  make serve")
    LOGGER.info("\n".join(lines))
    return ExportResult(run.path, saved_model, checkpoint, step, serving)


# ------------------------------------------------------------------------------------ checkpoints

def require_trained(prefix: Path) -> int:
    """The checkpoint's global step; an ExportError if it holds no trained weights."""
    tf = import_tensorflow()
    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except Exception as error:  # noqa: BLE001 - TF raises several types for unreadable checkpoints
        raise ExportError(f"cannot read checkpoint: {error}", where=str(prefix)) from None
    shapes = reader.get_variable_to_shape_map()
    step = None
    for key in ("global_step/.ATTRIBUTES/VARIABLE_VALUE", "step/.ATTRIBUTES/VARIABLE_VALUE"):
        if key in shapes:
            step = int(reader.get_tensor(key))
            break
    if step is None:
        suffix = prefix.name.rsplit("-", 1)[-1]
        step = int(suffix) if suffix.isdigit() else -1
    weights = [k for k in shapes if "OPTIMIZER_SLOT" not in k and "step/" not in k
               and not k.startswith(("optimizer/", "save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH"))]
    if not weights or step == 0:
        raise ExportError(
            f"checkpoint {prefix} holds no trained weights (global step {step}, {len(weights)} model variables): "
            "exporting it would serve an untrained model",
            where=str(prefix.parent),
            hint="train longer (a short OD API run may only save its initial checkpoint; see docs/environment.md), "
                 "or pass CHECKPOINT=<a trained checkpoint>")
    return step


def _metrics_of(run, step: int) -> dict[str, float] | None:
    for entry in run.metrics().get("history", []):
        if entry.get("step") == step:
            return {k: entry[k] for k in ("AP", "AP50", "AP75") if k in entry}
    return None


# ------------------------------------------------------------------------------------ SavedModel

@timed(_PREFIX)
def export_saved_model(run, engine: ModuleType, checkpoint: Path, nms: Nms) -> tuple[Path, ExportedSavedModel]:
    """``output/<run>/saved_model`` from the run's checkpoint, by the engine's own exporter."""
    exported: list[ExportedSavedModel] = []

    def build(scratch: Path, staged: Path) -> None:
        exported.append(engine.export_saved_model(run, checkpoint, nms, scratch, staged))

    return swap_in_saved_model(run.path, run.label_map, build), exported[0]
