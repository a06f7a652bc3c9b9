"""IBM Cloud Annotations: one ``_annotations.json`` with the images beside it.

The file, as Cloud Annotations writes it (compact JSON)::

    {"version": "1.0", "type": "localization", "labels": ["cat", "dog"],
     "annotations": {"a.jpg": [{"x": 0.1, "x2": 0.5, "y": 0.2, "y2": 0.6, "id": "...", "label": "cat"}],
                     "b.jpg": []}}

Coordinates are fractions of the image width/height. An image whose list is empty was marked negative;
images in the folder but not in "annotations" were never labelled and are not part of the dataset.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

from odstack.errors import DatasetError
from odstack.formats._common import json_number, load_json
from odstack.annotations import Box, ImageEntry, IssueLog, Location, Reason

NAME = "cloud_annotations"
DESCRIPTION = "IBM Cloud Annotations (_annotations.json with the images beside it)"


class CloudAnnotationsLayout:
    """File name, project type and box keys of a Cloud Annotations export."""

    ANNOTATIONS_FILE = "_annotations.json"
    LOCALIZATION = "localization"
    COORDS = ("x", "y", "x2", "y2")


# For a file too broken to parse: its top level still shows the "labels" list and "annotations" object.
_LABELS = re.compile(rb'"labels"\s*:\s*\[')
_ANNOTATIONS = re.compile(rb'"annotations"\s*:\s*\{')


def detect(src: Path) -> bool:
    """True if ``src`` is (or holds) an ``_annotations.json`` with a "labels" list and an "annotations" dict."""
    path = _annotations_file(Path(src))
    if not path.is_file() or path.name != CloudAnnotationsLayout.ANNOTATIONS_FILE:
        return False
    try:
        raw = path.read_bytes()
    except OSError:
        return False
    try:
        data = json.loads(raw)
    except ValueError:  # broken but shaped like ours: let read() report the line
        return bool(_LABELS.search(raw) and _ANNOTATIONS.search(raw))
    return isinstance(data, dict) and isinstance(data.get("labels"), list) and isinstance(data.get("annotations"), dict)


def labels(src: Path) -> list[str]:
    """The "labels" list, in its order."""
    path = _annotations_file(Path(src).resolve())
    return _labels(_load(path), path.name)


def read(src: Path, issues: IssueLog) -> Iterator[ImageEntry]:
    """One entry per key of "annotations", in file order; boxes normalized (0..1)."""
    path = _annotations_file(Path(src).resolve())
    root, rel = path.parent, path.name
    data = _load(path)
    known = set(_labels(data, rel))
    for file_name, objects in data["annotations"].items():
        image = root / file_name
        name = Path(file_name).as_posix()
        where = Location(rel, item=f"image {file_name!r}")
        if not isinstance(objects, list):
            issues.skip_image(Reason.INVALID_VALUE, where,
                              f"the boxes of {file_name!r} must be a list, got {objects!r}; the image is skipped",
                              image=name)
            continue
        boxes = [box for index, obj in enumerate(objects)
                 if (box := _box(obj, Location(rel, item=f"annotations[{file_name!r}][{index}]"), known, name,
                                 issues)) is not None]
        yield ImageEntry(image, name, boxes, where)


def _box(obj: Any, where: Location, known: set[str], name: str, issues: IssueLog) -> Box | None:
    """One box, or None after reporting why it cannot be one."""
    if not isinstance(obj, dict):
        issues.skip_box(Reason.INVALID_VALUE, where, "box is not a JSON object; it is skipped", image=name)
        return None
    label = obj.get("label")
    if not isinstance(label, str):
        issues.skip_box(Reason.INVALID_VALUE, where, f"label must be a string, got {label!r}; the box is skipped",
                        image=name)
        return None
    if label and label not in known:  # "" passes through: the converter reports empty labels itself
        issues.skip_box(Reason.UNKNOWN_LABEL, where,
                        f"label {label!r} is not in the file's \"labels\" list; the box is skipped", image=name)
        return None
    values = {key: json_number(obj.get(key)) for key in CloudAnnotationsLayout.COORDS}
    bad = [key for key, value in values.items() if value is None]
    if bad:
        shown = ", ".join(f"{key}={obj.get(key)!r}" for key in bad)
        issues.skip_box(Reason.INVALID_VALUE, where, f"coordinates must be numbers, got {shown}; the box is skipped",
                        image=name)
        return None
    return Box(label, values["x"], values["y"], values["x2"], values["y2"], where=where, normalized=True)


def _annotations_file(src: Path) -> Path:
    return src if src.is_file() else src / CloudAnnotationsLayout.ANNOTATIONS_FILE


def _load(path: Path) -> dict:
    """The parsed file; DatasetError when it is missing, unparseable, not localization or lacks its keys."""
    rel = path.name
    data = load_json(path, rel, rel, hint="point SRC at the folder that holds _annotations.json and the images")
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), dict):
        raise DatasetError("no \"annotations\" object (image file -> boxes)", where=rel,
                           hint="export the project from Cloud Annotations again")
    kind = data.get("type", CloudAnnotationsLayout.LOCALIZATION)  # absent in hand-made files: assume boxes
    if kind != CloudAnnotationsLayout.LOCALIZATION:
        raise DatasetError(f"this is a {kind!r} project, not object detection ('localization')", where=rel,
                           hint="classification projects have no boxes; "
                                "annotate the images in a Cloud Annotations localization project")
    return data


def _labels(data: dict, rel: str) -> list[str]:
    declared = data.get("labels")
    if not isinstance(declared, list) or not all(isinstance(label, str) for label in declared):
        raise DatasetError("no \"labels\" list of strings", where=rel,
                           hint="export the project from Cloud Annotations again")
    return list(dict.fromkeys(declared))  # drop repeats, keep order
