"""Shared pieces of the labelling tests: a Label Studio JSON export of the test detector's images."""
from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

from PIL import Image

from odstack.labelling.config import REPO
from tests.serving.model_factory import Blob, expected_detections, make_image


def blob_images(folder: Path, count: int) -> list[Path]:
    """``count`` real PNG images of red/green/blue blobs at shifting places."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        shift = 4 * number
        blobs = (Blob("red", 10 + shift, 20, 50 + shift, 60), Blob("green", 60, 80 + shift, 110, 150),
                 Blob("blue", 5, 100 - shift, 25 + shift, 140))
        path = folder / f"blobs{number:02d}.png"
        Image.fromarray(make_image(blobs=blobs)).save(path)
        paths.append(path)
    return paths


def rectangle_results(image: Path) -> list[dict[str, Any]]:
    """Label Studio's rectanglelabels results for the blobs of ``image`` (percent of the image)."""
    import numpy as np

    pixels = np.asarray(Image.open(image).convert("RGB"))
    height, width = pixels.shape[:2]
    results = []
    for number, found in enumerate(expected_detections(pixels)):
        ymin, xmin, ymax, xmax = found["box"]
        results.append({"id": f"r{number}", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                        "original_width": width, "original_height": height, "image_rotation": 0,
                        "value": {"x": xmin * 100, "y": ymin * 100, "width": (xmax - xmin) * 100,
                                  "height": (ymax - ymin) * 100, "rotation": 0,
                                  "rectanglelabels": [found["label"]]}})
    return results


class ExportReplay:
    """Answers ``GET /api/projects/<id>/export`` (Token auth) with a saved Label Studio export, on 127.0.0.1.

    The contract tests of the manager use it so `make test` needs no Label Studio; the loop test
    (test_loop.py) talks to a real one.
    """

    def __init__(self, tasks: list[dict[str, Any]], token: str) -> None:
        body, expected = json.dumps(tasks).encode(), f"Token {token}"

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                self.send_response(200 if "/export" in self.path else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def remove_runs(runs: Iterator[str] | list[str]) -> None:
    """The runs jobs made under the repository's output/ (tests leave nothing behind)."""
    for run in runs:
        if run:
            shutil.rmtree(REPO / "output" / run, ignore_errors=True)
