"""odstack's serving client: REST image uploads in, gRPC to TensorFlow Serving, detections out.

Run it with gunicorn: ``gunicorn -c client/gunicorn_conf.py 'odclient:create_app()'``
(container_scripts/client.sh). Settings: odclient/settings.py (environment variables).
"""
from __future__ import annotations

import threading
from typing import Any

from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """The app: settings from the environment, overridden by ``test_config``; blueprints; no gRPC yet.

    Imports happen here, so that gunicorn's master (which only reads gunicorn_conf.py) never loads grpc.
    """
    from PIL import Image

    from odclient import api, errors, metrics, ops, settings, tfserving
    from odclient.bodycap import ChunkedBodyCap
    from odclient.labels import LabelMaps

    app = Flask(__name__, static_folder="static", static_url_path="/static")
    app.config.from_mapping(settings.from_env())
    if test_config:
        app.config.from_mapping(test_config)
    app.config.update(DEBUG=False, PROPAGATE_EXCEPTIONS=False,
                      MAX_CONTENT_LENGTH=int(app.config["MAX_UPLOAD_MB"] * 1024 * 1024))
    # Pillow's own guard (DecompressionBombError at 2x) on top of the header check in imaging.decode
    Image.MAX_IMAGE_PIXELS = app.config["MAX_IMAGE_PIXELS"]

    errors.init_app(app)
    metrics.init_app(app)
    tfserving.init_app(app)
    app.extensions["odclient.labels"] = LabelMaps(app.config["SERVING_DIR"])
    app.extensions["odclient.decode_slots"] = threading.BoundedSemaphore(max(1, app.config["DECODE_SLOTS"]))
    app.register_blueprint(api.bp)
    app.register_blueprint(ops.bp)

    @app.after_request
    def _headers(response):  # type: ignore[no-untyped-def]
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'")
        return response

    app.wsgi_app = ChunkedBodyCap(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])  # type: ignore[method-assign]
    return app
