"""One contract over every format's fixtures: auto-detection picks exactly that format, and the round
trip source -> records -> decoded gives back the source's boxes (normalized), labels and images."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from odstack import formats, tfrecord
from odstack.data.convert import DataSettings, convert
from odstack.annotations import IssueLog
from odstack.tfrecord import Keys

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "formats"
CASES = [
    ("pascal_voc", "labelimg"), ("pascal_voc", "devkit"),
    ("tf_csv", "split/data"), ("tf_csv", "vott"),
    ("yolo", "darknet"), ("yolo", "ultralytics"),
    ("coco", "official"), ("coco", "roboflow"),
    ("supervisely", "project"),
    ("cloud_annotations", "."),
    ("label_studio", "project"),
    ("labelme", "project"),
    ("cvat", "task"), ("cvat", "datumaro"),
    ("darknet", "cvat_yolo"), ("darknet", "datumaro"),
]


def test_every_format_has_a_case():
    assert {name for name, _ in CASES} == set(formats.FORMAT_NAMES)


@pytest.mark.parametrize("fmt, case", CASES, ids=[f"{f}-{c}" for f, c in CASES])
def test_detect_and_round_trip(tmp_path, fmt, case):
    src = FIXTURES / fmt / case
    assert formats.detect(src) == fmt
    result = convert(DataSettings(src=src, out=tmp_path / "out", val_fraction=0.3, seed=3))
    skipped = {issue["where"] for issue in result.report["issues"] if issue["action"].startswith("skipped")}

    expected = {}
    for entry in formats.get(fmt).read(src, IssueLog()):
        if str(entry.where) in skipped or not entry.image.exists():
            continue
        with Image.open(entry.image) as image:
            width, height = image.size
        boxes = []
        for box in entry.boxes:
            if str(box.where) in skipped:
                continue
            sx, sy = (1, 1) if box.normalized else (width, height)
            clip = lambda v: min(1.0, max(0.0, v))  # noqa: E731
            boxes.append((box.label.strip(), clip(box.xmin / sx), clip(box.ymin / sy),
                          clip(box.xmax / sx), clip(box.ymax / sy)))
        expected.setdefault(entry.name, (entry.image.read_bytes(), boxes))

    records = list(tfrecord.read_examples(sorted((tmp_path / "out").glob("*.record"))))
    got = {r[Keys.FILENAME][0].decode(): r for r in records}
    assert set(got) == set(expected)
    assert result.report["totals"]["images"] == len(expected)
    for name, (image_bytes, boxes) in expected.items():
        record = got[name]
        assert record[Keys.ENCODED][0] == image_bytes, name
        decoded = list(zip([t.decode() for t in record[Keys.CLASS_TEXT]], record[Keys.XMIN], record[Keys.YMIN],
                           record[Keys.XMAX], record[Keys.YMAX]))
        assert len(decoded) == len(boxes), name
        for (label, *coords), (want_label, *want) in zip(decoded, boxes):
            assert label == want_label, name
            assert coords == pytest.approx(want, abs=1e-6), name
    ids = {name: info["id"] for name, info in result.report["classes"].items()}
    for record in records:
        assert [ids[t.decode()] for t in record[Keys.CLASS_TEXT]] == record[Keys.CLASS_LABEL]
