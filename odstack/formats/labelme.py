"""LabelMe JSON: one ``.json`` per image, beside it (any folder below SRC).

A file, as LabelMe 5 saves it::

    {"version": "5.5.0", "flags": {}, "imagePath": "cat.jpg", "imageData": null | "<base64 of the image>",
     "imageHeight": 480, "imageWidth": 640,
     "shapes": [{"label": "cat", "points": [[x1, y1], [x2, y2]], "group_id": null,
                 "shape_type": "rectangle", "flags": {}, "description": ""}]}

Points are pixels. Shapes become boxes as labelme2coco makes them: ``rectangle`` (two corners),
``polygon`` (its bounding box, noted), ``circle`` (centre and a point on it: its bounding box, noted),
``mask`` (its two corners); shapes with the same label and ``group_id`` are one object (their union).
``point``/``line``/``linestrip``/``points`` are skipped and reported; ``__ignore__`` shapes are not objects.

``imagePath`` is relative to the JSON (LabelMe also stores absolute or Windows paths: then the file name
is looked up beside the JSON). When the image file is missing, ``imageData`` is used if it is present.

A labelme-style ``labels.txt`` in SRC (one name per line; ``__ignore__`` and ``_background_`` first, as
labelme2coco/labelme2voc expect) is the class list and order; shapes of other labels are skipped.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path, PureWindowsPath
from typing import Any, Iterator

from odstack.errors import DatasetError
from odstack.formats._common import DirIndex, IMAGE_EXTS, json_number, load_json, relative_name, walk_files
from odstack.annotations import Box, ImageEntry, IssueLog, Location, Reason

NAME = "labelme"
DESCRIPTION = "LabelMe JSON (one .json per image: shapes rectangle/polygon/circle, imagePath, imageData)"


class LabelMeLayout:
    """File names, shape types and special labels of LabelMe."""

    SUFFIX = ".json"
    LABELS_FILE = "labels.txt"
    NOT_CLASSES = ("__ignore__", "_background_")  # labels.txt's conventional first lines
    IGNORE = "__ignore__"
    CORNERS = ("rectangle", "mask")  # two corner points
    OUTLINES = ("polygon",)  # the bounding box of the points (noted)
    UNSUPPORTED = ("point", "points", "line", "linestrip")
    IMAGE_EXTS = IMAGE_EXTS
    DETECT_SAMPLE = 3  # JSON files parsed by detect()


def detect(src: Path) -> bool:
    """True if one of the first JSON files below ``src`` is a LabelMe file ("shapes" list + "imagePath")."""
    src = Path(src)
    if not src.is_dir():
        return False
    for count, path in enumerate(walk_files(src, (LabelMeLayout.SUFFIX,))):
        if count >= LabelMeLayout.DETECT_SAMPLE:
            return False
        if _is_labelme(path):
            return True
    return False


def labels(src: Path) -> list[str] | None:
    """The class names of labels.txt (without __ignore__ and _background_), or None without one."""
    path = Path(src) / LabelMeLayout.LABELS_FILE
    if not path.is_file():
        return None
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read the class list: {error}", where=str(path),
                           hint="save labels.txt as UTF-8 text, one class name per line") from error
    names = [line for line in dict.fromkeys(lines) if line and line not in LabelMeLayout.NOT_CLASSES]
    if not names:
        raise DatasetError("labels.txt names no class", where=str(path),
                           hint="list the class names after the __ignore__ / _background_ lines")
    return names


def read(src: Path, issues: IssueLog) -> Iterator[ImageEntry]:
    """One entry per LabelMe JSON below ``src`` (sorted by path); shapes in file order."""
    root = Path(os.path.abspath(src))
    declared = labels(root)
    known = set(declared) if declared is not None else None
    files = list(walk_files(root, (LabelMeLayout.SUFFIX,)))
    if not files:
        raise DatasetError("no LabelMe .json files found", where=str(src),
                           hint="point SRC at the folder LabelMe saved its .json files (and images) in")
    index = DirIndex()
    for path in files:
        entry = _read_file(path, root, known, index, issues)
        if entry is not None:
            yield entry


def _read_file(path: Path, root: Path, known: set[str] | None, index: DirIndex,
               issues: IssueLog) -> ImageEntry | None:
    rel = relative_name(path, root)
    try:
        data = load_json(path, rel, "LabelMe JSON", hint="save the file again in LabelMe")
    except DatasetError as error:  # one bad file costs its image, not the dataset
        issues.skip_image(Reason.UNREADABLE_ANNOTATION, error.where or Location(rel), error.message)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        issues.skip_image(Reason.UNREADABLE_ANNOTATION, Location(rel),
                          "not a LabelMe file (no 'shapes' list); move it out of the dataset")
        return None
    image = _resolve_image(path, data.get("imagePath"), index)
    name = relative_name(image, root)
    embedded = path if isinstance(data.get("imageData"), str) and data["imageData"] else None
    objects: dict[Any, Box] = {}  # (label, group_id) or shape number -> its box
    for number, shape in enumerate(data["shapes"], start=1):
        where = Location(rel, item=f"shape {number}")
        box = _shape_box(shape, where, name, known, issues)
        if box is None:
            continue
        group = shape.get("group_id")
        key = (box.label, group) if group is not None else number
        if key in objects:  # one object drawn as several shapes (labelme2coco merges them the same way)
            merged = objects[key]
            merged.xmin, merged.ymin = min(merged.xmin, box.xmin), min(merged.ymin, box.ymin)
            merged.xmax, merged.ymax = max(merged.xmax, box.xmax), max(merged.ymax, box.ymax)
        else:
            objects[key] = box
    width, height = json_number(data.get("imageWidth")), json_number(data.get("imageHeight"))
    size = (int(width), int(height)) if width and height and width > 0 and height > 0 else None
    return ImageEntry(image, name, list(objects.values()), Location(rel), declared_size=size, embedded=embedded)


def _shape_box(shape: Any, where: Location, name: str, known: set[str] | None, issues: IssueLog) -> Box | None:
    """A shape's box, or None (reported, unless it is an __ignore__ region)."""
    if not isinstance(shape, dict):
        issues.skip_box(Reason.INVALID_VALUE, where, "shape is not a JSON object; it is skipped", name)
        return None
    label = shape.get("label") if isinstance(shape.get("label"), str) else ""
    kind = shape.get("shape_type") or "polygon"  # LabelMe before 3.x wrote no shape_type: polygons
    if label == LabelMeLayout.IGNORE:
        issues.note(Reason.UNSUPPORTED_SHAPE, where, f"__ignore__ region of image {name}: not an object", name)
        return None
    if known is not None and label and label not in known:
        issues.skip_box(Reason.UNKNOWN_LABEL, where,
                        f"label {label!r} of image {name} is not in labels.txt; add it there or fix the label", name)
        return None
    if kind in LabelMeLayout.UNSUPPORTED or kind not in LabelMeLayout.CORNERS + LabelMeLayout.OUTLINES + ("circle",):
        issues.skip_box(Reason.UNSUPPORTED_SHAPE, where,
                        f"{kind} shape {label!r} of image {name}: only rectangles, polygons and circles make boxes",
                        name)
        return None
    points = shape.get("points")
    coords = [(json_number(p[0]), json_number(p[1])) for p in points if isinstance(p, list) and len(p) == 2] \
        if isinstance(points, list) else []
    needed = 3 if kind in LabelMeLayout.OUTLINES else 2
    if len(coords) != len(points or []) or len(coords) < needed or any(None in c for c in coords):
        issues.skip_box(Reason.INVALID_VALUE, where,
                        f"{kind} shape {label!r} of image {name} needs {needed}+ [x, y] number points; it is skipped",
                        name)
        return None
    xs, ys = [c[0] for c in coords], [c[1] for c in coords]
    if kind == "circle":
        (cx, cy), (px, py) = coords[0], coords[1]
        radius = math.hypot(px - cx, py - cy)
        xs, ys = [cx - radius, cx + radius], [cy - radius, cy + radius]
    if kind not in LabelMeLayout.CORNERS:
        issues.note(Reason.POLYGON_TO_BOX, where,
                    f"{kind} {label!r} of image {name} ({len(coords)} points): its bounding box is used", name)
    return Box(label, min(xs), min(ys), max(xs), max(ys), where=where)


def _resolve_image(json_path: Path, image_path: Any, index: DirIndex) -> Path:
    """The image beside the JSON: its imagePath, then imagePath's file name, then the JSON's stem."""
    folder = json_path.parent
    stated = image_path.replace("\\", "/") if isinstance(image_path, str) else ""
    candidates = []
    if stated and not stated.startswith("/") and ":" not in stated.split("/")[0]:
        candidates.append(Path(os.path.normpath(folder / stated)))
    if stated:
        candidates.append(folder / PureWindowsPath(image_path).name)  # splits on / and \
    for candidate in candidates:
        if index.exists(candidate):
            return candidate
    found = index.find_stem(folder, json_path.stem, LabelMeLayout.IMAGE_EXTS)
    return found or (candidates[0] if candidates else folder / (json_path.stem + ".jpg"))


def _is_labelme(path: Path) -> bool:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("shapes"), list) and "imagePath" in data
