"""Prometheus metrics: request count/latency by route and status, upstream latency and errors.

Under gunicorn every worker writes to ``PROMETHEUS_MULTIPROC_DIR`` (set up by client/gunicorn_conf.py)
and ``/metrics`` aggregates all workers; without that variable the process's own registry is served.
"""
from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram,
                               generate_latest, multiprocess)

REQUESTS = Counter("odclient_http_requests_total", "HTTP requests", ["route", "method", "status"])
REQUEST_LATENCY = Histogram("odclient_http_request_duration_seconds", "HTTP request latency", ["route", "method"],
                            buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
UPSTREAM_LATENCY = Histogram("odclient_upstream_duration_seconds", "gRPC call latency to the model server", ["rpc"],
                             buckets=(.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
UPSTREAM_ERRORS = Counter("odclient_upstream_errors_total", "failed gRPC calls by status code", ["rpc", "grpc_code"])
ERRORS = Counter("odclient_errors_total", "error answers by API error code", ["code"])
IMAGES = Counter("odclient_images_total", "images run through the detector")


def _route() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else "<unmatched>"


def _before() -> None:
    g.odclient_start = time.perf_counter()


def _after(response: Response) -> Response:
    start = g.pop("odclient_start", None)
    route = _route()
    if start is not None:
        REQUEST_LATENCY.labels(route, request.method).observe(time.perf_counter() - start)
    REQUESTS.labels(route, request.method, str(response.status_code)).inc()
    return response


def exposition() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    app.before_request(_before)
    app.after_request(_after)
