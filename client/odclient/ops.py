"""Operations and docs: ``/healthz``, ``/readyz``, ``/metrics``, ``/openapi.json``, the web page ``/`` and its
link to the training jobs ``/jobs``."""
from __future__ import annotations

import json
from importlib import resources
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, redirect

from odclient import metrics, tfserving
from odclient.errors import error_response

bp = Blueprint("ops", __name__)


@bp.get("/")
def index() -> Response:
    return current_app.send_static_file("index.html")


@bp.get("/jobs")
def jobs() -> Response:
    """The training-job list of the labelling service (make label / make labelling-service), when it has one."""
    url = current_app.config["JOBS_URL"]
    if not url:
        return error_response(404, "no_job_list", "no labelling service is configured (JOBS_URL is empty)")
    return redirect(url, code=302)


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers (no upstream call): for liveness probes."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when TF Serving's ModelService reports a version of the default model AVAILABLE."""
    cfg = current_app.config
    model, retry = cfg["MODEL_NAME"], cfg["RETRY_AFTER"]
    try:
        versions = tfserving.client().model_status(model)
    except tfserving.NotFound:
        return error_response(503, "model_not_loaded", f"model {model!r} is not loaded", retry)
    except tfserving.UpstreamError as error:
        return error_response(503, error.code, str(error), retry)
    available = sorted(v.version for v in versions if v.state == tfserving.AVAILABLE)
    if not available:
        states = ", ".join(f"{v.version}:{v.state}" for v in versions) or "none"
        return error_response(503, "model_not_loaded", f"model {model!r} has no AVAILABLE version ({states})", retry)
    return jsonify(status="ready", model=model, version=available[-1])


@bp.get("/metrics")
def prometheus() -> Response:
    return metrics.exposition()


_OPENAPI: dict[str, Any] = {}


@bp.get("/openapi.json")
def openapi() -> Response:
    if not _OPENAPI:
        _OPENAPI.update(json.loads(resources.files("odclient").joinpath("openapi.json").read_text("utf-8")))
    return jsonify(_OPENAPI)
