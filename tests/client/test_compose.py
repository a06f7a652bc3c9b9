"""The CI compose stack end to end: docker-compose.yml + docker-compose.ci.yml (host networking, the
odstack/modelserver image standing in for tensorflow/serving), a fixture image POSTed through the client's
127.0.0.1 port, detections checked, stack torn down.

Only with ODSTACK_DOCKER_TESTS=1, a Docker engine and the images built (make image-client image-modelserver
image-proxy BASE_IMAGE=odstack/base:bookworm). Ports are free ones; the serving directory is a temporary one
(ODSTACK_SERVING_DIR), so output/serving is not touched and nothing else on the host is disturbed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from tests.client.support import encode, multipart, request
from tests.serving.model_factory import REPO_ROOT, add_version, expected_detections, free_port, make_image

pytestmark = pytest.mark.skipif(os.environ.get("ODSTACK_DOCKER_TESTS") != "1",
                                reason="compose stack test: set ODSTACK_DOCKER_TESTS=1 (needs Docker + built images)")
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
IMAGES = ("odstack/client:dev", "odstack/modelserver:dev", "odstack/proxy:dev")


def compose(env: dict[str, str], project: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = ["docker-compose", "-p", project, "-f", "docker-compose.yml", "-f", "docker-compose.ci.yml", *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=check)


@pytest.fixture()
def stack(detector_saved_model: Path) -> Iterator[str]:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    if subprocess.run([DOCKER, "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine (bash scripts/docker/start_dockerd.sh)")
    missing = [i for i in IMAGES if subprocess.run([DOCKER, "image", "inspect", i], capture_output=True).returncode]
    if missing:
        pytest.skip(f"images not built: {', '.join(missing)} (make image-client image-modelserver image-proxy)")

    # world-readable copy: the containers run as other uids than the test
    root = Path(tempfile.mkdtemp(prefix="odstack-compose-"))
    add_version(root / "serving" / "detector", 1, detector_saved_model)
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    client_port = free_port()
    env = dict(os.environ, ODSTACK_SERVING_DIR=str(root / "serving"), CLIENT_PORT=str(client_port),
               CLIENT_UPSTREAM_PORT=str(free_port()),
               SERVING_GRPC_PORT=str(free_port()), SERVING_REST_PORT=str(free_port()), MODEL_NAME="detector",
               TAG="dev", IMAGE_PREFIX="odstack")
    project = f"odstack-test-{uuid.uuid4().hex[:8]}"
    try:
        up = compose(env, project, "up", "-d", "--no-build", check=False)
        assert up.returncode == 0, up.stderr[-3000:]
        base = f"127.0.0.1:{client_port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                if request(base, "GET", "/readyz", timeout=5).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                logs = compose(env, project, "logs", "--tail", "60", check=False).stdout
                pytest.fail(f"stack not ready within 180 s:\n{logs[-5000:]}")
            time.sleep(1)
        yield base
    finally:
        compose(env, project, "down", "-v", "--remove-orphans", "-t", "5", check=False)
        shutil.rmtree(root, ignore_errors=True)


def test_compose_stack_detects_through_published_port(stack: str) -> None:
    image = make_image()
    body, ctype = multipart([("image", "fixture.png", encode(image), "image/png")])
    answer = request(stack, "POST", "/v1/detect?threshold=0", body, {"Content-Type": ctype})
    assert answer.status == 200, answer.body[:500]
    result = answer.json()
    assert result["model"]["name"] == "detector" and result["model"]["version"] == 1
    got = [(d["label"], round(d["score"], 3)) for d in result["images"][0]["detections"]]
    assert got == [(d["label"], round(d["score"], 3)) for d in expected_detections(image)]
    assert request(stack, "GET", "/v1/models").json()["models"][0]["labels"][0] == {"id": 1, "name": "red"}
    assert request(stack, "GET", "/").status == 200
    assert "odclient_http_requests_total" in request(stack, "GET", "/metrics").body.decode()
