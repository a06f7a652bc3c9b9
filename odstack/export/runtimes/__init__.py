"""One runtime per export format: the module that finds a run's artifacts of that format and runs them on
images, the idea of Ultralytics' AutoBackend. The protocol is in :mod:`odstack.export.runtimes.base`;
parity (odstack/export/parity.py) compares every runtime of ``RUNTIMES`` against the SavedModel.

To add a format's runtime: write ``odstack/export/runtimes/<name>.py`` with the protocol's names and add it
to ``RUNTIMES`` below. Runtime modules import no TensorFlow at import time (each venv imports them all).
"""
from __future__ import annotations

from types import ModuleType

from odstack.export.runtimes import saved_model, tfjs, tflite

#: name -> runtime module; ``saved_model`` is parity's reference.
RUNTIMES: dict[str, ModuleType] = {module.NAME: module for module in (saved_model, tflite, tfjs)}
RUNTIME_NAMES = tuple(RUNTIMES)
