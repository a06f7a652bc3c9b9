"""The development model server over real gRPC, through tensorflow-serving-api's own stubs.

What a TF Serving client relies on: Predict answers with the model's outputs; GetModelStatus and
GetModelMetadata; the status codes for unknown models, versions and bad inputs; new versions served
without a restart, removed ones unloaded; a killed server reads as UNAVAILABLE and a restarted one
recovers. The pure functions (config, version policy, directory scan) are checked in-process.
"""
from __future__ import annotations

import json
import shutil
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

# These tests run in the model server's venv (.venv/modelserver: TensorFlow + tensorflow-serving-api).
pytest.importorskip("tensorflow_serving", reason="needs .venv/modelserver (dockerfiles/requirements/modelserver.txt)")
import grpc  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,  # noqa: E402
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)
from tensorflow_serving.config import model_server_config_pb2  # noqa: E402

from odstack.serving import modelserver  # noqa: E402
from tests.serving.conftest import MODEL_NAME  # noqa: E402
from tests.serving.model_factory import (LABELS, MAX_DETECTIONS, ModelServerProcess, add_version,  # noqa: E402
                                         expected_detections, make_image)

AVAILABLE, END = get_model_status_pb2.ModelVersionStatus.AVAILABLE, get_model_status_pb2.ModelVersionStatus.END


def predict_request(image: np.ndarray | None = None, model: str = MODEL_NAME, **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    if image is not None:
        request.inputs["input_tensor"].CopyFrom(tf.make_tensor_proto(image))
    return request


def status_request(model: str = MODEL_NAME, version: int | None = None) -> get_model_status_pb2.GetModelStatusRequest:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    return request


@pytest.fixture(scope="module")
def channel(model_server: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(model_server) as chan:
        yield chan


@pytest.fixture(scope="module")
def predict_stub(channel: grpc.Channel) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def model_stub(channel: grpc.Channel) -> model_service_pb2_grpc.ModelServiceStub:
    return model_service_pb2_grpc.ModelServiceStub(channel)


def rpc_code(call, *args) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, timeout=10)
    return caught.value.code()


# --- Predict, status, metadata on the session's server -------------------------------------------------

def test_predict_returns_the_models_outputs(predict_stub):
    image = make_image()
    response = predict_stub.Predict(predict_request(image[None]), timeout=10)
    assert (response.model_spec.name, response.model_spec.version.value) == (MODEL_NAME, 1)
    assert response.model_spec.signature_name == "serving_default"
    out = {key: tf.make_ndarray(value) for key, value in response.outputs.items()}
    assert set(out) == {"detection_boxes", "detection_scores", "detection_classes", "num_detections"}
    assert out["detection_boxes"].shape == (1, MAX_DETECTIONS, 4) and out["num_detections"].shape == (1,)
    assert all(value.dtype == np.float32 for value in out.values())
    assert response.outputs["detection_scores"].float_val  # typed fields, as TF Serving answers by default
    expected = expected_detections(image)
    assert int(out["num_detections"][0]) == len(expected) == 3
    for row, want in enumerate(expected):
        assert LABELS[int(out["detection_classes"][0, row]) - 1] == want["label"]
        assert out["detection_scores"][0, row] == pytest.approx(want["score"], abs=1e-6)
        np.testing.assert_allclose(out["detection_boxes"][0, row], want["box"], atol=1e-6)
    assert not out["detection_scores"][0, 3:].any()


def test_predict_empty_image_and_output_filter(predict_stub):
    request = predict_request(np.zeros((1, 0, 0, 3), np.uint8), version=1)
    request.output_filter.append("num_detections")
    response = predict_stub.Predict(request, timeout=10)
    assert list(response.outputs) == ["num_detections"]
    assert tf.make_ndarray(response.outputs["num_detections"]).tolist() == [0.0]


def test_predict_large_image(predict_stub):
    """Messages over gRPC's default 4 MB limit are accepted, as by TF Serving."""
    image = make_image(1080, 1920)
    response = predict_stub.Predict(predict_request(image[None]), timeout=30)
    assert tf.make_ndarray(response.outputs["num_detections"]).tolist() == [3.0]


@pytest.mark.parametrize("case, code", [
    ("unknown model", grpc.StatusCode.NOT_FOUND),
    ("unknown version", grpc.StatusCode.NOT_FOUND),
    ("unknown version label", grpc.StatusCode.INVALID_ARGUMENT),
    ("float image", grpc.StatusCode.INVALID_ARGUMENT),
    ("batch of two", grpc.StatusCode.INVALID_ARGUMENT),
    ("rank 3", grpc.StatusCode.INVALID_ARGUMENT),
    ("wrong input name", grpc.StatusCode.INVALID_ARGUMENT),
    ("no inputs", grpc.StatusCode.INVALID_ARGUMENT),
    ("truncated tensor_content", grpc.StatusCode.INVALID_ARGUMENT),
    ("unknown output", grpc.StatusCode.INVALID_ARGUMENT),
    ("unknown signature", grpc.StatusCode.FAILED_PRECONDITION),
])
def test_predict_errors(predict_stub, case, code):
    image = make_image(24, 32)[None]
    request = {
        "unknown model": lambda: predict_request(image, model="nope"),
        "unknown version": lambda: predict_request(image, version=7),
        "unknown version label": lambda: predict_request(image, version_label="stable"),
        "float image": lambda: predict_request(image.astype(np.float32)),
        "batch of two": lambda: predict_request(np.concatenate([image, image])),
        "rank 3": lambda: predict_request(image[0]),
        "no inputs": lambda: predict_request(),
        "unknown signature": lambda: predict_request(image, signature_name="nope"),
    }.get(case, lambda: predict_request(image))()
    if case == "wrong input name":
        request.inputs["images"].CopyFrom(request.inputs.pop("input_tensor"))
    elif case == "truncated tensor_content":
        tensor = request.inputs["input_tensor"]
        tensor.tensor_content = tensor.tensor_content[:-5]
    elif case == "unknown output":
        request.output_filter.append("detection_masks")
    assert rpc_code(predict_stub.Predict, request) == code


def test_model_status(model_stub):
    response = model_stub.GetModelStatus(status_request(), timeout=10)
    [status] = response.model_version_status
    assert (status.version, status.state, status.status.error_code) == (1, AVAILABLE, 0)
    assert model_stub.GetModelStatus(status_request(version=1), timeout=10).model_version_status[0].version == 1
    assert rpc_code(model_stub.GetModelStatus, status_request(version=2)) == grpc.StatusCode.NOT_FOUND
    assert rpc_code(model_stub.GetModelStatus, status_request("nope")) == grpc.StatusCode.NOT_FOUND


def test_model_metadata(predict_stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL_NAME
    response = predict_stub.GetModelMetadata(request, timeout=10)
    assert response.model_spec.version.value == 1
    defs = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(defs)
    signature = defs.signature_def["serving_default"]
    tensor = signature.inputs["input_tensor"]
    assert tensor.dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in tensor.tensor_shape.dim] == [1, -1, -1, 3]
    assert set(signature.outputs) == {"detection_boxes", "detection_scores", "detection_classes", "num_detections"}
    assert rpc_code(predict_stub.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=request.model_spec)) == grpc.StatusCode.INVALID_ARGUMENT
    assert rpc_code(predict_stub.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=request.model_spec, metadata_field=["graph"])) == grpc.StatusCode.INVALID_ARGUMENT


# --- versions picked up and unloaded without a restart (config file, REST, metrics) ---------------------

@pytest.fixture(scope="module")
def hot_server(tmp_path_factory, detector_saved_model) -> Iterator[tuple[ModelServerProcess, Path]]:
    root = tmp_path_factory.mktemp("hot")
    add_version(root / "hot", 1, detector_saved_model)
    (root / "models.config").write_text(f"""
model_config_list {{
  config {{ name: "hot" base_path: "{root / 'hot'}" model_platform: "tensorflow"
           version_labels {{ key: "stable" value: 1 }} }}
  config {{ name: "empty" base_path: "{root / 'empty'}" model_platform: "tensorflow" }}
}}""")
    (root / "monitoring.config").write_text('prometheus_config { enable: true path: "/metrics" }')
    server = ModelServerProcess(["--model_config_file", str(root / "models.config"), "--file_system_poll_wait_seconds",
                                 "0.5", "--max_num_load_retries", "0", "--monitoring_config_file",
                                 str(root / "monitoring.config"), "--enable_batching"],
                                log_path=root / "modelserver.log").start()
    try:
        server.wait_available("hot")
        yield server, root / "hot"
    finally:
        server.stop()


def served_version(stub, timeout: float, want: int, **spec) -> float:
    """Seconds until Predict on the latest version answers from version ``want``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if stub.Predict(predict_request(make_image(24, 32)[None], "hot", **spec), timeout=5).model_spec.version.value == want:
                return time.monotonic() - start
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"version {want} not served within {timeout} s")


def states(stub) -> dict[int, tuple[int, int]]:
    response = stub.GetModelStatus(status_request("hot"), timeout=5)
    return {s.version: (s.state, s.status.error_code) for s in response.model_version_status}


def test_new_version_served_and_removed_version_unloaded(hot_server, detector_saved_model):
    server, base = hot_server
    with grpc.insecure_channel(server.address) as chan:
        predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
        model_stub = model_service_pb2_grpc.ModelServiceStub(chan)
        add_version(base, 2, detector_saved_model)
        assert served_version(predict_stub, 10, 2) < 5
        assert states(model_stub) == {2: (AVAILABLE, 0), 1: (END, 0)}  # latest policy: v1 unloaded after v2 is up
        labelled = predict_request(make_image(24, 32)[None], "hot", version_label="stable")
        assert rpc_code(predict_stub.Predict, labelled) == grpc.StatusCode.NOT_FOUND  # label -> v1, unloaded
        assert rpc_code(predict_stub.Predict, predict_request(make_image(24, 32)[None], "hot", version=1)) == \
            grpc.StatusCode.NOT_FOUND
        shutil.rmtree(base / "2")
        assert served_version(predict_stub, 10, 1) < 5
        assert states(model_stub) == {2: (END, 0), 1: (AVAILABLE, 0)}
        assert predict_stub.Predict(labelled, timeout=5).model_spec.version.value == 1


def test_broken_version_reports_error_and_previous_keeps_serving(hot_server):
    server, base = hot_server
    with grpc.insecure_channel(server.address) as chan:
        predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
        model_stub = model_service_pb2_grpc.ModelServiceStub(chan)
        (base / "3").mkdir()
        (base / "3" / "saved_model.pb").write_bytes(b"not a SavedModel")
        deadline = time.monotonic() + 10
        while states(model_stub).get(3, (0, 0))[0] != END and time.monotonic() < deadline:
            time.sleep(0.1)
        status = model_stub.GetModelStatus(status_request("hot", 3), timeout=5).model_version_status[0]
        assert status.state == END and status.status.error_code != 0 and status.status.error_message
        assert served_version(predict_stub, 1, 1) < 1
        shutil.rmtree(base / "3")


def test_configured_model_without_versions(hot_server):
    server, _ = hot_server
    with grpc.insecure_channel(server.address) as chan:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
        assert rpc_code(stub.Predict, predict_request(make_image(8, 8)[None], "empty")) == grpc.StatusCode.UNAVAILABLE
        assert rpc_code(model_service_pb2_grpc.ModelServiceStub(chan).GetModelStatus, status_request("empty")) == \
            grpc.StatusCode.NOT_FOUND


def test_rest_status_and_metrics(hot_server):
    server, _ = hot_server
    base = f"http://127.0.0.1:{server.rest_port}"
    with urllib.request.urlopen(f"{base}/v1/models/hot/versions/1", timeout=5) as answer:
        assert json.load(answer) == {"model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    with urllib.request.urlopen(f"{base}/v1/models/hot/metadata", timeout=5) as answer:
        assert "serving_default" in json.load(answer)["metadata"]["signature_def"]["signature_def"]
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{base}/v1/models/nope", timeout=5)
    assert caught.value.code == 404 and "error" in json.load(caught.value)
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    assert ':tensorflow:serving:request_count{model_name="hot",status="OK"}' in text
    assert ':tensorflow:cc:saved_model:load_attempt_count{' in text


# --- crash, restart, graceful stop ----------------------------------------------------------------------

def test_loading_states_kill_restart_and_sigterm(tmp_path, detector_saved_model):
    base = tmp_path / "model"
    add_version(base, 1, detector_saved_model)
    args = ["--model_name", "m", "--model_base_path", str(base)]
    server = ModelServerProcess([*args, "--load_delay_seconds", "3"], log_path=tmp_path / "first.log").start()
    restarted = None
    try:
        deadline = time.monotonic() + 60
        while True:  # the REST port opens with the gRPC port; a gRPC channel would back off meanwhile
            try:
                server.status("m")
                break
            except OSError:
                assert time.monotonic() < deadline and server.process.poll() is None
                time.sleep(0.05)
        with grpc.insecure_channel(server.address) as chan:
            predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
            model_stub = model_service_pb2_grpc.ModelServiceStub(chan)
            request = predict_request(make_image(24, 32)[None], "m")
            seen, codes = set(), set()
            deadline = time.monotonic() + 60
            while AVAILABLE not in seen and time.monotonic() < deadline:
                try:
                    seen.update(s.state for s in model_stub.GetModelStatus(status_request("m"), timeout=2,
                                                                            wait_for_ready=True).model_version_status)
                except grpc.RpcError:  # not listening yet, or the version not found yet
                    time.sleep(0.05)
                    continue
                if AVAILABLE not in seen:
                    try:
                        predict_stub.Predict(request, timeout=5)
                    except grpc.RpcError as error:
                        codes.add(error.code())
                time.sleep(0.05)
            assert get_model_status_pb2.ModelVersionStatus.LOADING in seen and AVAILABLE in seen
            assert codes == {grpc.StatusCode.UNAVAILABLE}  # while nothing is loaded
            assert predict_stub.Predict(request, timeout=10).model_spec.version.value == 1

            server.stop(signal.SIGKILL)
            assert rpc_code(predict_stub.Predict, request) == grpc.StatusCode.UNAVAILABLE

            restarted = ModelServerProcess(args, port=server.port, log_path=tmp_path / "second.log").start()
            restarted.wait_available("m")
            deadline = time.monotonic() + 10  # the old channel reconnects by itself (gRPC backoff)
            while True:
                try:
                    assert predict_stub.Predict(request, timeout=5).model_spec.version.value == 1
                    break
                except grpc.RpcError:
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
        started = time.monotonic()
        assert restarted.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 8
    finally:
        server.stop(signal.SIGKILL)
        if restarted:
            restarted.stop(signal.SIGKILL)


# --- pure functions, in-process --------------------------------------------------------------------------

def test_version_policies_and_scan(tmp_path):
    for name in ("1", "3", "10", "x7", ".tmp-11"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    (tmp_path / "12").mkdir()  # no saved_model.pb (yet): not a version
    on_disk = modelserver.scan_versions(tmp_path)
    assert sorted(on_disk) == [1, 3, 10]
    assert modelserver.scan_versions(tmp_path / "missing") == {}
    config = model_server_config_pb2.ModelConfig(name="m", base_path=str(tmp_path))
    assert modelserver.select_versions(config, on_disk) == {10}
    config.model_version_policy.latest.num_versions = 2
    assert modelserver.select_versions(config, on_disk) == {3, 10}
    config.model_version_policy.all.SetInParent()
    assert modelserver.select_versions(config, on_disk) == {1, 3, 10}
    config.model_version_policy.specific.versions.extend([3, 4])
    assert modelserver.select_versions(config, on_disk) == {3}


def test_model_config_file(tmp_path):
    path = tmp_path / "models.config"
    path.write_text('model_config_list { config { name: "a" base_path: "/models/a" model_platform: "tensorflow" '
                    'model_version_policy { latest { num_versions: 2 } } } }')
    [config] = modelserver.read_model_config(path)
    assert (config.name, config.base_path, config.model_version_policy.latest.num_versions) == ("a", "/models/a", 2)
    for bad in ('model_config_list { config { name: "a" base_path: "/m" model_platform: "onnx" } }',
                'model_config_list { config { name: "a" } }', "not a config"):
        path.write_text(bad)
        with pytest.raises(ValueError):
            modelserver.read_model_config(path)
