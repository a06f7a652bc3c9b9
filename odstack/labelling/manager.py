"""The training manager: jobs that turn a Label Studio project into the next served model version.

A job runs, in order (each a stage of odstack's own command line, in the odapi venv/image):

1. ``export``: the project's tasks from Label Studio's export API (JSON), written beside the images
   Label Studio serves as local files (``images_root``), so the label_studio reader finds them;
2. ``data``: ``python -m odstack data format=label_studio`` -> the job's TFRecords and data report
   (unlabelled tasks, polygons/keypoints, images we cannot read: skipped and reported there);
3. ``train``: ``python -m odstack train`` (engine, model, steps, train_args) as run ``labelling-<date>-job<id>``;
   the log's "step n/N loss .. AP .." lines update the job;
4. ``eval``: ``python -m odstack eval`` -> the run's metrics.json;
5. ``publish``: ``python -m odstack export`` -> the next version of ``output/serving/<model_name>/``, which
   TF Serving loads and the ML backend then predicts with.

A failing stage fails the job with its error line; nothing is published then, so the served model stays.
Jobs queue in the database; ``max_running`` (1: one GPU job at a time) run at once, in order.
"""
from __future__ import annotations

import hmac
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import requests
from flask import (Blueprint, Response, abort, current_app, jsonify, make_response, render_template_string,
                   request, send_from_directory)
from sqlalchemy import select

from odstack.formats.label_studio import task_image_url
from odstack.labelling import db, studio
from odstack.labelling.config import REPO, LabellingSettings

LOG = logging.getLogger("odstack.labelling")
STEP_RE = re.compile(r"step\s+(\d+)\s*/\s*(\d+)(?:\s+loss\s+([-+\w.]+))?")
AP_RE = re.compile(r"\bAP\s+(-?[\d.]+)")
ERROR_RE = re.compile(r"odstack \w+: error: (.*)")
POLL_S = 0.5
# settings a job sets itself (its run, its data, its engine/model/steps) or that would read other files
RESERVED_TRAIN_ARGS = ("run", "data", "engine", "model", "steps", "cfg")


class JobCancelled(Exception):
    pass


class StageFailed(Exception):
    pass


class Manager:
    """The queue and its runner threads; every state change goes through the database."""

    def __init__(self, settings: LabellingSettings, database: db.Database) -> None:
        self.settings, self.db = settings, database
        # the stages run where the service was started (the repo root; /workspace in the image), so that
        # output/<run> means the same thing as for `make train`
        self.root = Path.cwd()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._claim = threading.Lock()
        self._threads: list[threading.Thread] = []

    # ---------------------------------------------------------------- the queue
    def submit(self, project: int, source: str = "api", engine: str | None = None, model: str | None = None,
               steps: int | None = None, train_args: str | None = None) -> dict[str, Any]:
        """Queue a job; ``train_args`` are extra ``key=value`` train settings (the job's own are refused)."""
        extra = self.settings.train_args if train_args is None else train_args
        for arg in shlex.split(extra):
            key = arg.partition("=")[0].strip().lower()
            if "=" not in arg or key in RESERVED_TRAIN_ARGS:
                raise ValueError(f"train_args: {arg!r} is not an extra train setting "
                                 f"({', '.join(RESERVED_TRAIN_ARGS)} are the job's own)")
        with self.db.session() as session, session.begin():
            job = db.Job(project=project, source=source, engine=engine or self.settings.engine,
                         model=model or self.settings.model, steps=int(steps or self.settings.steps),
                         train_args=extra)
            session.add(job)
        # a run of its own under output/ (the date keeps job ids of another jobs DB from resuming it)
        job = self.db.update(job.id, run=f"labelling-{job.created_at:%Y%m%d-%H%M%S}-job{job.id}")
        LOG.info("job %d: queued (project %d, %s)", job.id, project, source)
        self._wake.set()
        return job.as_dict()

    def cancel(self, job_id: int) -> dict[str, Any]:
        """A queued job is cancelled at once; a running one when its stage process has been stopped."""
        with self.db.session() as session, session.begin():
            job = session.get(db.Job, job_id)
            if job is None:
                raise KeyError(job_id)
            if job.state == db.QUEUED:
                job.state, job.finished_at, job.error = db.CANCELLED, db.utcnow(), "cancelled before it started"
            elif job.state == db.RUNNING:
                job.cancel_requested = True
            result = job.as_dict()
        return result

    def start(self) -> None:
        # jobs "running" in the database when the manager starts were cut off by its last stop
        with self.db.session() as session, session.begin():
            for job in session.scalars(select(db.Job).where(db.Job.state == db.RUNNING)):
                job.state, job.finished_at = db.FAILED, db.utcnow()
                job.error = "the manager stopped while this job was running; start it again"
        for number in range(max(1, self.settings.max_running)):
            thread = threading.Thread(target=self._loop, name=f"job-runner-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)

    def _next(self) -> int | None:
        """Claim the oldest queued job (the lock keeps two runner threads of this process apart)."""
        with self._claim, self.db.session() as session, session.begin():
            job = session.scalars(select(db.Job).where(db.Job.state == db.QUEUED).order_by(db.Job.id)
                                  .limit(1).with_for_update(skip_locked=True)).first()
            if job is None:
                return None
            job.state, job.started_at, job.stage = db.RUNNING, db.utcnow(), "export"
            return job.id

    def _loop(self) -> None:
        while not self._stop.is_set():
            job_id = self._next()
            if job_id is None:
                self._wake.wait(2.0)
                self._wake.clear()
                continue
            self.run_job(job_id)

    # ---------------------------------------------------------------- one job
    def job_dir(self, job_id: int) -> Path:
        return self.settings.work_dir / "jobs" / str(job_id)

    def run_job(self, job_id: int) -> None:
        job = self.db.job(job_id)
        assert job is not None
        folder = self.job_dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        log = folder / "job.log"
        export: Path | None = None
        try:
            export = self._export(job, folder)
            records = folder / "records"
            try:
                self._stage(job, "data", ["data", f"src={export}", f"out={records}", "format=label_studio",
                                          "min_examples=1"], log)
            finally:
                # a failed data run leaves its report beside the output it did not write
                report = _read_json(records / "report.json") or _read_json(
                    records.with_name(records.name + ".failed-report.json"))
                self._merge_metrics(job_id, {"data": _report_summary(report)})
            export.unlink(missing_ok=True)  # read; the job folder keeps its copy (export.json)
            self._stage(job, "train", ["train", f"engine={job.engine}", f"model={job.model}", f"run={job.run}",
                                       f"data={records}", f"steps={job.steps}", *shlex.split(job.train_args)], log)
            self._stage(job, "eval", ["eval", f"run={job.run}", f"data={records}"], log)
            metrics = _read_json(self.root / "output" / job.run / "metrics.json")
            self._merge_metrics(job_id, {"eval": metrics})
            ap = _best_ap(metrics)
            if ap is not None:
                self.db.update(job_id, ap=ap)
            before = set(_versions(self.settings.serving_dir / self.settings.model_name))
            self._stage(job, "publish", ["export", f"run={job.run}", f"model_name={self.settings.model_name}",
                                         f"serving_dir={self.settings.serving_dir}"], log)
            after = set(_versions(self.settings.serving_dir / self.settings.model_name))
            published = max(after - before) if after - before else None
            self.db.update(job_id, state=db.DONE, stage="done", published_version=published,
                           finished_at=db.utcnow())
            LOG.info("job %d: done, published %s version %s", job_id, self.settings.model_name, published)
        except JobCancelled:
            self.db.update(job_id, state=db.CANCELLED, finished_at=db.utcnow(), error="cancelled while running")
            LOG.info("job %d: cancelled", job_id)
        except (StageFailed, requests.RequestException, OSError, ValueError) as error:
            self.db.update(job_id, state=db.FAILED, finished_at=db.utcnow(), error=str(error))
            LOG.warning("job %d: failed: %s", job_id, error)
        finally:
            if export is not None:
                export.unlink(missing_ok=True)

    def _export(self, job: db.Job, folder: Path) -> Path:
        """The project's tasks, exported by Label Studio, beside the images (a copy stays in the job folder)."""
        self.db.update(job.id, stage="export")
        token = self.settings.label_studio_token
        if not token:
            raise StageFailed("export: no Label Studio token (set LABEL_STUDIO_TOKEN or label_studio_token=)")
        url = f"{self.settings.label_studio_url.rstrip('/')}/api/projects/{job.project}/export"
        try:
            answer = requests.get(url, params={"exportType": "JSON", "download_all_tasks": "true"},
                                  headers={"Authorization": f"Token {token}"}, timeout=120)
        except requests.RequestException as error:
            raise StageFailed(f"export: cannot reach Label Studio at {self.settings.label_studio_url}: "
                              f"{type(error).__name__}") from None
        if answer.status_code != 200:
            raise StageFailed(f"export: Label Studio answered {answer.status_code} for project {job.project}: "
                              f"{answer.text[:300]}")
        tasks = answer.json()
        if not isinstance(tasks, list):
            raise StageFailed("export: Label Studio's export is not a list of tasks")
        uploads = self._fetch_uploads(tasks, token)
        text = json.dumps(tasks, indent=1)
        (folder / "export.json").write_text(text, encoding="utf-8")
        # local-files URLs are relative to images_root: the reader resolves them from the export's folder
        beside = self.settings.images_root / f".odstack-labelling-job-{job.id}.json"
        beside.write_text(text, encoding="utf-8")
        labelled = sum(1 for t in tasks if _labelled(t))
        self._merge_metrics(job.id, {"export": {"tasks": len(tasks), "labelled": labelled, **uploads}})
        return beside

    def _fetch_uploads(self, tasks: list[Any], token: str) -> dict[str, int]:
        """Images uploaded through Label Studio's UI are in its media folder only: fetched from it into
        ``images_root/upload/<project>/<file>`` (its own layout, where the data stage's reader looks for
        ``/data/upload/...`` URLs), once each; unlabelled tasks are not trained on, so not fetched. Returns how
        many labelled tasks have uploads and how many were fetched now."""
        root = self.settings.images_root.resolve()
        found = fetched = 0
        for task in tasks:
            url = task_image_url(task.get("data")) if _labelled(task) else None
            path = urlparse(url).path if url else ""
            if not path.startswith(studio.UPLOAD_PREFIX):
                continue
            found += 1
            relative = unquote(path[len(studio.UPLOAD_PREFIX):])
            target = (root / "upload" / relative).resolve()
            if not target.is_relative_to(root / "upload"):
                raise StageFailed(f"export: uploaded image URL {url!r} points outside Label Studio's upload folder")
            if target.is_file():
                continue
            try:
                data = studio.fetch(self.settings.label_studio_url, url, token, timeout=120)
            except requests.RequestException as error:
                raise StageFailed(f"export: cannot fetch uploaded image {url} from Label Studio: {error}") from None
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            partial.write_bytes(data)
            partial.replace(target)
            fetched += 1
        return {"uploads": found, "uploads_fetched": fetched} if found else {}

    def _stage(self, job: db.Job, stage: str, args: list[str], log: Path) -> None:
        """``python -m odstack <args>`` from ``self.root``, its output appended to the job log."""
        self.db.update(job.id, stage=stage)
        command = [self.settings.python(), "-m", "odstack", *args]
        environment = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                           PYTHONUNBUFFERED="1")
        last_error = ""
        with log.open("a", encoding="utf-8") as out:
            out.write(f"\n$ {shlex.join(command)}\n")
            out.flush()
            process = subprocess.Popen(command, cwd=self.root, env=environment, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
            lines: list[str] = []
            reader = threading.Thread(target=_pump, args=(process, out, lines), daemon=True)
            reader.start()
            seen = 0
            while True:
                finished = process.poll() is not None
                for line in lines[seen:]:
                    seen += 1
                    last_error = self._progress(job.id, stage, line) or last_error
                if finished and not reader.is_alive():
                    break
                current = self.db.job(job.id)
                if current is not None and current.cancel_requested and not finished:
                    _terminate(process)
                    reader.join(10)
                    raise JobCancelled()
                time.sleep(POLL_S)
            code = process.wait()
        if code != 0:
            tail = last_error or (lines[-1].strip() if lines else "")
            raise StageFailed(f"{stage} failed (exit {code}): {tail} (log: {log})")

    def _progress(self, job_id: int, stage: str, line: str) -> str:
        """Updates from one log line; returns the line's error text, if it is odstack's error line."""
        error = ERROR_RE.search(line)
        if stage == "train":
            step = STEP_RE.search(line)
            if step:
                values: dict[str, Any] = {"step": int(step.group(1)), "steps": int(step.group(2))}
                if step.group(3):
                    try:
                        values["loss"] = float(step.group(3))
                    except ValueError:
                        pass
                ap = AP_RE.search(line[step.end():])
                if ap and float(ap.group(1)) >= 0:
                    values["ap"] = float(ap.group(1))
                self.db.update(job_id, **values)
        return error.group(1).strip() if error else ""

    def _merge_metrics(self, job_id: int, values: dict[str, Any]) -> None:
        job = self.db.job(job_id)
        merged = json.loads(job.metrics or "{}") if job else {}
        merged.update(values)
        self.db.update(job_id, metrics=json.dumps(merged))


def _pump(process: subprocess.Popen, out: Any, lines: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        out.write(line)
        out.flush()
        lines.append(line)


def _terminate(process: subprocess.Popen) -> None:
    """The stage's whole process group (training spawns workers): TERM, then KILL after 10 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def _versions(model_dir: Path) -> list[int]:
    return [int(p.name) for p in model_dir.iterdir() if p.name.isdigit()] if model_dir.is_dir() else []


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _labelled(task: Any) -> bool:
    """A task with at least one annotation that was not cancelled."""
    return isinstance(task, dict) and any(not a.get("was_cancelled") for a in task.get("annotations") or [])


def _report_summary(report: dict[str, Any], issues: int = 20) -> dict[str, Any]:
    """What a labeller wants from the data report: totals, warnings, and why tasks/boxes were skipped
    (the first ``issues`` of them; the whole list is in the report)."""
    summary = {key: report[key] for key in ("totals", "warnings", "issue_counts") if key in report}
    summary["issues"] = (report.get("issues") or [])[:issues]
    return summary


def _best_ap(metrics: dict[str, Any]) -> float | None:
    for key in ("AP", "ap"):
        if isinstance(metrics.get(key), (int, float)):
            return float(metrics[key])
    for value in metrics.values():
        if isinstance(value, dict):
            found = _best_ap(value)
            if found is not None:
                return found
    return None


# ---------------------------------------------------------------------------------------- API
bp = Blueprint("manager", __name__)


def _manager() -> Manager:
    return current_app.extensions["odstack.labelling.manager"]


@bp.before_request
def _check_token() -> Response | None:
    token = current_app.extensions["odstack.labelling.settings"].manager_token or ""
    header = request.headers.get("Authorization", "")
    offered = header.split(" ", 1)[1] if header.startswith(("Bearer ", "Token ")) else ""
    offered = offered or request.args.get("token", "") or request.cookies.get("odstack_manager_token", "")
    if token and hmac.compare_digest(offered.encode(), token.encode()):
        return None
    response = jsonify({"error": "the training manager needs its token: Authorization: Bearer <token> "
                                 "(ODSTACK_MANAGER_TOKEN, or the manager.token file in the work dir)"})
    response.status_code = 401
    return response


@bp.get("/api/jobs")
def list_jobs() -> Response:
    return jsonify({"jobs": [job.as_dict() for job in _manager().db.jobs()]})


@bp.post("/api/jobs")
def create_job() -> tuple[Response, int]:
    body = request.get_json(silent=True) or {}
    try:
        project = int(body["project"])
        steps = int(body["steps"]) if body.get("steps") is not None else None
    except (KeyError, TypeError, ValueError):
        return jsonify({"error": "POST {\"project\": <Label Studio project id>, \"engine\"?, \"model\"?, "
                                 "\"steps\"?, \"train_args\"?}"}), 400
    try:
        job = _manager().submit(project, "api", engine=body.get("engine"), model=body.get("model"), steps=steps,
                                train_args=body.get("train_args"))
    except ValueError as error:
        return jsonify({"error": str(error)}), 400
    return jsonify(job), 201


@bp.get("/api/jobs/<int:job_id>")
def get_job(job_id: int) -> Response:
    job = _manager().db.job(job_id)
    if job is None:
        abort(404)
    data = job.as_dict()
    data["files"] = _files(_manager(), job)
    return jsonify(data)


@bp.post("/api/jobs/<int:job_id>/cancel")
def cancel_job(job_id: int) -> Response:
    try:
        return jsonify(_manager().cancel(job_id))
    except KeyError:
        abort(404)


def _files(manager: Manager, job: db.Job) -> dict[str, str]:
    """Links to the job's log, data report and the run's plots/metrics (what exists)."""
    links = {}
    candidates = {"log": manager.job_dir(job.id) / "job.log",
                  "data_report": manager.job_dir(job.id) / "records" / "report.html",
                  "metrics": manager.root / "output" / job.run / "metrics.json"}
    run_dir = manager.root / "output" / job.run
    if run_dir.is_dir():
        for plot in sorted(run_dir.glob("*.png")) + sorted(run_dir.glob("*.html")):
            candidates[plot.stem] = plot
    for name, path in candidates.items():
        if path.is_file():
            links[name] = f"/jobs/{job.id}/files/{name}"
    return links


@bp.get("/jobs/<int:job_id>/files/<name>")
def job_file(job_id: int, name: str) -> Response:
    manager = _manager()
    job = manager.db.job(job_id)
    if job is None:
        abort(404)
    paths = {"log": manager.job_dir(job.id) / "job.log",
             "data_report": manager.job_dir(job.id) / "records" / "report.html",
             "metrics": manager.root / "output" / job.run / "metrics.json"}
    run_dir = manager.root / "output" / job.run
    for plot in list(run_dir.glob("*.png")) + list(run_dir.glob("*.html")) if run_dir.is_dir() else []:
        paths.setdefault(plot.stem, plot)
    if name not in paths:
        abort(404)
    path = paths[name]
    if not path.is_file():
        abort(404)
    mimetype = "text/plain" if path.suffix == ".log" else None
    return send_from_directory(path.parent, path.name, mimetype=mimetype)


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>odstack training jobs</title>
<meta http-equiv="refresh" content="5"><style>body{font-family:sans-serif;margin:2em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}.failed{color:#b00}</style></head>
<body><h1>Training jobs</h1><p>Model <b>{{ model }}</b>. Start one with
<code>POST /api/jobs {"project": id}</code> or Label Studio's "Start training".</p>
<table><tr><th>job</th><th>project</th><th>state</th><th>progress</th><th>loss</th><th>AP</th>
<th>published</th><th>error</th><th>files</th><th></th></tr>
{% for job, files in jobs %}<tr class="{{ job.state }}"><td>{{ job.id }}</td><td>{{ job.project }}</td>
<td>{{ job.state }}{% if job.state == 'running' %} ({{ job.stage }}){% endif %}</td>
<td>{% if job.stage in ('train', 'eval', 'publish', 'done') %}step {{ job.step }} of {{ job.steps }}{% endif %}</td>
<td>{{ '%.3f'|format(job.loss) if job.loss is not none else '' }}</td>
<td>{{ '%.3f'|format(job.ap) if job.ap is not none else '' }}</td>
<td>{{ job.published_version or '' }}</td><td>{{ job.error }}</td>
<td>{% for name, url in files.items() %}<a href="{{ url }}">{{ name }}</a> {% endfor %}</td>
<td>{% if job.state in ('queued', 'running') %}<form method="post" action="/jobs/{{ job.id }}/cancel">
<button>cancel</button></form>{% endif %}</td></tr>{% endfor %}</table></body></html>"""


@bp.get("/jobs")
def jobs_page() -> Response:
    manager = _manager()
    jobs = [(job, _files(manager, job)) for job in manager.db.jobs()]
    response = make_response(render_template_string(PAGE, jobs=jobs, model=manager.settings.model_name))
    if request.args.get("token"):  # opened from a link with ?token=: keep it for the page's own links
        response.set_cookie("odstack_manager_token", request.args["token"], httponly=True, samesite="Strict")
    return response


@bp.post("/jobs/<int:job_id>/cancel")
def cancel_from_page(job_id: int) -> Response:
    try:
        _manager().cancel(job_id)
    except KeyError:
        abort(404)
    response = make_response("", 303)
    response.headers["Location"] = "/jobs"
    return response
