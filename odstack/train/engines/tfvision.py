"""The ``tfvision`` engine: RetinaNet-family detectors trained with TF Model Garden (``official.vision``).

Why a second engine: the TF OD API and its model zoo need a source checkout, TF-version patches and
downloads that CI (and users behind firewalls) cannot have. ``tf-models-official`` installs from PyPI
alone, reads the OD API TFRecords written by `make data` as they are, and trains small detectors on a
CPU in minutes, so CI and `make demo` train and evaluate a real detector with it.

How it uses Model Garden (the way ``official/vision/train.py`` does, as a library):

- the experiment config is a registered base experiment (``retinanet_resnetfpn_coco``) plus *only our
  overrides*, written to ``<run>/pipeline.yaml`` and read back through Model Garden's own parser
  (``ExperimentParser``: base -> config file -> params_override, then ``validate()`` and ``lock()``), so
  the file on disk is exactly what trains and can be fed to ``export_saved_model --config_file``;
- ``train_lib.OrbitExperimentRunner`` in ``train_and_eval`` mode runs the loop, checkpoints (run dir =
  model_dir, so a second call resumes), and TensorBoard events (``train/``, ``eval/``);
- an Orbit eval action hands every evaluation to ``RunDir.record_eval`` (metrics.json, best/ by AP)
  and prints one progress line; Model Garden's own best-checkpoint exporter is not used, so best/ has
  one owner.

Export (the section at the end): the SavedModel of the served contract (Model Garden's detection module +
one adapter with class-agnostic NMS) and the TFLite graph (Model Garden's ``tflite`` input type).

TensorFlow is imported inside the functions: importing this module (e.g. for `make models`) is free.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from odstack import tfrecord
from odstack.contract import (BYTES_INPUT_KEY, BYTES_SIGNATURE_KEY, INPUT_KEY, MEAN_RGB, OUTPUTS_ABOUT, SIGNATURE_KEY,
                              STDDEV_RGB, TF2_RESIZE, ExportedSavedModel, Nms)
from odstack.errors import ConfigError
from odstack.fsio import write_text_atomic
from odstack.log import LOGGER, LiveProgress, heartbeat
from odstack.train import insight
from odstack.tfruntime import chatter_to, import_tensorflow
from odstack.train.engines import DEFAULT_MODELS, SCRATCH_MODELS
from odstack.train.run import DatasetInfo, RunDir, TrainSettings, resolve_checkpoint

NAME = "tfvision"
BASE_EXPERIMENT = "retinanet_resnetfpn_coco"
PIPELINE_FILE = "pipeline.yaml"
PARAMS_FILE = "params.yaml"     # the fully resolved config, as Model Garden's train.py writes it
CHATTER_FILE = "tfvision.log"   # Orbit's and pycocotools' stdout prints (per loop, per eval) go here
EVAL_SUBDIR = "eval"            # TensorBoard: <run>/train (Orbit's fixed name) and <run>/eval
KEEP_CHECKPOINTS = 5
DEFAULT_STEPS_PER_LOOP = 20     # steps inside one tf.function call (the progress line advances after each);
                                # also the train summary interval. Its cost: bench/train_bench.py
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")  # Model Garden's runtime.mixed_precision_dtype
_PREFIX = f"train[{NAME}]:"


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the model table: its Model Garden ``task.model`` overrides and training defaults."""

    name: str
    description: str
    input_size: int            # image_size=auto
    batch: int                 # batch=auto
    learning_rate: float       # peak SGD learning rate at batch 8; scaled linearly with the batch
    notes: str
    model: dict[str, Any] = field(default_factory=dict)


MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in [
    ModelSpec(
        name="retinanet_mobilenetv2",
        description="RetinaNet, MobileNetV2 (width 0.5) backbone, FPN levels 3-5, 64-filter separable FPN/head",
        input_size=320, batch=8, learning_rate=0.08,
        notes="CPU-friendly; from scratch unless init_checkpoint is given. 2 CPU cores, batch 8: "
              "~10 steps/s at 128 px (demo/CI: AP50 1.0 on synthetic shapes after 400 steps), ~3 at 320 px.",
        model={
            "min_level": 3, "max_level": 5,
            "backbone": {"type": "mobilenet", "mobilenet": {"model_id": "MobileNetV2", "filter_size_scale": 0.5}},
            "decoder": {"type": "fpn", "fpn": {"num_filters": 64, "use_separable_conv": True}},
            "head": {"num_convs": 4, "num_filters": 64, "use_separable_conv": True},
            "norm_activation": {"activation": "relu6", "use_sync_bn": False},
        }),
    ModelSpec(
        name="retinanet_resnet50_fpn",
        description="RetinaNet, ResNet-50 backbone, FPN levels 3-7 (Model Garden's retinanet_resnetfpn_coco model)",
        input_size=640, batch=8, learning_rate=0.01,
        notes="GPU-sized; pretrained: INIT=coco (Model Garden's COCO R50-FPN, box AP 36.8: backbone + FPN "
              "restored, class head new) or INIT=imagenet (ResNet-50 backbone).",
        model={"norm_activation": {"use_sync_bn": False}}),
]}


def models() -> list[dict[str, Any]]:
    """Entries for `make models`, with the pretrained weights each can start from (INIT=)."""
    from odstack.train import weights

    rows = []
    for m in MODELS.values():
        inits = [f"{w.init}: {w.quality}, {w.input_size} px, {w.url}" for w in weights.WEIGHTS if w.model == m.name]
        rows.append({"engine": NAME, "name": m.name, "description": m.description,
                     "input_size": f"{m.input_size} (auto)", "batch": m.batch, "base_experiment": BASE_EXPERIMENT,
                     "init": "; ".join(inits) or "none published (from scratch)", "notes": m.notes,
                     "default": {DEFAULT_MODELS[NAME]: "yes (MODEL=auto)",
                                 SCRATCH_MODELS[NAME]: "with INIT=none (MODEL=auto)"}.get(m.name, "")})
    return rows


# ------------------------------------------------------------------------------------------ config

@dataclass(frozen=True)
class _Plan:
    """The resolved numbers of one training call (what the progress lines and the header report)."""

    model: ModelSpec
    image_size: int
    batch: int
    learning_rate: float
    warmup_steps: int
    steps: int
    every: int
    steps_per_loop: int
    init_checkpoint: str
    init_modules: str = "backbone"
    precision: str = "float32"
    progress_every: float = 30.0


def _spec(settings: TrainSettings) -> ModelSpec:
    name = settings.resolved_model()
    if name not in MODELS:
        raise ConfigError(f"model={name!r} is not a {NAME} model; {NAME} models: {', '.join(MODELS)}",
                          hint="`make models` lists every engine's models")
    return MODELS[name]


def _positive_int(value: int | str, default: int, key: str) -> int:
    if value == "auto":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise ConfigError(f"{key}={value!r} must be a positive integer or auto")
    return number


def _plan(settings: TrainSettings) -> _Plan:
    spec = _spec(settings)
    if int(settings.steps) < 1:
        raise ConfigError(f"steps={settings.steps!r} must be a positive integer")
    steps = int(settings.steps)
    size = _positive_int(settings.image_size, spec.input_size, "image_size")
    if size % 32:  # MobileNetV2 + FPN up to level 5 needs sizes divisible by 2**5
        raise ConfigError(f"image_size={size} must be a multiple of 32 for {spec.name}",
                          hint=f"e.g. image_size={max(32, round(size / 32) * 32)}")
    batch = _positive_int(settings.batch, spec.batch, "batch")
    if settings.learning_rate == "auto":
        lr = spec.learning_rate * batch / 8  # linear scaling rule from the batch the default was tuned at
    else:
        try:
            lr = float(settings.learning_rate)
        except (TypeError, ValueError):
            lr = -1.0
        if not lr > 0:
            raise ConfigError(f"learning_rate={settings.learning_rate!r} must be a positive number or auto")
    every = settings.resolved_checkpoint_every()
    precision = str(settings.precision).strip().lower()
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={settings.precision!r} is not one of: {', '.join(PRECISIONS)}",
                          hint="mixed_float16 for NVIDIA GPUs (Volta or newer); float32 on a CPU")
    return _Plan(model=spec, image_size=size, batch=batch, learning_rate=lr,
                 # ~10 % warmup: from-scratch BN nets diverge at full LR on step 1; capped for long runs
                 warmup_steps=max(1, min(500, steps // 10)), steps=steps, every=every,
                 steps_per_loop=min(every, _positive_int(settings.steps_per_loop, DEFAULT_STEPS_PER_LOOP,
                                                         "steps_per_loop")),
                 **_initial_weights(settings), precision=precision,
                 progress_every=max(1.0, float(settings.progress_every)))


def _initial_weights(settings: TrainSettings) -> dict[str, str]:
    """Where training starts: ``init_checkpoint`` (a path) wins; else ``init=coco|imagenet|auto`` fetches
    Model Garden's published weights for the model (odstack/train/weights.py); none/from_scratch: nothing."""
    from odstack.train import weights

    explicit = _init_checkpoint(settings)
    if explicit or settings.from_scratch:
        return {"init_checkpoint": explicit, "init_modules": "backbone"}
    chosen = weights.resolve(settings.resolved_model(), str(settings.init).strip().lower())
    if chosen is None:
        return {"init_checkpoint": "", "init_modules": "backbone"}
    prefix = weights.fetch(chosen, Path(settings.weights_cache), settings.weights_url, settings.weights_sha256)
    LOGGER.info("%s init=%s: %s (%s; restores %s, the class head starts new)", _PREFIX, chosen.init, prefix,
                chosen.quality, chosen.modules)
    return {"init_checkpoint": str(prefix), "init_modules": chosen.modules}


def warm_start(model, checkpoint: str, modules: str) -> dict[str, int]:
    """Restore ``modules`` (backbone, decoder) of a fresh RetinaNet from ``checkpoint`` as Model Garden's
    task.initialize does, and count: variables restored per module, and the head's (left new)."""
    tf = import_tensorflow()
    items = {name: getattr(model, name) for name in ("backbone", "decoder") if name in modules}
    tf.train.Checkpoint(**items).read(checkpoint).expect_partial().assert_existing_objects_matched()
    counts = {name: len(part.variables) for name, part in items.items()}
    counts["head (new)"] = len(model.head.variables)
    return counts


def _init_checkpoint(settings: TrainSettings) -> str:
    """The backbone checkpoint to start from, or "" to train from scratch.

    No pretrained MobileNetV2 weights can be downloaded where odstack is developed, so training from
    scratch is the default. A user with weights passes ``init_checkpoint=<path or gs:// URL>`` (a
    Model Garden MobileNetV2 classification checkpoint of the same width); it is checked up front so
    an offline machine fails in seconds with a clear message instead of deep inside TensorFlow.
    """
    source = str(getattr(settings, "init_checkpoint", None) or "")
    if settings.from_scratch or not source:
        return ""
    hint = "download it to a local path and pass that, or train with from_scratch=true"
    scheme = urlparse(source).scheme
    if scheme in ("http", "https"):
        raise ConfigError(f"init_checkpoint={source!r}: TensorFlow reads checkpoints from local paths or gs://, "
                          "not HTTP", hint=hint)
    if scheme == "gs":
        try:  # GCS retries for minutes when offline: test the route first
            socket.create_connection(("storage.googleapis.com", 443), timeout=5).close()
        except OSError as error:
            raise ConfigError(f"init_checkpoint={source!r} is unreachable (storage.googleapis.com: {error})",
                              hint=hint) from error
        return source
    path = Path(source).expanduser()
    if not (path.is_dir() or Path(str(path) + ".index").exists()):
        raise ConfigError(f"init_checkpoint={source!r}: no checkpoint there (expected a directory or a "
                          "checkpoint prefix with a .index file)", hint=hint)
    return str(path)


def _overrides(plan: _Plan, data: DatasetInfo) -> dict[str, Any]:
    """Everything odstack changes in the base experiment; nothing else goes into pipeline.yaml."""
    size, batch = plan.image_size, plan.batch
    shuffle = min(1000, data.train_images or 1000)  # serialized records: bounded memory on big JPEGs
    return {
        # float32 by default: the base's bfloat16 is emulated (slow) on CPUs and most GPUs; precision=
        # mixed_float16 on an NVIDIA GPU (Model Garden adds the loss scaling)
        "runtime": {"mixed_precision_dtype": plan.precision},
        "task": {
            "init_checkpoint": plan.init_checkpoint,
            "init_checkpoint_modules": plan.init_modules,
            "annotation_file": "",  # COCO ground truth comes from the val records, not a JSON file
            "model": {**plan.model.model, "num_classes": data.num_classes + 1,  # + background (id 0)
                      "input_size": [size, size, 3]},
            "train_data": {"input_path": data.train_pattern, "global_batch_size": batch, "dtype": "float32",
                           "shuffle_buffer_size": shuffle},
            "validation_data": {
                "input_path": data.val_pattern, "global_batch_size": batch, "dtype": "float32",
                "drop_remainder": False,  # evaluate every val image
                # our source_id is the file name; Model Garden's COCO evaluator needs an integer id
                "decoder": {"type": "simple_decoder", "simple_decoder": {"regenerate_source_id": True}},
            },
        },
        "trainer": {
            "train_steps": plan.steps,
            "validation_steps": -1,  # the whole val split
            "validation_interval": plan.every,
            "checkpoint_interval": plan.every,
            "steps_per_loop": plan.steps_per_loop,
            "summary_interval": plan.steps_per_loop,
            "max_to_keep": KEEP_CHECKPOINTS,
            "validation_summary_subdir": EVAL_SUBDIR,
            "optimizer_config": {
                "optimizer": {"type": "sgd", "sgd": {"momentum": 0.9}},
                "learning_rate": {"type": "cosine", "cosine": {"initial_learning_rate": plan.learning_rate,
                                                               "decay_steps": plan.steps}},
                "warmup": {"type": "linear", "linear": {"warmup_steps": plan.warmup_steps,
                                                        "warmup_learning_rate": plan.learning_rate / 10}},
            },
        },
    }


def _only_changes(overrides: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` without the values the base experiment already has (so the file shows real choices).

    A one-of config's inactive branches are absent from ``base``: a branch we switch to is kept whole.
    """
    changed: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in base:
            changed[key] = value
        elif isinstance(value, dict) and isinstance(base[key], dict):
            inner = _only_changes(value, base[key])
            if inner:
                changed[key] = inner
        elif isinstance(value, (list, tuple)) and isinstance(base[key], (list, tuple)):
            if list(value) != list(base[key]):
                changed[key] = value
        elif value != base[key] or type(value) is not type(base[key]):
            changed[key] = value
    return changed


def render_overrides(plan: _Plan, data: DatasetInfo) -> dict[str, Any]:
    """What pipeline.yaml holds: odstack's settings minus what the base experiment already says."""
    import_tensorflow()
    from official.core import exp_factory
    from official.vision import registry_imports  # noqa: F401  (registers the vision experiments/tasks)

    return _only_changes(_overrides(plan, data), exp_factory.get_exp_config(BASE_EXPERIMENT).as_dict())


def write_pipeline(path: Path, model: str, overrides: dict[str, Any]) -> None:
    """``pipeline.yaml``: a header naming the base experiment, then the overrides."""
    header = (f"# odstack {NAME} pipeline for model {model}\n"
              f"# base experiment: {BASE_EXPERIMENT}\n"
              "# Only odstack's overrides are here. Full config: exp_factory.get_exp_config(base experiment),\n"
              "# then this file (Model Garden: --experiment=<base> --config_file=<this file>).\n")
    write_text_atomic(path, header + yaml.safe_dump(overrides, sort_keys=False, default_flow_style=None))


def load_params(pipeline: Path, params_override: dict[str, Any] | None = None):
    """The validated, locked ExperimentConfig of a pipeline.yaml (Model Garden's own parsing path)."""
    import_tensorflow()
    from official.core import train_utils
    from official.vision import registry_imports  # noqa: F401  (registers the vision experiments/tasks)

    base = _base_experiment(pipeline)
    options = train_utils.ParseConfigOptions(experiment=base, config_file=[str(pipeline)],
                                             params_override=json.dumps(params_override) if params_override else "")
    return train_utils.parse_configuration(options, lock_return=True, print_return=False)


def _base_experiment(pipeline: Path) -> str:
    if not pipeline.exists():
        raise ConfigError(f"no {PIPELINE_FILE} in {pipeline.parent}: this run was not trained with ENGINE={NAME}",
                          where=str(pipeline.parent), hint="train it first, or pick the run's own engine")
    match = re.search(r"^# base experiment: (\S+)$", pipeline.read_text(encoding="utf-8"), re.MULTILINE)
    if not match:
        raise ConfigError("the header line '# base experiment: <name>' is missing", where=str(pipeline),
                          hint=f"restore it (e.g. '# base experiment: {BASE_EXPERIMENT}') or re-run `make train`")
    return match.group(1)


# ------------------------------------------------------------------------------------------ runtime

def _strategy(gpus_setting: str, doing: str = "training"):
    """The distribution strategy for ``gpus`` (auto | none | all | "0,1"), and a word for the log.

    One GPU (or the CPU): Model Garden's ``one_device``; several: ``mirrored`` over them (the batch is
    global, split across them). Devices are chosen with ``set_visible_devices``, before TensorFlow
    initialises them; which ones, and why not a GPU, is said loudly (odstack.train.devices).
    """
    tf = import_tensorflow()
    from official.common import distribute_utils

    from odstack.train import devices

    found = tf.config.list_physical_devices("GPU")
    reason = "" if found else devices.no_gpu_reason(tf)
    ids, message = devices.choose(gpus_setting, [d.name for d in found], reason, doing)
    chosen = [found[i] for i in ids]
    (LOGGER.warning if not chosen and "no GPU visible" in message else LOGGER.info)("%s %s", _PREFIX, message)
    if chosen != tf.config.get_visible_devices("GPU"):
        tf.config.set_visible_devices(chosen, "GPU")
    if len(chosen) > 1:
        return distribute_utils.get_distribution_strategy("mirrored", num_gpus=len(chosen)), f"{len(chosen)} GPUs"
    return (distribute_utils.get_distribution_strategy("one_device", num_gpus=len(chosen)),
            "GPU" if chosen else "CPU")


def _scalars(logs: dict[str, Any]) -> dict[str, float]:
    """Model Garden's eval logs as plain floats: COCO keys as they are, losses as val_<name>."""
    import numpy as np

    values: dict[str, float] = {}
    for key, value in logs.items():
        array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        if array.size != 1 or not np.issubdtype(array.dtype, np.number):
            continue
        if key == "total_loss":
            continue  # the trainer reports it again as validation_loss
        name = key if key.startswith(("AP", "AR")) else "val_loss" if key == "validation_loss" else f"val_{key}"
        values[name] = float(array.reshape(()))
    return values


class _EvalCapture:
    """The COCO ground truth and detections of the task's last evaluation, for odstack.train.insight.

    Model Garden's COCO evaluator builds both during an evaluation and drops them in the task's
    ``reduce_aggregated_logs``, right after computing its numbers: this wraps that one method of the
    task instance and converts them first, with Model Garden's own COCO converters.
    """

    def __init__(self, task):
        self.ground_truth: dict[str, Any] | None = None
        self.detections: list[dict[str, Any]] = []
        original = task.reduce_aggregated_logs

        def reduce_aggregated_logs(aggregated_logs, global_step=None):
            from official.vision.evaluation import coco_utils

            metric = getattr(task, "coco_metric", None)
            if metric is not None and metric._groundtruths:  # noqa: SLF001 - see the class docstring
                # copies: the converters rewrite the boxes in place (yxyx -> xywh), and Model Garden's
                # own evaluation converts the same arrays right after
                with contextlib.redirect_stdout(io.StringIO()):
                    self.ground_truth = coco_utils.convert_groundtruths_to_coco_dataset(
                        copy.deepcopy(metric._groundtruths))
                    self.detections = coco_utils.convert_predictions_to_coco_annotations(
                        copy.deepcopy(metric._predictions))
            return original(aggregated_logs, global_step)

        task.reduce_aggregated_logs = reduce_aggregated_logs


def _mosaic_images(data: DatasetInfo, count: int = insight.MOSAIC_IMAGES) -> dict[int, Any]:
    """The first val images, keyed by the source id Model Garden's decoder gives them (regenerated:
    a hash of the encoded image), so they meet their ground truth and detections."""
    import numpy as np
    from PIL import Image

    tf = import_tensorflow()
    from official.vision.dataloaders import tf_example_decoder

    images = {}
    for example in tfrecord.read_examples(data.val_shards):
        encoded = example[tfrecord.Keys.ENCODED][0]
        source_id = int(tf_example_decoder._generate_source_id(tf.constant(encoded)).numpy())  # noqa: SLF001
        images[source_id] = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))
        if len(images) >= count:
            break
    return images


def _insight(run: RunDir, step: int, capture: _EvalCapture, data: DatasetInfo) -> dict[str, Any]:
    """Per-class AP, PR/F1 curves, confusion matrix, mosaics, results.png of one evaluation (insight.py)."""
    if capture.ground_truth is None:
        return {}
    names = {class_id: name for name, class_id in data.labels.items()}
    return insight.analyze(run.path, step, capture.ground_truth, capture.detections, names,
                           _mosaic_images(data), run.metrics().get("history", []))


class _Recorder:
    """Orbit train/eval actions: times training, records every evaluation in the run, logs one line."""

    def __init__(self, run: RunDir, total_steps: int, data: DatasetInfo | None = None):
        self.run = run
        self.data = data
        self.capture: _EvalCapture | None = None  # set once the task exists
        self.total_steps = total_steps
        self.manager = None      # set once the runner exists (the actions are created before it)
        self.global_step = None
        self.loss = float("nan")
        self.seconds = 0.0       # training time since the last evaluation (evaluation excluded)
        self.steps = 0
        self.mark = time.monotonic()
        self.last_step = 0
        self.every = 0           # steps between evaluations (the progress line says when one runs)
        self.progress: LiveProgress | None = None
        self.last_ap = "n/a"

    def start(self, step: int, every: int, progress: LiveProgress) -> None:
        self.mark, self.last_step, self.every, self.progress = time.monotonic(), step, every, progress
        progress.status("building the training graph (the first steps compile it)")

    def _rate(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("nan")

    def train_action(self, output: dict[str, Any]) -> None:
        now, step = time.monotonic(), int(self.global_step.numpy())
        self.seconds += now - self.mark
        self.steps += step - self.last_step
        self.mark, self.last_step = now, step
        loss = output.get("training_loss", output.get("total_loss"))
        if loss is not None:
            self.loss = float(loss.numpy() if hasattr(loss, "numpy") else loss)
        if self.progress:
            evaluating = self.data is not None and self.data.val_shards and (
                step >= self.total_steps or (self.every and step % self.every == 0))
            self.progress.update(step, rate=self._rate(), loss=self.loss, AP50=self.last_ap,
                                 doing=f"evaluating on val (step {step})" if evaluating else "training")

    def eval_action(self, output: dict[str, Any]) -> None:
        step = int(self.global_step.numpy())
        # Orbit saves at checkpoint_interval before evaluating; a last partial interval has no checkpoint
        # yet (Orbit saves it after the final eval), so save it now: every recorded eval has its files.
        latest = self.manager.latest_checkpoint
        if latest is None or int(latest.rsplit("-", 1)[1]) != step:
            saved = self.manager.save(checkpoint_number=step, check_interval=False)
            latest = saved or self.manager.latest_checkpoint
        metrics = _scalars(output)
        metrics["train_loss"] = self.loss
        extra = _insight(self.run, step, self.capture, self.data) if self.capture else {}
        is_best = self.run.record_eval(step, Path(latest), metrics, extra)
        rate = self._rate()
        self.last_ap = metrics.get("AP50", -1.0)
        if self.progress:
            self.progress.update(step, AP50=self.last_ap, doing="training")
        LOGGER.info("%s step %*d/%d  loss %.3f  AP50 %.3f  AP %.3f  %.1f steps/s%s", _PREFIX,
                    len(str(self.total_steps)), step, self.total_steps, self.loss, metrics.get("AP50", -1.0),
                    metrics.get("AP", -1.0), rate, "  (best)" if is_best else "")
        self.seconds, self.steps = 0.0, 0
        self.mark = time.monotonic()


# ------------------------------------------------------------------------------------------ the API

def train(run: RunDir, settings: TrainSettings, data: DatasetInfo) -> None:
    """Train (or resume) ``run`` up to ``settings.steps`` total steps, evaluating every checkpoint."""
    plan = _plan(settings)
    run.start(settings, data)
    pipeline = run.path / PIPELINE_FILE
    write_pipeline(pipeline, plan.model.name, render_overrides(plan, data))

    import_tensorflow()
    from official.core import task_factory, train_lib, train_utils
    from official.modeling import performance

    strategy, device = _strategy(settings.gpus)
    params = load_params(pipeline)
    train_utils.serialize_config(params, str(run.path))
    performance.set_mixed_precision_policy(params.runtime.mixed_precision_dtype)
    evaluate_too = bool(data.val_shards)
    LOGGER.info("%s %s at %d px, batch %d, lr %g (warmup %d, cosine to step %d), %s; checkpoint%s every %d steps",
                _PREFIX, plan.model.name, plan.image_size, plan.batch, plan.learning_rate, plan.warmup_steps,
                plan.steps, device, " + eval" if evaluate_too else "", plan.every)
    if device == "CPU" and plan.model.name != SCRATCH_MODELS[NAME]:
        LOGGER.warning("%s %s is GPU-sized: on a CPU expect seconds per step; MODEL=%s INIT=none trains from "
                       "scratch in minutes on a CPU (but needs more data and steps)", _PREFIX, plan.model.name,
                       SCRATCH_MODELS[NAME])
    if plan.precision != "float32" and device == "CPU":
        LOGGER.warning("%s precision=%s on a CPU is emulated, slower than float32; it is meant for GPUs", _PREFIX,
                       plan.precision)
    if not evaluate_too:
        LOGGER.warning("%s no val shards in %s: training only (no metrics.json, no best/); re-run `make data` "
                       "with val_fraction > 0 to evaluate", _PREFIX, data.directory)
    if not plan.init_checkpoint:
        LOGGER.info("%s from scratch (no init_checkpoint)", _PREFIX)

    recorder = _Recorder(run, plan.steps, data)
    started = time.monotonic()
    with chatter_to(run.path / CHATTER_FILE):
        with strategy.scope():
            task = task_factory.get_task(params.task, logging_dir=str(run.path))
        recorder.capture = _EvalCapture(task)
        if plan.init_checkpoint:  # a new run starts from these weights (a resumed one from its own checkpoint)
            def initialize(model, checkpoint=plan.init_checkpoint, modules=plan.init_modules):
                counts = warm_start(model, checkpoint, modules)
                LOGGER.info("%s warm start from %s: %s", _PREFIX, checkpoint,
                            ", ".join(f"{name} {n} variables" for name, n in counts.items()))
            task.initialize = initialize
        runner = train_lib.OrbitExperimentRunner(
            distribution_strategy=strategy, task=task, mode="train_and_eval" if evaluate_too else "train",
            params=params, model_dir=str(run.path), train_actions=[recorder.train_action],
            eval_actions=[recorder.eval_action] if evaluate_too else None)
        recorder.manager, recorder.global_step = runner.checkpoint_manager, runner.trainer.global_step
        first = int(recorder.global_step.numpy())
        if first:
            LOGGER.info("%s resuming from %s (step %d)", _PREFIX, runner.checkpoint_manager.latest_checkpoint,
                        first)
        if first >= plan.steps:
            LOGGER.info("%s already at step %d >= steps=%d: nothing to train (raise steps to continue)",
                        _PREFIX, first, plan.steps)
        progress = LiveProgress(plan.steps, _PREFIX[:-1], initial=first, log_every=plan.progress_every)
        recorder.start(first, plan.every, progress)
        try:
            runner.run()
        finally:
            progress.close()

        # The final checkpoint must be evaluated even when nothing was left to train (e.g. a run that
        # stopped between its last checkpoint and that checkpoint's evaluation).
        final = int(recorder.global_step.numpy())
        latest = run.metrics().get("latest")
        if evaluate_too and (latest is None or latest["step"] != final):
            with strategy.scope():
                runner.controller.evaluate(steps=-1)
    seconds = time.monotonic() - started
    best = run.metrics().get("best")
    summary = (f"best AP50 {best['AP50']:.3f} (AP {best['AP']:.3f}) at step {best['step']} -> {run.best_dir}"
               if best else "no evaluation")
    LOGGER.info("%s done: step %d in %.0f s; %s", _PREFIX, final, seconds, summary)


def evaluate(run: RunDir, checkpoint: Path, data: DatasetInfo) -> dict[str, float]:
    """COCO metrics (pycocotools, through Model Garden's evaluator) of one checkpoint on ``data``'s val shards.

    ``checkpoint`` is a checkpoint prefix (``<run>/ckpt-400``) or a directory holding a ``checkpoint``
    index file (the run directory: its latest; ``best/``). Returns COCO keys (AP, AP50, ..., ARmax100;
    -1 where the val set has no object of that size, as pycocotools reports it), val_* losses and "step".
    """
    if not data.val_shards:
        raise ConfigError("no val-*.record shards to evaluate on", where=str(data.directory),
                          hint="re-run `make data` with val_fraction > 0")
    tf = import_tensorflow()
    from official.core import task_factory, train_utils

    prefix = resolve_checkpoint(Path(checkpoint))
    strategy, _ = _strategy("auto", "evaluating")
    params = load_params(run.path / PIPELINE_FILE,
                         {"task": {"validation_data": {"input_path": data.val_pattern}}})
    with chatter_to(run.path / CHATTER_FILE), strategy.scope():
        task = task_factory.get_task(params.task, logging_dir=str(run.path))
        capture = _EvalCapture(task)
        trainer = train_utils.create_trainer(params, task, train=False, evaluate=True)
        # expect_partial: the optimizer's slots are in the checkpoint but evaluation never builds them
        trainer.checkpoint.read(str(prefix)).expect_partial()
        with heartbeat(f"eval[{NAME}]") as beat:
            beat.status(f"evaluating {prefix.name} on {data.val_images or 'the'} val images")
            logs = trainer.evaluate(tf.constant(-1, dtype=tf.int32))
            values: dict[str, Any] = _scalars(logs)
            values["step"] = float(trainer.global_step.numpy())
            beat.status("per-class AP, PR/F1 curves, confusion matrix, mosaics")
            values.update(_insight(run, int(values["step"]), capture, data))
    return values


# ========================================================================================= export
# export_saved_model: ``export_saved_model_lib.export_inference_graph`` with input type ``image_tensor``,
# batch size 1 and ``detection_generator.apply_nms=false`` (Model Garden's own preprocessing, backbone, head
# and box decoding: boxes in pixels of the scaled input, sigmoid scores without the background class,
# ``image_info``), then ONE adapter ``tf.Module`` (``ODAPISignature`` in adapt_to_od_api) that gives the OD
# API signature: input ``input_tensor``, boxes normalized to the input image, one class per box (its best
# score), class-agnostic hard NMS with ``NonMaxSuppressionV5``, outputs padded as the OD API pads them. Why
# NMS is the adapter's: TFLite's ``TFLite_Detection_PostProcess`` (fast NMS, the mobile default) is
# class-agnostic, and Model Garden's only class-agnostic NMS (``v2``) is a padded while-loop that costs
# ~27 ms of a 43 ms call at 128 px; its ``batched`` NMS is ``CombinedNonMaxSuppression``, which TF.js and
# TFLite builtins lack (docs/environment.md). Boxes are clipped to the image *after* NMS, as TFLite's
# post-processing op does (it cannot clip before): Model Garden clips before NMS, which changes the overlaps
# of boxes that cross the image edge and so which of them NMS keeps; with one rule in every format, every
# format gives the same detections. The served model takes ~15 ms.
#
# tflite_graph: Model Garden's TFLite path: input type ``tflite`` (no preprocessing in the graph, hence no
# ``tf.map_fn`` batch loop, on which full-int8 calibration segfaults) and
# ``detection_generator.nms_version=tflite``, which ends the graph in TFLite's ``TFLite_Detection_PostProcess``
# op: fast class-agnostic NMS, ``max_classes_per_detection=1`` (the default 5 pads every box to 5 rows and
# confuses parsers), anchors normalized so boxes come out normalized. Not ``use_regular_nms``: TFLite's
# multi-threaded regular NMS skips the class whose index equals the thread count (seen with ai-edge-litert
# 2.3 and TF 2.20's interpreter: num_threads=2 drops class 2). The SavedModel export uses class-agnostic
# NMS too, so both agree.

def run_params(run: RunDir, overrides: dict[str, Any]):
    """The run's Model Garden config (pipeline.yaml) with export-time overrides, validated and locked."""
    return load_params(run.path / PIPELINE_FILE, overrides)


def export_saved_model(run: RunDir, checkpoint: Path, nms: Nms, scratch: Path, staged: Path) -> ExportedSavedModel:
    """The served contract's SavedModel of ``checkpoint`` -> ``staged`` (Model Garden + the adapter)."""
    tf = import_tensorflow()
    from official.vision.serving import export_saved_model_lib

    # Model Garden up to the decoded boxes (pixels of the scaled input, not clipped) and per-class scores
    # (sigmoid, background removed); normalizing, NMS and clipping are the adapter's (export section above).
    params = run_params(run, {"task": {
        "export_config": {"output_normalized_coordinates": False},
        "model": {"detection_generator": {"apply_nms": False}}}})
    size = [int(v) for v in params.task.model.input_size[:2]]
    garden = scratch / "model_garden"
    with chatter_to(run.path / CHATTER_FILE):
        export_saved_model_lib.export_inference_graph(
            input_type="image_tensor", batch_size=1, input_image_size=size, params=params,
            checkpoint_path=str(checkpoint), export_dir=str(garden),
            export_module=unclipped_detection_module(params, size))
    adapt_to_od_api(garden, staged, nms, tf)
    return ExportedSavedModel(image_size=size, exact_outputs=True)


def unclipped_detection_module(params, size: list[int]):
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
        """The one adapter from Model Garden's detection signature to the OD API's (export section above)."""

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


def tflite_graph(run: RunDir, checkpoint: Path, nms: Nms, scratch: Path) -> tuple[Path, dict[str, Any]]:
    """The SavedModel TFLite's converter reads (ending in TFLite_Detection_PostProcess) and its input spec."""
    import_tensorflow()
    from official.vision.serving import export_saved_model_lib

    params = run_params(run, {"task": {
        "export_config": {"output_normalized_coordinates": False},
        "model": {"detection_generator": {"apply_nms": True, "nms_version": "tflite", "tflite_post_processing": {
            "max_detections": nms.max_detections, "max_classes_per_detection": 1, "use_regular_nms": False,
            "nms_score_threshold": nms.score_threshold, "nms_iou_threshold": nms.iou_threshold,
            "normalize_anchor_coordinates": True, "detections_per_class": nms.max_detections}}}}})
    size = [int(v) for v in params.task.model.input_size[:2]]
    out = scratch / "tflite_graph"
    with chatter_to(run.path / CHATTER_FILE):
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
