#!/usr/bin/env python3
"""Run a video, a folder of images or a stream through a running odstack client (``make predict VIDEO=...``):
an annotated video (or annotated images for a folder) and one JSON line of detections per frame.

    python client/predict_video.py clip.mp4 [--fps 2] [--max-seconds 300] [--out clip.annotated.mp4]
    python client/predict_video.py photos/ --out annotated/        # a folder: annotated JPEGs
    python client/predict_video.py rtsp://camera/stream --max-seconds 30

Needs .venv/client (PyAV: FFmpeg in a wheel, which also opens RTSP/HTTP URLs; Pillow; odclient's drawing).
Each sampled frame is sent as a JPEG to ``POST /v1/detect`` over one keep-alive connection.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import av
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from odclient.imaging import FORMATS, draw_boxes  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def frames(source: str, fps: float, max_seconds: float, max_frames: int) -> Iterator[tuple[float, Image.Image]]:
    """(time in seconds, RGB frame), sampled at ``fps`` (0: every frame), stopping at either cap."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for index, file in enumerate(files[:max_frames]):
            with Image.open(file, formats=FORMATS) as image:
                yield float(index), image.convert("RGB")
        return
    with av.open(source, timeout=10) as container:
        stream = container.streams.video[0]
        next_time, count = 0.0, 0
        for frame in container.decode(stream):
            seconds = float(frame.time or 0.0)
            if seconds > max_seconds or count >= max_frames:
                return
            if fps and seconds + 1e-6 < next_time:
                continue
            next_time = (next_time if fps else seconds) + (1.0 / fps if fps else 0.0)
            count += 1
            yield seconds, frame.to_image().convert("RGB")


class Client:
    """``POST /v1/detect`` with one JPEG, over a keep-alive connection."""

    def __init__(self, url: str, params: dict[str, str]) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.query = urllib.parse.urlencode(params)
        self.connection: http.client.HTTPConnection | None = None

    def detect(self, image: Image.Image) -> dict[str, Any]:
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=90)
        for attempt in range(2):  # one reconnect: the server may have closed an idle connection
            self.connection = self.connection or http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self.connection.request("POST", f"/v1/detect?{self.query}", body=out.getvalue(),
                                        headers={"Content-Type": "image/jpeg"})
                response = self.connection.getresponse()
                body = response.read()
                break
            except (http.client.HTTPException, OSError):
                self.connection.close()
                self.connection = None
                if attempt:
                    raise
        answer = json.loads(body)
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {answer.get('message', body[:200])}")
        return answer  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="video file, folder of images, or rtsp:// / http(s):// stream URL")
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--fps", type=float, default=2.0, help="frames sampled per second of video (0: all)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="stop after this much video time")
    parser.add_argument("--max-frames", type=int, default=3000, help="stop after this many frames")
    parser.add_argument("--out", type=Path, help="annotated video (a folder source: a directory of JPEGs); "
                                                 "default <source>.annotated.mp4 beside it, <folder>.annotated/, "
                                                 "or ./<stream>.annotated.mp4")
    parser.add_argument("--jsonl", type=Path, help="per-frame detections (default <out>.jsonl)")
    parser.add_argument("--threshold", type=float)
    parser.add_argument("--model")
    args = parser.parse_args(argv)
    if args.fps < 0 or args.max_seconds <= 0 or args.max_frames < 1:
        parser.error("--fps >= 0, --max-seconds > 0 and --max-frames >= 1")
    folder = Path(args.source).is_dir()
    stem = Path(urllib.parse.urlsplit(args.source).path).name or "stream"
    local = folder or Path(args.source).is_file()
    out = args.out or (Path(args.source).with_name(stem + (".annotated" if folder else ".annotated.mp4")) if local
                       else Path(f"{stem}.annotated.mp4"))
    jsonl = args.jsonl or out.with_name(out.name + ".jsonl")
    params = {k: str(v) for k, v in (("threshold", args.threshold), ("model", args.model)) if v is not None}
    client = Client(args.url, params)
    writer: Any = None
    stream: Any = None
    start, count = time.monotonic(), 0
    if folder:
        out.mkdir(parents=True, exist_ok=True)
    try:
        with open(jsonl, "w", encoding="utf-8") as lines:
            for seconds, image in frames(args.source, args.fps, args.max_seconds, args.max_frames):
                answer = client.detect(image)
                result = answer["images"][0]
                lines.write(json.dumps({"frame": count, "time_s": round(seconds, 3), "model": answer["model"],
                                        "width": result["width"], "height": result["height"],
                                        "detections": result["detections"]}) + "\n")
                drawn = draw_boxes(image, result["detections"])
                if folder:
                    drawn.save(out / f"{count:05d}.jpg", quality=90)
                else:
                    if writer is None:
                        writer = av.open(str(out), "w")
                        stream = writer.add_stream("libx264", rate=round(args.fps) if args.fps else 25)
                        stream.width, stream.height = drawn.width // 2 * 2, drawn.height // 2 * 2
                        stream.pix_fmt = "yuv420p"
                    frame = av.VideoFrame.from_image(drawn.crop((0, 0, stream.width, stream.height)))
                    for packet in stream.encode(frame):
                        writer.mux(packet)
                count += 1
                elapsed = time.monotonic() - start
                print(f"\rpredict: frame {count} at {seconds:.1f} s, {len(result['detections'])} detections, "
                      f"{count / elapsed:.1f} frames/s", end="", file=sys.stderr, flush=True)
    except (av.FFmpegError, OSError, RuntimeError) as error:
        print(f"\npredict: {error}", file=sys.stderr)
        return 1
    finally:
        if writer is not None:
            for packet in stream.encode():
                writer.mux(packet)
            writer.close()
    print(f"\npredict: {count} frames -> {out} and {jsonl}", file=sys.stderr)
    return 0 if count else 1


if __name__ == "__main__":
    sys.exit(main())
