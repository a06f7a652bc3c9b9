#!/usr/bin/env python3
"""Send images to a running odstack client and print the detections (``make predict IMAGE=...``).

    python3 client/predict.py photo.jpg [more.jpg ...] [--url http://127.0.0.1:8080] [--threshold 0.5]
    python3 client/predict.py photo.jpg --jpeg annotated.jpg      # also save the image with boxes drawn

Standard library only: runs with any python3, no venv needed.
"""
from __future__ import annotations

import argparse
import json
import mimetypes
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path


def post(url: str, files: list[Path], params: dict[str, str], accept: str = "application/json") -> tuple[int, bytes]:
    boundary = uuid.uuid4().hex
    body = b""
    for path in files:
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{path.name}"\r\n'
                 f"Content-Type: {ctype}\r\n\r\n").encode() + path.read_bytes() + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    query = urllib.parse.urlencode(params)
    request = urllib.request.Request(f"{url.rstrip('/')}/v1/detect?{query}", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                                              "Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--threshold", type=float)
    parser.add_argument("--max-detections", type=int)
    parser.add_argument("--model")
    parser.add_argument("--version", type=int)
    parser.add_argument("--jpeg", type=Path, help="save the first image with its boxes drawn here")
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    params = {k: str(v) for k, v in (("threshold", args.threshold), ("max_detections", args.max_detections),
                                      ("model", args.model), ("version", args.version)) if v is not None}
    try:
        status, body = post(args.url, args.images, params)
    except OSError as error:
        print(f"predict: cannot reach {args.url} ({error}); is the stack up? (make serve)", file=sys.stderr)
        return 2
    if status != 200:
        print(f"predict: HTTP {status}: {body.decode(errors='replace')}", file=sys.stderr)
        return 1
    answer = json.loads(body)
    if args.json:
        print(json.dumps(answer, indent=1))
    else:
        model = answer["model"]
        for image in answer["images"]:
            print(f"{image['filename']} ({image['width']}x{image['height']}): {len(image['detections'])} detections, "
                  f"model {model['name']} v{model['version']}, {image['timing_ms']['total']} ms")
            for det in image["detections"]:
                box = det["box_px"]
                print(f"  {det['label'] or '#' + str(det['class_id']):<20} {det['score']:.3f}  "
                      f"[{box['xmin']}, {box['ymin']}, {box['xmax']}, {box['ymax']}]")
    if args.jpeg:
        status, jpeg = post(args.url, args.images[:1], {**params, "format": "jpeg"}, "image/jpeg")
        if status != 200:
            print(f"predict: annotated image: HTTP {status}: {jpeg.decode(errors='replace')}", file=sys.stderr)
            return 1
        args.jpeg.write_bytes(jpeg)
        print(f"predict: annotated image -> {args.jpeg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
