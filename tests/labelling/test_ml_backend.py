"""Contract of the ML backend (Label Studio's ML backend protocol) against a real model server.

Requests are shaped as Label Studio 1.23 sends them (ml/api_connector.py): ``/setup`` with project
"<id>.<timestamp>", ``schema`` and ``extra_params``; ``/predict`` with ``tasks``, ``project``,
``label_config``, ``params``; answers must be ``{"results": [per task {"result", "score", "model_version"}]}``.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from odstack.labelling import app as labelling_app
from odstack.labelling import backend, config
from tests.serving.model_factory import LABELS, expected_detections, free_port, make_image

CONFIG = backend.label_config(list(LABELS))


def _app(tmp_path: Path, address: str, serving: Path, **extra: Any) -> Any:
    args = [f"tf_serving={address}", f"serving_dir={serving}", f"images_root={tmp_path / 'input'}",
            f"work_dir={tmp_path / 'work'}", f"database_url=sqlite:///{tmp_path / 'jobs.db'}",
            "manager_token=t0ken", "score_threshold=0.3", "predict_timeout=3"]
    args += [f"{key}={value}" for key, value in extra.items()]
    return labelling_app.create_app(config.load(args, environ={}), start_runner=False)


@pytest.fixture()
def image_url(tmp_path: Path) -> str:
    path = tmp_path / "input" / "team" / "blobs.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(make_image()).save(path)
    return "/data/local-files/?d=team/blobs.png"


def _task(url: str, task_id: int = 1) -> dict[str, Any]:
    return {"id": task_id, "data": {"image": url}, "annotations": [], "predictions": []}


def _predict(client: Any, tasks: list[dict[str, Any]], label_config: str = CONFIG, **headers: str) -> Any:
    return client.post("/predict", json={"tasks": tasks, "project": "3.1700000000", "label_config": label_config,
                                         "params": {"login": None, "password": None, "context": None}},
                       headers=headers)


def test_health_and_setup_answer_the_served_version(tmp_path: Path, labelling_serving: tuple[str, Path]) -> None:
    client = _app(tmp_path, *labelling_serving).test_client()
    health = client.get("/health")
    assert health.status_code == 200 and health.json["status"] == "UP"
    setup = client.post("/setup", json={"project": "3.1700000000", "schema": CONFIG, "hostname": "http://x",
                                        "access_token": "abc", "extra_params": None})
    assert setup.status_code == 200 and setup.json == {"model_version": "1"}


def test_predict_answers_percent_rectangles_with_scores_and_version(
        tmp_path: Path, labelling_serving: tuple[str, Path], image_url: str) -> None:
    client = _app(tmp_path, *labelling_serving).test_client()
    answer = _predict(client, [_task(image_url, 1), _task(image_url, 2)])
    assert answer.status_code == 200
    results = answer.json["results"]
    assert len(results) == 2  # one per task, in order
    expected = [d for d in expected_detections(make_image()) if d["score"] >= 0.3]
    assert len(expected) == 3  # red 1.0, green 0.8, blue 0.4
    for result in results:
        assert result["model_version"] == "1"
        regions = result["result"]
        assert [r["value"]["rectanglelabels"] for r in regions] == [[d["label"]] for d in expected]
        for region, want in zip(regions, expected):
            assert region["type"] == "rectanglelabels"
            assert (region["from_name"], region["to_name"]) == ("label", "image")
            assert (region["original_width"], region["original_height"]) == (160, 120)
            ymin, xmin, ymax, xmax = want["box"]
            value = region["value"]
            assert value["x"] == pytest.approx(xmin * 100, abs=1e-3)
            assert value["y"] == pytest.approx(ymin * 100, abs=1e-3)
            assert value["width"] == pytest.approx((xmax - xmin) * 100, abs=1e-3)
            assert value["height"] == pytest.approx((ymax - ymin) * 100, abs=1e-3)
            assert region["score"] == pytest.approx(want["score"], abs=1e-3)
        assert result["score"] == pytest.approx(sum(d["score"] for d in expected) / 3, abs=1e-3)


def test_labels_outside_the_project_config_and_other_names(tmp_path: Path, labelling_serving: tuple[str, Path],
                                                           image_url: str) -> None:
    client = _app(tmp_path, *labelling_serving).test_client()
    only_red = ('<View><Image name="photo" value="$img"/><RectangleLabels name="boxes" toName="photo">'
                '<Label value="red"/></RectangleLabels></View>')
    task = {"id": 5, "data": {"img": image_url}}
    result = _predict(client, [task], only_red).json["results"][0]
    assert [(r["from_name"], r["to_name"], r["value"]["rectanglelabels"]) for r in result["result"]] == [
        ("boxes", "photo", ["red"])]
    no_boxes = '<View><Image name="i" value="$image"/><Choices name="c" toName="i"><Choice value="a"/></Choices></View>'
    answer = _predict(client, [task], no_boxes).json
    assert answer["results"][0]["result"] == [] and "RectangleLabels" in answer["results"][0]["error"]


def test_threshold_from_the_project_then_from_the_model(tmp_path: Path, labelling_serving: tuple[str, Path],
                                                        image_url: str) -> None:
    address, serving = labelling_serving
    client = _app(tmp_path, address, serving).test_client()
    # the project's setting (Label Studio's "extra params" of the connection)
    client.post("/setup", json={"project": "3.1700000000", "schema": CONFIG, "extra_params": {"score_threshold": 0.5}})
    labels = [r["value"]["rectanglelabels"][0] for r in _predict(client, [_task(image_url)]).json["results"][0]["result"]]
    assert labels == ["red", "green"]
    # the model's own threshold (written with the version) wins over the project's
    thresholds = serving / "detector" / "1" / "assets.extra" / "thresholds.json"
    thresholds.write_text(json.dumps({"score_threshold": 0.9}))
    try:
        client = _app(tmp_path, address, serving).test_client()
        client.post("/setup", json={"project": "3.1", "schema": CONFIG, "extra_params": {"score_threshold": 0.1}})
        result = _predict(client, [_task(image_url)]).json["results"][0]
        assert [r["value"]["rectanglelabels"][0] for r in result["result"]] == ["red"]
    finally:
        thresholds.unlink()


def test_model_server_down_answers_quickly_with_an_error_note(tmp_path: Path, image_url: str) -> None:
    client = _app(tmp_path, f"127.0.0.1:{free_port()}", tmp_path / "serving").test_client()
    started = time.monotonic()
    answer = _predict(client, [_task(image_url, 1), _task(image_url, 2)])
    assert time.monotonic() - started < 5
    assert answer.status_code == 200
    assert [r["result"] for r in answer.json["results"]] == [[], []]
    assert "unavailable" in answer.json["results"][0]["error"]
    setup = client.post("/setup", json={"project": "1.1", "schema": CONFIG})
    assert setup.status_code == 200 and setup.json["model_version"] == "none"  # still connectable


def test_unreadable_images_fail_only_their_task(tmp_path: Path, labelling_serving: tuple[str, Path],
                                                image_url: str) -> None:
    client = _app(tmp_path, *labelling_serving, label_studio_url=f"http://127.0.0.1:{free_port()}").test_client()
    (tmp_path / "input" / "broken.jpg").write_bytes(b"not a jpeg")
    tasks = [_task("/data/local-files/?d=missing.jpg", 1), _task("/data/local-files/?d=../../etc/passwd", 2),
             _task("/data/local-files/?d=broken.jpg", 3), _task("/data/upload/3/gone.jpg", 4), _task(image_url, 5)]
    results = _predict(client, tasks).json["results"]
    assert [bool(r["result"]) for r in results] == [False, False, False, False, True]
    assert "not found" in results[0]["error"] and "outside" in results[1]["error"]
    assert "decoded" in results[2]["error"] and "/data/upload/3/gone.jpg" in results[3]["error"]


def test_shared_secret(tmp_path: Path, labelling_serving: tuple[str, Path], image_url: str) -> None:
    client = _app(tmp_path, *labelling_serving, secret="s3cret").test_client()
    assert client.get("/health").status_code == 401
    assert _predict(client, [_task(image_url)]).status_code == 401
    wrong = "Basic " + base64.b64encode(b"ls:wrong").decode()
    assert client.get("/health", headers={"Authorization": wrong}).status_code == 401
    basic = "Basic " + base64.b64encode(b"labelstudio:s3cret").decode()  # what Label Studio sends
    assert client.get("/health", headers={"Authorization": basic}).status_code == 200
    answer = _predict(client, [_task(image_url)], Authorization="Bearer s3cret")
    assert answer.status_code == 200 and answer.json["results"][0]["result"]


def test_start_training_webhook_queues_a_job(tmp_path: Path, labelling_serving: tuple[str, Path]) -> None:
    client = _app(tmp_path, *labelling_serving).test_client()
    ignored = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 3}})
    assert ignored.status_code == 200 and ignored.json["status"] == "ignored"
    started = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 3, "title": "team"}})
    assert started.status_code == 201 and started.json["job"]["state"] == "queued"
    legacy = client.post("/train", json={"annotations": [], "project": "3.1700000000", "label_config": CONFIG})
    assert legacy.status_code == 201
    jobs = client.get("/api/jobs", headers={"Authorization": "Bearer t0ken"}).json["jobs"]
    assert [(j["project"], j["source"], j["state"]) for j in jobs] == [(3, "label_studio", "queued")] * 2


def test_label_config_from_a_label_map(tmp_path: Path) -> None:
    from tests.serving.model_factory import LABEL_MAP_PBTXT

    (tmp_path / "label_map.pbtxt").write_text(LABEL_MAP_PBTXT)
    text = backend.label_config_from_label_map(tmp_path / "label_map.pbtxt")
    control = backend.parse_label_config(text)
    assert control is not None and control.labels == list(LABELS)
    assert (control.from_name, control.to_name, control.value_key) == ("label", "image", "image")
    printed = subprocess.run([sys.executable, "-m", "odstack.labelling", "label-config", str(tmp_path / "label_map.pbtxt")],
                             capture_output=True, text=True, check=True, env=dict(os.environ))
    assert printed.stdout == text
