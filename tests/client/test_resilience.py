"""The client under gunicorn while the model server dies, restarts and gets new model versions.

Each test starts its own model server on its own copy of the serving directory (tests/serving's
session server is never disturbed) and its own gunicorn pointing at it.
"""
from __future__ import annotations

import shutil
import threading
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.client.support import Answer, Gunicorn, encode, request
from tests.serving.conftest import MODEL_NAME
from tests.serving.model_factory import ModelServerProcess, add_version, free_port, make_image

PNG = encode(make_image())
HEADERS = {"Content-Type": "image/png"}


def detect(server: Gunicorn) -> Answer:
    return request(server.base, "POST", "/v1/detect", PNG, HEADERS, timeout=20)


def wait_for(condition: Callable[[], bool], timeout: float, step: float = 0.1) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(step)
    return time.monotonic() - start


@pytest.fixture()
def stack(tmp_path: Path, detector_saved_model: Path) -> Iterator[tuple[Gunicorn, Callable[..., ModelServerProcess], Path]]:
    """(gunicorn, start_model_server(*extra_args), model base path) with version 1 in place."""
    base = tmp_path / "serving" / MODEL_NAME
    add_version(base, 1, detector_saved_model)
    port, servers = free_port(), []

    def start_model_server(*extra: str) -> ModelServerProcess:
        server = ModelServerProcess(["--model_name", MODEL_NAME, "--model_base_path", str(base),
                                     "--file_system_poll_wait_seconds", "0.5", *extra],
                                    port=port, log_path=tmp_path / "modelserver.log").start()
        servers.append(server)
        return server

    gunicorn = Gunicorn({"TF_SERVING_ADDR": f"127.0.0.1:{port}", "SERVING_DIR": str(base.parent),
                         "MODEL_NAME": MODEL_NAME}, tmp_path / "gunicorn.log").start()
    try:
        yield gunicorn, start_model_server, base
    finally:
        gunicorn.stop()
        for server in servers:
            server.stop(signal.SIGKILL)


def assert_unavailable(answer: Answer) -> None:
    assert answer.status == 503, answer.body
    assert answer.headers["retry-after"] == "5"
    assert answer.json()["code"] in {"model_server_unavailable", "model_not_loaded"}


def test_killed_mid_load_gives_503_then_recovers_within_5s_of_restart(stack) -> None:
    gunicorn, start_model_server, _ = stack
    workers = gunicorn.workers()
    assert_unavailable(detect(gunicorn))  # nothing listening yet

    server = start_model_server("--load_delay_seconds", "30")  # the load hangs in LOADING
    wait_for(lambda: request(gunicorn.base, "GET", "/readyz").json().get("code") == "model_not_loaded", 60, 0.2)
    assert_unavailable(detect(gunicorn))  # mid-load: 503, not 500, not a hang
    server.stop(signal.SIGKILL)  # crash while loading
    for _ in range(3):
        assert_unavailable(detect(gunicorn))
    assert request(gunicorn.base, "GET", "/readyz").status == 503

    restarted = time.monotonic()
    server = start_model_server()
    server.wait_available(MODEL_NAME, timeout=60)
    ready = time.monotonic()
    recovery = wait_for(lambda: detect(gunicorn).status == 200, timeout=5.0, step=0.05)
    print(f"\nmodel server restart -> AVAILABLE {ready - restarted:.2f} s; AVAILABLE -> client 200 {recovery:.2f} s")
    # every worker's channel reconnects (backoff capped at 1 s): readiness also within the 5 s window
    wait_for(lambda: request(gunicorn.base, "GET", "/readyz").status == 200, timeout=5.0, step=0.05)
    assert gunicorn.workers() == workers  # no worker died or was recycled on the way


def test_new_version_is_served_without_restarting_anything(stack, tmp_path: Path, detector_saved_model: Path) -> None:
    gunicorn, start_model_server, base = stack
    start_model_server().wait_available(MODEL_NAME, timeout=60)
    wait_for(lambda: detect(gunicorn).status == 200, 5)
    first = detect(gunicorn).json()
    assert first["model"]["version"] == 1
    assert [d["label"] for d in first["images"][0]["detections"]] == ["red", "green"]

    # version 2: same graph, its own label map (so the labels prove which version answered)
    v2 = tmp_path / "v2"
    shutil.copytree(detector_saved_model, v2)
    label_map = v2 / "assets.extra" / "label_map.pbtxt"
    label_map.write_text(label_map.read_text().replace('"red"', '"rouge"').replace('"green"', '"vert"'))
    workers = gunicorn.workers()
    add_version(base, 2, v2)

    took = wait_for(lambda: detect(gunicorn).json().get("model", {}).get("version") == 2, timeout=30, step=0.2)
    second = detect(gunicorn).json()
    assert [d["label"] for d in second["images"][0]["detections"]] == ["rouge", "vert"]
    models = request(gunicorn.base, "GET", "/v1/models").json()["models"][0]
    assert models["serving_version"] == 2 and models["labels"][0] == {"id": 1, "name": "rouge"}
    assert request(gunicorn.base, "GET", "/readyz").json()["version"] == 2
    assert gunicorn.workers() == workers
    print(f"\nversion 2 served {took:.2f} s after it was dropped in")


def test_version_switch_under_load_gives_no_5xx(stack, detector_saved_model: Path) -> None:
    """8 clients post images while version 2 is dropped in and loads (held 2 s in LOADING, as a real load
    takes time): version 1 serves until version 2 is AVAILABLE (warm-up, if any, replayed before that), then
    version 2; no answer is a 5xx (504s were the symptom). Bounded: 8 threads, at most ~30 s."""
    gunicorn, start_model_server, base = stack
    server = start_model_server("--load_delay_seconds", "2")
    server.wait_available(MODEL_NAME, timeout=60)
    wait_for(lambda: detect(gunicorn).status == 200, 5)
    answers: list[tuple[float, int, int | None]] = []  # (time, status, version)
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            answer = detect(gunicorn)
            version = answer.json().get("model", {}).get("version") if answer.status == 200 else None
            answers.append((time.monotonic(), answer.status, version))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        add_version(base, 2, detector_saved_model)
        server.wait_available(MODEL_NAME, timeout=30, version=2)
        available = time.monotonic()
        wait_for(lambda: any(v == 2 for _, _, v in answers), timeout=10, step=0.05)
        time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    statuses = Counter(status for _, status, _ in answers)
    assert set(statuses) == {200}, statuses
    first_v2 = min(t for t, _, v in answers if v == 2)
    assert {v for t, _, v in answers if t > first_v2 + 1.0} == {2}  # switched, and stays switched
    print(f"\nswitch under c=8: {len(answers)} answers {dict(statuses)}; first v2 200 "
          f"{first_v2 - available:+.2f} s after AVAILABLE")
