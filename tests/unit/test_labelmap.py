from __future__ import annotations

import pytest

from odstack import labelmap
from odstack.errors import DatasetError


def test_write_then_read_keeps_order_and_ids_from_one(tmp_path):
    path = tmp_path / "label_map.pbtxt"
    labelmap.write(path, ["zebra", "cat", "ünicode name"])
    assert labelmap.read(path) == {"zebra": 1, "cat": 2, "ünicode name": 3}
    text = path.read_text(encoding="utf-8")
    assert text.count("item {") == 3 and 'name: "zebra"' in text and "id: 1" in text


def test_reads_od_api_style_file_with_single_quotes(tmp_path):
    path = tmp_path / "lm.pbtxt"
    path.write_text("item {\n  id: 1\n  name: 'raccoon'\n}\nitem { id: 2 name: 'dog' display_name: 'Dog' }\n")
    assert labelmap.read(path) == {"raccoon": 1, "dog": 2}


@pytest.mark.parametrize("text, words", [
    ("item {\n  id: 1\n  nam: 'x'\n}\n", ["lm.pbtxt:3", "not a valid label map"]),
    ("item { id: 0 name: 'bg' }", ["ids start at 1"]),
    ("item { id: 1 name: 'a' } item { id: 2 name: 'a' }", ["appears twice"]),
    ("", ["no items"]),
])
def test_bad_label_maps_name_the_problem(tmp_path, text, words):
    path = tmp_path / "lm.pbtxt"
    path.write_text(text)
    with pytest.raises(DatasetError) as caught:
        labelmap.read(path)
    for word in words:
        assert word in str(caught.value)
