"""The classic TF tutorial approach to CSV -> TFRecord, re-implemented here as a benchmark baseline.

What the well-known ``generate_tfrecord.py`` does, written from its description (not copied): read the
CSV with pandas, group the rows by file name, and for each image read the file's bytes, open it with
PIL for width/height, build a ``tf.train.Example`` with the OD API keys and write it through one
``tf.io.TFRecordWriter``, in one process. TensorFlow is imported at the top, as in the original.

    python bench/classic_generate_tfrecord.py --csv labels.csv --images images/ --out out.record

The last stdout line is JSON: images written, the TensorFlow import time and the loop-only time
(from the first image opened to the writer closed), so the benchmark can report both the whole
command and the conversion loop alone.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import time

_import_started = time.perf_counter()
import tensorflow as tf  # noqa: E402  (the import is part of what the classic command costs)

_import_seconds = time.perf_counter() - _import_started

import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402


def _bytes_feature(values: list[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _float_feature(values: list[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _int_feature(values: list[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def create_example(filename: str, rows: pd.DataFrame, image_dir: str, class_ids: dict[str, int]) -> tf.train.Example:
    with tf.io.gfile.GFile(os.path.join(image_dir, filename), "rb") as handle:
        encoded = handle.read()
    image = Image.open(io.BytesIO(encoded))
    width, height = image.size
    image_format = b"jpg" if filename.lower().endswith((".jpg", ".jpeg")) else b"png"
    xmins, xmaxs, ymins, ymaxs, texts, labels = [], [], [], [], [], []
    for _, row in rows.iterrows():  # row by row, as the classic script does
        xmins.append(row["xmin"] / width)
        xmaxs.append(row["xmax"] / width)
        ymins.append(row["ymin"] / height)
        ymaxs.append(row["ymax"] / height)
        texts.append(str(row["class"]).encode("utf8"))
        labels.append(class_ids[str(row["class"])])
    name = filename.encode("utf8")
    return tf.train.Example(features=tf.train.Features(feature={
        "image/height": _int_feature([height]),
        "image/width": _int_feature([width]),
        "image/filename": _bytes_feature([name]),
        "image/source_id": _bytes_feature([name]),
        "image/encoded": _bytes_feature([encoded]),
        "image/format": _bytes_feature([image_format]),
        "image/object/bbox/xmin": _float_feature(xmins),
        "image/object/bbox/xmax": _float_feature(xmaxs),
        "image/object/bbox/ymin": _float_feature(ymins),
        "image/object/bbox/ymax": _float_feature(ymaxs),
        "image/object/class/text": _bytes_feature(texts),
        "image/object/class/label": _int_feature(labels),
    }))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", required=True, help="CSV: filename,width,height,class,xmin,ymin,xmax,ymax")
    parser.add_argument("--images", required=True, help="folder holding the images named in the CSV")
    parser.add_argument("--out", required=True, help="output .record file")
    args = parser.parse_args(argv)

    frame = pd.read_csv(args.csv)
    class_ids = {name: index for index, name in enumerate(sorted(frame["class"].astype(str).unique()), start=1)}
    groups = frame.groupby("filename", sort=False)

    started = time.perf_counter()
    count = 0
    with tf.io.TFRecordWriter(args.out) as writer:
        for filename, rows in groups:
            writer.write(create_example(str(filename), rows, args.images, class_ids).SerializeToString())
            count += 1
    loop_seconds = time.perf_counter() - started
    print(json.dumps({"images": count, "tf_import_seconds": round(_import_seconds, 3),
                      "loop_seconds": round(loop_seconds, 4)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
