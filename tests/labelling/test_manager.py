"""The training manager against SQLite and a real PostgreSQL: token, queue, cancel, failures.

Jobs run the real stages (`python -m odstack data|train ...` in .venv/odapi); Label Studio's export
answer is replayed from a saved export (support.ExportReplay); test_loop.py uses a real Label Studio.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from odstack.labelling import app as labelling_app
from odstack.labelling import config, db
from odstack.labelling.manager import Manager
from tests.labelling.support import ExportReplay, blob_images, rectangle_results, remove_runs

TOKEN = "manager-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _settings(tmp_path: Path, database_url: str, **extra: Any) -> config.LabellingSettings:
    args = [f"database_url={database_url}", f"work_dir={tmp_path / 'work'}", f"images_root={tmp_path / 'input'}",
            f"serving_dir={tmp_path / 'serving'}", f"manager_token={TOKEN}", "label_studio_token=ls-token",
            "steps=2000", "engine=tfvision", "train_args=image_size=64 batch=2 from_scratch=true"]
    return config.load(args + [f"{k}={v}" for k, v in extra.items()], environ={})


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture()
def export(tmp_path: Path) -> Iterator[ExportReplay]:
    images = blob_images(tmp_path / "input" / "team", 6)
    tasks = [{"id": n + 1, "data": {"image": f"/data/local-files/?d=team/{p.name}"},
              "annotations": [{"id": 10 + n, "was_cancelled": False, "result": rectangle_results(p)}]}
             for n, p in enumerate(images[:5])]
    # nobody labelled this one: reported by the data stage, not trained on
    tasks.append({"id": 99, "data": {"image": f"/data/local-files/?d=team/{images[5].name}"}, "annotations": []})
    replay = ExportReplay(tasks, "ls-token")
    yield replay
    replay.close()


def test_the_api_needs_the_token(tmp_path: Path, database_url: str) -> None:
    client = labelling_app.create_app(_settings(tmp_path, database_url), start_runner=False).test_client()
    assert client.get("/api/jobs").status_code == 401
    assert client.get("/api/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.post("/api/jobs", json={"project": 1}).status_code == 401
    assert client.get("/jobs").status_code == 401
    assert client.get("/api/jobs", headers=AUTH).json == {"jobs": []}
    page = client.get(f"/jobs?token={TOKEN}")
    assert page.status_code == 200 and b"Training jobs" in page.data
    assert client.get("/jobs").status_code == 200  # the page's cookie


def test_generated_token_file(tmp_path: Path, database_url: str) -> None:
    settings = config.load([f"database_url={database_url}", f"work_dir={tmp_path / 'work'}"], environ={})
    client = labelling_app.create_app(settings, start_runner=False).test_client()
    token_file = tmp_path / "work" / "manager.token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 24
    assert client.get("/api/jobs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # from the environment (or a file named by ..._FILE), never from the repository
    (tmp_path / "tok").write_text("from-a-file\n")
    assert config.load([], environ={"ODSTACK_MANAGER_TOKEN_FILE": str(tmp_path / "tok")}).manager_token == "from-a-file"


def test_queue_cancel_and_restart(tmp_path: Path, database_url: str) -> None:
    client = labelling_app.create_app(_settings(tmp_path, database_url), start_runner=False).test_client()
    assert client.post("/api/jobs", json={"steps": 5}, headers=AUTH).status_code == 400
    refused = client.post("/api/jobs", json={"project": 4, "train_args": "run=elsewhere"}, headers=AUTH)
    assert refused.status_code == 400 and "run" in refused.json["error"]
    first = client.post("/api/jobs", json={"project": 4, "steps": 7, "engine": "tfvision"}, headers=AUTH).json
    second = client.post("/api/jobs", json={"project": 4}, headers=AUTH).json
    assert (first["state"], first["steps"], second["steps"], second["state"]) == ("queued", 7, 2000, "queued")
    cancelled = client.post(f"/api/jobs/{second['id']}/cancel", headers=AUTH).json
    assert cancelled["state"] == "cancelled" and cancelled["error"]
    assert client.post("/api/jobs/999/cancel", headers=AUTH).status_code == 404
    # a job cut off by a stop of the manager is failed (with why) when the manager starts again
    database = db.Database(database_url)
    database.update(first["id"], state=db.RUNNING)
    manager = Manager(_settings(tmp_path, database_url, label_studio_url="http://127.0.0.1:9"), database)
    manager.start()
    manager.stop()
    job = client.get(f"/api/jobs/{first['id']}", headers=AUTH).json
    assert job["state"] == "failed" and "stopped" in job["error"]
    database.dispose()


def test_label_studio_unreachable_fails_the_job_with_the_reason(tmp_path: Path, database_url: str) -> None:
    settings = _settings(tmp_path, database_url, label_studio_url="http://127.0.0.1:9")
    app = labelling_app.create_app(settings)
    client = app.extensions["odstack.labelling.manager"]
    try:
        job = client.submit(8)
        done = _wait(lambda: (j := client.db.job(job["id"])) and j.state in db.FINISHED and j, 30, "the job to end")
        assert done.state == "failed" and done.stage == "export" and "127.0.0.1:9" in done.error
    finally:
        client.stop()


def test_second_job_queues_cancel_while_training_failure_keeps_the_served_model(
        tmp_path: Path, database_url: str, export: ExportReplay) -> None:
    settings = _settings(tmp_path, database_url, label_studio_url=export.url)
    (tmp_path / "serving" / "detector" / "1").mkdir(parents=True)  # the served version, untouched below
    app = labelling_app.create_app(settings)
    manager: Manager = app.extensions["odstack.labelling.manager"]
    http = app.test_client()
    runs = []
    try:
        first = manager.submit(3)
        bad = manager.submit(3, train_args="image_size=64 no_such_setting=1")
        runs += [first["run"], bad["run"]]

        def job(number: int) -> db.Job:
            return manager.db.job(number)

        _wait(lambda: job(first["id"]).stage == "train", 240, "job 1 to reach training")
        assert job(bad["id"]).state == "queued"  # one job at a time
        listed = http.get("/api/jobs", headers=AUTH).json["jobs"]
        assert [(j["id"], j["state"]) for j in listed] == [(bad["id"], "queued"), (first["id"], "running")]
        details = http.get(f"/api/jobs/{first['id']}", headers=AUTH).json
        assert details["metrics"]["export"] == {"tasks": 6, "labelled": 5}
        assert "log" in details["files"] and "data_report" in details["files"]
        assert http.get(details["files"]["log"], headers=AUTH).status_code == 200
        # the export beside the images was read and removed; the job keeps its copy
        assert not list((tmp_path / "input").glob(".odstack-labelling-job-*"))
        assert (manager.job_dir(first["id"]) / "export.json").is_file()
        report = (manager.job_dir(first["id"]) / "records" / "report.json").read_text()
        assert "task 99" in report  # the unlabelled task, reported

        http.post(f"/api/jobs/{first['id']}/cancel", headers=AUTH)
        _wait(lambda: job(first["id"]).state == "cancelled", 60, "job 1 to be cancelled")
        failed = _wait(lambda: job(bad["id"]).state in db.FINISHED and job(bad["id"]), 240, "job 2 to end")
        assert failed.state == "failed" and failed.stage == "train"
        assert "no_such_setting" in failed.error
        assert failed.published_version is None
        assert sorted(p.name for p in (tmp_path / "serving" / "detector").iterdir()) == ["1"]
        page = http.get("/jobs", headers=AUTH).data.decode()
        assert "no_such_setting" in page and "cancelled" in page
    finally:
        manager.stop()
        remove_runs(runs)


def test_an_export_without_usable_boxes_fails_in_data_and_says_why(tmp_path: Path, database_url: str) -> None:
    images = blob_images(tmp_path / "input" / "team", 2)
    polygon = {"type": "polygonlabels", "from_name": "poly", "to_name": "image", "original_width": 160,
               "original_height": 120, "value": {"points": [[1, 1], [20, 1], [20, 20]], "polygonlabels": ["red"]}}
    tasks = [{"id": 1, "data": {"image": f"/data/local-files/?d=team/{images[0].name}"}, "annotations": []},
             {"id": 2, "data": {"image": f"/data/local-files/?d=team/{images[1].name}"},
              "annotations": [{"id": 5, "was_cancelled": False, "result": [polygon]}]},
             {"id": 3, "data": {"image": "/data/local-files/?d=team/not-here.png"},
              "annotations": [{"id": 6, "was_cancelled": False, "result": rectangle_results(images[0])}]}]
    replay = ExportReplay(tasks, "ls-token")
    manager = labelling_app.create_app(_settings(tmp_path, database_url, label_studio_url=replay.url)).extensions[
        "odstack.labelling.manager"]
    try:
        job = manager.submit(2)
        done = _wait(lambda: (j := manager.db.job(job["id"])) and j.state in db.FINISHED and j, 120, "the job to end")
        assert (done.state, done.stage) == ("failed", "data") and "data failed" in done.error
        data = done.as_dict()["metrics"]["data"]
        messages = " ".join(issue["message"] for issue in data["issues"])
        assert "polygonlabels" in messages  # skipped and reported
        assert "not-here.png" in messages  # an image Label Studio lists but we cannot read, by its path
        assert done.as_dict()["metrics"]["export"] == {"tasks": 3, "labelled": 2}
    finally:
        manager.stop()
        replay.close()
