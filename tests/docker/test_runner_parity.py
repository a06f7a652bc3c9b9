"""RUNNER=docker and RUNNER=local run the same command (python -m odstack MODE) on the same requirements: their data
outputs must be identical, byte for byte. Needs a Docker engine and the odapi image (`make images`);
`make test-docker` (run by .ci/run after building the images) sets ODSTACK_DOCKER_TESTS=1."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("ODSTACK_ODAPI_IMAGE", "odstack/odapi:dev")
TIMING_KEYS = ("seconds", "images_per_second")


def _docker_ready() -> str | None:
    if os.environ.get("ODSTACK_DOCKER_TESTS") != "1":
        return "docker tests run with `make test-docker` (ODSTACK_DOCKER_TESTS=1)"
    if shutil.which("docker") is None:
        return "no docker client"
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode != 0:
        return f"image {IMAGE} not built (make images RUNNER=docker)"
    return None


pytestmark = pytest.mark.skipif(_docker_ready() is not None, reason=str(_docker_ready()))


def _make_data(runner: str, out: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "data", f"RUNNER={runner}", "SRC=tests/fixtures/raccoon", "FORMAT=pascal_voc",
                           f"OUT={out}", *extra], cwd=REPO, capture_output=True, text=True, timeout=600)


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_docker_and_local_outputs_are_identical():
    outs = {runner: REPO / "output" / f"ci-parity-{runner}" for runner in ("docker", "local")}
    try:
        for runner, out in outs.items():
            shutil.rmtree(out, ignore_errors=True)
            result = _make_data(runner, str(out.relative_to(REPO)), "SHARDS=2")
            assert result.returncode == 0, result.stdout + result.stderr
        docker, local = (_files(outs["docker"]), _files(outs["local"]))
        assert sorted(docker) == sorted(local)
        assert any(name.endswith(".record") for name in docker)
        for name in docker:
            if name == "report.json":
                reports = [json.loads(files[name]) for files in (docker, local)]
                for report in reports:
                    for key in TIMING_KEYS:
                        report.pop(key)
                    report["settings"].pop("out")  # the two runs write to different directories
                assert reports[0] == reports[1]
            else:
                assert docker[name] == local[name], name
        # the container wrote as the calling user, not root
        assert all(p.stat().st_uid == os.getuid() for p in outs["docker"].rglob("*"))
    finally:
        for out in outs.values():
            shutil.rmtree(out, ignore_errors=True)


def test_docker_runner_reports_user_errors_cleanly():
    result = subprocess.run(["make", "data", "RUNNER=docker", "SRC=input/does-not-exist", "OUT=output/ci-nothing"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "dataset not found" in result.stderr and "Traceback" not in result.stderr
