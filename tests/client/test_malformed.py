"""A corpus of bad uploads through the real gunicorn: never a 5xx, always JSON, no worker dies.

The server runs with MAX_UPLOAD_MB=8 (conftest ``gunicorn``), 2 workers x 4 threads.
"""
from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from concurrent import futures

import pytest
from PIL import Image

from tests.client.support import encode, multipart, request
from tests.serving.model_factory import REPO_ROOT, Blob, make_image

PNG = encode(make_image())
JPEG = encode(make_image(), "JPEG", quality=95)
PNG_B64 = base64.b64encode(PNG)
#: TensorFlow internals that must never reach an answer (node names, function names)
TF_INTERNALS = ("Op:", "__inference", "while/", "[[{{node")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` (then one tiny IDAT): a header-level bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def real_bomb() -> bytes:
    """A real decompression bomb: 9000 x 9000 1-bit PNG (81 MP, a few KB compressed)."""
    out = io.BytesIO()
    Image.new("1", (9000, 9000)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def corrupt_png() -> bytes:
    data = bytearray(PNG)
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64  # damage the IDAT stream
    return bytes(data)


def form(files: list[tuple[str, str, bytes, str]], fields: dict[str, str] | None = None) -> tuple[bytes, dict[str, str]]:
    body, content_type = multipart(files, fields)
    return body, {"Content-Type": content_type}


def one_file(data: bytes, filename: str = "x.jpg", ctype: str = "image/jpeg") -> tuple[bytes, dict[str, str]]:
    return form([("image", filename, data, ctype)])


def flat_png(side: int) -> bytes:
    """A grey side x side PNG: a few KB that decode to side^2 pixels."""
    out = io.BytesIO()
    Image.new("L", (side, side), 128).save(out, format="PNG", compress_level=9)
    return out.getvalue()


PNG_6300 = flat_png(6300)
FIFTY_MB = b"\xff\xd8\xff\xe0" + b"\0" * (50 * 1024 * 1024)

CORPUS: dict[str, tuple[str, bytes, dict[str, str], set[int]]] = {
    # name: (path, body, headers, acceptable statuses)
    "zero bytes (multipart)": ("/v1/detect", *one_file(b""), {400}),
    "zero bytes (raw)": ("/v1/detect", b"", {"Content-Type": "image/jpeg"}, {400}),
    "truncated jpeg": ("/v1/detect", *one_file(JPEG[: len(JPEG) // 2]), {422}),
    "jpeg header only": ("/v1/detect", *one_file(JPEG[:20]), {415, 422}),
    "text named .jpg": ("/v1/detect", *one_file(b"hello, I am not a picture\n" * 20, "cat.jpg"), {415}),
    "html named .png": ("/v1/detect", *one_file(b"<html><body>nope</body></html>", "x.png", "image/png"), {415}),
    "random bytes": ("/v1/detect", bytes(range(256)) * 40, {"Content-Type": "image/jpeg"}, {415}),
    "corrupt png": ("/v1/detect", *one_file(corrupt_png(), "x.png", "image/png"), {422}),
    "header bomb 100000x100000": ("/v1/detect", *one_file(png_header_only(100_000, 100_000), "b.png"), {413}),
    "real bomb 9000x9000": ("/v1/detect", *one_file(real_bomb(), "bomb.png"), {413}),
    "50 MB file (multipart)": ("/v1/detect", *one_file(FIFTY_MB, "big.jpg"), {413}),
    "50 MB file (raw)": ("/v1/detect", FIFTY_MB, {"Content-Type": "image/jpeg"}, {413}),
    "wrong content type": ("/v1/detect", PNG, {"Content-Type": "text/plain"}, {415}),
    "xml content type": ("/v1/detect", b"<a/>", {"Content-Type": "application/xml"}, {415}),
    "no content type": ("/v1/detect", PNG, {"Content-Type": ""}, {415}),
    "multipart without boundary": ("/v1/detect", PNG, {"Content-Type": "multipart/form-data"}, {400}),
    "multipart without file": ("/v1/detect", *form([], {"threshold": "0.5"}), {400}),
    "broken multipart": ("/v1/detect", b"--abc\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a\"\r\n\r\n\xff\xd8",
                         {"Content-Type": "multipart/form-data; boundary=abc"}, {400, 415, 422}),
    "invalid json": ("/v1/detect", b"{not json", {"Content-Type": "application/json"}, {400}),
    "json list": ("/v1/detect", b"[1, 2]", {"Content-Type": "application/json"}, {400}),
    "json bad base64": ("/v1/detect", json.dumps({"image": "%%%not-base64%%%"}).encode(),
                        {"Content-Type": "application/json"}, {400}),
    "json number image": ("/v1/detect", json.dumps({"image": 12}).encode(), {"Content-Type": "application/json"}, {400}),
    "json base64 of text": ("/v1/detect", json.dumps({"image": base64.b64encode(b"hi").decode()}).encode(),
                            {"Content-Type": "application/json"}, {415}),
    "too many files": ("/v1/detect", *form([("image", f"{i}.png", PNG, "image/png") for i in range(17)]), {400}),
    "json nested 5000 deep": ("/v1/detect", b'{"image": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                              {"Content-Type": "application/json"}, {400}),
    "json max_detections Infinity": ("/v1/detect", b'{"image": "%s", "max_detections": Infinity}' % PNG_B64,
                                     {"Content-Type": "application/json"}, {400}),
    "json version 1e400": ("/v1/detect", b'{"image": "%s", "version": 1e400}' % PNG_B64,
                           {"Content-Type": "application/json"}, {400}),
    "json threshold NaN": ("/v1/detect", b'{"image": "%s", "threshold": NaN}' % PNG_B64,
                           {"Content-Type": "application/json"}, {400}),
    # over the cap (MAX_UPLOAD_MB=8) without a Content-Length: 413 too, never a truncated body processed
    "jpeg + 12 MB (chunked)": ("/v1/detect", JPEG + b"\0" * (12 << 20),
                               {"Content-Type": "image/jpeg", "Transfer-Encoding": "chunked"}, {413}),
    "12 MB of zeros (chunked)": ("/v1/detect", b"\0" * (12 << 20),
                                 {"Content-Type": "image/jpeg", "Transfer-Encoding": "chunked"}, {413}),
    "12 MB file (chunked multipart)": ("/v1/detect", one_file(JPEG + b"\0" * (12 << 20))[0],
                                       {**one_file(b"")[1], "Transfer-Encoding": "chunked"}, {413}),
    # 16 valid PNGs of 6300x6300 (635 MP, 6.4 s of CPU): over MAX_REQUEST_PIXELS, refused from the headers
    "16 PNGs of 6300x6300": ("/v1/detect", *form([("image", f"{i}.png", PNG_6300, "image/png") for i in range(16)]),
                             {413}),
    # limits gunicorn enforces before the app sees the request
    "10 KB request line": ("/v1/detect?pad=" + "a" * 10_000, PNG, {"Content-Type": "image/png"}, {414}),
    "20 KB header": ("/v1/detect", PNG, {"Content-Type": "image/png", "X-Pad": "a" * 20_000}, {431}),
    "200 headers": ("/v1/detect", PNG, {"Content-Type": "image/png", **{f"X-Pad-{i}": "a" for i in range(200)}}, {431}),
    "bad threshold": ("/v1/detect?threshold=-1", PNG, {"Content-Type": "image/png"}, {400}),
    "huge max_detections": ("/v1/detect?max_detections=99999999999999999999", PNG, {"Content-Type": "image/png"}, {400}),
}


def test_malformed_corpus_never_5xx_and_no_worker_dies(gunicorn) -> None:
    workers = gunicorn.workers()
    assert len(workers) == 2
    failures = []
    for name, (path, body, headers, allowed) in CORPUS.items():
        answer = request(gunicorn.base, "POST", path, body, headers)
        problem = None
        if answer.status not in allowed:
            problem = f"status {answer.status} not in {sorted(allowed)}"
        elif answer.headers.get("content-type") != "application/json":
            problem = f"content type {answer.headers.get('content-type')}"
        else:
            body_json = answer.json()
            if set(body_json) != {"code", "message"} or "Traceback" in answer.body.decode():
                problem = f"body {body_json}"
            elif any(marker in body_json["message"] for marker in TF_INTERNALS):
                problem = f"TensorFlow internals in {body_json['message']!r}"
        if problem:
            failures.append(f"{name}: {problem}: {answer.body[:200]!r}")
    assert not failures, "\n".join(failures)
    assert gunicorn.workers() == workers, "a worker died or was restarted"
    assert request(gunicorn.base, "GET", "/healthz").status == 200
    log = gunicorn.log()
    assert "Traceback" not in log and "WORKER TIMEOUT" not in log, log[-3000:]


@pytest.mark.parametrize("width, height", [(1024, 3), (2000, 1), (1, 10000), (5000, 4)])
def test_thin_images_are_detected(gunicorn, width: int, height: int) -> None:
    """Valid images with a very thin side: the test detector, like real ones, resizes its input to a fixed
    size inside the graph, which fails for them; the client stretches that side so the model runs."""
    red = make_image(height, width, [Blob("red", 0, 0, height, width)])
    answer = request(gunicorn.base, "POST", "/v1/detect", encode(red), {"Content-Type": "image/png"})
    assert answer.status == 200, answer.body[:300]
    image = answer.json()["images"][0]
    assert (image["width"], image["height"]) == (width, height)
    [found] = image["detections"]
    assert found["label"] == "red" and found["box_px"] == {"xmin": 0, "ymin": 0, "xmax": width, "ymax": height}


def test_many_good_files_at_once_and_concurrent_clients(gunicorn) -> None:
    body, ctype = multipart([("image", f"{i}.png", PNG, "image/png") for i in range(16)])

    def post(_: int) -> int:
        return request(gunicorn.base, "POST", "/v1/detect", body, {"Content-Type": ctype}, timeout=60).status

    with futures.ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(post, range(6)))
    assert statuses == [200] * 6
    answer = request(gunicorn.base, "POST", "/v1/detect", body, {"Content-Type": ctype})
    assert len(answer.json()["images"]) == 16


def test_gunicorn_prints_config_and_aggregates_metrics(gunicorn) -> None:
    log = gunicorn.log()
    line = next(l for l in log.splitlines() if l.startswith("odclient: gunicorn config "))
    config = json.loads(line.split("config ", 1)[1])
    assert config["workers"] == 2 and config["threads"] == 4 and config["worker_class"] == "gthread"
    assert config["app"]["MAX_UPLOAD_MB"] == 8 and config["app"]["MODEL_NAME"] == "detector"

    def total() -> float:
        text = request(gunicorn.base, "GET", "/metrics").body.decode()
        return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                   if l.startswith("odclient_http_requests_total{") and 'route="/healthz"' in l)

    before = total()
    for _ in range(20):  # spread over both workers by the kernel
        request(gunicorn.base, "GET", "/healthz")
    assert total() - before == 20  # every worker's counts, not just the one answering /metrics


@pytest.mark.parametrize("path", ["/", "/healthz", "/readyz", "/v1/models", "/metrics", "/openapi.json"])
def test_get_routes_through_gunicorn(gunicorn, path: str) -> None:
    assert request(gunicorn.base, "GET", path).status == 200


def test_predict_cli(gunicorn, tmp_path) -> None:
    import subprocess
    import sys

    image = tmp_path / "blobs.png"
    image.write_bytes(PNG)
    out = subprocess.run([sys.executable, str(REPO_ROOT / "client/predict.py"), str(image), "--url", f"http://{gunicorn.base}",
                          "--threshold", "0.3", "--jpeg", str(tmp_path / "drawn.jpg")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "blobs.png (160x120): 3 detections, model detector v1" in out.stdout
    assert "red" in out.stdout and Image.open(tmp_path / "drawn.jpg").size == (160, 120)
    bad = subprocess.run([sys.executable, str(REPO_ROOT / "client/predict.py"), __file__, "--url", f"http://{gunicorn.base}"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "HTTP 415" in bad.stderr
