"""TF Serving over gRPC: the only module that imports grpc.

One long-lived channel per worker process, created on first use (after gunicorn forks) and re-created
if the process id changes; every call has a deadline; a call failing with UNAVAILABLE is retried once.
PredictRequest tensors are built from numpy straight into TensorProto fields: no TensorFlow here (the
protos come from scripts/client/extract_protos.py).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import grpc
import numpy as np
from flask import Flask, current_app
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from odclient import metrics

# The served model's contract (OD API export signature, docs/architecture.md).
INPUT_KEY = "input_tensor"
BYTES_INPUT_KEY = "encoded_image_string_tensor"  # the encoded-image signature's input (make export, tfvision)
SIGNATURE_TTL_S = 30.0
BOXES, SCORES, CLASSES, NUM = "detection_boxes", "detection_scores", "detection_classes", "num_detections"
OUTPUT_KEYS = (BOXES, SCORES, CLASSES, NUM)

AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.Name(get_model_status_pb2.ModelVersionStatus.AVAILABLE)
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
    # Reconnect quickly after the model server restarts (gRPC's default backoff grows to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
RETRY_PAUSE_S = 0.2

_DTYPES: dict[int, tuple[Any, str]] = {  # DataType -> (numpy dtype, TensorProto repeated field)
    types_pb2.DT_FLOAT: (np.float32, "float_val"),
    types_pb2.DT_DOUBLE: (np.float64, "double_val"),
    types_pb2.DT_HALF: (np.float16, "half_val"),
    types_pb2.DT_INT32: (np.int32, "int_val"),
    types_pb2.DT_INT64: (np.int64, "int64_val"),
    types_pb2.DT_UINT8: (np.uint8, "int_val"),
    types_pb2.DT_INT8: (np.int8, "int_val"),
    types_pb2.DT_INT16: (np.int16, "int_val"),
}


class UpstreamError(Exception):
    """The model server could not answer. ``status`` is the HTTP status the API maps it to."""

    status, code = 502, "upstream_error"

    def __init__(self, message: str, grpc_code: str = "") -> None:
        super().__init__(message)
        self.grpc_code = grpc_code


class Unavailable(UpstreamError):
    status, code = 503, "model_server_unavailable"


class DeadlineExceeded(UpstreamError):
    status, code = 504, "upstream_timeout"


class NotFound(UpstreamError):
    """Unknown model or version (also: the model is not loaded yet)."""

    status, code = 404, "model_not_found"


class BadRequest(UpstreamError):
    status, code = 422, "rejected_by_model"


@dataclass
class Detections:
    boxes: np.ndarray      # [N, 4] float32 ymin, xmin, ymax, xmax (normalized)
    scores: np.ndarray     # [N] float32
    classes: np.ndarray    # [N] int (1-based)
    model: str
    version: int


@dataclass
class VersionStatus:
    version: int
    state: str
    error: str


def make_tensor(array: np.ndarray) -> tensor_pb2.TensorProto:
    """TensorProto from a numpy array (raw little-endian bytes in ``tensor_content``)."""
    dtype = {np.dtype(numpy_type): key for key, (numpy_type, _field) in _DTYPES.items()}[array.dtype]
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s)
                                                   for s in array.shape])
    content = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, tensor_content=content)


def to_numpy(tensor: tensor_pb2.TensorProto) -> np.ndarray:
    """numpy array from a TensorProto, whether it uses ``tensor_content`` or the typed ``*_val`` fields."""
    if tensor.dtype not in _DTYPES:
        raise UpstreamError(f"unsupported output dtype {types_pb2.DataType.Name(tensor.dtype)}")
    np_dtype, field = _DTYPES[tensor.dtype]
    shape = [d.size for d in tensor.tensor_shape.dim]
    if tensor.tensor_content:
        flat = np.frombuffer(tensor.tensor_content, dtype=np.dtype(np_dtype).newbyteorder("<"))
    elif tensor.dtype == types_pb2.DT_HALF:
        flat = np.array(tensor.half_val, dtype=np.uint16).view(np.float16)
    else:
        flat = np.array(getattr(tensor, field), dtype=np_dtype)
    size = int(np.prod(shape)) if shape else 1
    if flat.size == 1 and size != 1:  # TF's convention: one value fills the whole tensor
        flat = np.full(size, flat[0], dtype=flat.dtype)
    if flat.size != size:
        raise UpstreamError(f"output tensor has {flat.size} values for shape {shape}")
    return flat.reshape(shape)


T = TypeVar("T")


class TFServingClient:
    def __init__(self, target: str, predict_timeout: float, status_timeout: float) -> None:
        self.target, self.predict_timeout, self.status_timeout = target, predict_timeout, status_timeout
        self._lock = threading.Lock()
        self._pid = -1
        self._channel: grpc.Channel | None = None
        self._predict: prediction_service_pb2_grpc.PredictionServiceStub | None = None
        self._models: model_service_pb2_grpc.ModelServiceStub | None = None
        self._signatures: dict[tuple[str, str], tuple[bool, float]] = {}  # (model, signature) -> (has it, until)

    def _stubs(self) -> tuple[prediction_service_pb2_grpc.PredictionServiceStub, model_service_pb2_grpc.ModelServiceStub]:
        with self._lock:
            if self._channel is None or self._pid != os.getpid():  # first use, or a forked copy
                self._channel = grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)
                self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
                self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
                self._pid = os.getpid()
            assert self._predict is not None and self._models is not None
            return self._predict, self._models

    def close(self) -> None:
        with self._lock:
            if self._channel is not None and self._pid == os.getpid():
                self._channel.close()
            self._channel = None

    def _call(self, rpc: str, timeout: float, invoke: Callable[[float], T]) -> T:
        """``invoke(remaining_seconds)`` with one retry on UNAVAILABLE, gRPC errors mapped to ours."""
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            start = time.perf_counter()
            try:
                result = invoke(max(deadline - time.monotonic(), 0.001))
                metrics.UPSTREAM_LATENCY.labels(rpc).observe(time.perf_counter() - start)
                return result
            except grpc.RpcError as error:
                code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
                metrics.UPSTREAM_LATENCY.labels(rpc).observe(time.perf_counter() - start)
                metrics.UPSTREAM_ERRORS.labels(rpc, code.name).inc()
                if (code == grpc.StatusCode.UNAVAILABLE and attempt == 0
                        and deadline - time.monotonic() > RETRY_PAUSE_S * 2):
                    attempt += 1
                    time.sleep(RETRY_PAUSE_S)
                    continue
                raise _map_error(rpc, code, error.details() or "") from None  # type: ignore[attr-defined]

    def predict(self, image: np.ndarray, model: str, version: int | None, signature: str) -> Detections:
        """Run the detector on one HxWx3 uint8 image."""
        return self._run_predict({INPUT_KEY: make_tensor(image[np.newaxis])}, model, version, signature)

    def predict_encoded(self, encoded: bytes, model: str, version: int | None, signature: str) -> Detections:
        """Run the detector's encoded-image signature on one JPEG/PNG as uploaded (the model server decodes)."""
        tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[encoded],
                                        tensor_shape=tensor_shape_pb2.TensorShapeProto(
                                            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]))
        return self._run_predict({BYTES_INPUT_KEY: tensor}, model, version, signature)

    def has_signature(self, model: str, signature: str) -> bool:
        """Whether the model's served version has ``signature`` (GetModelMetadata, cached SIGNATURE_TTL_S)."""
        now = time.monotonic()
        cached = self._signatures.get((model, signature))
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            self.signature(model, signature)
            found = True
        except (NotFound, Unavailable, DeadlineExceeded):
            raise
        except UpstreamError:  # no such signature
            found = False
        self._signatures[(model, signature)] = (found, now + SIGNATURE_TTL_S)
        return found

    def forget_signature(self, model: str, signature: str) -> None:
        self._signatures.pop((model, signature), None)

    def _run_predict(self, inputs: dict[str, tensor_pb2.TensorProto], model: str, version: int | None,
                 signature: str) -> Detections:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature
        if version is not None:
            request.model_spec.version.value = version
        for key, tensor in inputs.items():
            request.inputs[key].CopyFrom(tensor)
        request.output_filter.extend(OUTPUT_KEYS)
        predict, _ = self._stubs()
        response = self._call("Predict", self.predict_timeout, lambda t: predict.Predict(request, timeout=t))
        missing = [key for key in (BOXES, SCORES, CLASSES) if key not in response.outputs]
        if missing:
            raise UpstreamError(f"model {model!r} did not return {', '.join(missing)} (not an OD API detector?)")
        boxes = to_numpy(response.outputs[BOXES]).reshape(-1, 4).astype(np.float32)
        scores = to_numpy(response.outputs[SCORES]).reshape(-1).astype(np.float32)
        classes = np.rint(to_numpy(response.outputs[CLASSES]).reshape(-1)).astype(np.int64)
        n = min(len(boxes), len(scores), len(classes))
        if NUM in response.outputs:
            n = min(n, int(to_numpy(response.outputs[NUM]).reshape(-1)[0]))
        served = response.model_spec.version.value if response.model_spec.HasField("version") else (version or 0)
        return Detections(boxes[:n], scores[:n], classes[:n], response.model_spec.name or model, served)

    def model_status(self, model: str) -> list[VersionStatus]:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model
        _, models = self._stubs()
        response = self._call("GetModelStatus", self.status_timeout,
                              lambda t: models.GetModelStatus(request, timeout=t))
        return [VersionStatus(s.version, get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
                              s.status.error_message) for s in response.model_version_status]

    def signature(self, model: str, signature: str, version: int | None = None) -> dict[str, Any]:
        """``{"name", "inputs": {key: {dtype, shape}}, "outputs": {...}}`` from GetModelMetadata."""
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = version
        request.metadata_field.append("signature_def")
        predict, _ = self._stubs()
        response = self._call("GetModelMetadata", self.status_timeout,
                              lambda t: predict.GetModelMetadata(request, timeout=t))
        defs = get_model_metadata_pb2.SignatureDefMap()
        if "signature_def" not in response.metadata or not response.metadata["signature_def"].Unpack(defs):
            raise UpstreamError(f"model {model!r}: GetModelMetadata returned no signature_def")
        if signature not in defs.signature_def:
            raise UpstreamError(f"model {model!r} has no signature {signature!r} "
                                f"(has: {', '.join(sorted(defs.signature_def)) or 'none'})")
        sig = defs.signature_def[signature]

        def describe(infos: Any) -> dict[str, Any]:
            return {key: {"dtype": types_pb2.DataType.Name(info.dtype),
                          "shape": None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim]}
                    for key, info in sorted(infos.items())}

        return {"name": signature, "method": sig.method_name, "inputs": describe(sig.inputs),
                "outputs": describe(sig.outputs)}


def _map_error(rpc: str, code: grpc.StatusCode, details: str) -> UpstreamError:
    text = f"{rpc}: {details}" if details else f"{rpc}: {code.name}"
    if code == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(f"model server unavailable ({text})", code.name)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"model server did not answer in time ({text})", code.name)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(text, code.name)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return BadRequest(text, code.name)
    if code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED):
        return Unavailable(f"model server busy ({text})", code.name)
    return UpstreamError(f"model server error ({text})", code.name)


def init_app(app: Flask) -> None:
    """Register this worker's client; the channel itself opens on the first call."""
    app.extensions["tfserving"] = TFServingClient(app.config["TF_SERVING_ADDR"], app.config["PREDICT_TIMEOUT"],
                                                  app.config["STATUS_TIMEOUT"])


def client() -> TFServingClient:
    return current_app.extensions["tfserving"]  # type: ignore[no-any-return]
