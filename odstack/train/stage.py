"""`make train`, `make eval`, `make models`: the engine-independent half of the training stage.

The engines (odstack/train/engines/<name>.py) render their config, pick devices (GPUS=), train and
evaluate; this module picks the engine, checks the dataset, keeps the run directory's bookkeeping and
prints the summary, so both engines behave the same from the command line.
"""
from __future__ import annotations

import time

from odstack.errors import ConfigError
from odstack.log import LOGGER
from odstack.train import engines
from odstack.train.run import (DatasetInfo, EvalSettings, RunDir, TrainSettings, resolve_data, resolve_run_name,
                               select_checkpoint)


def train(settings: TrainSettings) -> RunDir:
    engine = engines.get(settings.engine)
    run = RunDir.named(settings.resolved_run())
    data = DatasetInfo.load(resolve_data(settings.data, run, "train"))
    resumed = run.trained()  # engine.train starts (or checks and resumes) the run itself
    LOGGER.info("train[%s]: %s run %s: model %s, %d classes, %s train / %s val images, %d steps",
                engine.NAME, "resuming" if resumed else "new", run.path, settings.resolved_model(),
                data.num_classes, data.train_images or "?", data.val_images or "?", settings.steps)
    started = time.monotonic()
    engine.train(run, settings, data)
    _print_summary(run, time.monotonic() - started)
    return run


def evaluate(settings: EvalSettings) -> dict:
    run = RunDir.named(resolve_run_name(settings.run))
    info = run.info()
    engine = engines.get(info["engine"])
    data = DatasetInfo.load(resolve_data(settings.data, run, "eval"))
    if not data.val_shards:
        raise ConfigError("the dataset has no val shards to evaluate on", where=str(data.directory),
                          hint="re-run `make data` with VAL_FRACTION > 0")
    checkpoint = select_checkpoint(run, settings.checkpoint)
    values = engine.evaluate(run, checkpoint, data)
    step = int(values.pop("step"))
    extra = {key: values.pop(key) for key in ("per_class", "best_f1") if key in values}
    if settings.checkpoint != "best":
        run.record_eval(step, checkpoint, values, extra)
    LOGGER.info("eval[%s]: %s step %d: AP %.3f, AP50 %.3f, AP75 %.3f -> %s", info["engine"], checkpoint, step,
                values.get("AP", float("nan")), values.get("AP50", float("nan")), values.get("AP75", float("nan")),
                run.metrics_json)
    return values


def models() -> list[dict]:
    rows = []
    for name in engines.ENGINE_NAMES:
        try:
            rows += engines.get(name).models()  # each row names its engine
        except ConfigError as error:  # an engine that cannot list models here still lets the others list
            LOGGER.warning("models: %s", error)
    return rows


def print_models() -> None:
    rows = models()
    LOGGER.info("%-10s %-40s %s", "ENGINE", "MODEL", "DETAILS")
    for row in rows:
        details = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("engine", "name") and v not in (None, ""))
        LOGGER.info("%-10s %-40s %s", row["engine"], row["name"], details)


def _print_summary(run: RunDir, seconds: float) -> None:
    metrics = run.metrics()
    best, latest = metrics.get("best"), metrics.get("latest")
    lines = [f"train: run {run.path} finished in {seconds:.0f} s"]
    if latest:
        lines.append(f"  latest: step {latest['step']}  AP {latest.get('AP', 0):.3f}  AP50 {latest.get('AP50', 0):.3f}")
    if best:
        lines.append(f"  best:   step {best['step']}  AP {best.get('AP', 0):.3f}  AP50 {best.get('AP50', 0):.3f}"
                     f"  -> {run.best_dir}")
    lines.append(f"  metrics: {run.metrics_json}; TensorBoard: make tensorboard RUN={run.path.name}")
    LOGGER.info("\n".join(lines))
