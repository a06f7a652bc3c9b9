"""TensorFlow as every odstack stage imports it: one place for the log policy, shared by the engines and the
export stage (so no module reaches into another's private helpers).

Nothing here imports TensorFlow at module import time: importing odstack modules stays cheap.
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path


def import_tensorflow():
    """Import TensorFlow with its C++ and absl chatter turned down.

    TF's C++ log is silenced unless the user set TF_CPP_MIN_LOG_LEVEL: on a CPU machine it prints
    "failed call to cuInit" and oneDNN notes as *errors* that mean nothing; real failures still
    raise Python exceptions. absl (Model Garden, Orbit) keeps warnings.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbit/Model Garden log every loop at INFO
    tf.get_logger().setLevel(logging.ERROR)
    # Model Garden's FPN passes the backbone's extra level to a Keras functional model, which warns on
    # every build; the warning is about Keras input plumbing, not about the user's model.
    warnings.filterwarnings("ignore", message="Input dict contained keys", category=UserWarning)
    # coco_utils calls int() on a 1-element array once per box: NumPy 2.x deprecates it (NumPy 2.4
    # makes it an error, hence numpy<2.4 in the requirements); nothing a user can act on.
    warnings.filterwarnings("ignore", message="Conversion of an array with ndim > 0 to a scalar",
                            category=DeprecationWarning)
    return tf


@contextlib.contextmanager
def chatter_to(path: Path) -> Iterator[None]:
    """Send stdout prints (Orbit's per-loop lines, pycocotools' tables) to a log file in the run.

    Our own progress lines go to the odstack logger (stderr) and stay visible; the detail is kept for
    debugging rather than thrown away.
    """
    with open(path, "a", encoding="utf-8") as handle, contextlib.redirect_stdout(handle):
        yield
