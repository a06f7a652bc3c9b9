"""The GPU variant on paper (no GPU here or in CI): its requirements keep every pin of the CPU ones, make
wires it into venvs/images/stages, and the GPU host check refuses a host without a driver before
building anything. Whether it resolves on PyPI is `make check-gpu-requirements` (CI, needs the network)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REQ = REPO / "dockerfiles" / "requirements"


def _make(*args: str) -> str:
    result = subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_gpu_requirements_are_the_cpu_pins_plus_and_cuda():
    gpu = (REQ / "odapi-gpu.txt").read_text()
    cpu_pin = re.search(r"^tensorflow==(\S+)$", (REQ / "odapi.txt").read_text(), re.M).group(1)
    assert re.search(r"^-r odapi\.txt$", gpu, re.M)
    assert re.search(rf"^tensorflow\[and-cuda\]=={re.escape(cpu_pin)}$", gpu, re.M)


def test_make_wires_the_gpu_variant():
    venvs = _make("venvs", "GPU=1", "RUNNER=local")
    assert "pip install -q --disable-pip-version-check -r dockerfiles/requirements/odapi-gpu.txt" in venvs
    assert "odapi-gpu.txt" not in _make("venvs", "RUNNER=local")
    image = _make("image-odapi", "GPU=1", "RUNNER=local")
    assert "--build-arg REQUIREMENTS=odapi-gpu.txt" in image and "-t odstack/odapi:dev-gpu" in image
    assert "REQUIREMENTS" not in _make("image-toco", "GPU=1", "RUNNER=local")  # only the training image
    train = _make("train", "GPU=1", "RUNNER=docker", "STEPS=5")
    assert "odstack/odapi:dev-gpu python -m odstack train" in train
    dockerfile = (REPO / "dockerfiles" / "odapi.dockerfile").read_text()
    assert 'pip install --no-cache-dir -r "/opt/odstack/requirements/${REQUIREMENTS}"' in dockerfile


def test_check_gpu_requirements_target_runs_the_dry_run_script():
    text = _make("check-gpu-requirements", "RUNNER=local")
    assert "scripts/gpu/check_requirements.sh" in text
    script = (REPO / "scripts" / "gpu" / "check_requirements.sh").read_text()
    assert "--dry-run" in script and "--report" in script


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU host: the check would really run")
def test_gpu_host_check_refuses_a_host_without_driver_before_building_anything():
    result = subprocess.run(["bash", "scripts/gpu/gpu_check.sh"], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert "no NVIDIA driver on this host (nvidia-smi not found)" in result.stderr
    assert "== 1." not in result.stdout  # nothing was built
