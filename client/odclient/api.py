"""The REST API: ``POST /v1/detect`` and ``GET /v1/models`` (documented in openapi.json)."""
from __future__ import annotations

import base64
import binascii
import logging
import re
import time
from contextlib import contextmanager
from typing import Any, Iterator

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import BadRequest as WerkzeugBadRequest

from odclient import imaging, metrics, tfserving
from odclient.errors import ApiError, bad_request
from odclient.labels import LabelMaps, model_threshold

bp = Blueprint("api", __name__, url_prefix="/v1")

MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MAX_DETECTIONS_CAP = 1000
LOG = logging.getLogger("odclient")


def _param(name: str, json_body: dict[str, Any]) -> Any:
    """A parameter from the query string, else the multipart form, else the JSON body."""
    if name in request.args:
        return request.args[name]
    if request.mimetype == "multipart/form-data" and name in request.form:
        return request.form[name]
    return json_body.get(name)


def _number(name: str, raw: Any, kind: type, low: float, high: float, default: Any) -> Any:
    if raw is None or raw == "":
        return default
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = kind(raw)
        if kind is int and isinstance(raw, float) and raw != value:
            raise ValueError
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(Infinity), int(1e400)
        raise bad_request(f"{name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}") from None
    if not low <= value <= high:  # also rejects NaN
        raise bad_request(f"{name} must be between {low:g} and {high:g}, got {raw!r}")
    return value


def _b64(value: Any, where: str) -> bytes:
    if isinstance(value, dict):
        value = value.get("b64", value.get("data"))
    if not isinstance(value, str):
        raise bad_request(f"{where}: expected a base64 string (or {{\"b64\": ...}})", "invalid_image_field")
    if value.startswith("data:") and "," in value:  # data URL
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{where}: not valid base64", "invalid_base64") from None


def _uploads(max_images: int) -> tuple[list[tuple[str, bytes]], dict[str, Any]]:
    """``[(name, bytes)]`` and the JSON body (``{}`` if none), from any of the three request shapes."""
    mimetype = request.mimetype
    uploads: list[tuple[str, bytes]] = []
    body: dict[str, Any] = {}
    if mimetype == "multipart/form-data":
        files = [f for key in request.files for f in request.files.getlist(key)]
        if len(files) > max_images:
            raise bad_request(f"{len(files)} files; at most MAX_IMAGES={max_images} per request", "too_many_images")
        uploads = [(f.filename or f"file{i}", f.read()) for i, f in enumerate(files)]
        if not uploads:
            raise bad_request("multipart request without a file part (send the image as a file field, e.g. image=@x.jpg)",
                              "missing_image")
    elif request.is_json:
        try:
            parsed = request.get_json(force=True, silent=False)
        except WerkzeugBadRequest:
            raise bad_request("request body is not valid JSON", "invalid_json") from None
        except RecursionError:  # Python's json parser recurses once per nesting level
            raise bad_request("request body is JSON nested too deeply", "invalid_json") from None
        if not isinstance(parsed, dict):
            raise bad_request("JSON body must be an object with \"image\" or \"images\"", "invalid_json")
        body = parsed
        if "images" in body:
            items = body["images"]
            if not isinstance(items, list) or not items:
                raise bad_request("\"images\" must be a non-empty list", "invalid_image_field")
        elif "image" in body:
            items = [body["image"]]
        else:
            raise bad_request("JSON body needs \"image\" (base64) or \"images\" (list of base64)", "missing_image")
        if len(items) > max_images:
            raise bad_request(f"{len(items)} images; at most MAX_IMAGES={max_images} per request", "too_many_images")
        uploads = [(f"images[{i}]", _b64(item, f"images[{i}]")) for i, item in enumerate(items)]
    elif mimetype.startswith("image/") or mimetype == "application/octet-stream":
        uploads = [("body", request.get_data(cache=False))]
    elif not mimetype:
        raise ApiError(415, "unsupported_media_type",
                       "missing Content-Type: send multipart/form-data, application/json or an image/* body")
    else:
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type {mimetype} not accepted: use multipart/form-data, application/json or image/*")
    return uploads, body


def _labels() -> LabelMaps:
    return current_app.extensions["odclient.labels"]  # type: ignore[no-any-return]


def _upstream(error: tfserving.UpstreamError, model: str, version: int | None) -> ApiError:
    """The API answer for a model-server failure. The default model not found means: not loaded (yet)."""
    retry = current_app.config["RETRY_AFTER"]
    if isinstance(error, tfserving.BadRequest):  # TF's message names graph nodes: log it, answer plainly
        LOG.warning("model %r refused the input: %s", model, error)
        return ApiError(422, error.code, f"model {model!r} could not process the input "
                                         "(the client's log has the model server's message)")
    if isinstance(error, tfserving.NotFound):
        if model == current_app.config["MODEL_NAME"] and version is None:
            return ApiError(503, "model_not_loaded", f"model {model!r} is not loaded yet ({error})", retry)
        what = f"model {model!r}" + (f" version {version}" if version is not None else "")
        return ApiError(404, "model_not_found", f"{what} is not served ({error})")
    return ApiError(error.status, error.code, str(error), retry if error.status == 503 else None)


def _predict_encoded(serving: tfserving.TFServingClient, name: str, data: bytes, model: str, version: int | None,
                     fmt: str) -> tuple[tfserving.Detections, tuple[int, int]] | None:
    """The upload sent as it is to the model's encoded-image signature (BYTES_SIGNATURE_NAME), when it needs
    no decoding here (imaging.forwardable) and the model has that signature: (detections, (width, height)).
    None: decode here (also when the model server cannot decode what Pillow can)."""
    cfg = current_app.config
    signature = cfg["BYTES_SIGNATURE_NAME"]
    if not signature or fmt != "json":
        return None
    size = imaging.forwardable(data, name, cfg["MAX_IMAGE_PIXELS"], cfg["MAX_INPUT_SIDE"], cfg["MIN_INPUT_SIDE"])
    if size is None:
        return None
    try:
        if not serving.has_signature(model, signature):
            return None
        return serving.predict_encoded(data, model, version, signature), size
    except tfserving.BadRequest as error:  # e.g. a PNG TensorFlow's decoder refuses: Pillow's turn
        LOG.info("%s: %s could not decode it (%s); decoding in the client", name, signature, error)
        return None
    except tfserving.UpstreamError as error:
        if error.grpc_code == "FAILED_PRECONDITION":  # a version without the signature took over
            serving.forget_signature(model, signature)
            return None
        raise _upstream(error, model, version) from None


@contextmanager
def _decode_slot() -> Iterator[None]:
    """One of this worker's DECODE_SLOTS for the CPU-heavy part (decode, resize). When none frees up within
    BUSY_TIMEOUT the request is shed with 503 + Retry-After instead of queueing without bound."""
    slots = current_app.extensions["odclient.decode_slots"]
    cfg = current_app.config
    if not slots.acquire(timeout=cfg["BUSY_TIMEOUT"]):
        raise ApiError(503, "server_busy", f"every decode slot stayed busy for {cfg['BUSY_TIMEOUT']:g} s "
                       "(the server is saturated); retry later", cfg["RETRY_AFTER"])
    try:
        yield
    finally:
        slots.release()


def _detections(result: tfserving.Detections, labels: dict[int, str], width: int, height: int,
                threshold: float, limit: int) -> list[dict[str, Any]]:
    out = []
    for index in [int(i) for i in (-result.scores).argsort(kind="stable")]:
        score = float(result.scores[index])
        if score < threshold or len(out) >= limit:
            break
        ymin, xmin, ymax, xmax = (min(max(float(v), 0.0), 1.0) for v in result.boxes[index])
        class_id = int(result.classes[index])
        out.append({
            "label": labels.get(class_id),
            "class_id": class_id,
            "score": round(score, 5),
            "box": {"xmin": round(xmin, 5), "ymin": round(ymin, 5), "xmax": round(xmax, 5), "ymax": round(ymax, 5)},
            "box_px": {"xmin": round(xmin * width), "ymin": round(ymin * height),
                       "xmax": round(xmax * width), "ymax": round(ymax * height)},
        })
    return out


@bp.post("/detect")
def detect() -> Response:
    start = time.perf_counter()
    cfg = current_app.config
    uploads, body = _uploads(cfg["MAX_IMAGES"])
    threshold = _number("threshold", _param("threshold", body), float, 0.0, 1.0, cfg["DEFAULT_THRESHOLD"])
    limit = _number("max_detections", _param("max_detections", body), int, 1, MAX_DETECTIONS_CAP,
                    cfg["DEFAULT_MAX_DETECTIONS"])
    version = _number("version", _param("version", body), int, 1, 2**63 - 1, None)
    model = _param("model", body) or cfg["MODEL_NAME"]
    if not isinstance(model, str) or not MODEL_NAME_RE.match(model):
        raise bad_request(f"model must match {MODEL_NAME_RE.pattern}, got {model!r}")
    fmt = _param("format", body)
    if not fmt:
        best = request.accept_mimetypes.best_match(["application/json", "image/jpeg"])
        fmt = "jpeg" if best == "image/jpeg" else "json"
    if fmt not in ("json", "jpeg"):
        raise bad_request(f"format must be json or jpeg, got {fmt!r}")
    if fmt == "jpeg" and len(uploads) != 1:
        raise bad_request(f"format=jpeg answers one image; this request has {len(uploads)}")

    decode_side = 0 if fmt == "jpeg" else cfg["MAX_INPUT_SIDE"]
    # headers first: one bad file, or too much work in all, fails the request before any decoding
    pixels_in_all = sum(imaging.check(data, name, cfg["MAX_IMAGE_PIXELS"], decode_side) for name, data in uploads)
    if pixels_in_all > cfg["MAX_REQUEST_PIXELS"]:
        raise ApiError(413, "too_many_pixels", f"the images decode to {pixels_in_all} pixels in all; at most "
                       f"MAX_REQUEST_PIXELS={cfg['MAX_REQUEST_PIXELS']} per request: send fewer or smaller images")

    served: dict[str, Any] = {}
    results = []
    serving = tfserving.client()
    for index, (name, data) in enumerate(uploads):  # then one image at a time (bounded memory)
        t0 = time.perf_counter()
        decode_ms = preprocess_ms = 0.0
        image: imaging.Decoded | None = None
        forwarded = _predict_encoded(serving, name, data, model, version, fmt)
        if forwarded is not None:
            result, (width, height) = forwarded
            signature = cfg["BYTES_SIGNATURE_NAME"]
        else:
            signature = cfg["SIGNATURE_NAME"]
            with _decode_slot():
                t_decode = time.perf_counter()
                image = imaging.decode(data, name, cfg["MAX_IMAGE_PIXELS"], decode_side)
                decode_ms = (time.perf_counter() - t_decode) * 1000
                t_pre = time.perf_counter()
                pixels = imaging.model_input(image.image, cfg["MAX_INPUT_SIDE"], cfg["MIN_INPUT_SIDE"])
                preprocess_ms = (time.perf_counter() - t_pre) * 1000
            width, height = image.width, image.height
            try:
                result = serving.predict(pixels, model, version, signature)
            except tfserving.UpstreamError as error:
                raise _upstream(error, model, version) from None
        upstream_ms = (time.perf_counter() - t0) * 1000 - decode_ms - preprocess_ms
        metrics.IMAGES.inc()
        served = {"name": result.model, "version": result.version, "signature": signature}
        dets = _detections(result, _labels().get(result.model, result.version), width, height, threshold, limit)
        if fmt == "jpeg":
            assert image is not None  # format=jpeg is never forwarded: the drawing needs the pixels
            jpeg = imaging.draw(image.image, dets, cfg["JPEG_QUALITY"])
            response = Response(jpeg, mimetype="image/jpeg")
            response.headers["X-Model-Name"], response.headers["X-Model-Version"] = result.model, str(result.version)
            response.headers["X-Detections"] = str(len(dets))
            return response
        results.append({
            "index": index, "filename": name, "width": width, "height": height,
            "model": {"name": result.model, "version": result.version},
            "detections": dets,
            "timing_ms": {"decode": round(decode_ms, 2), "preprocess": round(preprocess_ms, 2),
                          "upstream": round(upstream_ms, 2), "total": round((time.perf_counter() - t0) * 1000, 2)},
        })
    return jsonify(model=served, threshold=threshold, max_detections=limit, images=results,
                   timing_ms={"total": round((time.perf_counter() - start) * 1000, 2)})


@bp.get("/models")
def models() -> Response:
    """The model(s): versions and their states, labels of the newest available version, signature."""
    cfg = current_app.config
    name = request.args.get("model") or cfg["MODEL_NAME"]
    if not MODEL_NAME_RE.match(name):
        raise bad_request(f"model must match {MODEL_NAME_RE.pattern}, got {name!r}")
    serving = tfserving.client()
    try:
        versions = serving.model_status(name)
        available = [v.version for v in versions if v.state == tfserving.AVAILABLE]
        signature = serving.signature(name, cfg["SIGNATURE_NAME"]) if available else None
    except tfserving.UpstreamError as error:
        raise _upstream(error, name, None) from None
    latest = max(available) if available else None
    labels = _labels().get(name, latest) if latest is not None else {}
    # the web page's default: the model's own threshold when its export recorded one
    recorded = model_threshold(cfg["SERVING_DIR"], name, latest) if latest is not None else None
    return jsonify(models=[{
        "name": name,
        "default": name == cfg["MODEL_NAME"],
        "serving_version": latest,
        "versions": [{"version": v.version, "state": v.state, "error": v.error or None}
                     for v in sorted(versions, key=lambda v: v.version, reverse=True)],
        "labels": [{"id": i, "name": labels[i]} for i in sorted(labels)],
        "default_threshold": cfg["DEFAULT_THRESHOLD"] if recorded is None else recorded,
        "signature": signature,
    }])
