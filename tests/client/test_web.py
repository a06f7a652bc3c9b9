"""The web page in headless Chromium (Debian's `chromium`): it renders, uploads, and draws the boxes.

``/?sample=1`` makes the page generate a picture (a red rectangle and a blue disc on grey, which the test
detector finds) and send it through the same upload path a chosen file takes; Chromium then writes a
screenshot and the DOM. Skipped when no Chromium is installed (apt-get install -y chromium).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1000,900",
         "--virtual-time-budget=15000", "--run-all-compositor-stages-before-draw"]
# the page's colours for class ids 1 (red) and 3 (blue): COLORS[class_id % 8] in static/app.js
RED_BOX, BLUE_BOX = (60, 180, 75), (245, 130, 49)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    env = dict(os.environ, HOME=str(tmp_path))
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def count_colour(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    return int((np.abs(image.astype(int) - colour).max(axis=2) <= tolerance).sum())


def test_page_uploads_and_draws_boxes(gunicorn, tmp_path: Path) -> None:
    url = f"http://{gunicorn.base}/?sample=1"
    dom = chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert "2 of 2 detections at threshold 0.50" in html, html[-3000:]
    assert "model detector v1" in html and "red 1.00" in html and "blue 0.80" in html, html[-3000:]
    assert "labels: red, green, blue" in html

    shot = tmp_path / "page.png"
    result = chromium(tmp_path, f"--screenshot={shot}", url)
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    keep = Path(os.environ.get("ODSTACK_SCREENSHOT_DIR", tmp_path)) / "client_page.png"
    keep.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, keep)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (900, 1000, 3)
    assert count_colour(pixels, RED_BOX) > 300, "no box drawn around the red rectangle"
    assert count_colour(pixels, BLUE_BOX) > 300, "no box drawn around the blue disc"
    assert count_colour(pixels, (36, 52, 71)) > 10_000, "header bar missing"  # #243447


def test_page_threshold_from_query_hides_weaker_boxes(gunicorn, tmp_path: Path) -> None:
    dom = chromium(tmp_path, "--dump-dom", f"http://{gunicorn.base}/?sample=1&threshold=0.9")
    assert "1 of 2 detections at threshold 0.90" in dom.stdout, dom.stdout[-3000:]


def test_page_renders_the_form_without_a_model_server(tmp_path: Path) -> None:
    """The page itself needs no model: with the model server down it shows the form and says so."""
    from tests.client.support import Gunicorn
    from tests.serving.model_factory import free_port

    server = Gunicorn({"TF_SERVING_ADDR": f"127.0.0.1:{free_port()}", "MODEL_NAME": "detector"},
                      tmp_path / "gunicorn.log").start()
    try:
        dom = chromium(tmp_path, "--dump-dom", f"http://{server.base}/")
    finally:
        server.stop()
    assert 'type="file"' in dom.stdout and 'type="range"' in dom.stdout
    assert "model: unavailable (model_server_unavailable)" in dom.stdout


def canvas_data(html: str) -> tuple[list[dict], int, int, int]:
    """(labels placed, display width, canvas width, canvas height) from the page's canvas data attributes."""
    import html as html_lib
    import json
    import re

    tag = re.search(r"<canvas[^>]*>", html)
    assert tag, html[-2000:]
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', tag[0]))
    return (json.loads(html_lib.unescape(attrs["data-labels"])), int(attrs["data-display-width"]),
            int(attrs["width"]), int(attrs["height"]))


def test_small_image_scaled_up_and_labels_outside_boxes_never_cut_off(gunicorn, tmp_path: Path) -> None:
    """A 160x100 image with a box in its top-left corner: shown >= 320 px wide, each label inside the canvas
    and outside its box (above it, or below when there is no room above)."""
    dom = chromium(tmp_path, "--dump-dom", f"http://{gunicorn.base}/?sample=small&threshold=0.3")
    assert "detections at threshold 0.30" in dom.stdout, dom.stdout[-3000:]
    labels, display_width, width, height = canvas_data(dom.stdout)
    assert display_width >= 320 and width >= 320
    assert {p["text"].split()[0] for p in labels} == {"red", "blue"}
    for placed in labels:
        (lx0, ly0, lx1, ly1), (bx0, by0, bx1, by1) = placed["label"], placed["box"]
        assert 0 <= lx0 < lx1 <= width and 0 <= ly0 < ly1 <= height, placed
        assert ly1 <= by0 + 1 or ly0 >= by1 - 1, f"label over its box: {placed}"


def test_results_beside_the_image_on_a_wide_screen(gunicorn, tmp_path: Path) -> None:
    shot = tmp_path / "wide.png"
    result = chromium(tmp_path, "--window-size=1400,900", f"--screenshot={shot}", f"http://{gunicorn.base}/?sample=1")
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    # the list items' colour bars (class colours) right of the 640 px canvas, not below it
    right = pixels[:, 700:]
    assert count_colour(right, RED_BOX) > 50 and count_colour(right, BLUE_BOX) > 50


def test_threshold_default_comes_from_the_model(tmp_path: Path, detector_saved_model: Path) -> None:
    """A version whose export recorded a threshold (assets.extra/thresholds.json): /v1/models reports it and
    the page starts from it; without one the client's DEFAULT_THRESHOLD stays."""
    import json

    from tests.client.support import Gunicorn, request
    from tests.serving.model_factory import ModelServerProcess, add_version

    base = tmp_path / "serving" / "detector"
    version = add_version(base, 1, detector_saved_model)
    (version / "assets.extra" / "thresholds.json").write_text(json.dumps({"score_threshold": 0.9}))
    server = ModelServerProcess(["--model_name", "detector", "--model_base_path", str(base)],
                                log_path=tmp_path / "modelserver.log").start()
    client = None
    try:
        server.wait_available("detector")
        client = Gunicorn({"TF_SERVING_ADDR": server.address, "SERVING_DIR": str(base.parent), "MODEL_NAME": "detector"},
                          tmp_path / "gunicorn.log").start()
        assert request(client.base, "GET", "/v1/models").json()["models"][0]["default_threshold"] == 0.9
        dom = chromium(tmp_path, "--dump-dom", f"http://{client.base}/?sample=1")
        assert "1 of 2 detections at threshold 0.90" in dom.stdout, dom.stdout[-3000:]
    finally:
        if client:
            client.stop()
        server.stop()
