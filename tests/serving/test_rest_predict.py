"""TF Serving's REST predict API on the development model server, with requests written the way TF Serving's
REST API documentation shows them: ``POST /v1/models/<model>[/versions/<v>|/labels/<l>]:predict`` with
``instances`` (row format) or ``inputs`` (columnar), ``{"b64": ...}`` for binary strings, answers
``{"predictions": [...]}`` / ``{"outputs": ...}`` and errors ``{"error": "<message>"}``."""
from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow_serving", reason="needs .venv/modelserver (dockerfiles/requirements/modelserver.txt)")

from tests.serving.model_factory import (BYTES_INPUT_KEY, BYTES_SIGNATURE, ModelServerProcess, add_version,  # noqa: E402
                                         expected_detections, make_image)

IMAGE = make_image()
EXPECTED = expected_detections(IMAGE)


@pytest.fixture(scope="module")
def rest(tmp_path_factory, detector_saved_model) -> Iterator[str]:
    root = tmp_path_factory.mktemp("rest")
    add_version(root / "m", 1, detector_saved_model)
    (root / "models.config").write_text(f"""model_config_list {{ config {{ name: "m" base_path: "{root / 'm'}"
        version_labels {{ key: "stable" value: 1 }} }} }}""")
    server = ModelServerProcess(["--model_config_file", str(root / "models.config")],
                                log_path=root / "server.log").start()
    try:
        server.wait_available("m")
        yield f"http://127.0.0.1:{server.rest_port}"
    finally:
        server.stop()


def post(url: str, body: Any) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def check_detections(outputs: dict[str, Any]) -> None:
    """One image's outputs (no batch dimension) against the test model's known answer."""
    count = int(outputs["num_detections"])
    assert count == len(EXPECTED)
    np.testing.assert_allclose(outputs["detection_boxes"][:count], [d["box"] for d in EXPECTED], atol=1e-6)
    np.testing.assert_allclose(outputs["detection_scores"][:count], [d["score"] for d in EXPECTED], atol=1e-6)
    assert outputs["detection_classes"][:count] == [d["class_id"] for d in EXPECTED]


def test_row_format_named_and_unnamed(rest: str) -> None:
    for instances in ([{"input_tensor": IMAGE.tolist()}], [IMAGE.tolist()]):
        status, body = post(f"{rest}/v1/models/m:predict", {"instances": instances})
        assert status == 200, body
        [prediction] = body["predictions"]
        assert set(prediction) == {"detection_boxes", "detection_scores", "detection_classes", "num_detections"}
        check_detections(prediction)


def test_columnar_format_named_and_unnamed(rest: str) -> None:
    for inputs in ({"input_tensor": [IMAGE.tolist()]}, [IMAGE.tolist()]):
        status, body = post(f"{rest}/v1/models/m/versions/1:predict",
                            {"signature_name": "serving_default", "inputs": inputs})
        assert status == 200, body
        outputs = body["outputs"]
        assert np.array(outputs["detection_boxes"]).shape == (1, 10, 4)
        check_detections({key: value[0] for key, value in outputs.items()})


def test_b64_bytes_on_the_image_bytes_signature(rest: str) -> None:
    out = io.BytesIO()
    Image.fromarray(IMAGE).save(out, format="PNG")
    encoded = {"b64": base64.b64encode(out.getvalue()).decode()}
    status, body = post(f"{rest}/v1/models/m/labels/stable:predict",
                        {"signature_name": BYTES_SIGNATURE, "instances": [{BYTES_INPUT_KEY: encoded}]})
    assert status == 200, body
    check_detections(body["predictions"][0])
    status, body = post(f"{rest}/v1/models/m:predict", {"signature_name": BYTES_SIGNATURE, "inputs": [encoded]})
    assert status == 200, body
    check_detections({key: value[0] for key, value in body["outputs"].items()})


@pytest.mark.parametrize("path, body, status", [
    ("/v1/models/nope:predict", {"instances": [IMAGE.tolist()]}, 404),
    ("/v1/models/m/versions/9:predict", {"instances": [IMAGE.tolist()]}, 404),
    ("/v1/models/m:predict", {"signature_name": "nope", "instances": [IMAGE.tolist()]}, 400),
    ("/v1/models/m:predict", {"instances": [IMAGE.tolist()], "inputs": [IMAGE.tolist()]}, 400),
    ("/v1/models/m:predict", {"signature_name": "serving_default"}, 400),
    ("/v1/models/m:predict", {"instances": [{"images": IMAGE.tolist()}]}, 400),
    ("/v1/models/m:predict", {"instances": [[[1, 2], [3]]]}, 400),             # ragged
    ("/v1/models/m:predict", {"instances": [[[[300, 0, 0]]]]}, 400),            # not a uint8
    ("/v1/models/m:predict", {"instances": [{"b64": "%%%"}]}, 400),
    ("/v1/models/m:predict", b"{not json", 400),
    ("/v1/models/m:predict", b"[" * 5000 + b"]" * 5000, 400),
    ("/v1/models/m:classify", {"examples": []}, 501),
])
def test_errors_are_json_with_tf_servings_status(rest: str, path: str, body: Any, status: int) -> None:
    got, answer = post(rest + path, body)
    assert got == status and set(answer) == {"error"} and answer["error"], answer
