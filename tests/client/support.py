"""Helpers for the client tests: a gunicorn subprocess, a stdlib HTTP client, multipart encoding, images.

Only the standard library, numpy and Pillow: the tests run in .venv/client (no TensorFlow, no requests).
"""
from __future__ import annotations

import http.client
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.serving.model_factory import REPO_ROOT, free_port


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(base: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
            timeout: float = 30.0) -> Answer:
    """One HTTP request to ``base`` (``127.0.0.1:PORT``); a server closing early still yields its answer.
    With a ``Transfer-Encoding: chunked`` header the body is sent in 1 MB chunks (no Content-Length)."""
    host, port = base.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    headers = dict(headers or {})
    chunked = headers.get("Transfer-Encoding", "").lower() == "chunked"
    if chunked:
        headers.pop("Transfer-Encoding")
        data = body or b""
        body = (data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20))  # type: ignore[assignment]
    try:
        try:
            connection.request(method, path, body=body, headers=headers, encode_chunked=chunked)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (e.g. 413) before reading the whole body; read that answer
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def multipart(files: list[tuple[str, str, bytes, str]], fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """(body, content type) for ``files`` = [(field, filename, data, content_type)] plus text ``fields``."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in (fields or {}).items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, filename, data, ctype in files:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                  f'Content-Type: {ctype}\r\n\r\n'.encode())
        out.write(data)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def encode(array: np.ndarray, fmt: str = "PNG", **save: Any) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format=fmt, **save)
    return out.getvalue()


@dataclass
class Gunicorn:
    """``container_scripts/client.sh`` (gunicorn + the app) as a subprocess on a free 127.0.0.1 port."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "Gunicorn":
        env = dict(os.environ)
        env.update({"BIND": self.base, "WEB_CONCURRENCY": "2", "THREADS": "4", "ACCESS_LOG": "",
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"})
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(self.env)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([str(REPO_ROOT / "container_scripts" / "client.sh")], env=env,
                                            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log()}")
            try:
                if request(self.base, "GET", "/healthz", timeout=2).status == 200 and len(self.workers()) >= 2:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"gunicorn not answering on {self.base}:\n{self.log()}")

    def workers(self) -> set[int]:
        """PIDs of the master's worker processes (from /proc)."""
        assert self.process is not None
        children = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                children.add(int(stat.parent.name))
        return children

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
