"""Our TF-free writer against TensorFlow's own reader and parser, with the OD API feature spec."""
from __future__ import annotations

import pytest

from odstack import tfrecord
from odstack.tfrecord import ExampleData, Keys

tf = pytest.importorskip("tensorflow")

# The OD API's decoder spec (object_detection/data_decoders/tf_example_decoder.py, bbox/class keys).
OD_API_FEATURES = {
    Keys.ENCODED: tf.io.FixedLenFeature((), tf.string),
    Keys.FORMAT: tf.io.FixedLenFeature((), tf.string),
    Keys.FILENAME: tf.io.FixedLenFeature((), tf.string),
    Keys.SOURCE_ID: tf.io.FixedLenFeature((), tf.string),
    Keys.SHA256: tf.io.FixedLenFeature((), tf.string),
    Keys.HEIGHT: tf.io.FixedLenFeature((), tf.int64),
    Keys.WIDTH: tf.io.FixedLenFeature((), tf.int64),
    Keys.XMIN: tf.io.VarLenFeature(tf.float32),
    Keys.XMAX: tf.io.VarLenFeature(tf.float32),
    Keys.YMIN: tf.io.VarLenFeature(tf.float32),
    Keys.YMAX: tf.io.VarLenFeature(tf.float32),
    Keys.CLASS_TEXT: tf.io.VarLenFeature(tf.string),
    Keys.CLASS_LABEL: tf.io.VarLenFeature(tf.int64),
    Keys.DIFFICULT: tf.io.VarLenFeature(tf.int64),
    Keys.TRUNCATED: tf.io.VarLenFeature(tf.int64),
    Keys.IS_CROWD: tf.io.VarLenFeature(tf.int64),
}


def _example(index: int, boxes: int) -> ExampleData:
    return ExampleData(
        encoded=bytes(range(256)) * (index + 1), image_format="jpeg", width=640 + index, height=480,
        filename=f"dir with space/ünï {index}.jpg", source_id=f"id-{index}", sha256="ab" * 32,
        xmin=[0.1 * b for b in range(boxes)], xmax=[0.1 * b + 0.05 for b in range(boxes)],
        ymin=[0.2] * boxes, ymax=[0.3] * boxes, class_text=["raccoon", "猫"][:boxes] + ["x"] * max(0, boxes - 2),
        class_label=list(range(1, boxes + 1)), difficult=[1] * boxes, truncated=[0] * boxes, is_crowd=[0] * boxes)


def test_tensorflow_reads_and_parses_every_od_api_key(tmp_path):
    path = tmp_path / "a.record"
    examples = [_example(i, boxes) for i, boxes in enumerate([0, 1, 3])]
    with tfrecord.RecordWriter(path) as writer:
        for example in examples:
            writer.write(tfrecord.serialize_example(example))
    parsed = [tf.io.parse_single_example(raw, OD_API_FEATURES) for raw in tf.data.TFRecordDataset(str(path))]
    assert len(parsed) == 3
    for got, want in zip(parsed, examples):
        assert got[Keys.ENCODED].numpy() == want.encoded
        assert got[Keys.FILENAME].numpy().decode() == want.filename
        assert (int(got[Keys.WIDTH]), int(got[Keys.HEIGHT])) == (want.width, want.height)
        dense = {k: tf.sparse.to_dense(got[k]).numpy().tolist() for k in OD_API_FEATURES if k.startswith("image/object")}
        assert dense[Keys.XMIN] == pytest.approx(want.xmin)
        assert dense[Keys.YMAX] == pytest.approx(want.ymax)
        assert [t.decode() for t in dense[Keys.CLASS_TEXT]] == want.class_text
        assert dense[Keys.CLASS_LABEL] == want.class_label
        assert dense[Keys.DIFFICULT] == want.difficult


def test_records_are_byte_identical_across_writes(tmp_path):
    payloads = [tfrecord.serialize_example(_example(i, 2)) for i in range(3)]
    for name in ("a", "b"):
        with tfrecord.RecordWriter(tmp_path / name) as writer:
            for payload in payloads:
                writer.write(payload)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_crc_is_checked_by_tensorflow(tmp_path):
    path = tmp_path / "bad.record"
    with tfrecord.RecordWriter(path) as writer:
        writer.write(tfrecord.serialize_example(_example(0, 1)))
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF  # flip a payload byte: the data CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(tf.errors.DataLossError):
        list(tf.data.TFRecordDataset(str(path)))


def test_own_parser_round_trips(tmp_path):
    path = tmp_path / "a.record"
    want = _example(1, 2)
    with tfrecord.RecordWriter(path) as writer:
        writer.write(tfrecord.serialize_example(want))
    (got,) = list(tfrecord.read_examples([path]))
    assert got[Keys.ENCODED] == [want.encoded]
    assert [t.decode() for t in got[Keys.CLASS_TEXT]] == want.class_text
    assert got[Keys.CLASS_LABEL] == want.class_label


def test_shard_names_match_their_glob():
    import fnmatch

    names = [tfrecord.shard_name("train", i, 3) for i in range(3)]
    assert names[0] == "train-00000-of-00003.record"
    assert all(fnmatch.fnmatch(n, tfrecord.shard_glob("train")) for n in names)
    assert not fnmatch.fnmatch(tfrecord.shard_name("val", 0, 1), tfrecord.shard_glob("train"))


def test_records_written_by_tensorflow_read_back_here(tmp_path):
    path = tmp_path / "tf.record"
    payloads = [b"", b"x", bytes(range(256)) * 300]
    with tf.io.TFRecordWriter(str(path)) as writer:
        for payload in payloads:
            writer.write(payload)
    assert list(tfrecord.iter_payloads(path)) == payloads


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_own_reader_refuses_damaged_files(tmp_path, damage):
    path = tmp_path / "a.record"
    with tfrecord.RecordWriter(path) as writer:
        writer.write(tfrecord.serialize_example(_example(0, 1)))
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:-10]
    else:
        data[30] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(tfrecord.RecordError):
        list(tfrecord.iter_payloads(path))
