"""The upload cap for bodies without a Content-Length (``Transfer-Encoding: chunked``).

Flask's MAX_CONTENT_LENGTH refuses a declared Content-Length over the cap, but Werkzeug reads a chunked
body only up to the cap and then reports end of stream: the app would process a truncated upload. This
WSGI middleware reads such a body itself, one byte past the cap at most, answers 413 when there is more,
and otherwise hands the app the body with its real Content-Length.
"""
from __future__ import annotations

import io
import json
from typing import Any, Callable, Iterable

from odclient import metrics

READ_SIZE = 1 << 20


class ChunkedBodyCap:
    def __init__(self, app: Callable[..., Iterable[bytes]], max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("CONTENT_LENGTH") or "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return self.app(environ, start_response)
        stream, body = environ["wsgi.input"], bytearray()
        while len(body) <= self.max_bytes:
            chunk = stream.read(min(READ_SIZE, self.max_bytes + 1 - len(body)))
            if not chunk:
                break
            body += chunk
        if len(body) > self.max_bytes:
            metrics.ERRORS.labels("payload_too_large").inc()
            answer = json.dumps({"code": "payload_too_large", "message": f"request body exceeds MAX_UPLOAD_MB="
                                 f"{self.max_bytes / (1024 * 1024):g} MB (chunked upload)"}).encode()
            # close: the rest of the body is never read
            start_response("413 Request Entity Too Large", [("Content-Type", "application/json"),
                                                            ("Content-Length", str(len(answer))),
                                                            ("Connection", "close")])
            return [answer]
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(bytes(body)), str(len(body))
        environ.pop("wsgi.input_terminated", None)
        return self.app(environ, start_response)
