"""`make export TF=1`: a TF1.15 OD API run (`make train TF=1`) -> the same SavedModel contract and TF Serving
layout as every other export.

Two steps in two images, because TF 1.15 (Python 3.6) and odstack (Python 3.11, TF 2) never share one:

1. ``odapi-tf1``: ``container_scripts/export_tf1.sh`` runs the OD API's ``export_inference_graph.py``
   (input type ``image_tensor``) on the run's newest checkpoint, refusing a step-0 one ->
   ``output/<run>/tf1_export/``: ``frozen_inference_graph.pb`` (the frozen graph TF1 tools take),
   ``saved_model/``, ``pipeline.config`` and ``odstack_export.txt`` (checkpoint, step).
2. ``odapi`` (this module; ``python -m odstack export tf1=true`` dispatches here): the TF1 exporter's signature takes its image as ``inputs``
   and adds ``raw_detection_*``/``detection_multiclass_scores``; the TF2 contract (docs/architecture.md, what the
   client sends) is ``input_tensor`` -> the four detection outputs. ONE adapter ``tf.Module`` calls the
   TF1 signature unchanged and exposes the contract -> ``output/<run>/saved_model`` (label map in
   ``assets.extra``), then publishes it as the next TF Serving version and writes ``export.json``.
"""
from __future__ import annotations

import time
from pathlib import Path

from odstack.contract import INPUT_KEY, OUTPUT_KEYS, SIGNATURE_KEY, check_signature
from odstack.errors import ConfigError
from odstack.export.publish import EXPORT_JSON, export_serving, swap_in_saved_model
from odstack.export.saved_model import ExportResult, ExportSettings
from odstack.fsio import check_name, write_json
from odstack.log import LOGGER
from odstack.tfruntime import import_tensorflow

TF1_EXPORT_DIR = "tf1_export"
RECORD_FILE = "odstack_export.txt"
_PREFIX = "export"


def export(settings: ExportSettings) -> ExportResult:
    """Step 2 of `make export TF=1`: ``output/<run>/tf1_export`` -> ``saved_model`` (+ the serving copy)."""
    run_dir = _run_dir(settings.run)
    exported = run_dir / TF1_EXPORT_DIR
    if not (exported / "saved_model" / "saved_model.pb").exists():
        raise ConfigError(f"no TF1 export in {exported}", where=str(run_dir),
                          hint=f"run `make export TF=1 RUN={run_dir.name}`: it exports in the odapi-tf1 image first")
    record = _read_record(exported / RECORD_FILE)
    label_map = _label_map(exported / "pipeline.config")
    model_name = check_name(run_dir.name if settings.model_name == "auto" else settings.model_name, "model_name")
    tf = import_tensorflow()

    def build(scratch: Path, staged: Path) -> None:
        adapt_tf1_saved_model(exported / "saved_model", staged, tf)
        check_signature(staged, strict=True)

    saved_model = swap_in_saved_model(run_dir, label_map, build)
    serving = export_serving(saved_model, Path(settings.serving_dir), model_name, label_map) if settings.publish else None
    write_json(run_dir / EXPORT_JSON, {
        "engine": "odapi-tf1", "checkpoint": record["checkpoint"], "step": record["step"],
        "frozen_graph": str(exported / "frozen_inference_graph.pb"), "saved_model": str(saved_model),
        "label_map": str(label_map), "tensorflow": tf.__version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "serving": serving and {"model_name": model_name, "version": int(serving.name), "path": str(serving)},
    })
    LOGGER.info("%s: done. TF1 checkpoint %s (step %d) -> %s (signature %s: %s uint8 [1,H,W,3] -> %s)%s",
                _PREFIX, record["checkpoint"], record["step"], saved_model, SIGNATURE_KEY, INPUT_KEY,
                ", ".join(OUTPUT_KEYS), f"\n  TF Serving: {serving} (model_name={model_name})" if serving else "")
    return ExportResult(run_dir, saved_model, Path(record["checkpoint"]), record["step"], serving)


def adapt_tf1_saved_model(tf1_saved_model: Path, destination: Path, tf=None) -> Path:
    """Re-expose the TF1 exporter's ``serving_default`` (``inputs`` -> detections + raw outputs) as the OD API
    TF2 contract (``input_tensor`` -> the four detection outputs, float32), the graph itself untouched."""
    tf = tf or import_tensorflow()

    class TF1Signature(tf.Module):
        """The one adapter from the TF1 exporter's signature to the TF2 contract."""

        def __init__(self, loaded):
            super().__init__(name="tf1_signature")
            self.loaded = loaded  # tracked: the TF1 graph is saved with the adapter
            self._serve = loaded.signatures[SIGNATURE_KEY]
            inputs = list(self._serve.structured_input_signature[1])
            if len(inputs) != 1:
                raise ConfigError(f"the TF1 SavedModel takes {inputs}, not one image tensor",
                                  where=str(tf1_saved_model), hint="export it with --input_type=image_tensor")
            self._input = inputs[0]

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name=INPUT_KEY)])
        def serve(self, input_tensor):
            out = self._serve(**{self._input: input_tensor})
            return {key: tf.cast(out[key], tf.float32) for key in OUTPUT_KEYS}

    module = TF1Signature(tf.saved_model.load(str(tf1_saved_model)))
    tf.saved_model.save(module, str(destination), signatures={SIGNATURE_KEY: module.serve.get_concrete_function()})
    return destination


def _run_dir(name: str) -> Path:
    from odstack.train.run import RunDir

    if name == "auto":
        raise ConfigError("export TF=1 needs the run's name", hint="make export TF=1 RUN=<name>")
    path = Path(name) if "/" in name else RunDir.named(name).path
    if not path.is_dir():
        raise ConfigError(f"no run directory {path}", hint="train one with make train TF=1 CONFIG=… RUN=<name>")
    return path


def _read_record(path: Path) -> dict:
    try:
        fields = dict(line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if "=" in line)
        return {"checkpoint": fields["checkpoint"], "step": int(fields["step"])}
    except (OSError, KeyError, ValueError) as error:
        raise ConfigError(f"{path} is missing or unreadable ({error})", where=str(path),
                          hint="re-run make export TF=1: export_tf1.sh writes it") from None


def _label_map(config: Path) -> Path:
    """The label map the run trained with (train_input_reader.label_map_path), as seen from here: the
    path is the container's (/workspace/...) or relative to the repository root."""
    from odstack.train import pipeline_config

    try:
        value = pipeline_config.load(config.read_text(encoding="utf-8"), str(config)).get(
            "train_input_reader.label_map_path")
    except OSError as error:
        raise ConfigError(f"cannot read {config}: {error}", where=str(config)) from None
    if not value:
        raise ConfigError("no train_input_reader.label_map_path", where=str(config),
                          hint="the label map ships with the served model: set it in the training config")
    candidates = [Path(value)]
    if value.startswith("/workspace/"):
        candidates.append(Path(value[len("/workspace/"):]))
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise ConfigError(f"label map {value} (from train_input_reader.label_map_path) not found", where=str(config),
                          hint="put it there (paths are relative to the repository root) and export again")
    return found
