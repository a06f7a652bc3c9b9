"""The SavedModel runtime (TensorFlow): ``output/<run>/saved_model``'s ``serving_default``, parity's reference."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Sequence

from odstack.contract import INPUT_KEY, SIGNATURE_KEY
from odstack.export import path_size
from odstack.export.publish import SAVED_MODEL_DIR
from odstack.export.runtimes.base import Prediction, ValImage
from odstack.tfruntime import import_tensorflow

NAME = "saved_model"


def find(run_dir: Path) -> dict[str, Path]:
    path = run_dir / SAVED_MODEL_DIR
    return {NAME: path} if (path / "saved_model.pb").exists() else {}


def predict(path: Path, images: Sequence[ValImage], threads: int) -> list[Prediction]:
    tf = import_tensorflow()
    with contextlib.suppress(RuntimeError):  # only possible before TensorFlow's runtime starts
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    serve = tf.saved_model.load(str(path)).signatures[SIGNATURE_KEY]
    if images:
        serve(**{INPUT_KEY: tf.constant(images[0].array[None])})  # warm-up: the first call traces
    predictions = []
    for image in images:
        tensor = tf.constant(image.array[None])
        started = time.perf_counter()
        outputs = {k: v.numpy() for k, v in serve(**{INPUT_KEY: tensor}).items()}
        predictions.append(Prediction.from_od_api(outputs, time.perf_counter() - started))
    return predictions


def quantized(label: str) -> bool:
    return False


def size(artifact: Path) -> int:
    return path_size(artifact)


def runtime() -> str:
    return f"tensorflow {import_tensorflow().__version__}"
