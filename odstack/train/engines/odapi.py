"""ENGINE=odapi: the TF Object Detection API (TF2), fine-tuning a TF2 Detection Zoo model.

train(): zoo archive (download once, verify, unpack) -> output/<run>/pipeline.config -> model_main_tf2 as
a subprocess, one chunk of ``checkpoint_every`` steps at a time (it resumes from the run directory's
latest checkpoint), each chunk's final checkpoint evaluated (COCO metrics, OD API evaluators) and
recorded in metrics.json; best/ keeps the checkpoint with the highest AP. model_main_tf2 runs inside
``python -m odstack.train.engines.odapi train``, which first picks the GPUs (GPUS=) and says so: TensorFlow
is imported by the subprocesses only, never by the `make train` process itself. Its output goes to
train.log; the terminal gets a live progress line read from it (step, loss, steps/s, ETA, last AP50:
model_main_tf2 reports every 100 steps) and, with ODSTACK_VERBOSE=2, the raw output too.

model_main_tf2 traps this module is built around (docs/environment.md):
- it trains in loops of 100 steps (NUM_STEPS_PER_ITERATION): steps and chunks are rounded up to 100s;
- it saves once at step 0, then only when ``checkpoint_every_n`` steps have passed since the last save,
  never at the end: each chunk runs with ``checkpoint_every_n`` = the chunk's length, so its final step
  is saved, and the step of the new checkpoint is checked before anything else happens.

``evaluate()`` runs this module as ``python -m odstack.train.engines.odapi evaluate ...`` in a subprocess
(TensorFlow + the OD API stay out of the calling process): it builds the model from pipeline.config,
restores one checkpoint and runs model_lib_v2.eager_eval_loop once, writing TensorBoard summaries to
output/<run>/eval/ and the metrics as JSON, plus the read-out of odstack.train.insight (per-class AP,
PR/F1 curves and the best-F1 threshold, confusion matrix, mosaics, results.png) from the COCO ground truth
and detections the OD API's own COCO evaluator collected.

Export (its own section): the OD API's exporters (exporter_main_v2, export_tflite_graph_tf2) in a subprocess.

Without the OD API installed (CI, the default odapi image) train/evaluate/export raise a ConfigError that
says how to get it; models() and config rendering work everywhere.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import importlib.util
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import odstack
from odstack.contract import MEAN_RGB, ODAPI_RESIZE, OUTPUTS_ABOUT, STDDEV_RGB, ExportedSavedModel, Nms
from odstack.errors import ConfigError, ExportError, OdstackError
from odstack.fsio import write_text_atomic
from odstack.log import LOGGER, LiveProgress, echo_subprocess_output, heartbeat
from odstack.train import insight, pipeline_config, zoo
from odstack.train.engines import DEFAULT_MODELS
from odstack.train.run import (DatasetInfo, RunDir, TrainSettings, latest_checkpoint, resolve_checkpoint,
                               write_checkpoint_state)
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
# what the `train` subprocess prints before model_main_tf2 starts: the device choice, or why it refuses
DEVICES_LINE, DEVICE_ERROR_LINE = "odstack-devices: ", "odstack-device-error: "
GET_IT = ("use the odapi image built with the OD API (make image-odapi with --build-arg ODAPI=1), install it "
          "into this environment with scripts/odapi/install_odapi.sh, or train with ENGINE=tfvision (PyPI only)")


def available() -> bool:
    """True if the OD API (with model_main_tf2) can be imported by this interpreter."""
    try:
        return importlib.util.find_spec("object_detection.model_main_tf2") is not None
    except ImportError:
        return False


def require(what: str = "ENGINE=odapi") -> None:
    """A ConfigError saying how to get the OD API unless it is installed; ``what`` names what needs it."""
    if not available():
        raise ConfigError(f"{what} needs the TensorFlow Object Detection API (module object_detection), "
                          f"which is not installed for {sys.executable}", hint=GET_IT)


def models() -> list[dict]:
    """The zoo models this engine trains (for `make models`)."""
    return [dict(row, engine=NAME, default=row["name"] == DEFAULT_MODELS[NAME]) for row in zoo.table()]


# ========================================================================================= train
def train(run: RunDir, settings: TrainSettings, data: DatasetInfo) -> None:
    require()
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
    progress = LiveProgress(total, f"train[{NAME}]", initial=step, log_every=settings.progress_every)
    try:
        _train_chunks(run, data, env, config_path, settings.gpus, latest, step, total, chunk, progress)
    finally:
        progress.close()
    LOGGER.info("train[odapi]: done. Checkpoints, pipeline.config, metrics.json, TensorBoard events "
                "(train/, eval/) and the evaluation read-out (eval/) are in %s", run.path)


def _train_chunks(run: RunDir, data: DatasetInfo, env: dict, config_path: Path, gpus: str, latest: Path | None,
                  step: int, total: int, chunk: int, progress: LiveProgress) -> None:
    """model_main_tf2 to each chunk target in turn; each new checkpoint evaluated and recorded."""
    output = TrainOutput(progress)
    for target in chunk_targets(step, total, chunk):
        output.target = target
        started = time.monotonic()
        progress.status(f"starting model_main_tf2 for steps {step}-{target} (TensorFlow start-up, building the "
                        f"model; its output: {run.path / 'train.log'})")
        _run(train_command(config_path, run.path, target, target - step, gpus), env, run.path / "train.log",
             what="model_main_tf2", on_line=output)
        seconds = time.monotonic() - started
        new = latest_checkpoint(run.path)
        if new is None or new == latest:
            raise OdstackError(f"model_main_tf2 trained to step {target} but saved no new checkpoint",
                               where=str(run.path), hint="see train.log there")
        # the evaluation reads the checkpoint's step anyway; without val shards ask TensorFlow directly
        progress.status(f"evaluating {new.name} on val")
        metrics = _evaluate(run, new, data, env, beat=False) if data.val_shards else None  # the line says it
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
        values = {k: v for k, v in metrics.items() if k != "step"}   # with per_class and best_f1: kept as they are
        best = run.record_eval(step, latest, values)
        progress.update(step, AP50=values["AP50"], doing="training")
        LOGGER.info("train[odapi]: step %d: AP %.3f AP50 %.3f%s", step, values["AP"], values["AP50"],
                    " (best so far)" if best else "")
    if latest is None:
        raise OdstackError("training finished without any checkpoint", where=str(run.path))


def train_command(config_path: Path, model_dir: Path, target: int, checkpoint_every: int, gpus: str) -> list[str]:
    """One model_main_tf2 chunk, run through this module's ``train`` subcommand (devices first)."""
    return [sys.executable, "-m", __name__, "train", f"--gpus={gpus}", "--",
            f"--pipeline_config_path={config_path}", f"--model_dir={model_dir}", f"--num_train_steps={target}",
            f"--checkpoint_every_n={checkpoint_every}", "--alsologtostderr"]


class TrainOutput:
    """model_main_tf2's output, line by line, into the progress line and the log.

    Every 100 steps it logs ``Step 200 per-step time 0.412s`` and then a pprint of the losses and the
    learning rate (``{'Loss/classification_loss': 0.61, ... 'Loss/total_loss': 1.2, 'learning_rate': 0.01}``,
    numpy values, over several lines). The device line of the ``train`` subcommand is said as it comes.
    """

    STEP = re.compile(r"Step (\d+) per-step time ([0-9.]+)s")
    VALUE = re.compile(r"'(Loss/total_loss|learning_rate)':\s*(?:np\.float\d+\()?([-+0-9.eE]+|nan|inf)")

    def __init__(self, progress: LiveProgress | None):
        self.progress = progress
        self.step: int | None = None
        self.target: int | None = None      # the step this chunk trains to (then it saves and exits)
        self.refused: dict | None = None    # message and hint, when the subcommand refuses GPUS=
        self.devices_said = False           # each chunk's subprocess says it again: once is enough

    def __call__(self, line: str) -> None:
        if line.startswith(DEVICES_LINE):
            message = line[len(DEVICES_LINE):].strip()
            if not self.devices_said:
                (LOGGER.warning if "no GPU visible" in message else LOGGER.info)("train[odapi]: %s", message)
            self.devices_said = True
        elif line.startswith(DEVICE_ERROR_LINE):
            self.refused = json.loads(line[len(DEVICE_ERROR_LINE):])
        elif (match := self.STEP.search(line)) and self.progress:
            self.step = int(match[1])
            seconds = float(match[2])
            done = self.target is not None and self.step >= self.target
            self.progress.update(self.step, rate=1.0 / seconds if seconds > 0 else None,
                                 doing=f"saving step {self.step}" if done else "training")
        elif (match := self.VALUE.search(line)) and self.progress and self.step is not None:
            if match[1] == "Loss/total_loss":
                self.progress.update(self.step, loss=float(match[2]))
            else:
                self.progress.update(self.step, lr=f"{float(match[2]):.3g}")


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


def _evaluate(run: RunDir, checkpoint: Path, data: DatasetInfo, env: dict, beat: bool = True) -> dict[str, float]:
    config = run.path / "pipeline.config"
    if not config.exists():
        raise ConfigError("no pipeline.config in the run", where=str(run.path), hint="train it first: `make train`")
    if not data.val_shards:
        raise ConfigError("no val shards to evaluate on", where=str(data.directory),
                          hint="re-run `make data` with VAL_FRACTION > 0")
    out = run.path / f".eval-{os.getpid()}.json"
    label_map = run.label_map if run.label_map.exists() else data.label_map
    try:
        with heartbeat(f"eval[{NAME}]") if beat else contextlib.nullcontext() as heart:
            if heart:
                heart.status(f"evaluating {Path(checkpoint).name} on {data.val_images or 'the'} val images "
                             f"(its output: {run.path / 'eval.log'})")
            _run([sys.executable, "-m", __name__, "evaluate", "--pipeline", str(config), "--checkpoint",
                  str(checkpoint), "--input", _absolute(data.val_pattern), "--label-map", str(label_map.resolve()),
                  "--run-dir", str(run.path), "--out", str(out)],
                 env, run.path / "eval.log", what="evaluation")
        values = json.loads(out.read_text(encoding="utf-8"))
    finally:
        out.unlink(missing_ok=True)
    _say_read_out(run)
    return values


def _say_read_out(run: RunDir) -> None:
    """The read-out's table and warnings, written by the evaluation subprocess, said here."""
    record = insight.read(run.path)
    if record is None:
        LOGGER.warning("eval[odapi]: no per-class read-out (is eval_config.metrics_set coco_detection_metrics?)")
        return
    for warning in record["warnings"]:
        LOGGER.warning("eval[odapi]: %s", warning)
    LOGGER.info("%s", insight.table(record["per_class"], record["best_f1"], run.path / "eval"))


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


def _environment(settings: TrainSettings | None) -> dict[str, str]:
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", PYTHONUNBUFFERED="1")
    root = str(Path(odstack.__file__).resolve().parents[1])          # so `-m odstack...` works anywhere
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    if settings and settings.gpus == "none":  # other choices: the train subcommand picks the devices
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    return env


def _run(command: list[str], env: dict, log_path: Path, what: str,
         on_line: Callable[[str], None] | None = None) -> None:
    """Run a command, its output going to ``log_path``, to ``on_line`` and (ODSTACK_VERBOSE=2) to stderr."""
    echo = echo_subprocess_output()
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
                if on_line:
                    on_line(line)
                if echo:
                    sys.stderr.write(line)
            code = process.wait()
    refused = getattr(on_line, "refused", None)
    if code != 0 and refused:   # GPUS= asked for GPUs this machine does not have: the user's to fix
        raise ConfigError(refused["message"], hint=refused["hint"])
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
    require("exporting an ENGINE=odapi run")
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
    require("TFLite export of an ENGINE=odapi run")
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
    write_checkpoint_state(directory, Path(checkpoint).absolute())
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
def _main_train(args: argparse.Namespace) -> None:
    """GPUS= first (the same rules as tfvision: odstack.train.devices), then model_main_tf2 in this process;
    it trains with MirroredStrategy over the GPUs left visible."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf

    from odstack.train import devices

    found = tf.config.list_physical_devices("GPU")
    try:
        chosen, message = devices.choose(args.gpus, [d.name for d in found],
                                         "" if found else devices.no_gpu_reason(tf))
    except ConfigError as error:
        print(DEVICE_ERROR_LINE + json.dumps({"message": error.message, "hint": error.hint}), flush=True)
        raise SystemExit(3) from None
    if found and [found[i] for i in chosen] != found:
        tf.config.set_visible_devices([found[i] for i in chosen], "GPU")
    print(f"{DEVICES_LINE}{message}", flush=True)
    from object_detection import model_main_tf2

    tf.compat.v1.app.run(main=model_main_tf2.main, argv=[model_main_tf2.__file__, *args.flags])


def _capture_coco_evaluation(captured: dict[str, Any]) -> None:
    """Keep the COCO ground truth and detections the OD API's COCO evaluator collected, for the read-out.

    ``CocoDetectionEvaluator.evaluate`` builds its pycocotools datasets from them and eager_eval_loop then
    drops the evaluator: this wraps that one method (in this subprocess only) and copies them first,
    as plain JSON values (the evaluator keeps numpy scalars).
    """
    from object_detection.metrics import coco_evaluation

    original = coco_evaluation.CocoDetectionEvaluator.evaluate

    def evaluate(self):
        plain = json.loads(json.dumps({"images": [{"id": i} for i in self._image_ids],  # noqa: SLF001
                                       "annotations": self._groundtruth_list,           # noqa: SLF001
                                       "detections": self._detection_boxes_list},       # noqa: SLF001
                                      default=lambda value: value.item()))
        captured.update(ground_truth={"images": plain["images"], "annotations": plain["annotations"]},
                        detections=plain["detections"])
        return original(self)

    coco_evaluation.CocoDetectionEvaluator.evaluate = evaluate


def _mosaic_images(pattern: str, tf, count: int = insight.MOSAIC_IMAGES) -> dict[int, Any]:
    """The first val images keyed by the id the OD API's input pipeline gives them (a hash of source_id),
    so they meet their ground truth and detections."""
    import io

    import numpy as np
    from object_detection import inputs
    from PIL import Image

    from odstack import tfrecord

    images: dict[int, Any] = {}
    for example in tfrecord.read_examples(Path(p) for p in sorted(glob.glob(pattern))):
        source_id = (example.get(tfrecord.Keys.SOURCE_ID) or [b""])[0]
        key = int(tf.cast(tf.strings.to_hash_bucket_fast(source_id, inputs.HASH_BINS), tf.int32).numpy())
        images[key] = np.asarray(Image.open(io.BytesIO(example[tfrecord.Keys.ENCODED][0])).convert("RGB"))
        if len(images) >= count:
            break
    return images


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
    captured: dict[str, Any] = {}
    _capture_coco_evaluation(captured)
    writer = tf.summary.create_file_writer(str(Path(args.run_dir) / "eval"))
    with writer.as_default():
        metrics = model_lib_v2.eager_eval_loop(detection_model, configs, eval_input, global_step=global_step)
    result: dict[str, float] = {name: float(metrics[key]) for name, key in COCO_KEYS.items() if key in metrics}
    missing = sorted(set(COCO_KEYS) - set(result))
    if missing:
        raise SystemExit(f"the evaluation did not report {missing}: is eval_config.metrics_set "
                         f"coco_detection_metrics? got {sorted(metrics)}")
    result["step"] = int(global_step.numpy())
    if captured:
        from odstack import labelmap

        run = RunDir(Path(args.run_dir))
        names = {class_id: name for name, class_id in labelmap.read(Path(args.label_map)).items()}
        result.update(insight.analyze(run.path, result["step"], captured["ground_truth"], captured["detections"],
                                      names, _mosaic_images(args.input, tf), run.metrics().get("history", [])))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def _main_step(args: argparse.Namespace) -> None:
    import tensorflow as tf

    print(int(tf.train.load_variable(args.prefix, "step/.ATTRIBUTES/VARIABLE_VALUE")))


def main(argv: list[str] | None = None) -> None:
    from odstack.log import setup_logging

    setup_logging()
    parser = argparse.ArgumentParser(prog=f"python -m {__name__}", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="pick the GPUs (GPUS=), then run model_main_tf2 with FLAGS")
    train_parser.add_argument("--gpus", default="auto")
    train_parser.add_argument("flags", nargs="*", help="model_main_tf2's flags, after --")
    evaluate_parser = commands.add_parser("evaluate", help="COCO metrics and the read-out of one checkpoint, as JSON")
    for flag in ("--pipeline", "--checkpoint", "--input", "--label-map", "--run-dir", "--out"):
        evaluate_parser.add_argument(flag, required=True)
    step_parser = commands.add_parser("step", help="print the global step of a checkpoint")
    step_parser.add_argument("prefix")
    args = parser.parse_args(argv)
    {"train": _main_train, "evaluate": _main_evaluate, "step": _main_step}[args.command](args)


if __name__ == "__main__":
    main()
