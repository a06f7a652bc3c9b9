"""Every route of the client against the development model server over real gRPC (Flask test client)."""
from __future__ import annotations

import base64
import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.client.support import encode, multipart
from tests.serving.model_factory import LABELS, Blob, expected_detections, make_image

IMAGE = make_image()  # 120x160, red 1.0 / green 0.8 / blue 0.4
PNG = encode(IMAGE)
JPEG_Q100 = encode(IMAGE, "JPEG", quality=100, subsampling=0)


def check_detections(result: dict, image: np.ndarray, threshold: float = 0.5) -> None:
    expected = [d for d in expected_detections(image) if d["score"] >= threshold]
    height, width = image.shape[:2]
    assert (result["width"], result["height"]) == (width, height)
    assert [d["label"] for d in result["detections"]] == [d["label"] for d in expected]
    for got, want in zip(result["detections"], expected):
        assert got["class_id"] == want["class_id"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)
        ymin, xmin, ymax, xmax = want["box"]
        assert got["box"] == pytest.approx({"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}, abs=1e-4)
        assert got["box_px"] == {"xmin": round(xmin * width), "ymin": round(ymin * height),
                                 "xmax": round(xmax * width), "ymax": round(ymax * height)}


def test_detect_multipart_one_image(client) -> None:
    response = client.post("/v1/detect", data={"image": (io.BytesIO(PNG), "blobs.png")})
    assert response.status_code == 200, response.json
    body = response.json
    # a plain PNG goes as it is to the model's encoded-image signature
    assert body["model"] == {"name": "detector", "version": 1, "signature": "image_bytes"}
    assert len(body["images"]) == 1
    result = body["images"][0]
    assert result["filename"] == "blobs.png" and result["model"] == {"name": "detector", "version": 1}
    check_detections(result, IMAGE)  # default threshold 0.5: red, green
    assert set(result["timing_ms"]) == {"decode", "preprocess", "upstream", "total"}
    assert body["timing_ms"]["total"] >= result["timing_ms"]["upstream"] > 0


@pytest.mark.parametrize("threshold, labels", [(0.0, ["red", "green", "blue"]), (0.9, ["red"]), (1.0, ["red"])])
def test_threshold(client, threshold: float, labels: list[str]) -> None:
    response = client.post(f"/v1/detect?threshold={threshold}", data=PNG, content_type="image/png")
    assert [d["label"] for d in response.json["images"][0]["detections"]] == labels


def test_max_detections_and_form_fields(client) -> None:
    response = client.post("/v1/detect", data={"image": (io.BytesIO(PNG), "a.png"), "threshold": "0",
                                               "max_detections": "2"})
    assert [d["label"] for d in response.json["images"][0]["detections"]] == ["red", "green"]


def test_many_files(client) -> None:
    other = make_image(64, 64, ())  # grey only: no detections
    files = [(io.BytesIO(PNG), "a.png"), (io.BytesIO(encode(other)), "b.png"), (io.BytesIO(JPEG_Q100), "c.jpg")]
    response = client.post("/v1/detect?threshold=0", data={"images": files})
    assert response.status_code == 200
    images = response.json["images"]
    assert [i["filename"] for i in images] == ["a.png", "b.png", "c.jpg"]
    check_detections(images[0], IMAGE, 0.0)
    assert images[1]["detections"] == [] and (images[1]["width"], images[1]["height"]) == (64, 64)
    assert [d["label"] for d in images[2]["detections"]] == ["red", "green", "blue"]


def test_raw_body_and_octet_stream(client) -> None:
    for ctype in ("image/png", "application/octet-stream"):
        response = client.post("/v1/detect", data=PNG, content_type=ctype)
        assert response.status_code == 200
        check_detections(response.json["images"][0], IMAGE)


def test_json_base64_shapes(client) -> None:
    b64 = base64.b64encode(PNG).decode()
    for body in ({"image": b64}, {"images": [b64, {"b64": b64}]}, {"image": "data:image/png;base64," + b64},
                 {"image": b64, "threshold": 0.9, "max_detections": 5}):
        response = client.post("/v1/detect", json=body)
        assert response.status_code == 200, (body.keys(), response.json)
        for result in response.json["images"]:
            check_detections(result, IMAGE, body.get("threshold", 0.5))


def test_annotated_jpeg(client) -> None:
    for response in (client.post("/v1/detect?format=jpeg", data=PNG, content_type="image/png"),
                     client.post("/v1/detect", data=PNG, content_type="image/png", headers={"Accept": "image/jpeg"})):
        assert response.status_code == 200 and response.mimetype == "image/jpeg"
        assert response.headers["X-Detections"] == "2" and response.headers["X-Model-Version"] == "1"
        drawn = Image.open(io.BytesIO(response.data))
        assert drawn.format == "JPEG" and drawn.size == (160, 120)
    # a browser's Accept (*/*) keeps JSON
    response = client.post("/v1/detect", data=PNG, content_type="image/png", headers={"Accept": "*/*"})
    assert response.mimetype == "application/json"


def test_exif_orientation_boxes_follow_the_rotated_image(client) -> None:
    rotated = np.ascontiguousarray(np.rot90(IMAGE, 1))  # what a viewer shows: 160x120 portrait
    stored = Image.fromarray(IMAGE)  # stored landscape with "rotate 90 CW to display" (orientation 8)
    exif = stored.getexif()
    exif[0x0112] = 8
    out = io.BytesIO()
    stored.save(out, format="JPEG", quality=100, subsampling=0, exif=exif.tobytes())
    result = client.post("/v1/detect", data=out.getvalue(), content_type="image/jpeg").json["images"][0]
    assert (result["width"], result["height"]) == (120, 160)
    want = expected_detections(rotated)
    assert [d["label"] for d in result["detections"]] == [d["label"] for d in want if d["score"] >= 0.5]
    ymin, xmin, ymax, xmax = want[0]["box"]
    assert result["detections"][0]["box"] == pytest.approx({"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax},
                                                           abs=0.02)


def test_large_image_is_downscaled_but_boxes_stay_in_its_pixels(app) -> None:
    app.config["MAX_INPUT_SIDE"] = 80  # 160x120 -> 80x60 sent to the model
    result = app.test_client().post("/v1/detect", data=PNG, content_type="image/png").json["images"][0]
    assert (result["width"], result["height"]) == (160, 120)
    assert result["detections"][0]["label"] == "red"
    assert result["detections"][0]["box_px"] == pytest.approx({"xmin": 20, "ymin": 10, "xmax": 60, "ymax": 50}, abs=2)


@pytest.mark.parametrize("query, field", [("threshold=abc", "threshold"), ("threshold=1.5", "threshold"),
                                          ("threshold=nan", "threshold"), ("max_detections=0", "max_detections"),
                                          ("max_detections=2.5", "max_detections"), ("version=x", "version"),
                                          ("version=0", "version"), ("model=../etc", "model"), ("format=png", "format")])
def test_bad_parameters_are_400(client, query: str, field: str) -> None:
    response = client.post(f"/v1/detect?{query}", data=PNG, content_type="image/png")
    assert response.status_code == 400
    assert response.json["code"] == "invalid_parameter" and field in response.json["message"]


def test_format_jpeg_needs_one_image(client) -> None:
    response = client.post("/v1/detect?format=jpeg", data={"a": (io.BytesIO(PNG), "a.png"), "b": (io.BytesIO(PNG), "b.png")})
    assert response.status_code == 400 and "one image" in response.json["message"]


def test_explicit_version_and_unknown_version_or_model(client) -> None:
    assert client.post("/v1/detect?version=1", data=PNG, content_type="image/png").json["model"]["version"] == 1
    for query in ("version=99", "model=nosuchmodel"):
        response = client.post(f"/v1/detect?{query}", data=PNG, content_type="image/png")
        assert response.status_code == 404 and response.json["code"] == "model_not_found"


def test_models(client) -> None:
    response = client.get("/v1/models")
    assert response.status_code == 200
    (model,) = response.json["models"]
    assert model["name"] == "detector" and model["default"] and model["serving_version"] == 1
    assert model["versions"] == [{"version": 1, "state": "AVAILABLE", "error": None}]
    assert model["labels"] == [{"id": i, "name": n} for i, n in enumerate(LABELS, start=1)]
    signature = model["signature"]
    assert signature["name"] == "serving_default"
    assert signature["inputs"]["input_tensor"]["dtype"] == "DT_UINT8"
    assert {"detection_boxes", "detection_scores", "detection_classes", "num_detections"} <= set(signature["outputs"])
    assert client.get("/v1/models?model=nosuchmodel").status_code == 404


def test_health_ready_metrics(client) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").json == {"status": "ready", "model": "detector", "version": 1}
    client.post("/v1/detect", data=PNG, content_type="image/png")
    client.post("/v1/detect", data=b"", content_type="image/png")
    text = client.get("/metrics").data.decode()
    assert 'odclient_http_requests_total{method="POST",route="/v1/detect",status="200"}' in text
    assert 'odclient_http_requests_total{method="POST",route="/v1/detect",status="400"}' in text
    assert 'odclient_upstream_duration_seconds_count{rpc="Predict"}' in text
    assert 'odclient_errors_total{code="empty_image"}' in text
    assert "odclient_http_request_duration_seconds_bucket" in text


def test_openapi_documents_every_route(app, client) -> None:
    document = client.get("/openapi.json").json
    checked_in = json.loads((Path(__file__).resolve().parents[2] / "client/odclient/openapi.json").read_text())
    assert document == checked_in and document["openapi"].startswith("3.")
    routes = {(rule.rule, method.lower()) for rule in app.url_map.iter_rules() if rule.endpoint != "static"
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert routes == documented
    for ref in json.dumps(document).split('"$ref": "')[1:]:  # every $ref resolves
        name = ref.split('"')[0].rsplit("/", 1)[1]
        assert name in document["components"]["schemas"]


def test_page_and_static(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.data.decode()
    assert 'type="file"' in html and 'type="range"' in html and "/static/app.js" in html
    assert client.get("/static/app.js").status_code == 200
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]


def test_unknown_route_and_method_are_json(client) -> None:
    response = client.get("/nope")
    assert response.status_code == 404 and response.json["code"] == "not_found"
    response = client.get("/v1/detect")
    assert response.status_code == 405 and response.json["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


def test_large_photo_decoded_at_reduced_scale_keeps_full_size_boxes(client) -> None:
    from tests.serving.model_factory import Blob

    blobs = (Blob("red", 250, 500, 1250, 1500, 255), Blob("green", 1500, 2000, 2750, 3750, 204))
    photo = make_image(3000, 4000, blobs)  # 12 MP
    jpeg = encode(photo, "JPEG", quality=90)
    result = client.post("/v1/detect", data=jpeg, content_type="image/jpeg").json["images"][0]
    assert (result["width"], result["height"]) == (4000, 3000)
    assert [d["label"] for d in result["detections"]] == ["red", "green"]
    assert result["detections"][0]["box_px"] == pytest.approx({"xmin": 500, "ymin": 250, "xmax": 1500, "ymax": 1250},
                                                              abs=12)
    drawn = client.post("/v1/detect?format=jpeg", data=jpeg, content_type="image/jpeg")
    assert Image.open(io.BytesIO(drawn.data)).size == (4000, 3000)


def test_model_refusal_is_422_without_tensorflow_internals(app) -> None:
    """With the stretching turned off, the test detector refuses a 2000x1 image inside its graph, with
    TensorFlow's message (node and function names): the answer says it plainly; the log keeps the details."""
    app.config["MIN_INPUT_SIDE"] = 0
    thin = encode(make_image(1, 2000, ()))
    answer = app.test_client().post("/v1/detect", data=thin, content_type="image/png")
    assert answer.status_code == 422, answer.get_json()
    body = answer.get_json()
    assert body["code"] == "rejected_by_model" and "could not process" in body["message"]
    assert not any(marker in body["message"] for marker in ("Op:", "__inference", "node", "while/"))


def test_pixel_budget_per_request_counts_jpegs_at_their_draft_scale(app) -> None:
    """MAX_REQUEST_PIXELS bounds the decoding work of one request (16 PNGs of 6300x6300 cost 6.4 s of CPU);
    a large JPEG counts at the reduced DCT scale it is decoded at."""
    app.config["MAX_REQUEST_PIXELS"] = 100_000
    client = app.test_client()
    small = encode(make_image())  # 160x120 = 19200 pixels
    five, five_type = multipart([("image", f"{i}.png", small, "image/png") for i in range(5)])
    six, six_type = multipart([("image", f"{i}.png", small, "image/png") for i in range(6)])
    assert client.post("/v1/detect", data=five, content_type=five_type).status_code == 200
    answer = client.post("/v1/detect", data=six, content_type=six_type)
    assert answer.status_code == 413 and answer.get_json()["code"] == "too_many_pixels"
    assert "MAX_REQUEST_PIXELS=100000" in answer.get_json()["message"]

    app.config["MAX_REQUEST_PIXELS"] = 2_000_000
    photo = make_image(2000, 3000, [Blob("red", 100, 200, 900, 1400)])  # 6 MP
    jpeg = client.post("/v1/detect", data=encode(photo, "JPEG", quality=90), content_type="image/jpeg")
    assert jpeg.status_code == 200, jpeg.get_json()  # decoded at 1/2 scale: 1.5 MP
    png = client.post("/v1/detect", data=encode(photo), content_type="image/png")
    assert png.status_code == 413 and png.get_json()["code"] == "too_many_pixels"


def test_saturated_worker_sheds_load_with_503_and_retry_after(app) -> None:
    """With every decode slot busy for longer than BUSY_TIMEOUT a request is answered 503 + Retry-After,
    not queued without bound. The slot is held here the way a request decoding a large image holds it."""
    app.config.update(BUSY_TIMEOUT=0.2, BYTES_SIGNATURE_NAME="")  # every image decoded here
    small = encode(make_image())
    slots = app.extensions["odclient.decode_slots"]
    assert slots.acquire(timeout=5)
    try:
        answer = app.test_client().post("/v1/detect", data=small, content_type="image/png")
    finally:
        slots.release()
    assert answer.status_code == 503 and answer.get_json()["code"] == "server_busy"
    assert answer.headers["Retry-After"] == "5"
    assert app.test_client().post("/v1/detect", data=small, content_type="image/png").status_code == 200
    # a request that gets the slot within BUSY_TIMEOUT is served, not shed
    assert slots.acquire(timeout=5)
    releaser = threading.Timer(0.05, slots.release)
    releaser.start()
    try:
        assert app.test_client().post("/v1/detect", data=small, content_type="image/png").status_code == 200
    finally:
        releaser.join()



@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_encoded_upload_forwarded_as_is_or_decoded_here_same_detections(app, fmt: str) -> None:
    """The JPEG/PNG fast path (image_bytes, decoded by the model server) and the client's decode (uint8
    tensor to serving_default) answer alike; EXIF-rotated uploads always take the client's decode."""
    data = encode(IMAGE, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    client = app.test_client()
    forwarded = client.post("/v1/detect", data=data, content_type="image/png").get_json()
    assert forwarded["model"]["signature"] == "image_bytes"
    assert forwarded["images"][0]["timing_ms"]["decode"] == 0
    app.config["BYTES_SIGNATURE_NAME"] = ""
    decoded = client.post("/v1/detect", data=data, content_type="image/png").get_json()
    assert decoded["model"]["signature"] == "serving_default"
    for a, b in zip(forwarded["images"][0]["detections"], decoded["images"][0]["detections"], strict=True):
        assert a["label"] == b["label"] and a["box_px"] == b["box_px"] and a["score"] == pytest.approx(b["score"], abs=0.01)

    app.config["BYTES_SIGNATURE_NAME"] = "image_bytes"
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(IMAGE).save(rotated, format="JPEG", exif=exif.tobytes())
    answer = client.post("/v1/detect", data=rotated.getvalue(), content_type="image/jpeg").get_json()
    assert answer["model"]["signature"] == "serving_default"
    assert (answer["images"][0]["width"], answer["images"][0]["height"]) == (120, 160)


def test_the_page_links_to_the_training_jobs(client, app) -> None:
    page = client.get("/").get_data(as_text=True)
    assert 'href="/jobs"' in page
    answer = client.get("/jobs")
    assert answer.status_code == 302 and answer.headers["Location"] == "http://127.0.0.1:9090/jobs"
    app.config["JOBS_URL"] = ""
    answer = client.get("/jobs")
    assert answer.status_code == 404 and answer.get_json()["code"] == "no_job_list"
