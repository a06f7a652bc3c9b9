"""The one module that builds and parses ``tf.train.Example`` records (TF OD API schema).

Writing does not import the TensorFlow runtime: importing TF costs ~4 s and ~700 MiB per process,
which would dominate a parallel converter. protobuf encodes the Example (schema in ``odstack.protos``);
the ``crc32c`` library (C/SSE4.2) computes the record checksums. The framing around them is TFRecord's
documented layout (tensorflow/core/lib/io/record_writer.h): little-endian uint64 length, masked CRC of
the length, payload, masked CRC of the payload.

Why not a TFRecord package: ``tfrecord`` registers its own copy of TF's example.proto in protobuf's
default pool, so it and TensorFlow cannot be imported in one process ("duplicate symbol
'tensorflow.BytesList'"); ``tfrecords`` links libpython dynamically and runs patchelf on itself at
import. The tests prove that TensorFlow's ``TFRecordDataset`` (which checks both CRCs) and
``parse_single_example`` read what we write, and that records TensorFlow writes read back here.

Feature keys are the OD API's (``object_detection/core/standard_fields.TfExampleFields``); the
decoder of TF Model Garden vision reads the same keys.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import crc32c

from odstack import protos

_MASK_DELTA = 0xA282EAD8  # TFRecord's CRC mask (tensorflow/core/lib/hash/crc32c.h: Mask)


class RecordError(Exception):
    """A TFRecord file is truncated or fails its checksum."""


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C: rotate right by 15 bits, add a constant (mod 2**32)."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


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
    """Appends serialized records to one uncompressed TFRecord file."""

    def __init__(self, path: Path):
        self._file: BinaryIO = open(path, "wb")

    def write(self, payload: bytes) -> None:
        length = struct.pack("<Q", len(payload))
        self._file.write(b"".join((length, struct.pack("<I", masked_crc(length)), payload,
                                   struct.pack("<I", masked_crc(payload)))))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_payloads(path: Path) -> Iterator[bytes]:
    """The serialized records of one TFRecord file; both checksums of every record are verified."""
    with open(path, "rb") as handle:
        index = 0
        while header := handle.read(12):
            if len(header) < 12:
                raise RecordError(f"{path}: record {index} is truncated (header)")
            (length,), (length_crc,) = struct.unpack("<Q", header[:8]), struct.unpack("<I", header[8:])
            if masked_crc(header[:8]) != length_crc:
                raise RecordError(f"{path}: record {index} has a corrupt length")
            payload, footer = handle.read(length), handle.read(4)
            if len(payload) < length or len(footer) < 4:
                raise RecordError(f"{path}: record {index} is truncated")
            if masked_crc(payload) != struct.unpack("<I", footer)[0]:
                raise RecordError(f"{path}: record {index} fails its checksum")
            yield payload
            index += 1


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
