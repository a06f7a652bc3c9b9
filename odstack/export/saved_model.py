"""`make export`: a run's checkpoint -> ``output/<run>/saved_model/`` with the OD API serving signature, and
the same model published for TF Serving as ``output/serving/<model>/<version>/``.

    serving_default: input_tensor uint8 [1, H, W, 3]
      -> detection_boxes   float32 [1, N, 4]  normalized [ymin, xmin, ymax, xmax] of the input image
         detection_scores  float32 [1, N]     highest first; padding rows 0
         detection_classes float32 [1, N]     1-based label-map ids; padding rows 1.0 (as the OD API's)
         num_detections    float32 [1]        how many leading rows are real
    image_bytes (tfvision): encoded_image_string_tensor string [1] (JPEG/PNG/GIF/BMP) -> the same outputs

Engines:

- ``tfvision`` (Model Garden): ``export_saved_model_lib.export_inference_graph`` with input type
  ``image_tensor``, batch size 1 and ``detection_generator.apply_nms=false`` (Model Garden's own
  preprocessing, backbone, head and box decoding: boxes in pixels of the scaled input, sigmoid scores
  without the background class, ``image_info``), then ONE adapter ``tf.Module`` (``ODAPISignature`` in
  :func:`adapt_to_od_api`) that gives the OD API signature: input ``input_tensor``, boxes normalized to
  the input image, one class per box (its best score), class-agnostic hard NMS with
  ``NonMaxSuppressionV5``, outputs padded as the OD API pads them. Why NMS is the adapter's:
  TFLite's ``TFLite_Detection_PostProcess`` (fast NMS, the mobile default) is class-agnostic, and
  Model Garden's only class-agnostic NMS (``v2``) is a padded while-loop that costs ~27 ms of a 43 ms
  call at 128 px; its ``batched`` NMS is ``CombinedNonMaxSuppression``, which TF.js and TFLite
  builtins lack (docs/environment.md). Boxes are clipped to the image *after* NMS, as TFLite's
  post-processing op does (it cannot clip before): Model Garden clips before NMS, which changes the
  overlaps of boxes that cross the image edge and so which of them NMS keeps; with one rule in every
  format, every format gives the same detections. The served model takes ~15 ms.
- ``odapi`` (TF OD API): ``object_detection.exporter_main_v2 --input_type image_tensor`` in a
  subprocess; its signature *is* the contract (plus the OD API's extra raw outputs). NMS settings come
  from the run's pipeline.config. Without the OD API installed: a ConfigError saying how to get it.

A checkpoint that holds no trained weights (no checkpoint at all, or global step 0: e.g. the OD API's
initial checkpoint of a run shorter than its checkpoint interval) is refused, never exported silently.

Publishing: the SavedModel is copied to ``<serving_dir>/<model_name>/.tmp-<version>-<pid>`` with the label
map in ``assets.extra/label_map.pbtxt``, TF Serving's warm-up file (``assets.extra/tf_serving_warmup_requests``,
odstack/export/warmup.py) and, when the exported checkpoint was evaluated, its best-F1 score threshold
(``assets.extra/thresholds.json``: ``{"score_threshold": 0.35, "source": "best F1 on val, step N"}``), then
renamed to ``<version>`` (one atomic rename, so TF
Serving never loads half a model); versions are integers, one more than the highest there.
``output/<run>/export.json`` records what was exported (checkpoint, step, NMS, image size, version):
`make tflite` reads it to convert the same checkpoint with the same NMS.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from odstack.errors import ConfigError
from odstack.export import INPUT_KEY, OUTPUT_KEYS, SIGNATURE_KEY, ExportError, resolve_run, timed
from odstack.export.warmup import write_warmup_requests
from odstack.fsio import check_name, replace_dir, write_json
from odstack.log import LOGGER
from odstack.train.run import select_checkpoint

EXPORT_JSON = "export.json"
SAVED_MODEL_DIR = "saved_model"
LABEL_MAP_ASSET = Path("assets.extra") / "label_map.pbtxt"
#: The second signature (tfvision exports): encoded image bytes, the OD API's encoded_image_string_tensor input
BYTES_SIGNATURE_KEY, BYTES_INPUT_KEY = "image_bytes", "encoded_image_string_tensor"
THRESHOLDS_ASSET = Path("assets.extra") / "thresholds.json"  # the best-F1 score threshold, when evaluated
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


@dataclass(frozen=True)
class Nms:
    """Post-processing shared by the SavedModel and TFLite exports (tfvision)."""

    max_detections: int = 100
    score_threshold: float = 0.05
    iou_threshold: float = 0.5

    def check(self) -> "Nms":
        if self.max_detections < 1:
            raise ConfigError(f"max_detections={self.max_detections} must be >= 1")
        if not 0.0 <= self.score_threshold < 1.0:
            raise ConfigError(f"score_threshold={self.score_threshold} must be in [0, 1)")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ConfigError(f"iou_threshold={self.iou_threshold} must be in (0, 1]")
        return self


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
    if settings.tf1:  # a TF1.15 OD API run, exported by export_tf1.sh in the odapi-tf1 image first
        from odstack.export import tf1

        return tf1.export(settings)
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
    saved_model = export_saved_model(run, engine, checkpoint, nms)
    check_signature(saved_model, strict=engine == "tfvision")
    thresholds = write_thresholds(saved_model, run, step)
    record: dict[str, Any] = {
        "engine": engine, "model": info.get("model"), "checkpoint": str(checkpoint), "step": step,
        "metrics": _metrics_of(run, step), "saved_model": str(saved_model), "nms": asdict(nms),
        "image_size": _image_size(run, engine), "tensorflow": tf.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "serving": None, "thresholds": thresholds,
    }
    serving = None
    if settings.publish:
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


def import_tensorflow():
    """TensorFlow with its C++ chatter turned down (same policy as the tfvision engine)."""
    from odstack.train.engines import tfvision

    return tfvision._import_tensorflow()


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


def write_thresholds(saved_model: Path, run, step: int) -> dict[str, Any] | None:
    """``assets.extra/thresholds.json`` beside the label map: the best-F1 score threshold the evaluation
    of this checkpoint found on val (the default threshold of clients), if it was evaluated."""
    entry = next((h for h in run.metrics().get("history", []) if h.get("step") == step and "best_f1" in h), None)
    if entry is None:
        LOGGER.info("%s: no best-F1 threshold recorded for step %d (`make eval CHECKPOINT=...` records one); "
                    "clients keep their own default threshold", _PREFIX, step)
        return None
    record = {"score_threshold": float(entry["best_f1"]["threshold"]), "source": f"best F1 on val, step {step}"}
    write_json(saved_model / THRESHOLDS_ASSET, record)
    LOGGER.info("%s: default score threshold %.2f (best F1 %.3f on val, step %d) -> %s", _PREFIX,
                record["score_threshold"], entry["best_f1"]["f1"], step, THRESHOLDS_ASSET)
    return record


def _image_size(run, engine: str) -> list[int] | None:
    if engine == "tfvision":
        from odstack.train.engines import tfvision

        params = tfvision.load_params(run.path / tfvision.PIPELINE_FILE)
        return [int(v) for v in params.task.model.input_size[:2]]
    return None


# ------------------------------------------------------------------------------------ SavedModel

@timed(_PREFIX)
def export_saved_model(run, engine: str, checkpoint: Path, nms: Nms) -> Path:
    """``output/<run>/saved_model`` from the run's checkpoint, by the engine's exporter."""
    def build(scratch: Path, staged: Path) -> None:
        if engine == "tfvision":
            _export_tfvision(run, checkpoint, nms, scratch, staged)
        elif engine == "odapi":
            _export_odapi(run, checkpoint, scratch, staged)
        else:
            raise ConfigError(f"run {run.path.name} was trained by engine {engine!r}, which has no exporter")

    return swap_in_saved_model(run.path, run.label_map, build)


def swap_in_saved_model(run_dir: Path, label_map: Path, build: Callable[[Path, Path], None]) -> Path:
    """``run_dir/saved_model``: ``build(scratch, staged)`` writes it beside (in a scratch directory), the
    label map is added to its assets.extra, then it is swapped in (an old export stays until then)."""
    destination = run_dir / SAVED_MODEL_DIR
    with tempfile.TemporaryDirectory(prefix=".export-", dir=run_dir) as scratch:
        staged = Path(scratch) / SAVED_MODEL_DIR
        build(Path(scratch), staged)
        (staged / LABEL_MAP_ASSET).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(label_map, staged / LABEL_MAP_ASSET)
        replace_dir(staged, destination)
    return destination


def tfvision_params(run, overrides: dict[str, Any]):
    """The run's Model Garden config (pipeline.yaml) with export-time overrides, validated and locked."""
    from odstack.train.engines import tfvision

    return tfvision.load_params(run.path / tfvision.PIPELINE_FILE, overrides)


def _export_tfvision(run, checkpoint: Path, nms: Nms, scratch: Path, staged: Path) -> None:
    tf = import_tensorflow()
    from official.vision.serving import export_saved_model_lib

    # Model Garden up to the decoded boxes (pixels of the scaled input, not clipped) and per-class scores
    # (sigmoid, background removed); normalizing, NMS and clipping are the adapter's (module docstring).
    params = tfvision_params(run, {"task": {
        "export_config": {"output_normalized_coordinates": False},
        "model": {"detection_generator": {"apply_nms": False}}}})
    size = [int(v) for v in params.task.model.input_size[:2]]
    garden = scratch / "model_garden"
    from odstack.train.engines.tfvision import CHATTER_FILE, _chatter_to

    with _chatter_to(run.path / CHATTER_FILE):
        export_saved_model_lib.export_inference_graph(
            input_type="image_tensor", batch_size=1, input_image_size=size, params=params,
            checkpoint_path=str(checkpoint), export_dir=str(garden),
            export_module=_unclipped_detection_module(params, size))
    adapt_to_od_api(garden, staged, nms, tf)


def _unclipped_detection_module(params, size: list[int]):
    """Model Garden's serving module whose box decoder leaves boxes unclipped (the adapter clips after NMS)."""
    import tf_keras
    from official.vision.serving import detection

    class ClipAfterNms(tf_keras.layers.Layer):
        """Model Garden's detection generator called without the image shape, its only use being to clip."""

        def __init__(self, generator):
            super().__init__(name="clip_after_nms")
            self.generator = generator

        def __call__(self, raw_boxes, raw_scores, anchor_boxes, image_shape, raw_attributes=None):
            return self.generator(raw_boxes, raw_scores, anchor_boxes, None, raw_attributes)

        def get_config(self):
            return self.generator.get_config()

    class UnclippedDetectionModule(detection.DetectionModule):
        def _build_model(self):
            model = super()._build_model()
            model._detection_generator = ClipAfterNms(model.detection_generator)  # no public setter
            return model

    return UnclippedDetectionModule(params=params, batch_size=1, input_image_size=size, input_type="image_tensor")


def adapt_to_od_api(garden_dir: Path, destination: Path, nms: Nms, tf=None) -> Path:
    """Wrap Model Garden's decoded-detections signature in the OD API's, with class-agnostic NMS, and save it."""
    tf = tf or import_tensorflow()

    class ODAPISignature(tf.Module):
        """The one adapter from Model Garden's detection signature to the OD API's (module docstring)."""

        def __init__(self, garden):
            super().__init__(name="odapi_signature")
            self.garden = garden  # tracked: its variables and functions are saved with the adapter
            self._serve = garden.signatures["serving_default"]
            self._input = next(iter(self._serve.structured_input_signature[1]))

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name=INPUT_KEY)])
        def serve(self, input_tensor):
            out = self._serve(**{self._input: input_tensor})
            # image_info rows: original (h, w), scaled (h, w), scale (y, x), offset: pixels of the scaled
            # input -> normalized to the original image, as Model Garden normalizes, but not yet clipped
            info = tf.cast(out["image_info"], tf.float32)[0]
            boxes = tf.reshape(tf.cast(out["decoded_boxes"], tf.float32), [-1, 4])
            boxes = boxes / tf.tile(info[2], [2]) / tf.tile(info[0], [2])
            scores = tf.cast(out["decoded_box_scores"], tf.float32)[0]           # [anchors, classes]
            best = tf.reduce_max(scores, axis=-1)                                 # one class per box, as
            classes = tf.cast(tf.argmax(scores, axis=-1), tf.float32) + 1.0      # TFLite's fast NMS does
            keep, kept = tf.image.non_max_suppression_with_scores(               # NonMaxSuppressionV5
                boxes, best, max_output_size=nms.max_detections, iou_threshold=nms.iou_threshold,
                score_threshold=nms.score_threshold)
            count = tf.shape(keep)[0]
            pad, rows = nms.max_detections - count, nms.max_detections
            return {  # static shapes [1, N, ...], as the OD API's export has them
                "detection_boxes": tf.reshape(tf.pad(tf.clip_by_value(tf.gather(boxes, keep), 0.0, 1.0),
                                                     [[0, pad], [0, 0]]), [1, rows, 4]),
                "detection_scores": tf.reshape(tf.pad(kept, [[0, pad]]), [1, rows]),
                "detection_classes": tf.reshape(tf.pad(tf.gather(classes, keep), [[0, pad]], constant_values=1.0),
                                                [1, rows]),
                "num_detections": tf.reshape(tf.cast(count, tf.float32), [1]),
            }

        @tf.function(input_signature=[tf.TensorSpec([1], tf.string, name=BYTES_INPUT_KEY)])
        def serve_bytes(self, encoded):
            """The same detector on one encoded image (JPEG, PNG, GIF, BMP), decoded by the model server: the
            client forwards an upload as it is (a few KB, not a 900 KB uint8 tensor for 640x480)."""
            # JPEGs with the accurate integer DCT, as Pillow (the client's decoder) decodes them
            image = tf.cond(tf.io.is_jpeg(encoded[0]),
                            lambda: tf.io.decode_jpeg(encoded[0], channels=3, dct_method="INTEGER_ACCURATE"),
                            lambda: tf.io.decode_image(encoded[0], channels=3, expand_animations=False))
            return self.serve(image[tf.newaxis])

    module = ODAPISignature(tf.saved_model.load(str(garden_dir)))
    tf.saved_model.save(module, str(destination), signatures={SIGNATURE_KEY: module.serve.get_concrete_function(),
                                                              BYTES_SIGNATURE_KEY: module.serve_bytes.get_concrete_function()})
    return destination


def _export_odapi(run, checkpoint: Path, scratch: Path, staged: Path) -> None:
    from odstack.train.engines import odapi

    if not odapi.available():
        raise ConfigError("exporting an ENGINE=odapi run needs the TF Object Detection API (object_detection), "
                          f"which is not installed for {sys.executable}", hint=odapi.GET_IT)
    config = run.path / "pipeline.config"
    if not config.exists():
        raise ConfigError("no pipeline.config in the run", where=str(run.path))
    checkpoint_dir = odapi_checkpoint_dir(checkpoint, scratch)
    out = scratch / "odapi"
    odapi._run([sys.executable, "-m", "object_detection.exporter_main_v2", "--input_type=image_tensor",
                f"--pipeline_config_path={config}", f"--trained_checkpoint_dir={checkpoint_dir}",
                f"--output_directory={out}"], odapi._environment(None), run.path / "export.log",
               "exporter_main_v2")
    os.replace(out / "saved_model", staged)


def odapi_checkpoint_dir(checkpoint: Path, scratch: Path) -> Path:
    """A directory whose ``checkpoint`` state file names ``checkpoint`` (OD API exporters take a directory)."""
    directory = scratch / "checkpoint"
    directory.mkdir(parents=True, exist_ok=True)
    prefix = Path(checkpoint).absolute()
    (directory / "checkpoint").write_text(f'model_checkpoint_path: "{prefix}"\n'
                                          f'all_model_checkpoint_paths: "{prefix}"\n', encoding="utf-8")
    return directory


def check_signature(saved_model: Path, strict: bool = True) -> dict[str, Any]:
    """Check ``serving_default`` is the OD API contract, reading saved_model.pb (no graph loading).

    strict: exactly the four outputs (the tfvision adapter's promise); otherwise they must be present (the
    OD API's own exporter adds raw_detection_* outputs). Returns {name: (dtype, shape)} of the outputs.
    """
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(saved_model) / "saved_model.pb").read_bytes())
    signatures = proto.meta_graphs[0].signature_def
    if SIGNATURE_KEY not in signatures:
        raise ExportError(f"no {SIGNATURE_KEY} signature (has: {', '.join(signatures)})", where=str(saved_model))
    sig = signatures[SIGNATURE_KEY]

    def spec(info):
        dims = None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim]
        return types_pb2.DataType.Name(info.dtype), dims

    inputs = {k: spec(v) for k, v in sig.inputs.items()}
    outputs = {k: spec(v) for k, v in sig.outputs.items()}
    problems = []
    if list(inputs) != [INPUT_KEY] or inputs[INPUT_KEY][0] != "DT_UINT8":
        problems.append(f"inputs {inputs} (want {INPUT_KEY}: DT_UINT8 [1,H,W,3])")
    missing = [k for k in OUTPUT_KEYS if k not in outputs]
    if missing:
        problems.append(f"missing outputs {missing}")
    if strict and set(outputs) != set(OUTPUT_KEYS):
        problems.append(f"outputs {sorted(outputs)} (want exactly {list(OUTPUT_KEYS)})")
    wrong = [k for k in OUTPUT_KEYS if k in outputs and outputs[k][0] != "DT_FLOAT"]
    if wrong:
        problems.append(f"outputs not float32: {wrong}")
    if problems:
        raise ExportError("the SavedModel's serving signature is not the OD API's: " + "; ".join(problems),
                          where=str(saved_model))
    return outputs


# ------------------------------------------------------------------------------------ TF Serving

def _bytes_signature(saved_model: Path) -> tuple[str, str] | None:
    """(BYTES_SIGNATURE_KEY, BYTES_INPUT_KEY) when the SavedModel has the encoded-image signature."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(saved_model) / "saved_model.pb").read_bytes())
    signature = proto.meta_graphs[0].signature_def.get(BYTES_SIGNATURE_KEY)
    return (BYTES_SIGNATURE_KEY, BYTES_INPUT_KEY) if signature and BYTES_INPUT_KEY in signature.inputs else None


def _versions(base: Path) -> list[int]:
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()) if base.exists() else []


@timed(_PREFIX)
def export_serving(saved_model: Path, serving_dir: Path, model_name: str, label_map: Path,
                   image_size: list[int] | None = None) -> Path:
    """Publish ``saved_model`` as ``serving_dir/model_name/<next version>`` (copy aside, one rename), with the
    label map and TF Serving's warm-up file (odstack/export/warmup.py) in its assets.extra."""
    base = Path(serving_dir) / model_name
    base.mkdir(parents=True, exist_ok=True)
    for attempt in range(20):
        version = (_versions(base) or [0])[-1] + 1
        staging = base / f".tmp-{version}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(saved_model, staging)
        (staging / LABEL_MAP_ASSET).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(label_map, staging / LABEL_MAP_ASSET)
        write_warmup_requests(staging, model_name, image_size, import_tensorflow(), _bytes_signature(staging))
        target = base / str(version)
        try:
            if target.exists():  # another export took this number since we listed: try the next one
                raise FileExistsError(target)
            os.rename(staging, target)
            return target
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            LOGGER.info("%s: version %d of %s was taken meanwhile; trying the next", _PREFIX, version, model_name)
    raise ExportError(f"could not publish a new version under {base} (20 attempts)", where=str(base))


def read_export_record(run) -> dict[str, Any] | None:
    path = run.path / EXPORT_JSON
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
