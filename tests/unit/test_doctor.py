"""`make doctor`: the real checks on this machine (no stand-ins), compared with what the test finds itself."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _doctor(cwd: Path, *args: str, python: str = sys.executable, module: str = "odstack") -> subprocess.CompletedProcess:
    command = [python, "-m", module, *(["doctor"] if module == "odstack" else []), *args]
    return subprocess.run(command, cwd=cwd, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                          text=True, timeout=180)


def test_one_screen_and_json_that_match_this_machine(tmp_path):
    result = _doctor(tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "odstack doctor" and len(lines) <= 24  # one screen
    for name in ("tensorflow", "GPUs (TF)", "nvidia-smi", "docker", "compose", "tfvision", "odapi", "caches",
                 "disk free", "trains on"):
        assert any(line.strip().startswith(name) for line in lines), name
    report = json.loads((tmp_path / "output" / "doctor.json").read_text())
    tf = report["tensorflow"]
    assert tf["version"] == importlib.metadata.version("tensorflow")
    assert tf["built_for_cuda"] and tf["built_for_cudnn"]  # PyPI TensorFlow is a CUDA build
    assert report["nvidia_smi"]["found"] == (shutil.which("nvidia-smi") is not None)
    assert report["docker"]["found"] == (shutil.which("docker") is not None)
    assert report["engines"]["odapi"]["installed"] == (importlib.util.find_spec("object_detection") is not None)
    assert report["engines"]["tfvision"]["tf-models-official"] == importlib.metadata.version("tf-models-official")
    assert all(place["free_bytes"] > 0 for place in report["disk"].values())
    if not tf["gpus"]:  # every machine of ours: the cause is named, and training says CPU
        assert tf["why_no_gpu"] and report["trains_on"].startswith("CPU")
        assert tf["why_no_gpu"] in result.stdout


def test_json_to_stdout(tmp_path):
    result = _doctor(tmp_path, "json=true", "out=null")
    assert json.loads(result.stdout)["tensorflow"]["installed"] is True
    assert not (tmp_path / "output").exists()


def test_host_side_runs_without_tensorflow(tmp_path):
    """The system python3 of a Docker host has no TensorFlow: the host part still reports."""
    python = shutil.which("python3")
    probe = subprocess.run([python, "-c", "import tensorflow"], capture_output=True)
    result = _doctor(tmp_path, python=python, module="odstack.doctor")
    assert result.returncode == 0, result.stderr
    assert "docker" in result.stdout
    if probe.returncode:
        assert "tensorflow  not installed in" in result.stdout
