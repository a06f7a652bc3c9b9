"""Training engines: one module per engine, all behind the same small interface.

Each module ``odstack/train/engines/<name>.py`` defines:

- ``NAME: str``                                          its key (== module name == ``ENGINE=`` value)
- ``models() -> list[dict]``                             entries for `make models`
- ``train(run, settings, data) -> None``                 train (or resume) a run up to ``settings.steps``
- ``evaluate(run, checkpoint, data) -> dict[str, float]`` COCO metrics of one checkpoint on the val shards,
                                                         and the checkpoint's global ``step``

Engines import TensorFlow (seconds, hundreds of MiB) and possibly the OD API, which may be missing, so
modules are imported only when asked for: listing or validating engine names costs nothing.
"""
from __future__ import annotations

import difflib
import importlib
from types import ModuleType

from odstack.errors import ConfigError

ENGINE_NAMES = ("tfvision", "odapi")


def get(name: str) -> ModuleType:
    """The engine module called ``name``; a ConfigError listing the known engines otherwise."""
    if name not in ENGINE_NAMES:
        close = difflib.get_close_matches(str(name), ENGINE_NAMES, n=1)
        hint = f"did you mean ENGINE={close[0]}?" if close else \
            "tfvision: TF Model Garden (PyPI only, CPU-friendly); odapi: TF OD API + model zoo"
        raise ConfigError(f"unknown engine {name!r}; known engines: {', '.join(ENGINE_NAMES)}", hint=hint)
    return importlib.import_module(f"{__name__}.{name}")
