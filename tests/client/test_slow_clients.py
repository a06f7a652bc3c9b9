"""Slow clients against the production shape: nginx (container_scripts/proxy.sh, the proxy image's script and
Debian's nginx) in front of gunicorn. 100 connections trickling headers or a body stay in nginx; a normal
request is still answered. (gunicorn alone, 2 workers x 4 threads: 10 such connections make /healthz time
out, because its threads read requests themselves.) Bounded: 100 connections on loopback, ~10 s."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.client.support import encode, request
from tests.serving.model_factory import REPO_ROOT, free_port, make_image

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="needs Debian's nginx (apt-get install nginx-light), "
                                                      "the proxy image's web server")
PNG = encode(make_image())
ANSWER_TIMEOUT = 3.0  # a locked-out stack never answers; a working one in well under a second


@pytest.fixture(scope="module")
def proxy(gunicorn) -> Iterator[str]:
    # not under pytest's tmp dirs (mode 700): run as root, nginx's workers are "nobody" and write temp files here
    run = Path(tempfile.mkdtemp(prefix="odstack-proxy-"))
    port = free_port()
    env = dict(os.environ, PROXY_LISTEN=f"127.0.0.1:{port}", PROXY_UPSTREAM=gunicorn.base, MAX_UPLOAD_MB="8",
               PROXY_RUN_DIR=str(run), PATH=f"{os.environ.get('PATH', '')}:/usr/sbin")
    with open(run / "proxy.log", "ab") as log:
        process = subprocess.Popen([str(REPO_ROOT / "container_scripts" / "proxy.sh")], env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    base = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, (run / "proxy.log").read_text()
            try:
                if request(base, "GET", "/healthz", timeout=2).status == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline, (run / "proxy.log").read_text()
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(run, ignore_errors=True)


@contextmanager
def trickling(base: str, count: int) -> Iterator[None]:
    """``count`` connections, half trickling header lines, half a declared 1 MB body, one byte each per 0.5 s."""
    host, port = base.rsplit(":", 1)
    sockets = []
    for i in range(count):
        sock = socket.create_connection((host, int(port)), timeout=5)
        if i % 2:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        else:
            sock.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                         b"Content-Length: 1048576\r\n\r\n")
        sockets.append((sock, b"X-Slow: 1\r\n" if i % 2 else b"\0"))
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.5):
            for sock, byte in sockets:
                try:
                    sock.send(byte[:1] if len(byte) == 1 else byte)
                except OSError:
                    pass

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        for sock, _ in sockets:
            sock.close()


def timed(base: str, method: str, path: str, body: bytes | None = None) -> tuple[int, float]:
    start = time.perf_counter()
    answer = request(base, method, path, body, {"Content-Type": "image/png"} if body else None, timeout=ANSWER_TIMEOUT)
    return answer.status, time.perf_counter() - start


def test_100_slow_clients_do_not_lock_out_normal_requests(proxy: str) -> None:
    before = [timed(proxy, "POST", "/v1/detect", PNG)[1] for _ in range(3)]
    with trickling(proxy, 100):
        time.sleep(1.5)  # every slow connection is open and has sent something
        during = [timed(proxy, "GET", "/healthz"), timed(proxy, "POST", "/v1/detect", PNG),
                  timed(proxy, "POST", "/v1/detect", PNG)]
    assert [status for status, _ in during] == [200, 200, 200]
    delay = max(seconds for _, seconds in during[1:]) - sorted(before)[1]
    print(f"slow clients: detect {sorted(before)[1] * 1000:.0f} ms alone, +{delay * 1000:.0f} ms with 100 trickling")


def test_proxy_errors_are_json(proxy: str) -> None:
    too_big = request(proxy, "POST", "/v1/detect", b"\0" * (9 << 20), {"Content-Type": "image/png"})
    assert too_big.status == 413 and too_big.headers["content-type"] == "application/json"
    assert too_big.json()["code"] == "payload_too_large"
    chunked = request(proxy, "POST", "/v1/detect", b"\0" * (9 << 20),
                      {"Content-Type": "image/png", "Transfer-Encoding": "chunked"})
    assert chunked.status == 413 and chunked.json()["code"] == "payload_too_large"
    for headers in ({"X-Pad": "a" * 20_000}, ):
        answer = request(proxy, "GET", "/healthz", None, headers)
        assert answer.status == 400 and answer.headers["content-type"] == "application/json", answer.body
        assert set(answer.json()) == {"code", "message"}
    long_url = request(proxy, "GET", "/healthz?" + "a" * 10_000)
    assert long_url.status in (400, 414) and set(long_url.json()) == {"code", "message"}
    ok = request(proxy, "POST", "/v1/detect", PNG, {"Content-Type": "image/png"})
    assert ok.status == 200 and len(ok.json()["images"][0]["detections"]) == 2
