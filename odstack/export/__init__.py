"""The export stage: a trained run -> the formats it is deployed in, each proven equal to the original.

    make export  -> output/<run>/saved_model/ (OD API signature) + output/serving/<model>/<version>/
    make tflite  -> output/<run>/tflite/model_<quant>.tflite + labels.txt + model_info.json (toco image)
    make parity  -> output/<run>/parity.json: every format vs the SavedModel on the val images

One function per format (``export_<format>``), each wrapped in :func:`timed` (timed, logged with its
path and size, failures logged with the stage prefix).

    saved_model.py  `make export`: the engine's export (its ``export_saved_model``) checked and published
    tf1.py          `make export TF=1`: a TF1.15 OD API export adapted to the same contract
    publish.py      the run's saved_model/ swap, TF Serving versions, export.json, thresholds asset
    tflite.py       `make tflite`: the engine's TFLite graph (its ``tflite_graph``) -> converted, checked
    tfjs.py         `make tfjs`: the SavedModel -> TF.js graph model + signature.json
    runtimes/       one module per export format that runs its artifact (find, predict, quantized, ...)
    parity.py       `make parity`: every runtime's artifacts against the SavedModel

The served contract (docs/architecture.md, odstack/contract.py) is the TF OD API's ``serving_default``
signature; every engine adapts its export to it (odstack/train/engines), so nothing here cares which
engine trained the model.
"""
from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from odstack.errors import OdstackError
from odstack.log import LOGGER

F = TypeVar("F", bound=Callable[..., Any])


def timed(stage: str) -> Callable[[F], F]:
    """Decorator for one export function: logs start, duration, result path and size; logs failures.

    The wrapped function returns the Path it wrote (file or directory), or a tuple that starts with it.
    """

    def wrap(function: F) -> F:
        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            LOGGER.info("%s: starting %s", stage, function.__name__)
            try:
                result = function(*args, **kwargs)
            except OdstackError:
                LOGGER.error("%s: %s failed after %.1f s", stage, function.__name__, time.monotonic() - started)
                raise
            except Exception as error:  # a bug or a TensorFlow failure: keep the traceback, say where it was
                LOGGER.error("%s: %s failed after %.1f s: %s: %s", stage, function.__name__,
                             time.monotonic() - started, type(error).__name__, error)
                raise
            seconds = time.monotonic() - started
            path = result[0] if isinstance(result, tuple) and result else result
            if isinstance(path, Path) and path.exists():
                LOGGER.info("%s: %s done in %.1f s -> %s (%s)", stage, function.__name__, seconds, path,
                            human_size(path_size(path)))
            else:
                LOGGER.info("%s: %s done in %.1f s", stage, function.__name__, seconds)
            return result

        return run  # type: ignore[return-value]

    return wrap


def path_size(path: Path) -> int:
    """Bytes of a file, or of every file under a directory."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human_size(size: int) -> str:
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def resolve_run(name: str):
    """The RunDir for ``run=``: a name under output/ (auto: the only run there is, else the default model's
    run), or a path to a run directory (anything with a '/' that holds a run.json)."""
    from odstack.train.run import RunDir, resolve_run_name

    name = str(name)
    if "/" in name and (Path(name) / "run.json").exists():
        run = RunDir(Path(name))
    else:
        run = RunDir.named(resolve_run_name(name))
    run.info()  # raises a ConfigError naming the directory when the run does not exist
    return run
