"""A training run's directory, the dataset it trains on, and the bookkeeping every engine shares.

    output/<run>/
      run.json            engine, model, settings, dataset, created/updated (what `make eval/export` read)
      label_map.pbtxt     the label map the run was trained with (copied: the dataset may change later)
      pipeline.config     OD API engine: the rendered TrainEvalPipelineConfig
      pipeline.yaml       tfvision engine: the rendered Model Garden experiment config
      ckpt-N.*  checkpoint  checkpoints (the engine's model_dir is the run directory)
      train/  eval/       TensorBoard event files
      metrics.json        COCO metrics per evaluated checkpoint, plus "best" and "latest"
      best/               a copy of the checkpoint with the highest AP (the OD API has no such thing)
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from odstack import labelmap, protos, tfrecord
from odstack.errors import ConfigError, DatasetError
from odstack.fsio import check_name, replace_dir, write_json
from odstack.log import LOGGER
from odstack.train.engines import DEFAULT_MODELS, SCRATCH_MODELS

OUTPUT_DIR = Path("output")
BEST_METRIC = "AP"


@dataclass
class TrainSettings:
    """Settings of `make train` (defaults: odstack/cfg/default.yaml, section ``train``)."""

    engine: str = "tfvision"
    model: str = "auto"
    run: str = "auto"
    data: str = "auto"
    steps: int = 1000
    batch: int | str = "auto"
    image_size: int | str = "auto"
    learning_rate: float | str = "auto"
    checkpoint_every: int | str = "auto"
    from_scratch: bool = False
    init: str = "auto"
    init_checkpoint: str | None = None
    weights_cache: Path = Path("~/.cache/odstack/weights")
    weights_url: str = "auto"
    weights_sha256: str | None = None
    gpus: str = "auto"
    precision: str = "float32"
    progress_every: float = 30.0
    steps_per_loop: int | str = "auto"
    replan: bool = False
    zoo_cache: Path = Path("~/.cache/odstack/zoo")
    zoo_url: str = "auto"

    def resolved_model(self) -> str:
        if self.engine not in DEFAULT_MODELS:
            raise ConfigError(f"engine={self.engine!r} is not one of: {', '.join(DEFAULT_MODELS)}")
        if self.model != "auto":
            return self.model
        scratch = self.from_scratch or str(self.init).strip().lower() == "none"
        return (SCRATCH_MODELS if scratch else DEFAULT_MODELS)[self.engine]

    def resolved_run(self) -> str:
        name = self.resolved_model() if self.run == "auto" else self.run
        return check_name(name, "run")

    def resolved_checkpoint_every(self) -> int:
        if self.checkpoint_every != "auto":
            return max(1, int(self.checkpoint_every))
        # a few evaluations per run, never so rare that a short run ends without a saved checkpoint
        return max(1, min(1000, math.ceil(self.steps / 5)))


@dataclass
class EvalSettings:
    """Settings of `make eval` (section ``eval``)."""

    run: str = "auto"
    checkpoint: str = "latest"
    data: str = "auto"


@dataclass
class DatasetInfo:
    """What a training run needs to know about the output of `make data`."""

    directory: Path
    label_map: Path
    labels: dict[str, int]
    train_shards: list[Path]
    val_shards: list[Path]
    train_images: int | None = None
    val_images: int | None = None

    @property
    def num_classes(self) -> int:
        return max(self.labels.values())

    @property
    def train_pattern(self) -> str:
        return str(self.directory / tfrecord.shard_glob("train"))

    @property
    def val_pattern(self) -> str:
        return str(self.directory / tfrecord.shard_glob("val"))

    @classmethod
    def load(cls, directory: Path) -> "DatasetInfo":
        directory = Path(directory)
        label_map = directory / "label_map.pbtxt"
        if not label_map.exists():
            raise DatasetError("no label_map.pbtxt here: this is not the output of `make data`", where=str(directory),
                               hint="run `make data SRC=input/<dataset>` first, or pass DATA=<its OUT>")
        train = sorted(directory.glob(tfrecord.shard_glob("train")))
        val = sorted(directory.glob(tfrecord.shard_glob("val")))
        if not train:
            raise DatasetError("no train-*.record shards", where=str(directory), hint="re-run `make data`")
        counts: dict[str, Any] = {}
        report = directory / "report.json"
        if report.exists():
            counts = json.loads(report.read_text(encoding="utf-8")).get("splits", {})
        return cls(directory=directory, label_map=label_map, labels=labelmap.read(label_map), train_shards=train,
                   val_shards=val, train_images=counts.get("train", {}).get("images"),
                   val_images=counts.get("val", {}).get("images"))


@dataclass
class RunDir:
    """One run's directory and its JSON bookkeeping."""

    path: Path

    @classmethod
    def named(cls, name: str) -> "RunDir":
        return cls(OUTPUT_DIR / name)

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics_json(self) -> Path:
        return self.path / "metrics.json"

    @property
    def label_map(self) -> Path:
        return self.path / "label_map.pbtxt"

    @property
    def best_dir(self) -> Path:
        return self.path / "best"

    def exists(self) -> bool:
        return self.run_json.exists()

    def trained(self) -> bool:
        """True once the run has a checkpoint: only then does `make train` resume it. A first attempt that
        failed before training (a download error, a typo) leaves run.json but nothing to resume."""
        return latest_checkpoint(self.path) is not None

    def info(self) -> dict[str, Any]:
        if not self.exists():
            raise ConfigError(f"no training run at {self.path}", hint="train first: `make train`, or pass RUN=<name>")
        return json.loads(self.run_json.read_text(encoding="utf-8"))

    def start(self, settings: TrainSettings, data: DatasetInfo) -> dict[str, Any]:
        """Create the run, or check a resumed one trains the same engine/model on the same classes."""
        record = {
            "engine": settings.engine,
            "model": settings.resolved_model(),
            "labels": data.labels,
            "data": str(data.directory),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
        }
        if self.exists() and self.trained():
            previous = self.info()
            for key in ("engine", "model", "labels"):
                if previous.get(key) != record[key]:
                    raise ConfigError(
                        f"run {self.path.name!r} exists with a different {key} ({previous.get(key)!r})",
                        where=str(self.path), hint="pass RUN=<a new name> to start a new run, or remove the old one")
            record["created"] = previous.get("created")
        else:  # new, or an earlier attempt that never trained: start afresh
            self.path.mkdir(parents=True, exist_ok=True)
            record["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        record["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        shutil.copyfile(data.label_map, self.label_map)
        write_json(self.run_json, record)
        return record

    def metrics(self) -> dict[str, Any]:
        if not self.metrics_json.exists():
            return {"metric": BEST_METRIC, "history": [], "best": None, "latest": None}
        return json.loads(self.metrics_json.read_text(encoding="utf-8"))

    def record_eval(self, step: int, checkpoint: Path, values: dict[str, float],
                    extra: dict[str, Any] | None = None) -> bool:
        """Add one evaluation; if it is the best so far, copy its checkpoint to best/. True if best.
        ``extra``: JSON-ready details kept with it (per-class AP, best-F1 threshold)."""
        metrics = self.metrics()
        entry = {"step": int(step), "checkpoint": str(checkpoint),
                 **{k: v if isinstance(v, dict) else float(v) for k, v in values.items()}, **(extra or {})}
        metrics["history"] = [h for h in metrics["history"] if h["step"] != entry["step"]] + [entry]
        metrics["history"].sort(key=lambda h: h["step"])
        metrics["latest"] = entry
        best = metrics.get("best")
        is_best = best is None or entry.get(BEST_METRIC, -1.0) > best.get(BEST_METRIC, -1.0)
        if is_best:
            self._copy_checkpoint(checkpoint, self.best_dir)
            metrics["best"] = dict(entry, checkpoint=str(self.best_dir / Path(checkpoint).name))
        write_json(self.metrics_json, metrics)
        return is_best

    @staticmethod
    def _copy_checkpoint(prefix: Path, destination: Path) -> None:
        """Copy a TF checkpoint (prefix.index + prefix.data-*) atomically into ``destination``."""
        prefix = Path(prefix)
        files = sorted(prefix.parent.glob(prefix.name + ".*"))
        if not any(f.suffix == ".index" for f in files):
            raise ConfigError(f"checkpoint {prefix} has no .index file")
        tmp = destination.with_name(destination.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for file in files:
            shutil.copy2(file, tmp / file.name)
        write_checkpoint_state(tmp, prefix.name)
        replace_dir(tmp, destination)


# ------------------------------------------------------------------------------------- checkpoints
# Found without TensorFlow (its import costs seconds and ~700 MiB): the engines, eval and export share these.

def checkpoint_exists(prefix: Path) -> bool:
    return Path(prefix).with_name(Path(prefix).name + ".index").exists()


def write_checkpoint_state(directory: Path, prefix: str | Path) -> None:
    """``directory/checkpoint`` (TF's CheckpointState) naming ``prefix`` as the latest and only checkpoint."""
    state = protos.CheckpointState(model_checkpoint_path=str(prefix), all_model_checkpoint_paths=[str(prefix)])
    (Path(directory) / "checkpoint").write_text(text_format.MessageToString(state), encoding="utf-8")


def latest_checkpoint(directory: Path) -> Path | None:
    """The prefix named by ``directory/checkpoint`` (TF's CheckpointState), if its .index exists."""
    state = Path(directory) / "checkpoint"
    if not state.exists():
        return None
    try:
        name = text_format.Parse(state.read_text(encoding="utf-8"), protos.CheckpointState()).model_checkpoint_path
    except text_format.ParseError as error:
        raise ConfigError(f"unreadable checkpoint state file: {error}", where=str(state),
                          hint="it names the latest checkpoint; delete it to start over") from None
    if not name:
        return None
    prefix = Path(name) if Path(name).is_absolute() else Path(directory) / name
    return prefix if checkpoint_exists(prefix) else None


def resolve_data(data: str | Path | None, run: "RunDir", stage: str) -> Path:
    """The dataset a stage of ``run`` uses, logged with where it came from.

    ``data=<dir>`` wins; ``auto`` is the dataset recorded in the run's run.json (a new run: the default
    output of `make data`). A recorded dataset that is gone is an error naming run.json and DATA=.
    """
    from odstack.settings import defaults

    recorded = None if data not in ("auto", "", None) or not run.exists() else run.info().get("data")
    if data not in ("auto", "", None):
        directory, source = Path(data), "data="
    elif recorded:
        directory, source = Path(recorded), f"recorded in {run.run_json}"
    else:
        directory, source = Path(defaults("data")["out"]), "the default output of `make data`"
    if not (directory / "label_map.pbtxt").exists():
        if source.startswith("recorded"):
            raise DatasetError(f"run {run.path.name} was trained on {directory} (its run.json), which is no longer "
                               "the output of `make data`", where=str(directory),
                               hint=f"pass DATA=<the dataset's directory>, or re-create it there with "
                                    f"`make data OUT={directory}`")
        DatasetInfo.load(directory)  # raises with its own hint
    LOGGER.info("%s: dataset %s (%s)", stage, directory, source)
    return directory


def resolve_run_name(name: str) -> str:
    """RUN=auto: the only run under output/, else the default engine's default model's run."""
    if name != "auto":
        return name
    runs = sorted(p.parent.name for p in OUTPUT_DIR.glob("*/run.json"))
    if len(runs) == 1:
        return runs[0]
    default = TrainSettings().resolved_model()
    if default in runs or not runs:
        return default
    raise ConfigError(f"several runs in output/: {', '.join(runs)}", hint="choose one with RUN=<name>")


def select_checkpoint(run: "RunDir", which: str, *, latest_if_no_best: bool = False) -> Path:
    """The checkpoint prefix for ``checkpoint=best|latest|<prefix, directory or .index>`` (eval and export).

    best: the run's evaluated best; a run never evaluated has none: an error, or with ``latest_if_no_best``
    (export) its latest checkpoint with a warning.
    """
    if which == "best":
        best = run.metrics().get("best")
        if best and checkpoint_exists(Path(best["checkpoint"])):
            return Path(best["checkpoint"])
        if not latest_if_no_best:
            raise ConfigError("this run has no evaluated best checkpoint yet", where=str(run.path),
                              hint="train or evaluate it first, or pass checkpoint=latest")
    if which in ("best", "latest"):
        latest = latest_checkpoint(run.path)
        if latest is None:
            raise ConfigError("this run has no checkpoint yet", where=str(run.path),
                              hint=f"train it first: make train RUN={run.path.name}")
        if which == "best":
            LOGGER.warning("run %s has no evaluated best checkpoint; using the latest", run.path)
        return latest
    try:
        return resolve_checkpoint(Path(which))
    except ConfigError as error:
        raise ConfigError(f"checkpoint={which}: {error.message}",
                          hint="pass best, latest or a checkpoint prefix such as output/<run>/ckpt-400") from None


def resolve_checkpoint(checkpoint: Path) -> Path:
    """A checkpoint prefix from a prefix (ckpt-5), a directory (its latest) or a .index file."""
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        latest = latest_checkpoint(checkpoint)
        if latest is None:
            raise ConfigError("no checkpoint in this directory", where=str(checkpoint))
        return latest
    if checkpoint.suffix == ".index":
        checkpoint = checkpoint.with_suffix("")
    if not checkpoint_exists(checkpoint):
        raise ConfigError("no such checkpoint (expected <prefix>.index and <prefix>.data-*)", where=str(checkpoint))
    return checkpoint


