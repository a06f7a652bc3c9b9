"""Protobuf schemas odstack reads and writes, declared in a private descriptor pool.

- ``Example`` (+ Features, Feature, BytesList, FloatList, Int64List): TensorFlow's
  tensorflow/core/example/{example,feature}.proto, wire-compatible field for field. Importing
  TensorFlow for them would cost seconds and ~700 MiB per worker, and packages that ship their own
  copies register them in protobuf's *default* pool, where they collide with TensorFlow's
  ("duplicate symbol 'tensorflow.BytesList'") as soon as both are imported in one process.
- The TF OD API's own schemas (object_detection/protos/*.proto at the pinned commit; they live on
  GitHub and are not installable everywhere), from the descriptor set compiled from them in
  odstack/odapi_protos/ (Apache-2.0, its licence beside it): ``TrainEvalPipelineConfig``
  (pipeline.config) and ``StringIntLabelMap`` (label_map.pbtxt).
- ``CheckpointState``: TensorFlow's tensorflow/python/checkpoint/checkpoint_state.proto (the
  ``checkpoint`` file beside checkpoints), read without importing TensorFlow.
- ``MonitoringConfig``: TF Serving's tensorflow_serving/config/monitoring_config.proto (its Prometheus
  part), which tensorflow-serving-api does not ship; the development model server reads it.
- ``PredictionLog``: TF Serving's warm-up record (a Predict request), written by export, where
  tensorflow-serving-api is not installed.

A private pool keeps them away from anything else in the process; protobuf does all encoding.
"""
from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
ODAPI_DESCRIPTOR_SET = "descriptor_set.binpb"   # scripts/odapi/build_descriptor_set.sh writes it
_POOL = descriptor_pool.DescriptorPool()


def _field(message, name: str, number: int, ftype: int, label: int = _F.LABEL_OPTIONAL,
           type_name: str | None = None, packed: bool | None = None) -> None:
    field = message.field.add(name=name, number=number, type=ftype, label=label)
    if type_name:
        field.type_name = type_name
    if packed is not None:
        field.options.packed = packed


def _example_file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name="odstack/tf_example.proto", package="tensorflow", syntax="proto3")
    repeated = _F.LABEL_REPEATED
    _field(proto.message_type.add(name="BytesList"), "value", 1, _F.TYPE_BYTES, repeated)
    _field(proto.message_type.add(name="FloatList"), "value", 1, _F.TYPE_FLOAT, repeated, packed=True)
    _field(proto.message_type.add(name="Int64List"), "value", 1, _F.TYPE_INT64, repeated, packed=True)
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, (name, kind) in enumerate([("bytes_list", "BytesList"), ("float_list", "FloatList"),
                                           ("int64_list", "Int64List")], start=1):
        _field(feature, name, number, _F.TYPE_MESSAGE, type_name=f".tensorflow.{kind}")
        feature.field[-1].oneof_index = 0
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    _field(entry, "key", 1, _F.TYPE_STRING)
    _field(entry, "value", 2, _F.TYPE_MESSAGE, type_name=".tensorflow.Feature")
    _field(features, "feature", 1, _F.TYPE_MESSAGE, repeated, type_name=".tensorflow.Features.FeatureEntry")
    _field(proto.message_type.add(name="Example"), "features", 1, _F.TYPE_MESSAGE,
           type_name=".tensorflow.Features")
    return proto


def _checkpoint_state_file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name="odstack/checkpoint_state.proto", package="tensorflow",
                                               syntax="proto3")
    state = proto.message_type.add(name="CheckpointState")
    _field(state, "model_checkpoint_path", 1, _F.TYPE_STRING)
    _field(state, "all_model_checkpoint_paths", 2, _F.TYPE_STRING, _F.LABEL_REPEATED)
    _field(state, "all_model_checkpoint_timestamps", 3, _F.TYPE_DOUBLE, _F.LABEL_REPEATED)
    _field(state, "last_preserved_timestamp", 4, _F.TYPE_DOUBLE)
    return proto


def _odapi_files() -> list[descriptor_pb2.FileDescriptorProto]:
    """The OD API's protos, in dependency order (protoc --include_imports writes them so)."""
    data = (Path(__file__).parent / "odapi_protos" / ODAPI_DESCRIPTOR_SET).read_bytes()
    return list(descriptor_pb2.FileDescriptorSet.FromString(data).file)


def _monitoring_config_file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name="odstack/monitoring_config.proto", package="tensorflow.serving",
                                               syntax="proto3")
    prometheus = proto.message_type.add(name="PrometheusConfig")
    _field(prometheus, "enable", 1, _F.TYPE_BOOL)
    _field(prometheus, "path", 2, _F.TYPE_STRING)
    _field(proto.message_type.add(name="MonitoringConfig"), "prometheus_config", 1, _F.TYPE_MESSAGE,
           type_name=".tensorflow.serving.PrometheusConfig")
    return proto


def _prediction_log_file() -> descriptor_pb2.FileDescriptorProto:
    """TF Serving's PredictionLog (tensorflow_serving/apis/prediction_log.proto), only what a warm-up record
    of a Predict call needs. ``PredictRequest.inputs`` values are TensorProto messages on the wire; here they
    are declared as bytes (the same wire type), filled with ``TensorProto.SerializeToString()``, so TensorFlow's
    schema need not be in this pool."""
    proto = descriptor_pb2.FileDescriptorProto(name="odstack/prediction_log.proto", package="tensorflow.serving",
                                               syntax="proto3")
    spec = proto.message_type.add(name="ModelSpec")
    _field(spec, "name", 1, _F.TYPE_STRING)
    _field(spec, "signature_name", 3, _F.TYPE_STRING)
    request = proto.message_type.add(name="PredictRequest")
    _field(request, "model_spec", 1, _F.TYPE_MESSAGE, type_name=".tensorflow.serving.ModelSpec")
    entry = request.nested_type.add(name="InputsEntry")
    entry.options.map_entry = True
    _field(entry, "key", 1, _F.TYPE_STRING)
    _field(entry, "value", 2, _F.TYPE_BYTES)
    _field(request, "inputs", 2, _F.TYPE_MESSAGE, _F.LABEL_REPEATED,
           type_name=".tensorflow.serving.PredictRequest.InputsEntry")
    _field(proto.message_type.add(name="PredictLog"), "request", 1, _F.TYPE_MESSAGE,
           type_name=".tensorflow.serving.PredictRequest")
    _field(proto.message_type.add(name="PredictionLog"), "predict_log", 6, _F.TYPE_MESSAGE,
           type_name=".tensorflow.serving.PredictLog")
    return proto


_POOL.Add(_example_file())
_POOL.Add(_checkpoint_state_file())
_POOL.Add(_monitoring_config_file())
_POOL.Add(_prediction_log_file())
for _file in _odapi_files():
    _POOL.Add(_file)


def _message(full_name: str):
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(full_name))


Example = _message("tensorflow.Example")
Features = _message("tensorflow.Features")
Feature = _message("tensorflow.Feature")
BytesList = _message("tensorflow.BytesList")
FloatList = _message("tensorflow.FloatList")
Int64List = _message("tensorflow.Int64List")
StringIntLabelMap = _message("object_detection.protos.StringIntLabelMap")
TrainEvalPipelineConfig = _message("object_detection.protos.TrainEvalPipelineConfig")
CheckpointState = _message("tensorflow.CheckpointState")
MonitoringConfig = _message("tensorflow.serving.MonitoringConfig")
PredictionLog = _message("tensorflow.serving.PredictionLog")
