"""Publishing an export: the run's ``saved_model/`` swapped in whole, the next TF Serving version, the export
record (``output/<run>/export.json``) and the score-threshold asset. Every export path (`make export`, its
``TF=1`` variant) ends here, whichever engine made the model.

The SavedModel is copied to ``<serving_dir>/<model_name>/.tmp-<version>-<pid>`` with the label map in
``assets.extra/label_map.pbtxt``, TF Serving's warm-up file (``assets.extra/tf_serving_warmup_requests``,
odstack/export/warmup.py) and, when the exported checkpoint was evaluated, its best-F1 score threshold
(``assets.extra/thresholds.json``: ``{"score_threshold": 0.35, "source": "best F1 on val, step N"}``), then
renamed to ``<version>`` (one atomic rename, so TF Serving never loads half a model); versions are
integers, one more than the highest there. ``export.json`` records what was exported (checkpoint, step,
NMS, image size, version): `make tflite` reads it to convert the same checkpoint with the same NMS.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from odstack.contract import BYTES_INPUT_KEY, BYTES_SIGNATURE_KEY
from odstack.errors import ExportError
from odstack.export import timed
from odstack.export.warmup import write_warmup_requests
from odstack.fsio import replace_dir, write_json
from odstack.log import LOGGER
from odstack.tfruntime import import_tensorflow

EXPORT_JSON = "export.json"
SAVED_MODEL_DIR = "saved_model"
LABEL_MAP_ASSET = Path("assets.extra") / "label_map.pbtxt"
THRESHOLDS_ASSET = Path("assets.extra") / "thresholds.json"  # the best-F1 score threshold, when evaluated
_PREFIX = "export"


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
