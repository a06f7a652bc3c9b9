"""``label_map.pbtxt`` read/write with protobuf ``text_format``.

The message is the OD API's ``StringIntLabelMap`` (object_detection/protos/string_int_label_map.proto).
The schema is declared in ``odstack.protos`` with the OD API's names and field numbers, so text written
here parses with the OD API's own ``label_map_util`` and vice versa.
"""
from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format

from odstack.errors import DatasetError
from odstack.protos import StringIntLabelMap




def to_text(names: list[str]) -> str:
    """The pbtxt for ``names``, ids 1..N in the given order (id 0 is the OD API's background)."""
    label_map = StringIntLabelMap()
    for index, name in enumerate(names, start=1):
        label_map.item.add(id=index, name=name, display_name=name)
    return text_format.MessageToString(label_map, as_utf8=True)


def write(path: Path, names: list[str]) -> None:
    path.write_text(to_text(names), encoding="utf-8")


def read(path: Path) -> dict[str, int]:
    """``{name: id}`` from a label map file; errors name the file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise DatasetError(f"cannot read label map: {error.strerror}", where=str(path),
                           hint="check LABEL_MAP= points to a label_map.pbtxt") from None
    label_map = StringIntLabelMap()
    try:
        text_format.Parse(text, label_map)
    except text_format.ParseError as error:
        line = getattr(error, "GetLine", lambda: None)()
        where = f"{path}:{line}" if line else str(path)
        raise DatasetError(f"not a valid label map: {error}", where=where,
                           hint="expected entries like: item { id: 1 name: 'cat' }") from None
    mapping: dict[str, int] = {}
    for item in label_map.item:
        if item.id < 1:
            raise DatasetError(f"label {item.name!r} has id {item.id}; ids start at 1 (0 is background)",
                               where=str(path), hint="renumber the items from 1")
        if item.name in mapping:
            raise DatasetError(f"label {item.name!r} appears twice", where=str(path), hint="keep one entry per name")
        mapping[item.name] = item.id
    if not mapping:
        raise DatasetError("label map has no items", where=str(path), hint="add item { id: 1 name: '...' } entries")
    return mapping
