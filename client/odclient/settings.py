"""The client's settings: environment variables with defaults, in one place.

``create_app(test_config)`` starts from :func:`from_env` and lets ``test_config`` override any key;
``client/gunicorn_conf.py`` prints the resolved values at start-up.
"""
from __future__ import annotations

import os
from typing import Any, Callable

# name: (type, default, description). Keys are the Flask config keys and the environment variables.
SETTINGS: dict[str, tuple[Callable[[str], Any], Any, str]] = {
    "TF_SERVING_ADDR": (str, "127.0.0.1:8500", "host:port of TF Serving's gRPC API"),
    "MODEL_NAME": (str, "detector", "default model (the `model` parameter picks another)"),
    "SIGNATURE_NAME": (str, "serving_default", "signature called by Predict"),
    "BYTES_SIGNATURE_NAME": (str, "image_bytes", "signature taking encoded JPEG/PNG bytes, used when the model "
                             "has it for uploads needing no client-side decode ('': never)"),
    "SERVING_DIR": (str, "output/serving", "TF Serving's model base dir, mounted read-only (label maps)"),
    "MAX_UPLOAD_MB": (float, 16.0, "request body cap (413 above it)"),
    "MAX_IMAGE_PIXELS": (int, 40_000_000, "decoded pixels cap per image (decompression-bomb guard, 413)"),
    "MAX_IMAGES": (int, 16, "images per request"),
    "MAX_INPUT_SIDE": (int, 1024, "downscale images whose longer side exceeds this before Predict (0: never)"),
    "MAX_REQUEST_PIXELS": (int, 100_000_000, "decoded pixels cap per request, all images (CPU bound; 413)"),
    "DECODE_SLOTS": (int, 1, "images decoded at once per worker (WEB_CONCURRENCY x this ~ cores)"),
    "BUSY_TIMEOUT": (float, 5.0, "seconds a request waits for a decode slot before 503 + Retry-After"),
    "MIN_INPUT_SIDE": (int, 32, "stretch a shorter side of the model input to this (thin images; 0: never)"),
    "DEFAULT_THRESHOLD": (float, 0.5, "score threshold when the request gives none"),
    "DEFAULT_MAX_DETECTIONS": (int, 100, "detections per image when the request gives no max_detections"),
    "PREDICT_TIMEOUT": (float, 10.0, "gRPC deadline of Predict, seconds (504 when exceeded)"),
    "STATUS_TIMEOUT": (float, 2.0, "gRPC deadline of GetModelStatus/GetModelMetadata, seconds"),
    "RETRY_AFTER": (int, 5, "Retry-After seconds on 503"),
    "JPEG_QUALITY": (int, 90, "quality of annotated JPEG answers"),
    "JOBS_URL": (str, "http://127.0.0.1:9090/jobs", "the labelling service's training-job list, linked from the web "
                 "page as /jobs ('': no link)"),
}


def from_env(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Every setting from ``environ`` (default ``os.environ``), typed; bad values fail loudly at start."""
    environ = dict(os.environ) if environ is None else environ
    resolved: dict[str, Any] = {}
    for key, (kind, default, _doc) in SETTINGS.items():
        raw = environ.get(key, "").strip()
        try:
            resolved[key] = kind(raw) if raw else default
        except ValueError:
            raise SystemExit(f"odclient: {key}={raw!r} is not a valid {kind.__name__}") from None
    return resolved
