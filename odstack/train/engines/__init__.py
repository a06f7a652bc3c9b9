"""Training engines: one module per engine, all behind the same small interface, covering a model's whole
life from training to the graphs the export stage converts (which never asks which engine it has).

Each module ``odstack/train/engines/<name>.py`` defines:

- ``NAME: str``                                          its key (== module name == ``ENGINE=`` value)
- ``models() -> list[dict]``                             entries for `make models` (its model table; its
                                                         default models are ``DEFAULT_MODELS[NAME]`` and
                                                         ``SCRATCH_MODELS[NAME]``, below)
- ``train(run, settings, data) -> None``                 train (or resume) a run up to ``settings.steps``
- ``evaluate(run, checkpoint, data) -> dict[str, float]`` COCO metrics of one checkpoint on the val shards,
                                                         and the checkpoint's global ``step``
- ``export_saved_model(run, checkpoint, nms, scratch, staged) -> contract.ExportedSavedModel``
      the served contract's SavedModel (odstack/contract.py) of ``checkpoint`` written to ``staged``
      (``scratch``: a directory for intermediate files); `make export` checks and publishes it
- ``tflite_graph(run, checkpoint, nms, scratch) -> (Path, dict)``
      a SavedModel ending in ``TFLite_Detection_PostProcess`` for TFLite's converter, and the spec of its
      input (model_info.json: ``input``, ``outputs``, ``class_offset``; odstack/contract.py's terms); an
      ExportError when TFLite cannot take the model

Engines import TensorFlow (seconds, hundreds of MiB) and possibly the OD API, which may be missing, so
modules are imported only when asked for: listing or validating engine names costs nothing.
"""
from __future__ import annotations

import difflib
import importlib
from types import ModuleType

from odstack.errors import ConfigError

#: The registry: engine -> its default model (MODEL=auto), in the order `make models` and `make help` list them.
# model=auto: a pretrained start (what a user's own data needs: from scratch, 200 photos learn little) ...
DEFAULT_MODELS = {"tfvision": "retinanet_resnet50_fpn", "odapi": "ssd_mobilenet_v2_320x320"}
# ... and from scratch (init=none, as the demo and CI train: no weights can be downloaded there), the model
# that trains from scratch in minutes on a CPU. The OD API zoo model is small and pretrained either way.
SCRATCH_MODELS = {"tfvision": "retinanet_mobilenetv2", "odapi": "ssd_mobilenet_v2_320x320"}
ENGINE_NAMES = tuple(DEFAULT_MODELS)


def get(name: str) -> ModuleType:
    """The engine module called ``name``; a ConfigError listing the known engines otherwise."""
    if name not in ENGINE_NAMES:
        close = difflib.get_close_matches(str(name), ENGINE_NAMES, n=1)
        hint = f"did you mean ENGINE={close[0]}?" if close else \
            "tfvision: TF Model Garden (PyPI only, CPU-friendly); odapi: TF OD API + model zoo"
        raise ConfigError(f"unknown engine {name!r}; known engines: {', '.join(ENGINE_NAMES)}", hint=hint)
    return importlib.import_module(f"{__name__}.{name}")
