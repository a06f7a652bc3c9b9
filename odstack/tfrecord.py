"""The one module that builds and parses ``tf.train.Example`` records (TF OD API schema).

Writing does not import the TensorFlow runtime: importing TF costs ~4 s and ~700 MiB per process,
which would dominate a parallel converter. The record framing (length, masked CRC-32C) comes from the
``tfrecords`` package (TensorFlow's record writer/reader code, compiled, without TF); the Example
proto from ``odstack.protos``. The tests prove that TensorFlow's own ``TFRecordDataset`` +
``parse_single_example`` read what we write, and that TF-written records read back here.

Feature keys are the OD API's (``object_detection/core/standard_fields.TfExampleFields``); the
decoder of TF Model Garden vision reads the same keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import tfrecords

from odstack import protos


class Keys:
    """OD API tf.Example feature keys."""

    ENCODED = "image/encoded"
    FORMAT = "image/format"
    HEIGHT = "image/height"
    WIDTH = "image/width"
    FILENAME = "image/filename"
    SOURCE_ID = "image/source_id"
    SHA256 = "image/key/sha256"
    XMIN = "image/object/bbox/xmin"
    XMAX = "image/object/bbox/xmax"
    YMIN = "image/object/bbox/ymin"
    YMAX = "image/object/bbox/ymax"
    CLASS_TEXT = "image/object/class/text"
    CLASS_LABEL = "image/object/class/label"
    DIFFICULT = "image/object/difficult"
    TRUNCATED = "image/object/truncated"
    IS_CROWD = "image/object/is_crowd"


@dataclass
class ExampleData:
    """Everything one OD API example holds. Boxes are normalized to [0, 1]."""

    encoded: bytes
    image_format: str  # "jpeg" or "png"
    width: int
    height: int
    filename: str
    source_id: str
    sha256: str
    xmin: list[float] = field(default_factory=list)
    ymin: list[float] = field(default_factory=list)
    xmax: list[float] = field(default_factory=list)
    ymax: list[float] = field(default_factory=list)
    class_text: list[str] = field(default_factory=list)
    class_label: list[int] = field(default_factory=list)
    difficult: list[int] = field(default_factory=list)
    truncated: list[int] = field(default_factory=list)
    is_crowd: list[int] = field(default_factory=list)


def _bytes(values: Iterable[bytes]) -> protos.Feature:
    return protos.Feature(bytes_list=protos.BytesList(value=list(values)))


def _floats(values: Iterable[float]) -> protos.Feature:
    return protos.Feature(float_list=protos.FloatList(value=list(values)))


def _ints(values: Iterable[int]) -> protos.Feature:
    return protos.Feature(int64_list=protos.Int64List(value=list(values)))


def serialize_example(data: ExampleData) -> bytes:
    """The serialized ``tf.train.Example``; deterministic (sorted map keys) so outputs are reproducible."""
    features = {
        Keys.ENCODED: _bytes([data.encoded]),
        Keys.FORMAT: _bytes([data.image_format.encode()]),
        Keys.HEIGHT: _ints([data.height]),
        Keys.WIDTH: _ints([data.width]),
        Keys.FILENAME: _bytes([data.filename.encode("utf-8")]),
        Keys.SOURCE_ID: _bytes([data.source_id.encode("utf-8")]),
        Keys.SHA256: _bytes([data.sha256.encode()]),
        Keys.XMIN: _floats(data.xmin),
        Keys.XMAX: _floats(data.xmax),
        Keys.YMIN: _floats(data.ymin),
        Keys.YMAX: _floats(data.ymax),
        Keys.CLASS_TEXT: _bytes(t.encode("utf-8") for t in data.class_text),
        Keys.CLASS_LABEL: _ints(data.class_label),
        Keys.DIFFICULT: _ints(data.difficult),
        Keys.TRUNCATED: _ints(data.truncated),
        Keys.IS_CROWD: _ints(data.is_crowd),
    }
    example = protos.Example(features=protos.Features(feature=features))
    return example.SerializeToString(deterministic=True)


class RecordWriter:
    """Writes serialized records to one TFRecord file (uncompressed, TensorFlow's framing)."""

    def __init__(self, path: Path):
        self._writer = tfrecords.TFRecordWriter(str(path))

    def write(self, payload: bytes) -> None:
        self._writer.write(payload)

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_payloads(path: Path) -> Iterator[bytes]:
    """The raw serialized records of one TFRecord file (CRCs are checked)."""
    options = tfrecords.TFRecordOptions(compression_type=tfrecords.TFRecordCompressionType.NONE)
    yield from tfrecords.tf_record_iterator(str(path), options=options)


def parse_example(payload: bytes) -> dict[str, list]:
    """A serialized Example as ``{key: [values]}`` (bytes stay bytes; floats/ints as Python numbers)."""
    example = protos.Example()
    example.ParseFromString(payload)
    parsed: dict[str, list] = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        parsed[key] = list(getattr(feature, kind).value) if kind else []
    return parsed


def read_examples(paths: Iterable[Path]) -> Iterator[dict[str, list]]:
    """Every Example of the given TFRecord files, in file order, parsed with ``parse_example``."""
    for path in paths:
        for payload in iter_payloads(path):
            yield parse_example(payload)


def shard_name(split: str, index: int, count: int) -> str:
    """``train-00000-of-00004.record``: the OD API / TF Datasets sharding convention."""
    return f"{split}-{index:05d}-of-{count:05d}.record"


def shard_glob(split: str) -> str:
    """The glob that matches every shard of one split (used in pipeline configs)."""
    return f"{split}-?????-of-?????.record"
