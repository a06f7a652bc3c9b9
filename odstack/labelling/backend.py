"""Label Studio's ML backend protocol, answered with the model TF Serving serves.

Label Studio calls (all JSON):

- ``GET /health``: is the backend up (``{"status": "UP", ...}``).
- ``POST /setup``: a project connects (``project`` "id.timestamp", ``schema`` its labelling config,
  ``extra_params``); we answer the ``model_version`` we would predict with.
- ``POST /predict``: ``{"tasks": [...], "project": ..., "label_config": ...}`` -> ``{"results": [one per
  task: {"result": [rectanglelabels regions], "score", "model_version"}]}``. Regions are in Label Studio's
  percent coordinates (x, y = top-left corner, width, height; 0..100 of the image).
- ``POST /webhook``: Label Studio's events; ``START_TRAINING`` (the ML page's "Start training") queues a
  training job in the manager.

Faults never hang Label Studio: every call to the model server has a deadline, and when it fails (down,
too slow, no model yet) or an image cannot be read, that task's answer is an empty result with an
``error`` note. When a shared secret is set, only requests carrying it (HTTP basic auth password, as
Label Studio sends for an ML backend with basic auth, or ``Authorization: Bearer <secret>``) are served.
"""
from __future__ import annotations

import base64
import hmac
import io
import json
import logging
import threading
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

import numpy as np
import requests
from flask import Blueprint, Response, current_app, jsonify, request
from PIL import Image

from odstack.labelling import studio
from odstack.labelling.config import LabellingSettings

LOG = logging.getLogger("odstack.labelling")
LOCAL_FILES = "/data/local-files/"

bp = Blueprint("ml_backend", __name__)


# ------------------------------------------------------------------------------ labelling config
@dataclass
class RectangleControl:
    """One ``<RectangleLabels>`` of a project's labelling config and the ``<Image>`` it labels."""

    from_name: str
    to_name: str
    value_key: str  # the task data key holding the image URL ($image -> "image")
    labels: list[str] = field(default_factory=list)


def parse_label_config(config: str) -> RectangleControl | None:
    """The first RectangleLabels control of ``config`` (Label Studio's XML), or None if it has none."""
    try:
        root = ElementTree.fromstring(config)
    except ElementTree.ParseError:
        return None
    images = {el.get("name"): el.get("value", "") for el in root.iter() if el.tag.lower() == "image"}
    for element in root.iter():
        if element.tag.lower() != "rectanglelabels":
            continue
        to_name = element.get("toName", "")
        labels = [label.get("value", "") for label in element if label.tag.lower() == "label"]
        return RectangleControl(element.get("name", "label"), to_name, images.get(to_name, "$image").lstrip("$"),
                                [label for label in labels if label])
    return None


def label_config(names: list[str]) -> str:
    """A RectangleLabels labelling config for the classes of a label map (what `make label` creates)."""
    labels = "".join(f'\n    <Label value="{_xml_attr(name)}"/>' for name in names)
    return (f'<View>\n  <Image name="image" value="$image"/>\n'
            f'  <RectangleLabels name="label" toName="image">{labels}\n  </RectangleLabels>\n</View>\n')


def label_config_from_label_map(path: Path) -> str:
    """The RectangleLabels config for an OD API label_map.pbtxt (classes in id order)."""
    from odclient.labels import parse

    names = parse(Path(path).read_text(encoding="utf-8"))
    return label_config([names[key] for key in sorted(names)])


def _xml_attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


# ---------------------------------------------------------------------------------- prediction
class PredictError(Exception):
    """One task cannot be predicted; the message becomes the task's error note."""


@dataclass
class Predictor:
    """Images in, Label Studio regions out; one per service (thread-safe)."""

    settings: LabellingSettings
    client: Any  # odclient.tfserving.TFServingClient
    label_maps: Any  # odclient.labels.LabelMaps
    setup_tokens: dict[str, str] = field(default_factory=dict)  # project -> access token sent in /setup
    project_thresholds: dict[str, float] = field(default_factory=dict)  # project -> extra_params threshold
    _thresholds: dict[int, float | None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def served_version(self) -> int | None:
        """The newest AVAILABLE version of the served model (None if the server has none or is down)."""
        statuses = self.client.model_status(self.settings.model_name)
        available = [s.version for s in statuses if s.state == "AVAILABLE"]
        return max(available) if available else None

    def threshold(self, version: int, project: str) -> float:
        """The version's own ``assets.extra/thresholds.json`` ``score_threshold``, else the project's."""
        with self._lock:
            if version not in self._thresholds:
                from odclient.labels import model_threshold  # the client's reader of the same file

                self._thresholds[version] = model_threshold(self.settings.serving_dir, self.settings.model_name,
                                                            version)
            value = self._thresholds[version]
        if value is not None:
            return value
        return self.project_thresholds.get(project, self.settings.score_threshold)

    def image(self, url: str, project: str) -> Image.Image:
        """The task's image: a Label Studio local file from images_root, else fetched over HTTP."""
        parsed = urlparse(url)
        if parsed.path.startswith(LOCAL_FILES) and "d" in parse_qs(parsed.query):
            root = self.settings.images_root.resolve()
            path = (root / parse_qs(parsed.query)["d"][0]).resolve()
            if not path.is_relative_to(root):
                raise PredictError(f"image {url!r} is outside images_root")
            if not path.is_file():
                raise PredictError(f"image {url!r} not found under images_root ({path})")
            data = path.read_bytes()
        else:
            token = self.settings.label_studio_token or self.setup_tokens.get(project)
            try:
                data = studio.fetch(self.settings.label_studio_url, url, token, self.settings.predict_timeout)
            except requests.RequestException as error:
                raise PredictError(f"cannot fetch image {url!r}: {error}") from None
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (OSError, Image.DecompressionBombError) as error:
            raise PredictError(f"image {url!r} cannot be decoded: {error}") from None
        return image

    def predict_task(self, task: dict[str, Any], control: RectangleControl, project: str,
                     version: int) -> dict[str, Any]:
        from odclient.tfserving import UpstreamError

        url = (task.get("data") or {}).get(control.value_key)
        if not isinstance(url, str) or not url:
            raise PredictError(f"task {task.get('id')} has no image in data[{control.value_key!r}]")
        image = self.image(url, project)
        width, height = image.size
        rgb = image.convert("RGB")
        if self.settings.max_side and max(rgb.size) > self.settings.max_side:
            rgb.thumbnail((self.settings.max_side, self.settings.max_side))  # boxes are relative: same regions
        try:
            detections = self.client.predict(np.asarray(rgb, dtype=np.uint8), self.settings.model_name, version,
                                              "serving_default")
        except UpstreamError as error:
            raise PredictError(str(error)) from None
        names = self.label_maps.get(self.settings.model_name, detections.version)
        threshold = self.threshold(detections.version, project)
        allowed = set(control.labels)
        regions = []
        for box, score, cls in zip(detections.boxes, detections.scores, detections.classes):
            name = names.get(int(cls), str(int(cls)))
            if score < threshold or (allowed and name not in allowed):
                continue
            ymin, xmin, ymax, xmax = (float(np.clip(v, 0.0, 1.0)) for v in box)
            if xmax <= xmin or ymax <= ymin:
                continue
            regions.append({
                "id": f"odstack-{len(regions)}", "from_name": control.from_name, "to_name": control.to_name,
                "type": "rectanglelabels", "original_width": width, "original_height": height,
                "image_rotation": 0, "score": round(float(score), 4),
                "value": {"x": xmin * 100, "y": ymin * 100, "width": (xmax - xmin) * 100,
                          "height": (ymax - ymin) * 100, "rotation": 0, "rectanglelabels": [name]}})
        score = float(np.mean([r["score"] for r in regions])) if regions else 0.0
        return {"result": regions, "score": score, "model_version": str(detections.version)}


def _project(payload: dict[str, Any]) -> str:
    """Label Studio sends the project as "<id>.<timestamp>" (or an id, or an object with an id)."""
    project = payload.get("project")
    if isinstance(project, dict):
        project = project.get("id")
    return str(project or "").split(".")[0]


# -------------------------------------------------------------------------------------- routes
def _settings() -> LabellingSettings:
    return current_app.extensions["odstack.labelling.settings"]


def _predictor() -> Predictor:
    return current_app.extensions["odstack.labelling.predictor"]


@bp.before_request
def _check_secret() -> Response | None:
    secret = _settings().secret
    if not secret:
        return None
    header = request.headers.get("Authorization", "")
    offered = ""
    if header.startswith("Basic "):
        try:
            offered = base64.b64decode(header[6:]).decode("utf-8").partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            offered = ""
    elif header.startswith("Bearer "):
        offered = header[7:]
    if hmac.compare_digest(offered.encode(), secret.encode()):
        return None
    response = jsonify({"status": "error", "error": "this ML backend needs its shared secret (basic auth password)"})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Basic realm="odstack ML backend"'
    return response


@bp.get("/health")
@bp.get("/")
def health() -> Response:
    return jsonify({"status": "UP", "model_class": "odstack", "model_name": _settings().model_name})


@bp.post("/setup")
def setup() -> Response:
    payload = request.get_json(silent=True) or {}
    project, predictor = _project(payload), _predictor()
    if payload.get("access_token"):
        predictor.setup_tokens[project] = str(payload["access_token"])
    extra = payload.get("extra_params") or {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra) if extra.strip() else {}
        except ValueError:
            extra = {}
    if isinstance(extra, dict) and isinstance(extra.get("score_threshold"), (int, float)):
        predictor.project_thresholds[project] = float(extra["score_threshold"])
    try:
        version = predictor.served_version()
    except Exception as error:  # noqa: BLE001 (the model server is down: still connectable, say so)
        LOG.warning("setup: model server: %s", error)
        version = None
    return jsonify({"model_version": str(version) if version is not None else "none"})


@bp.post("/predict")
def predict() -> Response:
    from odclient.tfserving import UpstreamError

    payload = request.get_json(silent=True) or {}
    tasks = payload.get("tasks") or []
    project, predictor = _project(payload), _predictor()
    config = payload.get("label_config") or ""
    control = parse_label_config(config) if config else RectangleControl("label", "image", "image")
    if control is None:
        return _empty(tasks, "none", "the project's labelling config has no RectangleLabels")
    try:
        version = predictor.served_version()
    except UpstreamError as error:
        return _empty(tasks, "none", str(error))
    if version is None:
        return _empty(tasks, "none", f"model {predictor.settings.model_name!r} has no available version yet")
    results = []
    for task in tasks:
        try:
            results.append(predictor.predict_task(task, control, project, version))
        except PredictError as error:
            LOG.warning("predict: task %s: %s", task.get("id"), error)
            results.append({"result": [], "score": 0.0, "model_version": str(version), "error": str(error)})
    return jsonify({"results": results, "model_version": str(version)})


def _empty(tasks: list[Any], version: str, error: str) -> Response:
    """Every task answered with no regions and the reason: Label Studio carries on without pre-labels."""
    LOG.warning("predict: %s", error)
    return jsonify({"results": [{"result": [], "score": 0.0, "model_version": version, "error": error}
                                for _ in tasks], "model_version": version, "error": error})


@bp.post("/train")
def train() -> Response | tuple[Response, int]:
    """Label Studio's "Start training" without its webhook feature flag: POST /train (project "id.ts")."""
    payload = dict(request.get_json(silent=True) or {}, action="START_TRAINING")
    return _start_training(payload)


@bp.post("/webhook")
def webhook() -> Response | tuple[Response, int]:
    return _start_training(request.get_json(silent=True) or {})


def _start_training(payload: dict[str, Any]) -> Response | tuple[Response, int]:
    action = str(payload.get("action") or "")
    on_training: Callable[[int, str], Any] | None = current_app.extensions.get("odstack.labelling.start_training")
    if action != "START_TRAINING" or on_training is None:
        return jsonify({"status": "ignored", "action": action})
    project = _project(payload)
    if not project.isdigit():
        return jsonify({"status": "error", "error": "START_TRAINING without a project id"}), 400
    job = on_training(int(project), "label_studio")
    return jsonify({"status": "queued", "job": job}), 201


def init_predictor(settings: LabellingSettings) -> Predictor:
    # the serving client's own gRPC module and label-map reader (client/odclient, on PYTHONPATH)
    from odclient.labels import LabelMaps
    from odclient.tfserving import TFServingClient

    client = TFServingClient(settings.tf_serving, predict_timeout=settings.predict_timeout,
                             status_timeout=min(2.0, settings.predict_timeout))
    return Predictor(settings, client, LabelMaps(settings.serving_dir))
