"""What every export-format runtime speaks: the val images it is given and the predictions it returns.

A runtime is a module of odstack/export/runtimes/ (the registry is the package's ``RUNTIMES``) with:

- ``NAME: str``                                               its key in parity.json (``runner``)
- ``find(run_dir) -> dict[str, Path]``                        {format label: artifact}; empty when not exported
- ``predict(artifact, images, threads) -> list[Prediction]``  one per image, same order
- ``quantized(label) -> bool``                                judged by AP loss, not by the 1e-4 tolerance
- ``size(artifact) -> int``                                   bytes a deployment ships
- ``runtime() -> str``                                        what runs it, e.g. "ai-edge-litert 2.3.0"

:class:`Runner` is the same protocol as a value, for a runner that is not a module (tests, benchmarks).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from odstack.export import path_size


@dataclass
class ValImage:
    """One val image: decoded pixels and its ground truth (boxes normalized ymin, xmin, ymax, xmax)."""

    image_id: int
    filename: str
    array: np.ndarray  # uint8 [H, W, 3] RGB
    encoded: bytes
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))

    @property
    def height(self) -> int:
        return int(self.array.shape[0])

    @property
    def width(self) -> int:
        return int(self.array.shape[1])


@dataclass
class Prediction:
    """One format's detections on one image, in the OD API's terms, and the time the model took."""

    boxes: np.ndarray    # [N, 4] normalized ymin, xmin, ymax, xmax of the original image
    scores: np.ndarray   # [N]
    classes: np.ndarray  # [N] int, 1-based label-map ids
    seconds: float       # the model call (what latency reports)
    preprocess_seconds: float = 0.0

    @classmethod
    def from_od_api(cls, outputs: Mapping[str, Any], seconds: float, preprocess_seconds: float = 0.0) -> "Prediction":
        """``outputs``: the OD API arrays of one image (``detection_boxes`` normalized to the image,
        ``detection_scores``, ``detection_classes`` 1-based, ``num_detections``; batch dimension optional)."""
        num = int(np.asarray(outputs["num_detections"]).reshape(-1)[0])
        return cls(boxes=np.asarray(outputs["detection_boxes"], np.float32).reshape(-1, 4)[:num],
                   scores=np.asarray(outputs["detection_scores"], np.float32).reshape(-1)[:num],
                   classes=np.rint(np.asarray(outputs["detection_classes"], np.float32).reshape(-1)[:num])
                   .astype(np.int64), seconds=float(seconds), preprocess_seconds=float(preprocess_seconds))


class Runtime(Protocol):
    """The runner protocol (module docstring); a runtime module satisfies it as it is."""

    def find(self, run_dir: Path) -> dict[str, Path]: ...
    def predict(self, artifact: Path, images: Sequence[ValImage], threads: int) -> list[Prediction]: ...
    def quantized(self, label: str) -> bool: ...
    def size(self, artifact: Path) -> int: ...
    def runtime(self) -> str: ...


@dataclass(frozen=True)
class Runner:
    """The runner protocol as a value: how parity finds and runs one kind of artifact."""

    find: Callable[[Path], dict[str, Path]]                                   # run dir -> {label: artifact}
    predict: Callable[[Path, Sequence[ValImage], int], list[Prediction]]      # artifact, images, threads
    quantized: Callable[[str], bool] = lambda label: False                    # judged by AP loss, not 1e-4
    size: Callable[[Path], int] = path_size                                   # bytes of the artifact
    runtime: Callable[[], str] = lambda: ""                                   # e.g. "ai-edge-litert 2.3.0"
