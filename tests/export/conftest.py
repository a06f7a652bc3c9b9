"""One real detector for the export tests: synthetic shapes -> `make data` converter -> Model Garden
RetinaNet trained from scratch for a few hundred steps (~40 s on 2 cores, AP50 ~0.75 at 96 px, so there
are real detections to compare) -> `make export` -> `make tflite QUANT=float,int8` (which ends in
`make parity`), then parity once more at a lower score threshold (``report``): a model this young scores
its right answers around 0.1-0.4 (focal loss), so at the default 0.3 the comparison could be empty.
Each stage runs once per session; the tests read what it left behind.

Nothing here is a hand-made graph standing in for a detector: every artifact comes from the same code
path the Makefile targets run.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from odstack.data.convert import DataSettings, convert
from odstack.data.synthetic import make_shapes
from odstack.train.engines import tfvision
from odstack.train.run import DatasetInfo, RunDir, TrainSettings

STEPS = 300
IMAGE_SIZE = 96
IMAGES = 120
CONVERTED_PARITY = "parity.after-convert.json"


@dataclass
class Trained:
    run: RunDir
    data: DatasetInfo
    seconds: float


@dataclass
class Exported:
    run: RunDir
    serving_dir: Path
    result: object  # odstack.export.saved_model.ExportResult
    seconds: float


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    root = tmp_path_factory.mktemp("export-run")
    src = make_shapes(root / "shapes", images=IMAGES, size=IMAGE_SIZE, seed=0)
    convert(DataSettings(src=src, out=root / "records", val_fraction=0.2, seed=42))
    data = DatasetInfo.load(root / "records")
    run = RunDir(root / "output" / "tiny")
    settings = TrainSettings(engine="tfvision", steps=STEPS, image_size=IMAGE_SIZE, batch=8, from_scratch=True,
                             checkpoint_every=STEPS, run="tiny", data=root / "records")
    started = time.monotonic()
    tfvision.train(run, settings, data)
    return Trained(run, data, time.monotonic() - started)


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory) -> Exported:
    from odstack.export.saved_model import ExportSettings, export

    serving = tmp_path_factory.mktemp("serving")
    started = time.monotonic()
    result = export(ExportSettings(run=str(trained.run.path), serving_dir=serving))
    return Exported(trained.run, serving, result, time.monotonic() - started)


@pytest.fixture(scope="session")
def converted(exported) -> dict[str, Path]:
    from odstack.export.tflite import TFLiteSettings, convert as convert_tflite

    paths = convert_tflite(TFLiteSettings(run=str(exported.run.path), quant="float,int8", calibration_images=24))
    # what the conversion's own parity run wrote (the ``report`` fixture rewrites parity.json later)
    shutil.copy(exported.run.path / "parity.json", exported.run.path / CONVERTED_PARITY)
    return paths


SCORE_THRESHOLD = 0.1


@pytest.fixture(scope="session")
def report(exported, converted) -> dict:
    from odstack.export import parity

    return parity.run_parity(parity.ParitySettings(run=str(exported.run.path), score_threshold=SCORE_THRESHOLD))
