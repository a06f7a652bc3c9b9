"""The whole labelling loop against a real Label Studio (PyPI, .venv/labelstudio): `make test-labelling`.

Label Studio on 127.0.0.1 with SQLite (user and token made by its CLI), a project whose RectangleLabels
come from the label map, the images served as local files plus one uploaded through Label Studio (its
media folder: the backend and the job fetch it from Label Studio with its token), odstack's service
(`python -m odstack.labelling`, shared secret on) connected as its ML backend, pre-labels from the served
version 1, people's annotations through Label Studio's API (one task left unlabelled), "Start training"
from Label Studio -> the job exports, converts, trains a few tfvision steps, evaluates, publishes
version 2 -> the next pre-labels come from version 2.

Opt-in (ODSTACK_LABELLING_LOOP=1), as it takes minutes and needs .venv/labelstudio.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from odstack.labelling.backend import label_config
from odstack.labelling.config import REPO
from tests.labelling.support import blob_images, remove_runs
from tests.serving.model_factory import LABELS, ModelServerProcess, add_version, free_port

pytestmark = pytest.mark.skipif(os.environ.get("ODSTACK_LABELLING_LOOP") != "1",
                                reason="the Label Studio loop runs in `make test-labelling` (ODSTACK_LABELLING_LOOP=1)")
LABEL_STUDIO = REPO / ".venv" / "labelstudio" / "bin" / "label-studio"
SECRET = secrets.token_urlsafe(12)
MANAGER_TOKEN = secrets.token_urlsafe(12)
LS_TOKEN = secrets.token_hex(20)
STEPS = int(os.environ.get("ODSTACK_LOOP_STEPS", "12"))


def _wait(predicate: Callable[[], Any], timeout: float, what: str, pause: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(pause)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


class LabelStudio:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Token {LS_TOKEN}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.http.request(method, self.url + path, timeout=120, **kwargs)
        assert answer.status_code < 300, f"{method} {path}: {answer.status_code} {answer.text[:500]}"
        return answer.json() if answer.content else None

    def tasks(self, project: int) -> list[dict[str, Any]]:
        answer = self.call("GET", "/api/tasks", params={"project": project, "page_size": 100, "fields": "all"})
        return answer["tasks"] if isinstance(answer, dict) else answer

    def predictions(self, task: int) -> list[dict[str, Any]]:
        return self.call("GET", "/api/predictions/", params={"task": task})

    def retrieve_predictions(self, project: int) -> None:
        self.call("POST", "/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": project},
                  json={"selectedItems": {"all": True, "excluded": []}})


@pytest.fixture(scope="module")
def loop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("loop")


@pytest.fixture(scope="module")
def label_studio(loop_dir: Path) -> Iterator[LabelStudio]:
    if not LABEL_STUDIO.exists():
        pytest.fail(f"{LABEL_STUDIO} missing: `make test-labelling` builds .venv/labelstudio")
    port = free_port()
    (loop_dir / "input").mkdir()
    env = dict(os.environ, LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
               LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(loop_dir / "input"),
               LATEST_VERSION_CHECK="false",  # no call to PyPI at start: only loopback traffic
               # the ML backend (and the webhook Label Studio makes for it) is on 127.0.0.1
               ML_BLOCK_LOCAL_IP="false", USE_DEFAULT_BANNED_SUBNETS="false",
               DJANGO_DB="sqlite", LABEL_STUDIO_BASE_DATA_DIR=str(loop_dir / "ls-data"))
    # hex: a urlsafe password may start with "-", which Label Studio's argument parser takes for an option
    user = ["--data-dir", str(loop_dir / "ls-data"), "--username", "team@example.com", "--password",
            secrets.token_hex(12), "--user-token", LS_TOKEN, "--enable-legacy-api-token"]
    log = (loop_dir / "label-studio.log").open("ab")
    subprocess.run([str(LABEL_STUDIO), "init", *user], env=env, stdout=log, stderr=subprocess.STDOUT,
                   check=True, timeout=300)
    process = subprocess.Popen([str(LABEL_STUDIO), "start", *user, "--internal-host", "127.0.0.1", "-p", str(port),
                                "--no-browser"], env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(lambda: process.poll() is not None or _up(url + "/health"), 240, "Label Studio to start")
        assert process.poll() is None, f"Label Studio exited: see {loop_dir / 'label-studio.log'}"
        yield LabelStudio(url)
    finally:
        _stop(process)
        log.close()


@pytest.fixture(scope="module")
def model_server(loop_dir: Path, detector_saved_model: Path) -> Iterator[tuple[ModelServerProcess, Path]]:
    serving = loop_dir / "serving"
    add_version(serving / "detector", 1, detector_saved_model)
    server = ModelServerProcess(["--model_name", "detector", "--model_base_path", str(serving / "detector"),
                                 "--file_system_poll_wait_seconds", "1"], log_path=loop_dir / "modelserver.log")
    server.start()
    try:
        server.wait_available("detector")
        yield server, serving
    finally:
        server.stop()


@pytest.fixture(scope="module")
def service(loop_dir: Path, label_studio: LabelStudio, model_server: tuple[ModelServerProcess, Path]) -> Iterator[str]:
    server, serving = model_server
    port = free_port()
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'client'}", ODSTACK_ML_SECRET=SECRET,
               ODSTACK_MANAGER_TOKEN=MANAGER_TOKEN, LABEL_STUDIO_TOKEN=LS_TOKEN, LABEL_STUDIO_URL=label_studio.url,
               TF_SERVING_ADDR=server.address, SERVING_DIR=str(serving),
               DATABASE_URL=f"sqlite:///{loop_dir / 'jobs.db'}")
    args = [f"port={port}", f"images_root={loop_dir / 'input'}", f"work_dir={loop_dir / 'work'}", f"steps={STEPS}",
            "train_args=image_size=128 batch=2 from_scratch=true", "predict_timeout=10"]
    log = (loop_dir / "labelling.log").open("ab")
    process = subprocess.Popen([sys.executable, "-m", "odstack.labelling", *args], cwd=REPO, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: process.poll() is not None or _healthy(url), 60, "the labelling service")
        assert process.poll() is None, f"the labelling service exited: see {loop_dir / 'labelling.log'}"
        yield url
    finally:
        _stop(process)
        log.close()


def _healthy(url: str) -> bool:
    try:
        return requests.get(url + "/health", auth=("labelstudio", SECRET), timeout=2).ok
    except requests.RequestException:
        return False


def test_the_labelling_loop(loop_dir: Path, label_studio: LabelStudio, service: str,
                            model_server: tuple[ModelServerProcess, Path]) -> None:
    server, serving = model_server
    ls = label_studio
    manager = requests.Session()
    manager.headers["Authorization"] = f"Bearer {MANAGER_TOKEN}"
    started = time.monotonic()

    # 1. a project from the label map, the images imported as local files; one more uploaded (as through the UI)
    project = ls.call("POST", "/api/projects", json={"title": "team", "label_config": label_config(list(LABELS))})["id"]
    images = blob_images(loop_dir / "input" / "team", 6)
    storage = ls.call("POST", "/api/storages/localfiles", json={
        "project": project, "title": "team images", "path": str(loop_dir / "input" / "team"),
        "regex_filter": r".*\.png", "use_blob_urls": True})
    ls.call("POST", f"/api/storages/localfiles/{storage['id']}/sync")
    uploaded = blob_images(loop_dir / "elsewhere", 7)[-1]                # not under images_root
    with uploaded.open("rb") as handle:
        ls.call("POST", f"/api/projects/{project}/import", files={"file": (uploaded.name, handle, "image/png")})
    tasks = sorted(ls.tasks(project), key=lambda t: t["id"])
    assert len(tasks) == len(images) + 1
    assert all(t["data"]["image"].startswith("/data/local-files/?d=team/") for t in tasks[:-1])
    upload_url = tasks[-1]["data"]["image"]
    assert upload_url.startswith(f"/data/upload/{project}/"), upload_url
    tasks.insert(0, tasks.pop())                   # the upload is labelled below; the last local one is not

    # 2. connect the ML backend (basic auth with the shared secret), pre-label with version 1
    backend = ls.call("POST", "/api/ml", json={"project": project, "url": service, "title": "odstack",
                                               "auth_method": "BASIC_AUTH", "basic_auth_user": "labelstudio",
                                               "basic_auth_pass": SECRET, "is_interactive": False})
    assert requests.post(service + "/predict", json={"tasks": []}, timeout=5).status_code == 401  # no secret
    ls.retrieve_predictions(project)
    for task in tasks:
        predictions = ls.predictions(task["id"])
        assert [p["model_version"] for p in predictions] == ["1"], predictions
        regions = predictions[0]["result"]
        assert sorted(r["value"]["rectanglelabels"][0] for r in regions) == ["blue", "green", "red"]
        assert all(0 <= r["value"]["x"] <= 100 and 0 < r["value"]["width"] <= 100 for r in regions)

    # 3. people correct the pre-labels (one box nudged) and submit; the last task stays unlabelled
    for task in tasks[:-1]:
        result = ls.predictions(task["id"])[0]["result"]
        result[0]["value"]["width"] = max(1.0, result[0]["value"]["width"] - 1.0)
        for region in result:
            region.pop("score", None)
        ls.call("POST", f"/api/tasks/{task['id']}/annotations", json={"result": result, "was_cancelled": False})

    # 4. "Start training" in Label Studio -> a job in the manager
    ls.call("POST", f"/api/ml/{backend['id']}/train", json={})
    jobs = _wait(lambda: manager.get(service + "/api/jobs", timeout=5).json()["jobs"], 30, "the training job")
    assert [(j["project"], j["source"]) for j in jobs] == [(project, "label_studio")]
    job_id = jobs[0]["id"]
    runs = [jobs[0]["run"]]
    try:
        seen_states = set()

        def finished() -> dict[str, Any] | None:
            job = manager.get(f"{service}/api/jobs/{job_id}", timeout=5).json()
            seen_states.add((job["state"], job["stage"]))
            return job if job["state"] in ("done", "failed", "cancelled") else None

        job = _wait(finished, 540, "the job to finish", pause=2)
        log = (loop_dir / "work" / "jobs" / str(job_id) / "job.log")
        assert job["state"] == "done", f"{job['error']}\n{log.read_text()[-3000:] if log.exists() else ''}"
        assert ("running", "train") in seen_states
        assert job["published_version"] == 2 and job["step"] == STEPS and job["loss"] is not None
        assert job["metrics"]["export"] == {"tasks": 7, "labelled": 6, "uploads": 1, "uploads_fetched": 1}
        fetched = loop_dir / "input" / "upload" / upload_url.removeprefix("/data/upload/")
        assert fetched.read_bytes() == uploaded.read_bytes()              # Label Studio's copy, fetched once
        assert job["metrics"]["data"]["totals"]["images"] == 6, job["metrics"]["data"]
        assert "eval" in job["metrics"] and "log" in job["files"]
        assert "task" in (loop_dir / "work" / "jobs" / str(job_id) / "records" / "report.json").read_text()

        # 5. the model server loads version 2; the next pre-labels come from it
        server.wait_available("detector", timeout=120, version=2)
        ls.retrieve_predictions(project)
        versions = [p["model_version"] for p in ls.predictions(tasks[-1]["id"])]
        assert "2" in versions, versions
        direct = requests.post(service + "/predict", auth=("labelstudio", SECRET), timeout=30, json={
            "tasks": [tasks[-1]], "project": f"{project}.1", "label_config": label_config(list(LABELS))}).json()
        assert direct["results"][0]["model_version"] == "2" and "error" not in direct["results"][0]
        page = manager.get(service + "/jobs", timeout=5)
        assert page.status_code == 200 and "done" in page.text
        print(f"\nlabelling loop: {time.monotonic() - started:.0f} s (job {job_id}: {STEPS} steps, "
              f"published version {job['published_version']})")
    finally:
        remove_runs(runs)
