"""gunicorn settings for the odstack client, from environment variables (printed at start-up).

    gunicorn -c client/gunicorn_conf.py 'odclient:create_app()'     (container_scripts/client.sh)

WEB_CONCURRENCY workers (processes) x THREADS threads each; every worker opens its own gRPC channel on
first use. The app's own settings (TF_SERVING_ADDR, MODEL_NAME, SERVING_DIR, MAX_UPLOAD_MB, ...) are
read by the app from the same environment: odclient/settings.py lists them all.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gunicorn import util as _gunicorn_util  # noqa: E402
from odclient import settings as _settings  # noqa: E402  (only settings: flask/grpc load in the workers)


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"gunicorn_conf: {name}={raw!r} is not an integer") from None


bind = os.environ.get("BIND", "127.0.0.1:8080")
workers = _int("WEB_CONCURRENCY", 2)
threads = _int("THREADS", 4)
worker_class = os.environ.get("WORKER_CLASS", "gthread")
timeout = _int("TIMEOUT", 30)
graceful_timeout = _int("GRACEFUL_TIMEOUT", 10)
keepalive = _int("KEEPALIVE", 5)
max_requests = _int("MAX_REQUESTS", 0)
max_requests_jitter = _int("MAX_REQUESTS_JITTER", 0)
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
accesslog = os.environ.get("ACCESS_LOG", "-") or None
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
proc_name = "odclient"

# Prometheus: one metrics file per worker in a fresh directory, aggregated by /metrics.
_own_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="odclient-metrics-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def _json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn answers requests it cannot parse (414 URI too long, 431 headers, 400 framing) itself, with an
    HTML page and no hook to change it: this replaces its writer so those answers are JSON like the app's."""
    code = reason.lower().replace(" ", "_").replace("'", "")
    body = json.dumps({"code": code, "message": f"{reason}: {mesg}" if mesg else reason}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin1")
    _gunicorn_util.write_nonblock(sock, head + body)


_gunicorn_util.write_error = _json_error  # read at call time by gunicorn's workers (workers/base.py)


def on_starting(server: Any) -> None:
    for entry in os.listdir(_metrics_dir):  # stale files from an earlier run would count twice
        path = os.path.join(_metrics_dir, entry)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    resolved = {"bind": bind, "workers": workers, "threads": threads, "worker_class": worker_class,
                "timeout": timeout, "graceful_timeout": graceful_timeout, "keepalive": keepalive,
                "max_requests": max_requests, "loglevel": loglevel, "accesslog": accesslog,
                "prometheus_multiproc_dir": _metrics_dir, "app": _settings.from_env()}
    print("odclient: gunicorn config " + json.dumps(resolved, sort_keys=True), file=sys.stderr, flush=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _own_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
