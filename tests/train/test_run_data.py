"""A run remembers its data: eval, resume, tflite and parity use the dataset recorded in run.json unless
data= is given, and say which; a recorded dataset that is gone gets a hint that names run.json and DATA=.

The eval cases run the real CLI in a scratch working directory with no input/tf_records (where the old
default sent every command); they stop at "no checkpoint yet", before any TensorFlow work."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from odstack.data.convert import DataSettings, convert
from odstack.data.synthetic import make_shapes
from odstack.errors import DatasetError
from odstack.train.run import RunDir, resolve_data

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rundata")
    src = make_shapes(root / "shapes", images=10, size=64, seed=0)
    convert(DataSettings(src=src, out=root / "records", val_fraction=0.3, seed=1))
    return root / "records"


def _run_with_data(cwd: Path, data: Path, name: str = "demo") -> RunDir:
    run = RunDir(cwd / "output" / name)
    run.path.mkdir(parents=True)
    run.run_json.write_text(json.dumps({"engine": "tfvision", "model": "retinanet_mobilenetv2",
                                        "labels": {"circle": 1}, "data": str(data)}))
    return run


def _odstack(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "odstack", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_make_eval_uses_the_runs_dataset(records, tmp_path):
    _run_with_data(tmp_path, records)
    result = _odstack(tmp_path, "eval", "run=demo")
    assert "input/tf_records" not in result.stderr, result.stderr  # the old default, which does not exist here
    assert f"dataset {records} (recorded in output/demo/run.json)" in result.stderr
    assert "no checkpoint yet" in result.stderr and result.returncode == 2


def test_data_given_wins_and_is_said(records, tmp_path):
    _run_with_data(tmp_path, tmp_path / "elsewhere")
    result = _odstack(tmp_path, "eval", "run=demo", f"data={records}")
    assert f"dataset {records} (data=)" in result.stderr and "no checkpoint yet" in result.stderr


def test_a_recorded_dataset_that_is_gone_names_run_json_and_data(tmp_path):
    _run_with_data(tmp_path, tmp_path / "moved-away")
    result = _odstack(tmp_path, "eval", "run=demo")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "moved-away" in result.stderr and "run.json" in result.stderr and "DATA=" in result.stderr


def test_resume_uses_the_recorded_dataset_and_a_new_run_the_default(records, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = _run_with_data(tmp_path, records)
    assert resolve_data("auto", run, "train") == records
    fresh = RunDir(tmp_path / "output" / "fresh")
    with pytest.raises(DatasetError, match="input/tf_records"):  # the default of `make data`'s OUT
        resolve_data("auto", fresh, "train")


def test_val_images_for_tflite_and_parity_come_from_the_runs_dataset(records, tmp_path, caplog):
    from odstack.export.parity import load_val_images

    run = _run_with_data(tmp_path, records)
    caplog.set_level("INFO", logger="odstack")
    import logging

    logging.getLogger("odstack").propagate = True
    images = load_val_images(run, "auto")
    assert images and any(f"dataset {records} (recorded in" in r.getMessage() for r in caplog.records)
