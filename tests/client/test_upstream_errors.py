"""Upstream failures -> 503 + Retry-After / 504 / 502 / 404, and the one retry on UNAVAILABLE.

A fake PredictionService/ModelService (in-process gRPC server on 127.0.0.1) injects the failures the real
model server cannot be made to produce on demand; the happy path is tested against the real one.
"""
from __future__ import annotations

import time
from concurrent import futures
from typing import Any, Callable, Iterator

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc

from odclient import create_app
from odclient.tfserving import make_tensor, to_numpy
from tests.client.support import encode
from tests.serving.model_factory import free_port, make_image

PNG = encode(make_image())


class FakePredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self) -> None:
        self.behaviour: Callable[[Any, Any], Any] = lambda request, context: predict_pb2.PredictResponse()
        self.calls = 0

    def Predict(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        self.calls += 1
        return self.behaviour(request, context)


class FakeModelService(model_service_pb2_grpc.ModelServiceServicer):
    def GetModelStatus(self, request: Any, context: Any) -> Any:  # noqa: N802
        context.abort(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {request.model_spec.name}")


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[str, FakePredictionService]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    service = FakePredictionService()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(service, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(FakeModelService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", service
    server.stop(0)


def app_for(address: str, **config: Any) -> Any:
    return create_app({"TESTING": True, "TF_SERVING_ADDR": address, "MODEL_NAME": "detector",
                       "SERVING_DIR": "/nonexistent", **config}).test_client()


def good_response(request: Any) -> Any:
    response = predict_pb2.PredictResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = 7
    response.outputs["detection_boxes"].CopyFrom(make_tensor(np.array([[[0.1, 0.2, 0.5, 0.6]]], np.float32)))
    response.outputs["detection_scores"].CopyFrom(make_tensor(np.array([[0.9]], np.float32)))
    response.outputs["detection_classes"].CopyFrom(make_tensor(np.array([[2.0]], np.float32)))
    response.outputs["num_detections"].CopyFrom(make_tensor(np.array([1.0], np.float32)))
    return response


def test_model_server_down_is_503_with_retry_after() -> None:
    client = app_for(f"127.0.0.1:{free_port()}", PREDICT_TIMEOUT=3.0)
    start = time.monotonic()
    for path, method in (("/v1/detect", "post"), ("/v1/models", "get"), ("/readyz", "get")):
        response = getattr(client, method)(path, data=PNG, content_type="image/png") if method == "post" else client.get(path)
        assert response.status_code == 503, (path, response.json)
        assert response.headers["Retry-After"] == "5"
        assert response.json["code"] == "model_server_unavailable"
    assert time.monotonic() - start < 5  # fails fast, does not wait for the deadline
    assert client.get("/healthz").status_code == 200  # liveness does not depend on the model server


def test_deadline_is_504(fake) -> None:
    address, service = fake

    def slow(request: Any, context: Any) -> Any:
        time.sleep(1.0)
        return good_response(request)

    service.behaviour = slow
    start = time.monotonic()
    response = app_for(address, PREDICT_TIMEOUT=0.3).post("/v1/detect", data=PNG, content_type="image/png")
    assert response.status_code == 504 and response.json["code"] == "upstream_timeout"
    assert time.monotonic() - start < 1.0


def test_one_retry_on_unavailable(fake) -> None:
    address, service = fake
    state = {"n": 0}

    def flaky(request: Any, context: Any) -> Any:
        state["n"] += 1
        if state["n"] == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        return good_response(request)

    service.behaviour = flaky
    response = app_for(address).post("/v1/detect?threshold=0", data=PNG, content_type="image/png")
    assert response.status_code == 200 and state["n"] == 2
    detection = response.json["images"][0]["detections"][0]
    assert detection["class_id"] == 2 and detection["label"] is None  # no label map at /nonexistent
    assert detection["box"] == pytest.approx({"xmin": 0.2, "ymin": 0.1, "xmax": 0.6, "ymax": 0.5})
    assert response.json["model"]["version"] == 7

    def down(request: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNAVAILABLE, "still down")

    service.behaviour, service.calls = down, 0
    response = app_for(address).post("/v1/detect", data=PNG, content_type="image/png")
    assert response.status_code == 503 and service.calls == 2  # exactly one retry


@pytest.mark.parametrize("code, status, api_code", [
    (grpc.StatusCode.INTERNAL, 502, "upstream_error"),
    (grpc.StatusCode.INVALID_ARGUMENT, 422, "rejected_by_model"),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, 503, "model_server_unavailable"),
])
def test_upstream_status_codes(fake, code: grpc.StatusCode, status: int, api_code: str) -> None:
    address, service = fake
    service.behaviour = lambda request, context: context.abort(code, "injected")
    response = app_for(address).post("/v1/detect", data=PNG, content_type="image/png")
    assert response.status_code == status and response.json["code"] == api_code
    assert "Traceback" not in response.get_data(as_text=True)


def test_default_model_not_found_means_not_loaded(fake) -> None:
    address, service = fake
    service.behaviour = lambda request, context: context.abort(grpc.StatusCode.NOT_FOUND, "Servable not found")
    client = app_for(address)
    response = client.post("/v1/detect", data=PNG, content_type="image/png")
    assert response.status_code == 503 and response.json["code"] == "model_not_loaded"
    assert response.headers["Retry-After"] == "5"
    response = client.post("/v1/detect?version=3", data=PNG, content_type="image/png")
    assert response.status_code == 404
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json["code"] == "model_not_loaded"


def test_not_a_detector_is_502(fake) -> None:
    address, service = fake
    service.behaviour = lambda request, context: predict_pb2.PredictResponse()
    response = app_for(address).post("/v1/detect", data=PNG, content_type="image/png")
    assert response.status_code == 502 and "detection_boxes" in response.json["message"]


@pytest.mark.parametrize("array", [np.arange(12, dtype=np.float32).reshape(1, 3, 4),
                                   np.array([[3, 1, 2]], dtype=np.int64), np.zeros((1, 2, 2, 3), np.uint8)])
def test_tensor_roundtrip(array: np.ndarray) -> None:
    proto = make_tensor(array)
    assert np.array_equal(to_numpy(proto), array)
    typed = type(proto)()  # the typed *_val fields TF Serving uses by default
    typed.CopyFrom(proto)
    typed.ClearField("tensor_content")
    field = {np.float32: "float_val", np.int64: "int64_val", np.uint8: "int_val"}[array.dtype.type]
    getattr(typed, field).extend(array.reshape(-1).tolist())
    assert np.array_equal(to_numpy(typed), array)
