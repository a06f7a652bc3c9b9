"""odstack's development model server: TensorFlow Serving's gRPC API, in Python.

Why it exists: the ``tensorflow_model_server`` binary and the ``tensorflow/serving`` image cannot be had
on odstack's development and CI machines (no GitHub, no container registry). This server reads the same
``output/serving/<model>/<version>/saved_model.pb`` layout and speaks the same protocol, using the stubs
and messages of the ``tensorflow-serving-api`` package, so the Flask client, ``make serve RUNNER=local``,
the tests and CI's compose run (an override swaps the ``serving`` image for this one) talk to it exactly
as they would to TF Serving. It is for development: use TF Serving in production.

Same as TF Serving:
- ``PredictionService.Predict`` (``signature_name`` defaults to ``serving_default``; ``output_filter``;
  outputs in typed ``*_val`` fields, TF Serving's default), ``GetModelMetadata`` (``signature_def``), and
  ``ModelService.GetModelStatus`` (START, LOADING, AVAILABLE, UNLOADING, END, and load errors).
- Versions are ``<base_path>/<integer>/`` dirs holding ``saved_model.pb`` (or ``.pbtxt``), polled every
  ``--file_system_poll_wait_seconds`` (<= 0: once). Version policies are latest{num_versions} (the
  default, 1), all and specific, plus ``version_labels``. Versions change the way TF Serving's
  availability-preserving policy changes them: a new version loads before the old one unloads, and a
  failed load leaves the old version serving. A failed load shows at once as END with its error (TF Serving's
  report) and is retried ``--max_num_load_retries`` times with a backoff (1, 2, 4 ... s, at most
  ``--load_retry_interval_micros``) while other versions load; a deleted version is not retried.
- Warm-up: ``<version>/assets.extra/tf_serving_warmup_requests`` (TFRecord of PredictionLog) is replayed
  before the version becomes AVAILABLE, so it serves only once warm; a failing record fails the load
  (``--enable_model_warmup=false`` skips it).
- ``--model_config_file``: a ModelServerConfig text proto with ``model_config_list``, re-read every
  ``--model_config_file_poll_wait_seconds`` (> 0), so compose can mount one file for either server.
- Status codes: NOT_FOUND for an unknown model, version or label; INVALID_ARGUMENT for bad inputs,
  dtypes, shapes or output_filter; FAILED_PRECONDITION for an unknown signature.
- ``--rest_api_port``: ``GET /v1/models/<name>[/versions/<v>|/labels/<l>][/metadata]`` returns the same
  JSON as TF Serving, and ``POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict`` takes TF Serving's
  ``instances`` (row) or ``inputs`` (columnar) bodies with ``{"b64": ...}`` for bytes and answers
  ``predictions`` / ``outputs``, errors as ``{"error": ...}``. Prometheus text is served at the
  ``--monitoring_config_file`` path.
- SIGTERM/SIGINT: stop accepting calls, let in-flight ones finish (5 s), exit 0.

Different or missing:
- gRPC answers at once and models load in the background (TF Serving opens its port only after the first
  load), so GetModelStatus can show LOADING. Predict on a configured model with no AVAILABLE version
  gets UNAVAILABLE: the same code a TF Serving client sees before the port opens.
- Missing: Classify, Regress, MultiInference, HandleReloadConfigRequest, batching, warm-up records other
  than predict_log, and platforms other than ``tensorflow``. Batching and other tuning flags are accepted
  and ignored with a warning, so compose can pass TF Serving's command line.
- Flags TF Serving lacks: ``--bind_address`` (default ``$MODELSERVER_BIND_ADDRESS`` or 127.0.0.1; TF
  Serving always binds 0.0.0.0) and
  ``--load_delay_seconds``, which holds each load in LOADING so tests can see the state.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format, text_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import error_codes_pb2, saved_model_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_log_pb2, prediction_service_pb2_grpc)
from tensorflow_serving.config import model_server_config_pb2

from odstack import protos

LOGGER = logging.getLogger("odstack.serving")
State = get_model_status_pb2.ModelVersionStatus
DEFAULT_SIGNATURE = "serving_default"
GRPC_CODE = {code.value[0]: code for code in grpc.StatusCode}
# TF Serving's REST status for each gRPC code (its http_server.cc); anything else is 500
HTTP_STATUS = {grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.INVALID_ARGUMENT: 400,
               grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.OUT_OF_RANGE: 400,
               grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
               grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.UNIMPLEMENTED: 501,
               grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.PERMISSION_DENIED: 403,
               grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.ALREADY_EXISTS: 409,
               grpc.StatusCode.ABORTED: 409}
MAX_REST_BODY = 1 << 30  # bytes of one REST predict body
REQUEST_COUNT = ":tensorflow:serving:request_count"
LOAD_ATTEMPTS = ":tensorflow:cc:saved_model:load_attempt_count"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit
# TF Serving flags accepted for command-line compatibility and ignored.
IGNORED_FLAGS = ("enable_batching", "batching_parameters_file", "rest_api_num_threads",
                 "rest_api_timeout_in_ms", "grpc_channel_arguments", "tensorflow_session_parallelism")


class ServingError(Exception):
    """An RPC failure: the gRPC status code and TF Serving's message for it."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def read_model_config(path: Path) -> list[model_server_config_pb2.ModelConfig]:
    """The model configs of a ModelServerConfig text file; ValueError names what is wrong."""
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(Path(path).read_text(encoding="utf-8"), config)
    except (OSError, text_format.ParseError) as error:
        raise ValueError(f"{path}: {error}") from None
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError(f"{path}: only model_config_list is supported")
    for model in config.model_config_list.config:
        if not model.name or not model.base_path:
            raise ValueError(f"{path}: every config needs a name and a base_path")
        if model.model_platform not in ("", "tensorflow"):
            raise ValueError(f"{path}: model {model.name}: platform {model.model_platform!r} is not supported")
    return list(config.model_config_list.config)


def scan_versions(base_path: Path) -> dict[int, Path]:
    """``{version: dir}`` for every integer-named dir holding a SavedModel; {} if base_path is missing."""
    try:
        entries = list(base_path.iterdir())
    except OSError:
        return {}
    return {int(p.name): p for p in entries if p.name.isascii() and p.name.isdigit() and p.is_dir()
            and ((p / "saved_model.pb").is_file() or (p / "saved_model.pbtxt").is_file())}


def select_versions(config: model_server_config_pb2.ModelConfig, on_disk: dict[int, Path]) -> set[int]:
    """The versions the model's version policy wants served (TF Serving's "aspired" versions)."""
    policy = config.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return set(on_disk)
    if kind == "specific":
        return set(policy.specific.versions) & set(on_disk)
    keep = policy.latest.num_versions if kind == "latest" and policy.latest.num_versions > 0 else 1
    return set(sorted(on_disk)[-keep:])


def load_saved_model(path: Path) -> tuple[Any, dict[str, Any], get_model_metadata_pb2.SignatureDefMap]:
    """Load a SavedModel's ``serve`` graph: (the loaded object, its signature functions, their SignatureDefs)."""
    saved = saved_model_pb2.SavedModel()
    if (path / "saved_model.pb").is_file():
        saved.ParseFromString((path / "saved_model.pb").read_bytes())
    else:
        text_format.Parse((path / "saved_model.pbtxt").read_text(encoding="utf-8"), saved)
    meta = next((m for m in saved.meta_graphs if "serve" in m.meta_info_def.tags), None)
    if meta is None:
        raise ValueError(f"{path}: no MetaGraphDef tagged 'serve'")
    defs = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in meta.signature_def.items():
        defs.signature_def[key].CopyFrom(signature)
    loaded = tf.saved_model.load(str(path), tags=["serve"])
    return loaded, dict(loaded.signatures), defs


@dataclass
class Version:
    number: int
    path: Path
    state: int = State.START
    error: tuple[int, str] = (error_codes_pb2.OK, "")
    aspired: bool = True
    failures: int = 0       # failed load attempts since it was found
    retry_at: float = 0.0   # time.monotonic() of the next attempt after a failure
    loaded: Any = None  # keeps the functions' variables alive while AVAILABLE
    functions: dict[str, Any] = field(default_factory=dict)
    signature_defs: get_model_metadata_pb2.SignatureDefMap | None = None


@dataclass(frozen=True)
class Servable:
    """What a request runs against: captured under the lock, valid even if the version unloads meanwhile."""
    name: str
    version: int
    functions: dict[str, Any]
    signature_defs: get_model_metadata_pb2.SignatureDefMap


@dataclass
class Model:
    config: model_server_config_pb2.ModelConfig
    versions: dict[int, Version] = field(default_factory=dict)
    configured: bool = True


class Metrics:
    """The few TF Serving Prometheus counters this server keeps, in Prometheus text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}

    def count(self, metric: str, **labels: str) -> None:
        key = (metric, tuple(sorted(labels.items())))
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def render(self) -> str:
        with self._lock:
            items = sorted(self._counts.items())
        lines, last = [], None
        for (metric, labels), value in items:
            if metric != last:
                lines.append(f"# TYPE {metric} counter")
                last = metric
            text = ",".join('{}="{}"'.format(k, v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"))
                            for k, v in labels)
            lines.append(f"{metric}{{{text}}} {value}")
        return "".join(line + "\n" for line in lines)


class ModelManager:
    """Tracks every configured model's versions; one background thread scans, loads and unloads."""

    def __init__(self, configs: list[model_server_config_pb2.ModelConfig], metrics: Metrics, *,
                 poll_seconds: float = 1.0, max_retries: int = 5, retry_seconds: float = 60.0,
                 load_delay: float = 0.0, config_file: Path | None = None, config_poll_seconds: float = 0.0,
                 warmup: bool = True):
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._models: dict[str, Model] = {}
        self._metrics = metrics
        self._poll, self._max_retries, self._retry = poll_seconds, max_retries, retry_seconds
        self._load_delay, self._config_file, self._config_poll = load_delay, config_file, config_poll_seconds
        self._warmup = warmup
        self.set_configs(configs)

    def set_configs(self, configs: list[model_server_config_pb2.ModelConfig]) -> None:
        with self._lock:
            names = {c.name for c in configs}
            for name, model in self._models.items():
                model.configured = name in names
            for config in configs:
                config.base_path = os.path.abspath(config.base_path)  # relative: to the cwd, as in TF Serving
                model = self._models.setdefault(config.name, Model(config))
                model.config, model.configured = config, True

    def run(self) -> None:
        """The loader thread: poll the file system (and the config file) until stop()."""
        next_config = time.monotonic() + self._config_poll
        scan = True
        while not self._stop.is_set():
            if self._config_file and self._config_poll > 0 and time.monotonic() >= next_config:
                next_config = time.monotonic() + self._config_poll
                try:
                    self.set_configs(read_model_config(self._config_file))
                except ValueError as error:
                    LOGGER.error("keeping the previous model config: %s", error)
            for model in list(self._models.values()):
                if scan:
                    self._aspire(model)
                self._transition(model)
            scan = self._poll > 0
            waits = [w for w in (self._poll, self._config_poll) if w > 0]
            if not waits:
                return
            self._stop.wait(min(waits))

    def stop(self) -> None:
        self._stop.set()

    def _aspire(self, model: Model) -> None:
        on_disk = scan_versions(Path(model.config.base_path)) if model.configured else {}
        wanted = select_versions(model.config, on_disk)
        with self._lock:
            for number, version in model.versions.items():
                was, version.aspired = version.aspired, number in wanted
                if version.aspired and not was and version.state == State.END:  # back again: load anew
                    version.path, version.state, version.error = on_disk[number], State.START, (error_codes_pb2.OK, "")
                    version.failures = 0
            for number in wanted - model.versions.keys():
                model.versions[number] = Version(number, on_disk[number])
                LOGGER.info("found servable version {name: %s version: %d} at %s",
                            model.config.name, number, on_disk[number])

    def _transition(self, model: Model) -> None:
        """TF Serving's AvailabilityPreservingPolicy, one action at a time."""
        while not self._stop.is_set():
            with self._lock:
                versions = sorted(model.versions.values(), key=lambda v: v.number)
                for version in versions:
                    if not version.aspired and version.state == State.START:
                        version.state = State.END
                aspired = [v for v in versions if v.aspired]
                retiring = [v for v in versions if not v.aspired and v.state == State.AVAILABLE]
                if retiring and (not aspired or any(v.state == State.AVAILABLE for v in aspired) or len(retiring) > 1):
                    target, action = retiring[0], self._unload
                    target.state = State.UNLOADING
                else:
                    now = time.monotonic()
                    new = [v for v in aspired if v.state == State.START or (
                        v.state == State.END and 0 < v.failures <= self._max_retries and now >= v.retry_at)]
                    if not new:
                        return
                    target, action = new[-1], self._load
                    target.state = State.LOADING
            action(model.config.name, target)

    def _unload(self, name: str, version: Version) -> None:
        with self._lock:
            version.loaded, version.functions, version.signature_defs = None, {}, None
            version.state = State.END
        LOGGER.info("unloaded servable version {name: %s version: %d}", name, version.number)

    def _load(self, name: str, version: Version) -> None:
        """One load attempt (plus warm-up). A failure is reported at once, END with the error, as TF Serving
        reports it; the version is tried again after a backoff (1, 2, 4 ... s, at most
        --load_retry_interval_micros) while it is still on disk and aspired, and other versions load meanwhile."""
        LOGGER.info("loading servable version {name: %s version: %d}", name, version.number)
        if version.failures == 0 and self._load_delay and self._stop.wait(self._load_delay):
            return
        try:
            loaded, functions, defs = load_saved_model(version.path)
            if self._warmup:
                warm_up(Servable(name, version.number, functions, defs), version.path)
        except Exception as error:  # any load failure becomes the version's END status, like TF Serving
            self._metrics.count(LOAD_ATTEMPTS, model_path=str(version.path), status="fail")
            code = error.error_code if isinstance(error, tf.errors.OpError) else error_codes_pb2.UNKNOWN
            message = f"{type(error).__name__}: {error}" if not isinstance(error, ServingError) else error.message
            with self._lock:
                version.failures += 1
                version.retry_at = time.monotonic() + min(self._retry, 2.0 ** (version.failures - 1))
                version.state, version.error = State.END, (code, message)
            retry = (f"; retry {version.failures} of {self._max_retries} in {version.retry_at - time.monotonic():.0f} s"
                     if version.failures <= self._max_retries else "; no retries left")
            LOGGER.error("loading servable version {name: %s version: %d} failed: %s%s", name, version.number,
                         message, retry)
            return
        self._metrics.count(LOAD_ATTEMPTS, model_path=str(version.path), status="success")
        with self._lock:
            version.loaded, version.functions, version.signature_defs = loaded, functions, defs
            version.state, version.error, version.failures = State.AVAILABLE, (error_codes_pb2.OK, ""), 0
        LOGGER.info("successfully loaded servable version {name: %s version: %d}", name, version.number)

    def _label_version(self, model: Model | None, spec: model_pb2.ModelSpec) -> int | None:
        if spec.HasField("version"):
            return spec.version.value
        if spec.version_label:
            if model is None or spec.version_label not in model.config.version_labels:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Unrecognized servable version label: {spec.version_label}")
            return model.config.version_labels[spec.version_label]
        return None

    def resolve(self, spec: model_pb2.ModelSpec) -> Servable:
        """The servable a request names: latest AVAILABLE version, or the version/label asked for."""
        with self._lock:
            model = self._models.get(spec.name)
            model = model if model and model.configured else None
            number = self._label_version(model, spec)
            wanted = f"Latest({spec.name})" if number is None else f"Specific({spec.name}, {number})"
            if model is None:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {wanted}")
            available = [v for v in model.versions.values() if v.state == State.AVAILABLE]
            if number is not None:
                available = [v for v in available if v.number == number]
                if not available:
                    raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {wanted}")
            if not available:
                states = ", ".join(f"{v.number}: {State.State.Name(v.state)}" for v in model.versions.values())
                raise ServingError(grpc.StatusCode.UNAVAILABLE, f"Servable not available for request: {wanted}; "
                                   f"no version is AVAILABLE yet ({states or 'no versions found'})")
            best = max(available, key=lambda v: v.number)
            assert best.signature_defs is not None
            return Servable(spec.name, best.number, best.functions, best.signature_defs)

    def status(self, spec: model_pb2.ModelSpec) -> get_model_status_pb2.GetModelStatusResponse:
        with self._lock:
            model = self._models.get(spec.name)
            number = self._label_version(model, spec)
            versions = model.versions if model else {}
            if number is not None and number not in versions:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find version {number} of model {spec.name}")
            if not versions:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {spec.name}")
            response = get_model_status_pb2.GetModelStatusResponse()
            for version in sorted(versions.values(), key=lambda v: -v.number):
                if number in (None, version.number):
                    entry = response.model_version_status.add(version=version.number, state=version.state)
                    entry.status.error_code, entry.status.error_message = version.error
            return response


def _dtype_name(dtype: int) -> str:
    return types_pb2.DataType.Name(dtype).removeprefix("DT_").lower() if dtype in types_pb2.DataType.values() else str(dtype)


def to_tensor_proto(value: tf.Tensor) -> tensor_pb2.TensorProto:
    """A tensor in typed ``*_val`` fields, as TF Serving's Predict answers (Tensor::AsProtoField)."""
    array = value.numpy()
    proto = tensor_pb2.TensorProto(dtype=value.dtype.as_datatype_enum, tensor_shape=value.shape.as_proto())
    flat = np.asarray(array).ravel()
    if value.dtype == tf.string:
        proto.string_val.extend(flat.tolist())
    elif value.dtype == tf.float16:
        proto.half_val.extend(flat.view(np.uint16).tolist())
    elif value.dtype in (tf.float32, tf.float64, tf.int32, tf.int16, tf.int8, tf.uint8, tf.uint16, tf.int64,
                         tf.uint32, tf.uint64, tf.bool):
        name = {tf.float32: "float_val", tf.float64: "double_val", tf.int64: "int64_val", tf.uint32: "uint32_val",
                tf.uint64: "uint64_val", tf.bool: "bool_val"}.get(value.dtype, "int_val")
        getattr(proto, name).extend(flat.tolist())
    else:
        return tf.make_tensor_proto(array)
    return proto


def warm_up(servable: Servable, path: Path) -> int:
    """Replay ``assets.extra/tf_serving_warmup_requests`` (TFRecord of PredictionLog, TF Serving's format) on
    a version before it is marked AVAILABLE: the first real requests then find its functions traced and
    optimized. A failing record fails the load, as in TF Serving. Returns how many requests ran."""
    warmup_file = path / WARMUP_FILE
    if not warmup_file.is_file():
        return 0
    start, count = time.monotonic(), 0
    for record in tf.data.TFRecordDataset(str(warmup_file)):
        count += 1
        if count > MAX_WARMUP_RECORDS:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"{warmup_file}: more than {MAX_WARMUP_RECORDS} warm-up records")
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if log.WhichOneof("log_type") != "predict_log":
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"{warmup_file}: record {count} is a "
                               f"{log.WhichOneof('log_type')}; this server replays predict_log records only")
        try:
            run_predict(servable, log.predict_log.request)
        except ServingError as error:
            raise ServingError(error.code, f"warm-up request {count} of {warmup_file} failed: {error.message}") from None
    LOGGER.info("warm-up of {name: %s version: %d}: %d request(s) in %.1f s", servable.name, servable.version, count,
                time.monotonic() - start)
    return count


def predict(manager: ModelManager, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    return run_predict(manager.resolve(request.model_spec), request)


def run_predict(servable: Servable, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    signature = servable.signature_defs.signature_def.get(signature_name)
    function = servable.functions.get(signature_name)
    if signature is None or function is None:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{signature_name}" not found.')
    sent, expected = set(request.inputs), set(signature.inputs)
    if len(sent) != len(expected):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, (
            f"input size does not match signature: {len(sent)}!={len(expected)} len({{{','.join(sorted(sent))}}}) "
            f"!= len({{{','.join(sorted(expected))}}}). Sent extra: {{{','.join(sorted(sent - expected))}}}. "
            f"Missing but required: {{{','.join(sorted(expected - sent))}}}."))
    feeds = {}
    for index, (alias, proto) in enumerate(sorted(request.inputs.items())):
        info = signature.inputs.get(alias)
        if info is None:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"input tensor alias not found in signature: {alias}. "
                               f"Inputs expected to be in the set {{{','.join(sorted(expected))}}}.")
        if proto.dtype != info.dtype:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Expects arg[{index}] to be "
                               f"{_dtype_name(info.dtype)} but {_dtype_name(proto.dtype)} is provided")
        try:
            array = tf.make_ndarray(proto)
        except Exception:  # malformed TensorProto (size/shape mismatch, bad dims)
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"tensor parsing error: {alias}") from None
        shape = tf.TensorShape(info.tensor_shape)
        if not shape.is_compatible_with(array.shape):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input {alias}: shape {list(array.shape)} is incompatible with the signature's {shape}")
        feeds[alias] = tf.constant(array, dtype=tf.as_dtype(info.dtype))
    aliases = list(request.output_filter) or sorted(signature.outputs)
    for alias in aliases:
        if alias not in signature.outputs:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"output tensor alias not found in signature: "
                               f"{alias} Outputs expected to be in the set {{{','.join(sorted(signature.outputs))}}}.")
    if len(set(aliases)) != len(aliases):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "duplicate output tensor alias in output_filter")
    try:
        outputs = function(**feeds)
    except tf.errors.OpError as error:
        raise ServingError(GRPC_CODE.get(error.error_code, grpc.StatusCode.UNKNOWN), error.message) from None
    except (TypeError, ValueError) as error:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
    response = predict_pb2.PredictResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = signature_name
    for alias in aliases:
        response.outputs[alias].CopyFrom(to_tensor_proto(outputs[alias]))
    return response


def metadata(manager: ModelManager, request: get_model_metadata_pb2.GetModelMetadataRequest
             ) -> get_model_metadata_pb2.GetModelMetadataResponse:
    if not request.metadata_field:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           "GetModelMetadataRequest must specify at least one metadata_field")
    for name in request.metadata_field:
        if name != "signature_def":
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {name} is not supported")
    servable = manager.resolve(request.model_spec)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.metadata["signature_def"].Pack(servable.signature_defs)
    return response


class _Servicer(prediction_service_pb2_grpc.PredictionServiceServicer, model_service_pb2_grpc.ModelServiceServicer):
    """Both gRPC services; every call is counted by model and status."""

    def __init__(self, manager: ModelManager, metrics: Metrics):
        self.manager, self.metrics = manager, metrics

    def _call(self, name: str, context: grpc.ServicerContext, handler: Callable[[], Any]) -> Any:
        try:
            response = handler()
        except ServingError as error:
            self.metrics.count(REQUEST_COUNT, model_name=name, status=error.code.name)
            context.abort(error.code, error.message)
        self.metrics.count(REQUEST_COUNT, model_name=name, status="OK")
        return response

    def Predict(self, request, context):  # noqa: N802 (gRPC method names)
        return self._call(request.model_spec.name, context, lambda: predict(self.manager, request))

    def GetModelMetadata(self, request, context):  # noqa: N802
        return self._call(request.model_spec.name, context, lambda: metadata(self.manager, request))

    def GetModelStatus(self, request, context):  # noqa: N802
        return self._call(request.model_spec.name, context, lambda: self.manager.status(request.model_spec))


def _invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _from_json(value: Any, info: Any, alias: str) -> tensor_pb2.TensorProto:
    """A JSON value (nested lists; ``{"b64": ...}`` for bytes) as a tensor of the signature input's dtype."""
    def unwrap(item: Any) -> Any:
        if isinstance(item, dict):
            if set(item) != {"b64"} or not isinstance(item["b64"], str):
                raise _invalid(f"input {alias}: objects in tensor values must be {{\"b64\": <base64 string>}}")
            try:
                return base64.b64decode(item["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise _invalid(f"input {alias}: invalid base64 in \"b64\"") from None
        if isinstance(item, list):
            return [unwrap(v) for v in item]
        return item.encode() if isinstance(item, str) else item

    dtype = tf.as_dtype(info.dtype)
    try:
        if dtype == tf.string:
            array = np.array(unwrap(value), dtype=object)
        else:
            array = np.array(unwrap(value), dtype=dtype.as_numpy_dtype)
        if dtype == tf.string and any(not isinstance(v, bytes) for v in array.ravel()):
            raise ValueError("expected (nested lists of) strings or {\"b64\": ...}")
        return tf.make_tensor_proto(array, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as error:
        raise _invalid(f"input {alias}: cannot convert the JSON value to a {dtype.name} tensor "
                       f"(ragged lists, or values of another type?): {error}") from None


def _to_json(alias: str, array: np.ndarray) -> Any:
    """A tensor as JSON: nested lists; bytes as ``{"b64": ...}`` when the alias ends in ``_bytes`` (TF
    Serving's rule), else as UTF-8 text."""
    if array.dtype == object:
        def text(value: bytes) -> Any:
            if alias.endswith("_bytes"):
                return {"b64": base64.b64encode(value).decode()}
            return value.decode("utf-8", errors="replace")
        return np.vectorize(text, otypes=[object])(array).tolist() if array.size else array.tolist()
    return array.tolist()


def rest_predict(manager: ModelManager, spec: model_pb2.ModelSpec, body: Any) -> dict[str, Any]:
    """TF Serving's REST predict: ``instances`` (row format) or ``inputs`` (columnar) -> PredictRequest ->
    ``predictions`` or ``outputs``."""
    if not isinstance(body, dict):
        raise _invalid("JSON body must be an object with \"instances\" or \"inputs\"")
    if ("instances" in body) == ("inputs" in body):
        raise _invalid("JSON body must have exactly one of \"instances\" (row format) or \"inputs\" (columnar)")
    signature_name = body.get("signature_name") or DEFAULT_SIGNATURE
    if not isinstance(signature_name, str):
        raise _invalid("\"signature_name\" must be a string")
    spec.signature_name = signature_name
    servable = manager.resolve(spec)
    signature = servable.signature_defs.signature_def.get(signature_name)
    if signature is None:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{signature_name}" not found.')
    names = sorted(signature.inputs)
    row_format = "instances" in body
    data = body["instances"] if row_format else body["inputs"]
    named = isinstance(data, dict) and set(data) != {"b64"}
    if row_format:
        if not isinstance(data, list) or not data:
            raise _invalid("\"instances\" must be a non-empty list")
        named = all(isinstance(i, dict) and set(i) != {"b64"} for i in data)
        if named:
            keys = {frozenset(i) for i in data}
            if len(keys) != 1:
                raise _invalid("every instance must name the same inputs")
            data = {key: [instance[key] for instance in data] for key in next(iter(keys))}
    if not named:
        if len(names) != 1:
            raise _invalid(f"the signature has {len(names)} inputs ({', '.join(names)}): name them")
        data = {names[0]: data}
    request = predict_pb2.PredictRequest(model_spec=spec)
    for alias, value in data.items():
        if alias not in signature.inputs:
            raise _invalid(f"input tensor alias not found in signature: {alias}. "
                           f"Inputs expected to be in the set {{{','.join(names)}}}.")
        request.inputs[alias].CopyFrom(_from_json(value, signature.inputs[alias], alias))
    response = run_predict(servable, request)
    outputs = {alias: tf.make_ndarray(tensor) for alias, tensor in sorted(response.outputs.items())}
    if not row_format:
        columns = {alias: _to_json(alias, array) for alias, array in outputs.items()}
        return {"outputs": next(iter(columns.values())) if len(columns) == 1 else columns}
    batch = len(body["instances"])
    for alias, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != batch:
            raise _invalid(f"output {alias} has batch size {array.shape[0] if array.ndim else 'none'}, not the "
                           f"{batch} instance(s): use the columnar format (\"inputs\")")
    rows = [{alias: _to_json(alias, array[i]) for alias, array in outputs.items()} for i in range(batch)]
    return {"predictions": [next(iter(r.values())) for r in rows] if len(outputs) == 1 else rows}


def _rest_model_spec(match: re.Match) -> model_pb2.ModelSpec:
    """The ModelSpec of a REST path: ``/v1/models/<name>[/versions/<n> | /labels/<label>]...``."""
    spec = model_pb2.ModelSpec(name=unquote(match[1]))
    if match[2]:
        spec.version.value = int(match[2])
    elif match[3]:
        spec.version_label = unquote(match[3])
    return spec


def start_rest(address: str, port: int, manager: ModelManager, metrics: Metrics,
               metrics_path: str | None) -> ThreadingHTTPServer:
    """TF Serving's REST API (status, metadata, predict) and the Prometheus endpoint, in a thread."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: str, content_type: str = "application/json") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0].rstrip("/")
            if metrics_path and path == metrics_path:
                return self._send(200, metrics.render(), "text/plain; version=0.0.4")
            match = re.fullmatch(r"/v1/models/([^/]+)(?:/versions/(\d+)|/labels/([^/]+))?(/metadata)?", path)
            if not match:
                return self._send(404, json.dumps({"error": f"Malformed request: GET {path}"}))
            spec = _rest_model_spec(match)
            try:
                if match[4]:
                    response = metadata(manager, get_model_metadata_pb2.GetModelMetadataRequest(
                        model_spec=spec, metadata_field=["signature_def"]))
                    defs = get_model_metadata_pb2.SignatureDefMap()
                    response.metadata["signature_def"].Unpack(defs)
                    body = {"model_spec": json_format.MessageToDict(response.model_spec, preserving_proto_field_name=True),
                            "metadata": {"signature_def": json_format.MessageToDict(defs, preserving_proto_field_name=True)}}
                else:
                    body = json_format.MessageToDict(manager.status(spec), preserving_proto_field_name=True,
                                                     always_print_fields_with_no_presence=True)
            except ServingError as error:
                return self._send(HTTP_STATUS.get(error.code, 500), json.dumps({"error": error.message}))
            self._send(200, json.dumps(body, indent=1))

        def do_POST(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0]
            match = re.fullmatch(r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(\w+)", path)
            if not match:
                return self._send(404, json.dumps({"error": f"Malformed request: POST {path}"}))
            if match[4] != "predict":
                return self._send(501, json.dumps({"error": f"{match[4]} is not implemented by odstack's "
                                                            "development model server (predict is)"}))
            spec = _rest_model_spec(match)
            try:
                length = int(self.headers.get("Content-Length") or -1)
                if not 0 <= length <= MAX_REST_BODY:
                    raise _invalid(f"a request body with a Content-Length of at most {MAX_REST_BODY} bytes is needed")
                try:
                    body = json.loads(self.rfile.read(length))
                except (ValueError, RecursionError) as error:
                    raise _invalid(f"JSON Parse error: {error}") from None
                answer = rest_predict(manager, spec, body)
            except ServingError as error:
                metrics.count(REQUEST_COUNT, model_name=spec.name, status=error.code.name)
                return self._send(HTTP_STATUS.get(error.code, 500), json.dumps({"error": error.message}))
            metrics.count(REQUEST_COUNT, model_name=spec.name, status="OK")
            self._send(200, json.dumps(answer))

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (BaseHTTPRequestHandler's name)
            LOGGER.debug("rest: " + format, *args)

    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="rest", daemon=True).start()
    return server


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m odstack.serving.modelserver", description=(
        "odstack's development model server: TensorFlow Serving's gRPC API (Predict, GetModelMetadata, "
        "GetModelStatus) over <base_path>/<version>/saved_model.pb. Flag names are tensorflow_model_server's."))
    p.add_argument("--port", type=int, default=8500, help="gRPC port")
    p.add_argument("--rest_api_port", type=int, default=0, help="REST status/metadata/metrics port (0: off)")
    p.add_argument("--bind_address", default=os.environ.get("MODELSERVER_BIND_ADDRESS", "127.0.0.1"),
                   help="not in TF Serving, which binds 0.0.0.0 (default: $MODELSERVER_BIND_ADDRESS or 127.0.0.1)")
    p.add_argument("--model_name", default="default", help="model name (without --model_config_file)")
    p.add_argument("--model_base_path", help="dir of <version>/saved_model.pb dirs (without --model_config_file)")
    p.add_argument("--model_config_file", type=Path, help="ModelServerConfig text proto (model_config_list)")
    p.add_argument("--model_config_file_poll_wait_seconds", type=float, default=0, help="re-read the config (0: never)")
    p.add_argument("--file_system_poll_wait_seconds", type=float, default=1, help="version poll interval (<=0: once)")
    p.add_argument("--max_num_load_retries", type=int, default=5)
    p.add_argument("--load_retry_interval_micros", type=int, default=60_000_000)
    p.add_argument("--monitoring_config_file", type=Path, help="MonitoringConfig text proto (prometheus_config)")
    p.add_argument("--grpc_max_threads", type=int, default=max(8, 4 * (os.cpu_count() or 1)))
    p.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0)
    p.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0)
    p.add_argument("--enable_model_warmup", type=lambda v: v.lower() not in ("false", "0"), nargs="?", const=True,
                   default=True, help="replay assets.extra/tf_serving_warmup_requests before AVAILABLE (default true)")
    p.add_argument("--load_delay_seconds", type=float, default=0, help="not in TF Serving: hold loads in LOADING")
    for name in IGNORED_FLAGS:
        p.add_argument(f"--{name}", nargs="?", const="true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.model_config_file and not args.model_base_path:
        p.error("give --model_base_path (with --model_name) or --model_config_file")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s modelserver: %(message)s"))
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(logging.WARNING if os.environ.get("ODSTACK_VERBOSE", "1") in ("0", "false") else logging.INFO)
    LOGGER.propagate = False
    for name in IGNORED_FLAGS:
        if getattr(args, name) not in (None, "false", "0"):
            LOGGER.warning("--%s is accepted for TF Serving compatibility and ignored", name)
    try:
        if args.model_config_file:
            configs = read_model_config(args.model_config_file)
        else:
            configs = [model_server_config_pb2.ModelConfig(name=args.model_name, base_path=args.model_base_path)]
        metrics_path = None
        if args.monitoring_config_file:
            monitoring = protos.MonitoringConfig()
            text_format.Parse(args.monitoring_config_file.read_text(encoding="utf-8"), monitoring)
            if monitoring.prometheus_config.enable:
                metrics_path = monitoring.prometheus_config.path or "/monitoring/prometheus/metrics"
    except (ValueError, OSError, text_format.ParseError) as error:
        LOGGER.error("error: %s", error)
        return 2
    if args.tensorflow_intra_op_parallelism:
        tf.config.threading.set_intra_op_parallelism_threads(args.tensorflow_intra_op_parallelism)
    if args.tensorflow_inter_op_parallelism:
        tf.config.threading.set_inter_op_parallelism_threads(args.tensorflow_inter_op_parallelism)

    metrics = Metrics()
    manager = ModelManager(configs, metrics, poll_seconds=args.file_system_poll_wait_seconds,
                           max_retries=args.max_num_load_retries, retry_seconds=args.load_retry_interval_micros / 1e6,
                           load_delay=args.load_delay_seconds, config_file=args.model_config_file,
                           config_poll_seconds=args.model_config_file_poll_wait_seconds, warmup=args.enable_model_warmup)
    servicer = _Servicer(manager, metrics)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.grpc_max_threads, thread_name_prefix="grpc"),
                         options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1),
                                  ("grpc.so_reuseport", 0)])  # a second server on the port fails loudly
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, server)
    try:
        server.add_insecure_port(f"{args.bind_address}:{args.port}")
        rest = (start_rest(args.bind_address, args.rest_api_port, manager, metrics, metrics_path)
                if args.rest_api_port else None)
    except (RuntimeError, OSError) as error:
        LOGGER.error("error: cannot listen on %s: %s", args.bind_address, error)
        return 1
    server.start()
    LOGGER.info("running gRPC model server at %s:%d%s; models: %s", args.bind_address, args.port,
                f", REST at :{args.rest_api_port}" if rest else "", ", ".join(f"{c.name} <- {c.base_path}" for c in configs))
    loader = threading.Thread(target=manager.run, name="loader", daemon=True)
    loader.start()

    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _frame: stopping.set())
    while not stopping.wait(1.0):
        pass
    LOGGER.info("shutting down: finishing in-flight requests")
    manager.stop()
    if rest:
        rest.shutdown()
    server.stop(grace=5).wait()
    loader.join(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
