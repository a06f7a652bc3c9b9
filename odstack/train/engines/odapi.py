"""ENGINE=odapi: the TF Object Detection API (TF2), fine-tuning a TF2 Detection Zoo model.

train(): zoo archive (download once, verify, unpack) -> output/<run>/pipeline.config -> model_main_tf2 as
a subprocess, one chunk of ``checkpoint_every`` steps at a time (it resumes from the run directory's
latest checkpoint), each chunk's final checkpoint evaluated (COCO metrics, OD API evaluators) and
recorded in metrics.json; best/ keeps the checkpoint with the highest AP.

model_main_tf2 traps this module is built around (docs/environment.md):
- it trains in loops of 100 steps (NUM_STEPS_PER_ITERATION): steps and chunks are rounded up to 100s;
- it saves once at step 0, then only when ``checkpoint_every_n`` steps have passed since the last save,
  never at the end: each chunk runs with ``checkpoint_every_n`` = the chunk's length, so its final step
  is saved, and the step of the new checkpoint is checked before anything else happens.

``evaluate()`` runs this module as ``python -m odstack.train.engines.odapi evaluate ...`` in a subprocess
(TensorFlow + the OD API stay out of the calling process): it builds the model from pipeline.config,
restores one checkpoint and runs model_lib_v2.eager_eval_loop once, writing TensorBoard summaries to
output/<run>/eval/ and the metrics as JSON.

Export (its own section): the OD API's exporters (exporter_main_v2, export_tflite_graph_tf2) in a subprocess.

Without the OD API installed (CI, the default odapi image) train/evaluate/export raise a ConfigError that
says how to get it; models() and config rendering work everywhere.
"""
from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import logging
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import odstack
from odstack.contract import MEAN_RGB, ODAPI_RESIZE, OUTPUTS_ABOUT, STDDEV_RGB, ExportedSavedModel, Nms
from odstack.errors import ConfigError, ExportError, OdstackError
from odstack.fsio import write_text_atomic
from odstack.log import LOGGER
from odstack.train import pipeline_config, zoo
from odstack.train.engines import DEFAULT_MODELS
from odstack.train.run import DatasetInfo, RunDir, TrainSettings, latest_checkpoint, resolve_checkpoint
from odstack.train.run import checkpoint_exists as _checkpoint_exists

NAME = "odapi"
STEPS_PER_LOOP = 100          # object_detection.model_lib_v2.NUM_STEPS_PER_ITERATION
# metrics.json keys -> the OD API's COCO evaluator keys (coco_detection_metrics)
COCO_KEYS = {
    "AP": "DetectionBoxes_Precision/mAP",
    "AP50": "DetectionBoxes_Precision/mAP@.50IOU",
    "AP75": "DetectionBoxes_Precision/mAP@.75IOU",
    "APs": "DetectionBoxes_Precision/mAP (small)",
    "APm": "DetectionBoxes_Precision/mAP (medium)",
    "APl": "DetectionBoxes_Precision/mAP (large)",
    "ARmax100": "DetectionBoxes_Recall/AR@100",
}
GET_IT = ("use the odapi image built with the OD API (make image-odapi with --build-arg ODAPI=1), install it "
          "into this environment with scripts/odapi/install_odapi.sh, or train with ENGINE=tfvision (PyPI only)")


def available() -> bool:
    """True if the OD API (with model_main_tf2) can be imported by this interpreter."""
    try:
        return importlib.util.find_spec("object_detection.model_main_tf2") is not None
    except ImportError:
        return False


def require() -> None:
    if not available():
        raise ConfigError("ENGINE=odapi needs the TensorFlow Object Detection API (module object_detection), "
                          f"which is not installed for {sys.executable}", hint=GET_IT)


def models() -> list[dict]:
    """The zoo models this engine trains (for `make models`)."""
    return [dict(row, engine=NAME, default=row["name"] == DEFAULT_MODELS[NAME]) for row in zoo.table()]


# ========================================================================================= train
def train(run: RunDir, settings: TrainSettings, data: DatasetInfo) -> None:
    require()
    _announce_devices(settings.gpus)
    total = _round_up(settings.steps, STEPS_PER_LOOP)
    chunk = _round_up(settings.resolved_checkpoint_every(), STEPS_PER_LOOP)
    if total != settings.steps:
        LOGGER.info("train[odapi]: steps=%d rounded up to %d (model_main_tf2 trains in loops of %d steps)",
                    settings.steps, total, STEPS_PER_LOOP)
    config_path = run.path / "pipeline.config"
    latest = latest_checkpoint(run.path)
    resuming = latest is not None and config_path.exists()
    template, fine_tune, fine_tune_type, default_batch = (
        _resume_template(config_path) if resuming else _template(settings))
    batch = default_batch if settings.batch == "auto" else int(settings.batch)
    size = None if settings.image_size == "auto" else int(settings.image_size)
    rendered = pipeline_config.render(
        pipeline_config.read_template(template), where=str(template), num_classes=data.num_classes,
        label_map=run.label_map.resolve(), train_input=_absolute(data.train_pattern),
        val_input=_absolute(data.val_pattern), steps=total, batch_size=batch, image_size=size,
        learning_rate=None if settings.learning_rate == "auto" else float(settings.learning_rate),
        fine_tune_checkpoint=fine_tune, fine_tune_checkpoint_type=fine_tune_type, val_images=data.val_images)
    step = checkpoint_step(latest) if latest else 0
    if resuming:
        _check_resume(run, config_path, rendered.text, step, total, size, settings.replan)
    run.start(settings, data)          # checks a resumed run's engine, model and classes; then writes run.json
    write_text_atomic(config_path, rendered.text)
    LOGGER.info("train[odapi]: rendered %s from %s (%s, %s schedule, %d classes, batch %s, input %s px)",
                config_path, template, rendered.model_type, rendered.schedule or "no", data.num_classes,
                batch or rendered.template_batch, rendered.input_size)
    if resuming:
        LOGGER.info("train[odapi]: resuming %s at step %d of %d", run.path, step, total)
    if step >= total:
        LOGGER.info("train[odapi]: %s is already at step %d (steps=%d): nothing to train", run.path, step, total)
    env = _environment(settings)
    for target in chunk_targets(step, total, chunk):
        started = time.monotonic()
        _run([sys.executable, "-m", "object_detection.model_main_tf2",
              f"--pipeline_config_path={config_path}", f"--model_dir={run.path}",
              f"--num_train_steps={target}", f"--checkpoint_every_n={target - step}", "--alsologtostderr"],
             env, run.path / "train.log", what="model_main_tf2")
        seconds = time.monotonic() - started
        new = latest_checkpoint(run.path)
        if new is None or new == latest:
            raise OdstackError(f"model_main_tf2 trained to step {target} but saved no new checkpoint",
                               where=str(run.path), hint="see train.log there")
        # the evaluation reads the checkpoint's step anyway; without val shards ask TensorFlow directly
        metrics = _evaluate(run, new, data, env) if data.val_shards else None
        new_step = int(metrics["step"]) if metrics else checkpoint_step(new)
        if new_step != target:
            raise OdstackError(f"model_main_tf2 trained to step {target} but {new.name} holds step {new_step}",
                               where=str(run.path), hint="see train.log there; an export now would use the "
                                                         "wrong weights")
        LOGGER.info("train[odapi]: step %d/%d saved as %s (%.0f s for %d steps, %.2f steps/s incl. start-up)",
                    target, total, new.name, seconds, target - step, (target - step) / seconds)
        latest, step = new, target
        if metrics is None:
            LOGGER.warning("train[odapi]: no val shards in %s: step %d not evaluated (no best/ checkpoint)",
                           data.directory, step)
            continue
        values = {k: v for k, v in metrics.items() if k != "step"}
        best = run.record_eval(step, latest, values)
        LOGGER.info("train[odapi]: step %d: AP %.3f AP50 %.3f%s", step, values["AP"], values["AP50"],
                    " (best so far)" if best else "")
    if latest is None:
        raise OdstackError("training finished without any checkpoint", where=str(run.path))
    LOGGER.info("train[odapi]: done. Checkpoints, pipeline.config, metrics.json and TensorBoard events "
                "(train/, eval/) are in %s", run.path)


def _template(settings: TrainSettings) -> tuple[Path, Path | str | None, str, int | None]:
    """(template, fine-tune checkpoint or None, its type, default batch) for a new run."""
    model = settings.resolved_model()
    scratch = settings.from_scratch or settings.init == "none"  # INIT=none: from scratch, as for tfvision
    if settings.init not in ("auto", "none", "coco"):
        raise ConfigError(f"init={settings.init!r}: the OD API zoo has COCO-trained models only",
                          hint="INIT=auto or coco (the zoo checkpoint), or none (from scratch)")
    if model.endswith(".config"):                       # a pipeline config of the user's own
        path = Path(model).expanduser()
        if not path.is_file():
            raise ConfigError(f"model={model}: no such pipeline config file")
        if scratch:
            return path, None, "detection", None
        config = pipeline_config.load(path.read_text(encoding="utf-8"), str(path))
        checkpoint = config.get("train_config.fine_tune_checkpoint")
        if not checkpoint or not _checkpoint_exists(Path(checkpoint)):
            raise ConfigError(f"fine_tune_checkpoint {checkpoint!r} of {path} does not exist", where=str(path),
                              hint="set it to a checkpoint prefix (ckpt-0), or pass from_scratch=true")
        return path, checkpoint, config.get("train_config.fine_tune_checkpoint_type") or "detection", None
    entry = zoo.get(model)
    model_dir = zoo.download(entry.name, Path(settings.zoo_cache), settings.zoo_url)
    checkpoint = None if scratch else zoo.checkpoint_prefix(model_dir, entry)
    return model_dir / "pipeline.config", checkpoint, "detection", entry.batch


def _resume_template(config_path: Path) -> tuple[Path, str | None, str, None]:
    """A resumed run re-renders its own pipeline.config; the latest checkpoint overrides fine-tuning."""
    config = pipeline_config.load(config_path.read_text(encoding="utf-8"), str(config_path))
    checkpoint = config.get("train_config.fine_tune_checkpoint")
    if checkpoint and not _checkpoint_exists(Path(checkpoint)):
        LOGGER.info("train[odapi]: fine_tune_checkpoint %s is gone; not needed to resume", checkpoint)
        checkpoint = None
    return config_path, checkpoint, config.get("train_config.fine_tune_checkpoint_type") or "detection", None


def _check_resume(run: RunDir, config_path: Path, new_text: str, step: int, total: int, size: int | None,
                  replan: bool) -> None:
    """A resumed run keeps its input size, and continues its planned learning-rate schedule unless
    ``replan``: re-planning (model_main_tf2 has no schedule offset, so it re-stretches the cosine over the
    new total) moves the learning rate at the current step, a warm restart rather than a continuation."""
    old = pipeline_config.load(config_path.read_text(encoding="utf-8"), str(config_path))
    if size is not None and size != pipeline_config.input_size(old):
        raise ConfigError(f"run {run.path.name!r} trains at {pipeline_config.input_size(old)} px; "
                          f"image_size={size} cannot change that", where=str(config_path),
                          hint="leave IMAGE_SIZE unset to resume it, or start a new run (RUN=<new name>)")
    planned = int(old.get("train_config.num_steps") or 0)
    if total == planned or total <= step:
        return
    now = pipeline_config.learning_rate_at(old, step)
    then = pipeline_config.learning_rate_at(pipeline_config.load(new_text), step)
    effect = (f"the learning rate at step {step} goes from {now:.3g} to {then:.3g}" if None not in (now, then)
              else "its learning-rate schedule is stretched")
    if not replan:
        raise ConfigError(
            f"run {run.path.name!r} is at step {step} of the {planned} steps it planned; steps={total} would "
            f"re-plan its schedule ({effect}: a warm restart, not a continuation)", where=str(config_path),
            hint=f"to continue the plan, STEPS={planned}; to re-plan it to {total} steps, add REPLAN=1 "
                 "(replan=true); or start a new run (RUN=<new name>) from this one's weights")
    LOGGER.warning("train[odapi]: re-planning run %s from %d to %d steps at step %d: %s (a warm restart)",
                   run.path.name, planned, total, step, effect)


# ====================================================================================== evaluate
def evaluate(run: RunDir, checkpoint: Path, data: DatasetInfo) -> dict[str, float]:
    """COCO metrics (AP, AP50, AP75, APs, APm, APl, ARmax100) and the step of one checkpoint."""
    require()
    return _evaluate(run, resolve_checkpoint(checkpoint), data, _environment(None))


def _evaluate(run: RunDir, checkpoint: Path, data: DatasetInfo, env: dict) -> dict[str, float]:
    config = run.path / "pipeline.config"
    if not config.exists():
        raise ConfigError("no pipeline.config in the run", where=str(run.path), hint="train it first: `make train`")
    if not data.val_shards:
        raise ConfigError("no val shards to evaluate on", where=str(data.directory),
                          hint="re-run `make data` with VAL_FRACTION > 0")
    out = run.path / f".eval-{os.getpid()}.json"
    label_map = run.label_map if run.label_map.exists() else data.label_map
    try:
        _run([sys.executable, "-m", __name__, "evaluate", "--pipeline", str(config), "--checkpoint", str(checkpoint),
              "--input", _absolute(data.val_pattern), "--label-map", str(label_map.resolve()),
              "--summary-dir", str(run.path / "eval"), "--out", str(out)],
             env, run.path / "eval.log", what="evaluation")
        return json.loads(out.read_text(encoding="utf-8"))
    finally:
        out.unlink(missing_ok=True)


# =================================================================================== checkpoints
def checkpoint_step(prefix: Path) -> int:
    """The global step stored in a checkpoint (reads it with TensorFlow in a subprocess)."""
    result = subprocess.run([sys.executable, "-m", __name__, "step", str(prefix)], env=_environment(None),
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise OdstackError(f"cannot read the step of checkpoint {prefix}: {result.stderr.strip()[-500:]}")
    return int(result.stdout.strip().splitlines()[-1])


# ======================================================================================= helpers
def chunk_targets(step: int, total: int, chunk: int) -> list[int]:
    """The steps each model_main_tf2 call trains to: multiples of ``chunk``, then ``total``."""
    targets = []
    while step < total:
        step = min((step // chunk + 1) * chunk, total)
        targets.append(step)
    return targets


def _round_up(value: int, multiple: int) -> int:
    return max(multiple, math.ceil(int(value) / multiple) * multiple)


def _absolute(pattern: str) -> str:
    return str(Path(pattern).expanduser().absolute())


def _announce_devices(gpus: str) -> None:
    """Say which devices model_main_tf2 will train on (it uses MirroredStrategy over every visible GPU), and
    refuse gpus=all/ids that no GPU here can satisfy, before the subprocess starts."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from odstack.train import devices

    found = tf.config.list_physical_devices("GPU")
    _, message = devices.choose(gpus, [d.name for d in found], "" if found else devices.no_gpu_reason(tf))
    (LOGGER.warning if "no GPU visible" in message else LOGGER.info)("train[odapi]: %s", message)


def _environment(settings: TrainSettings | None) -> dict[str, str]:
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", PYTHONUNBUFFERED="1")
    root = str(Path(odstack.__file__).resolve().parents[1])          # so `-m odstack...` works anywhere
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    gpus = settings.gpus if settings else "auto"
    if gpus == "none":
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    elif gpus not in ("auto", "all"):
        env["CUDA_VISIBLE_DEVICES"] = gpus
    return env


def _run(command: list[str], env: dict, log_path: Path, what: str) -> None:
    """Run a command, its output going to ``log_path`` (and stderr unless ODSTACK_VERBOSE=0)."""
    echo = LOGGER.isEnabledFor(logging.INFO)
    LOGGER.info("train[odapi]: %s", shlex.join(command))
    tail: collections.deque[str] = collections.deque(maxlen=15)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"\n$ {shlex.join(command)}\n")
        with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace", bufsize=1) as process:
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                tail.append(line)
                if echo:
                    sys.stderr.write(line)
            code = process.wait()
    if code != 0:
        raise OdstackError(f"{what} failed (exit code {code}); its last lines:\n" + "".join(tail).rstrip(),
                           where=str(log_path), hint=f"the whole log is in {log_path}")


# ======================================================================================== export
# The OD API's own exporters, in a subprocess (TensorFlow + the OD API stay out of the calling process).
# export_saved_model: ``exporter_main_v2 --input_type image_tensor``; its signature *is* the served contract
# (plus the OD API's extra raw outputs); NMS settings come from the run's pipeline.config.
# tflite_graph: ``export_tflite_graph_tf2``, then the export stage's converter. TFLite takes the **SSD**
# family only (SSD MobileNet/ResNet-FPN/EfficientDet): Faster R-CNN and Mask R-CNN (two-stage,
# crop-and-resize over a dynamic number of proposals) and CenterNet are refused with a clear message.
# Without the OD API installed: a ConfigError saying how to get it.

def export_saved_model(run: RunDir, checkpoint: Path, nms: Nms, scratch: Path, staged: Path) -> ExportedSavedModel:
    """The served contract's SavedModel of ``checkpoint`` -> ``staged`` (NMS: pipeline.config's, ``nms`` unused)."""
    if not available():
        raise ConfigError("exporting an ENGINE=odapi run needs the TF Object Detection API (object_detection), "
                          f"which is not installed for {sys.executable}", hint=GET_IT)
    config = run.path / "pipeline.config"
    if not config.exists():
        raise ConfigError("no pipeline.config in the run", where=str(run.path))
    out = scratch / "odapi"
    _run([sys.executable, "-m", "object_detection.exporter_main_v2", "--input_type=image_tensor",
          f"--pipeline_config_path={config}", f"--trained_checkpoint_dir={checkpoint_dir(checkpoint, scratch)}",
          f"--output_directory={out}"], _environment(None), run.path / "export.log", "exporter_main_v2")
    os.replace(out / "saved_model", staged)
    return ExportedSavedModel(image_size=None, exact_outputs=False)  # any size; raw_detection_* outputs too


def tflite_graph(run: RunDir, checkpoint: Path, nms: Nms, scratch: Path) -> tuple[Path, dict[str, Any]]:
    """The SavedModel TFLite's converter reads (ending in TFLite_Detection_PostProcess) and its input spec."""
    config = run.path / "pipeline.config"
    spec = tflite_spec(config)
    if not available():
        raise ConfigError("TFLite export of an ENGINE=odapi run needs the TF Object Detection API "
                          f"(object_detection.export_tflite_graph_tf2), not installed for {sys.executable}",
                          hint=GET_IT)
    out = scratch / "odapi_tflite"
    _run([sys.executable, "-m", "object_detection.export_tflite_graph_tf2",
          f"--pipeline_config_path={config}", f"--trained_checkpoint_dir={checkpoint_dir(checkpoint, scratch)}",
          f"--output_directory={out}", f"--max_detections={nms.max_detections}"],
         _environment(None), run.path / "export.log", "export_tflite_graph_tf2")
    return out / "saved_model", spec


def checkpoint_dir(checkpoint: Path, scratch: Path) -> Path:
    """A directory whose ``checkpoint`` state file names ``checkpoint`` (OD API exporters take a directory)."""
    directory = scratch / "checkpoint"
    directory.mkdir(parents=True, exist_ok=True)
    prefix = Path(checkpoint).absolute()
    (directory / "checkpoint").write_text(f'model_checkpoint_path: "{prefix}"\n'
                                          f'all_model_checkpoint_paths: "{prefix}"\n', encoding="utf-8")
    return directory


TFLITE_REFUSED = {
    "faster_rcnn": "Faster R-CNN / Mask R-CNN are two-stage (crop-and-resize over a dynamic number of "
                   "proposals): the OD API has no TFLite export for them",
    "center_net": "CenterNet's TFLite export (other outputs, keypoints) is not wired into odstack",
}
# what the OD API's feature extractors do to pixels (their preprocess()), as (mean, std) per RGB channel
TFLITE_NORMALIZATION = {
    "efficientnet": (MEAN_RGB, STDDEV_RGB),
    "resnet": ([123.68, 116.779, 103.939], [1.0, 1.0, 1.0]),
    "mobilenet": ([127.5] * 3, [127.5] * 3),                       # (2 / 255) * pixel - 1
}


def tflite_spec(config_path: Path) -> dict[str, Any]:
    """The input/output spec of the OD API TFLite graph for this pipeline.config (model_info.json's), or an
    ExportError saying why TFLite cannot take the model. The rule is zoo.TFLITE_ARCHS, the one `make models`
    shows."""
    text = config_path.read_text(encoding="utf-8") if config_path.exists() else ""
    config = pipeline_config.load(text, str(config_path))
    found = config.paths("model.{ssd|faster_rcnn|center_net}")
    arch = found[0].rpartition(".")[2] if found else "unknown"
    resizers = config.paths(f"model.{arch}.image_resizer.*")
    resizer = resizers[0].rpartition(".")[2] if resizers else "none"
    if not zoo.tflite_supported(arch, resizer):
        reason = TFLITE_REFUSED.get(arch) or (
            f"TFLite needs a fixed input size: this SSD config has a {resizer}, not a fixed_shape_resizer"
            if arch == "ssd" else f"meta-architecture {arch!r} has no TFLite path")
        raise ExportError(f"TFLite cannot take this model: {reason}", where=str(config_path),
                          hint="TFLite takes SSD models of a fixed size (MODEL=ssd_mobilenet_v2_320x320, "
                               "ssd_mobilenet_v2_fpnlite_320x320 or _640x640; `make models` lists them); serve "
                               "this one with TF Serving (make export)")
    height, width = (config.get(f"model.ssd.image_resizer.fixed_shape_resizer.{k}") for k in ("height", "width"))
    extractor = str(config.get("model.ssd.feature_extractor.type") or "")
    family = next((k for k in TFLITE_NORMALIZATION if k in extractor), "mobilenet")
    mean, std = TFLITE_NORMALIZATION[family]
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


# ================================================================ subprocess side (TF + OD API)
def _main_evaluate(args: argparse.Namespace) -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf
    from object_detection import inputs, model_lib_v2
    from object_detection.builders import optimizer_builder
    from object_detection.utils import config_util

    configs = config_util.get_configs_from_pipeline_file(args.pipeline)
    configs = config_util.merge_external_params_with_configs(
        configs, None, kwargs_dict={"eval_num_epochs": 1, "sample_1_of_n_eval_examples": 1})
    eval_config, model_config = configs["eval_config"], configs["model"]
    eval_input_config = configs["eval_input_configs"][0]
    del eval_input_config.tf_record_input_reader.input_path[:]
    eval_input_config.tf_record_input_reader.input_path.append(args.input)
    eval_input_config.label_map_path = args.label_map

    strategy = tf.distribute.get_strategy()
    with strategy.scope():     # as eval_continuously builds it
        detection_model = model_lib_v2.MODEL_BUILD_UTIL_MAP["detection_model_fn_base"](
            model_config=model_config, is_training=True)
    eval_input = strategy.experimental_distribute_dataset(inputs.eval_input(
        eval_config=eval_config, eval_input_config=eval_input_config, model_config=model_config,
        model=detection_model))
    global_step = tf.Variable(0, trainable=False, dtype=tf.int64)
    optimizer, _ = optimizer_builder.build(configs["train_config"].optimizer, global_step=global_step)
    checkpoint = tf.train.Checkpoint(step=global_step, model=detection_model, optimizer=optimizer)
    if eval_config.use_moving_averages:
        model_lib_v2._ensure_model_is_built(detection_model, eval_input, eval_config.batch_size == 1)
        optimizer.shadow_copy(detection_model)
    checkpoint.restore(args.checkpoint).expect_partial()
    if eval_config.use_moving_averages:
        optimizer.swap_weights()
    writer = tf.summary.create_file_writer(args.summary_dir)
    with writer.as_default():
        metrics = model_lib_v2.eager_eval_loop(detection_model, configs, eval_input, global_step=global_step)
    result: dict[str, float] = {name: float(metrics[key]) for name, key in COCO_KEYS.items() if key in metrics}
    missing = sorted(set(COCO_KEYS) - set(result))
    if missing:
        raise SystemExit(f"the evaluation did not report {missing}: is eval_config.metrics_set "
                         f"coco_detection_metrics? got {sorted(metrics)}")
    result["step"] = int(global_step.numpy())
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def _main_step(args: argparse.Namespace) -> None:
    import tensorflow as tf

    print(int(tf.train.load_variable(args.prefix, "step/.ATTRIBUTES/VARIABLE_VALUE")))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {__name__}", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    evaluate_parser = commands.add_parser("evaluate", help="COCO metrics of one checkpoint, as JSON")
    for flag in ("--pipeline", "--checkpoint", "--input", "--label-map", "--summary-dir", "--out"):
        evaluate_parser.add_argument(flag, required=True)
    step_parser = commands.add_parser("step", help="print the global step of a checkpoint")
    step_parser.add_argument("prefix")
    args = parser.parse_args(argv)
    {"evaluate": _main_evaluate, "step": _main_step}[args.command](args)


if __name__ == "__main__":
    main()
