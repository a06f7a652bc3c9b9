"""How the development model server loads versions: failures reported at once and retried with backoff
without blocking other versions, deleted versions left alone, warm-up replayed before AVAILABLE, and a
default bind on loopback. Each test runs its own server on its own directory (127.0.0.1, free ports)."""
from __future__ import annotations

import re
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Callable

import pytest

pytest.importorskip("tensorflow_serving", reason="needs .venv/modelserver (dockerfiles/requirements/modelserver.txt)")
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2  # noqa: E402

from odstack.export.warmup import predict_record  # noqa: E402
from odstack.serving import modelserver  # noqa: E402
from tests.serving.model_factory import ModelServerProcess, add_version, make_image  # noqa: E402


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``check()`` holds; fails after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - start


def version_states(server: ModelServerProcess, model: str) -> dict[int, dict]:
    return {int(s["version"]): s for s in server.status(model)}


def failed_attempts(server: ModelServerProcess, path: Path) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    match = re.search(r':tensorflow:cc:saved_model:load_attempt_count\{model_path="%s",status="fail"\} (\d+)'
                      % re.escape(str(path)), text)
    return int(match[1]) if match else 0


def test_default_bind_address_is_loopback(monkeypatch) -> None:
    monkeypatch.delenv("MODELSERVER_BIND_ADDRESS", raising=False)
    assert modelserver.parse_args(["--model_base_path", "x"]).bind_address == "127.0.0.1"


def test_broken_version_fails_at_once_retries_with_backoff_and_stops_when_deleted(tmp_path, detector_saved_model):
    base = tmp_path / "m"
    add_version(base, 1, detector_saved_model)
    (tmp_path / "models.config").write_text(f"""model_config_list {{ config {{
        name: "m" base_path: "{base}" model_version_policy {{ all {{}} }} }} }}""")
    (tmp_path / "monitoring.config").write_text('prometheus_config { enable: true path: "/metrics" }')
    # TF Serving's defaults: 5 retries, 60 s apart (which used to hold the loader for 5 minutes)
    server = ModelServerProcess(["--model_config_file", str(tmp_path / "models.config"),
                                 "--file_system_poll_wait_seconds", "0.2",
                                 "--monitoring_config_file", str(tmp_path / "monitoring.config")],
                                log_path=tmp_path / "server.log").start()
    try:
        server.wait_available("m", version=1)
        broken = base / "3"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"")
        wait_for("version 3 END with its error", lambda: version_states(server, "m").get(3, {}).get("state") == "END",
                 timeout=5)
        status = version_states(server, "m")[3]["status"]
        assert status["error_code"] != "OK" and status["error_message"]
        add_version(base, 4, detector_saved_model)  # not held up by version 3's retries
        wait_for("version 4 AVAILABLE", lambda: version_states(server, "m").get(4, {}).get("state") == "AVAILABLE", timeout=10)
        wait_for("a retry of version 3", lambda: failed_attempts(server, broken) >= 2, timeout=10)
        assert version_states(server, "m")[1]["state"] == "AVAILABLE"
        shutil.rmtree(broken)
        time.sleep(1)  # the next poll sees it gone
        attempts = failed_attempts(server, broken)
        time.sleep(5)  # longer than the next backoff step (<= 4 s after 3 failures)
        assert failed_attempts(server, broken) == attempts, "a deleted version is still retried"
    finally:
        server.stop()


def write_warmup(version_dir: Path, requests: list[predict_pb2.PredictRequest]) -> None:
    """TF Serving's warm-up file: a TFRecord of PredictionLog records, in the version's assets.extra."""
    path = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    path.parent.mkdir(exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for request in requests:
            writer.write(prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString())


def warmup_request(input_key: str = "input_tensor") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.model_spec.signature_name = "serving_default"
    request.inputs[input_key].CopyFrom(tf.make_tensor_proto(make_image(48, 64)[None]))
    return request


def test_warmup_is_replayed_before_available_and_a_failing_one_fails_the_load(tmp_path, detector_saved_model):
    base = tmp_path / "m"
    version_1 = add_version(base, 1, detector_saved_model)  # (its assets.extra holds the label map)
    with tf.io.TFRecordWriter(str(version_1 / "assets.extra" / "tf_serving_warmup_requests")) as writer:
        for _ in range(2):  # export's own records (odstack/export/warmup.py)
            writer.write(predict_record("m", "serving_default",
                                        {"input_tensor": tf.make_tensor_proto(make_image(48, 64)[None]).SerializeToString()}))
    server = ModelServerProcess(["--model_name", "m", "--model_base_path", str(base),
                                 "--file_system_poll_wait_seconds", "0.2", "--max_num_load_retries", "0"],
                                log_path=tmp_path / "server.log").start()
    try:
        server.wait_available("m", version=1)
        assert "warm-up of {name: m version: 1}: 2 request(s)" in (tmp_path / "server.log").read_text()
        staging = tmp_path / "bad"
        shutil.copytree(detector_saved_model, staging)
        write_warmup(staging, [warmup_request("images")])  # no such input: TF Serving fails such a load
        add_version(base, 2, staging)
        wait_for("version 2 END", lambda: version_states(server, "m").get(2, {}).get("state") == "END", timeout=10)
        assert "warm-up request 1" in version_states(server, "m")[2]["status"]["error_message"]
        assert version_states(server, "m")[1]["state"] == "AVAILABLE"  # still serving
    finally:
        server.stop()


def test_exports_warmup_record_is_tf_servings_prediction_log(tmp_path) -> None:
    """odstack/export/warmup.py writes PredictionLog without tensorflow-serving-api: TF Serving's own message
    class reads it back as a Predict request with the image tensor, and the server replays it."""
    from odstack.export.warmup import WARMUP_ASSET, write_warmup_requests

    path = write_warmup_requests(tmp_path, "m", [48, 64], tf)
    assert path == tmp_path / WARMUP_ASSET
    [record] = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
    assert (request.model_spec.name, request.model_spec.signature_name) == ("m", "serving_default")
    image = tf.make_ndarray(request.inputs["input_tensor"])
    assert image.shape == (1, 48, 64, 3) and image.dtype == "uint8"
