"""Every error leaves the app as JSON ``{"code": ..., "message": ...}``; never a stack trace."""
from __future__ import annotations

import logging

from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException

from odclient import metrics

LOG = logging.getLogger("odclient")


class ApiError(Exception):
    """An answer other than 2xx: HTTP status, a stable snake_case code and a human message."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


def bad_request(message: str, code: str = "invalid_parameter") -> ApiError:
    return ApiError(400, code, message)


def error_response(status: int, code: str, message: str, retry_after: int | None = None) -> Response:
    metrics.ERRORS.labels(code).inc()
    response = jsonify(code=code, message=message)
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _api_error(error: ApiError) -> Response:
    return error_response(error.status, error.code, error.message, error.retry_after)


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    if status == 413:
        cap = current_app.config["MAX_UPLOAD_MB"]
        return error_response(413, "payload_too_large", f"request body exceeds MAX_UPLOAD_MB={cap:g} MB")
    code = (error.name or "error").lower().replace(" ", "_").replace("'", "")
    response = error_response(status, code, error.description or error.name or "error")
    if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
        response.headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
    return response


def _unexpected(error: Exception) -> Response:
    LOG.exception("unhandled error: %s", error)
    return error_response(500, "internal_error", "internal error (logged on the server)")


def init_app(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
