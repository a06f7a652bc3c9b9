"""Golden: the raccoon test set converted from its CSV and from its VOC XML must equal the reference
``test.record`` made by the classic ``generate_tfrecord.py`` (images, sizes, boxes, class text).

Fixture: tests/fixtures/raccoon (MIT, see its LICENSE): the 40 test images, their XML, the CSV and
the reference record."""
from __future__ import annotations

from pathlib import Path

import pytest

from odstack import tfrecord
from odstack.data.convert import DataSettings, convert
from odstack.tfrecord import Keys

RACCOON = Path(__file__).resolve().parents[1] / "fixtures" / "raccoon"
BOX_KEYS = (Keys.XMIN, Keys.YMIN, Keys.XMAX, Keys.YMAX)


def _by_image(examples):
    return {example[Keys.ENCODED][0]: example for example in examples}


@pytest.fixture(scope="module")
def reference():
    return _by_image(tfrecord.read_examples([RACCOON / "data" / "test.record"]))


@pytest.mark.parametrize("src, fmt", [("data/test_labels.csv", "tf_csv"), (".", "pascal_voc")])
def test_conversion_equals_reference_record(tmp_path, reference, src, fmt):
    result = convert(DataSettings(src=RACCOON / src, out=tmp_path / "records", format=fmt))
    ours = _by_image(tfrecord.read_examples(sorted((tmp_path / "records").glob("*.record"))))
    assert len(reference) == 40
    assert set(ours) == set(reference), "same 40 images, byte for byte (no re-encoding)"
    for image, want in reference.items():
        got = ours[image]
        name = want[Keys.FILENAME][0].decode()
        assert (got[Keys.WIDTH], got[Keys.HEIGHT]) == (want[Keys.WIDTH], want[Keys.HEIGHT]), name
        assert [got[k] for k in BOX_KEYS] == [want[k] for k in BOX_KEYS], name
        assert got[Keys.CLASS_TEXT] == want[Keys.CLASS_TEXT], name
        # ids may differ only as the label map says: here both map raccoon -> 1
        assert got[Keys.CLASS_LABEL] == want[Keys.CLASS_LABEL], name
        assert Path(got[Keys.FILENAME][0].decode()).name == name
    assert result.report["totals"]["skipped_images"] == 0
    assert (tmp_path / "records" / "label_map.pbtxt").read_text().count("item {") == 1
