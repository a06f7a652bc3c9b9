"""``make predict VIDEO=...`` (client/predict_video.py) through the real gunicorn: a video sampled at FPS with
a cap, and a folder of images, give per-frame JSON Lines and an annotated video / images."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

av = pytest.importorskip("av", reason="needs PyAV (dockerfiles/requirements/client.txt)")

from tests.client.support import encode  # noqa: E402
from tests.serving.model_factory import REPO_ROOT, expected_detections, make_image  # noqa: E402

IMAGE = make_image()
EXPECTED = [d["label"] for d in expected_detections(IMAGE) if d["score"] >= 0.5]  # red, green


def write_video(path: Path, seconds: int, rate: int = 10) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = IMAGE.shape[1], IMAGE.shape[0], "yuv420p"
        for _ in range(seconds * rate):
            for packet in stream.encode(av.VideoFrame.from_ndarray(IMAGE, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def predict(gunicorn, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "client" / "predict_video.py"), *args,
                           "--url", f"http://{gunicorn.base}"], capture_output=True, text=True, timeout=120)


def test_video_sampled_and_capped_gives_jsonl_and_annotated_video(gunicorn, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    write_video(clip, seconds=3)
    out = tmp_path / "clip.annotated.mp4"
    done = predict(gunicorn, str(clip), "--fps", "2", "--max-seconds", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (tmp_path / "clip.annotated.mp4.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(len(lines)))
    assert len(lines) in (4, 5)  # 2 frames/s over the first 2 s (0, 0.5, 1, 1.5, maybe 2.0)
    assert all(b["time_s"] - a["time_s"] == pytest.approx(0.5, abs=0.11) for a, b in zip(lines, lines[1:]))
    for line in lines:
        assert [d["label"] for d in line["detections"]] == EXPECTED and line["model"]["name"] == "detector"
    assert "frames/s" in done.stderr  # progress
    with av.open(str(out)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(decoded) == len(lines) and decoded[0].shape == IMAGE.shape
    red = decoded[0][30, 40].astype(int)  # inside the red blob: still red after drawing and encoding
    assert red[0] > 150 and red[1] < 100 and red[2] < 100
    assert not np.array_equal(decoded[0], IMAGE)  # boxes were drawn

    capped = predict(gunicorn, str(clip), "--fps", "0", "--max-frames", "3", "--out", str(tmp_path / "c.mp4"))
    assert capped.returncode == 0, capped.stderr
    assert len((tmp_path / "c.mp4.jsonl").read_text().splitlines()) == 3


def test_folder_of_images(gunicorn, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(encode(IMAGE))
    (folder / "notes.txt").write_text("not an image")
    done = predict(gunicorn, str(folder))
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "photos.annotated.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(l)["detections"] for l in lines)
    assert sorted(p.name for p in (tmp_path / "photos.annotated").iterdir()) == ["00000.jpg", "00001.jpg", "00002.jpg"]
    assert Image.open(tmp_path / "photos.annotated" / "00000.jpg").size == (160, 120)


def test_unreachable_source_fails_cleanly(gunicorn, tmp_path: Path) -> None:
    done = predict(gunicorn, str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "x.mp4"))
    assert done.returncode == 1 and "predict:" in done.stderr and "Traceback" not in done.stderr
