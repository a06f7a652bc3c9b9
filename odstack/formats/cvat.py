"""CVAT for images 1.1 XML: one ``annotations.xml`` for every image, the images in ``images/``.

Datumaro's CVAT exporter writes the same XML once per subset (``train.xml``, ``valid.xml``, ...) beside
``images/``: then each file's name states its subset.

The file, as CVAT exports it ("CVAT for images 1.1")::

    <annotations><version>1.1</version>
      <meta><task>... <labels><label><name>cat</name><type>rectangle</type>...</label></labels></task></meta>
      <image id="0" name="cat.jpg" width="640" height="480" [subset="Train"]>
        <box label="cat" source="manual" occluded="0" xtl="10.5" ytl="20" xbr="300" ybr="400" z_order="0"
             [rotation="30"]><attribute name="...">...</attribute></box>
        <polygon label="dog" points="x1,y1;x2,y2;..." .../>
      </image>
    </annotations>

Pixels, top-left/bottom-right. ``box`` is a box (a rotated one, turned about its centre: its envelope,
noted); ``polygon``, ``ellipse`` and ``mask`` give their bounding box (noted); ``polyline``, ``points``,
``cuboid`` and ``skeleton`` are skipped and reported; ``tag`` is an image label, not an object. A
``difficult`` / ``truncated`` attribute that is true sets that flag. The label list and order come from
``<meta>``. A project export's ``subset`` attribute states the split; images are then in
``images/<subset>/``. An image without shapes is a negative (CVAT lists every image of the task).
"""
from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

from odstack.errors import DatasetError
from odstack.formats._common import DirIndex, SPLIT_NAMES, relative_name, text_number, xml_root_has_child
from odstack.annotations import Box, ImageEntry, IssueLog, Location, Reason

NAME = "cvat"
DESCRIPTION = "CVAT for images 1.1 XML (annotations.xml with <image><box xtl ytl xbr ybr>, images in images/)"


class CvatLayout:
    """File names, tags and attributes of the CVAT for images XML."""

    FILE = "annotations.xml"
    ROOT_TAG = "annotations"
    IMAGES_DIR = "images"
    BOX_ATTRIBUTES = ("xtl", "ytl", "xbr", "ybr")
    OUTLINES = ("polygon", "ellipse", "mask")  # their bounding box is used (noted)
    UNSUPPORTED = ("polyline", "points", "cuboid", "skeleton")
    SUBSETS = SPLIT_NAMES
    FLAGS = ("difficult", "truncated")
    TRUE = ("1", "true", "yes")


def detect(src: Path) -> bool:
    """True if ``src`` is (or holds) an XML whose root is <annotations> with a <version> or <image> child."""
    return bool(_files(Path(src)))


def _is_cvat(path: Path) -> bool:
    return xml_root_has_child(path, CvatLayout.ROOT_TAG, ("version", "meta", "image"))


def labels(src: Path) -> list[str] | None:
    """Label names in <meta> order (task or project labels, over all files), or None if <meta> lists none."""
    names = []
    for path in _files_or_raise(Path(src)):
        found = [label.findtext("name") for label in _parse(path).getroot().iterfind("meta//labels/label")]
        names += [name.strip() for name in found if name and name.strip()]
    return list(dict.fromkeys(names)) or None


def read(src: Path, issues: IssueLog) -> Iterator[ImageEntry]:
    """One entry per <image>, files in name order, images in file order; shapes in file order."""
    src = Path(os.path.abspath(src))
    files = _files_or_raise(src)
    index = DirIndex()
    for path in files:
        root = path.parent
        rel = relative_name(path, root)
        # datumaro's per-subset files: the file name is the subset
        file_subset = CvatLayout.SUBSETS.get(path.stem.lower()) if path.name != CvatLayout.FILE else None
        for element in _parse(path).getroot().iterfind("image"):
            entry = _read_image(element, rel, root, index, file_subset, issues)
            if entry is not None:
                yield entry


def _read_image(element: ET.Element, rel: str, root: Path, index: DirIndex, file_subset: str | None,
                issues: IssueLog) -> ImageEntry | None:
    file_name = (element.get("name") or "").replace("\\", "/")
    where = Location(rel, item=f"image id {element.get('id')}")
    if not file_name:
        issues.skip_image(Reason.INVALID_VALUE, where, "<image> has no name attribute; it is skipped")
        return None
    subset_text = (element.get("subset") or "").strip()
    image = _resolve_image(root, file_name, subset_text, index)
    name = relative_name(image, root)
    boxes = []
    for number, shape in enumerate(element, start=1):
        box = _shape_box(shape, Location(rel, item=f"image id {element.get('id')}, shape {number}"), name, issues)
        if box is not None:
            boxes.append(box)
    width, height = text_number(element.get("width")), text_number(element.get("height"))
    size = (int(width), int(height)) if width and height and width > 0 and height > 0 else None
    return ImageEntry(image, name, boxes, where, declared_size=size,
                      subset=CvatLayout.SUBSETS.get(subset_text.lower()) or file_subset)


def _shape_box(shape: ET.Element, where: Location, name: str, issues: IssueLog) -> Box | None:
    kind, label = shape.tag, (shape.get("label") or "").strip()
    if kind == "tag":
        return None  # an image-level label, not an object
    if kind in CvatLayout.UNSUPPORTED or kind not in ("box",) + CvatLayout.OUTLINES:
        issues.skip_box(Reason.UNSUPPORTED_SHAPE, where,
                        f"<{kind}> {label!r} of image {name}: only boxes, polygons, ellipses and masks make boxes",
                        name)
        return None
    corners = _corners(shape)
    if corners is None:
        issues.skip_box(Reason.INVALID_VALUE, where,
                        f"<{kind}> {label!r} of image {name} has missing or non-number coordinates", name)
        return None
    rotation = text_number(shape.get("rotation")) or 0.0
    if kind != "box" or rotation % 360:
        what = f"rotated {rotation:g} degrees: its envelope" if kind == "box" else "its bounding box"
        issues.note(Reason.POLYGON_TO_BOX, where, f"<{kind}> {label!r} of image {name}, {what} is used", name)
    if kind == "box" and rotation % 360:
        corners = _rotated_envelope(*corners, rotation)
    flags = {attribute.get("name"): (attribute.text or "").strip().lower() in CvatLayout.TRUE
             for attribute in shape.iterfind("attribute") if attribute.get("name") in CvatLayout.FLAGS}
    return Box(label, *corners, where=where, difficult=flags.get("difficult", False),
               truncated=flags.get("truncated", False))


def _corners(shape: ET.Element) -> tuple[float, float, float, float] | None:
    """(xmin, ymin, xmax, ymax) of a shape's own coordinates, in pixels; None if they are not numbers."""
    if shape.tag == "box":
        values = [text_number(shape.get(key)) for key in CvatLayout.BOX_ATTRIBUTES]
        return None if None in values else tuple(values)
    if shape.tag == "ellipse":
        cx, cy, rx, ry = (text_number(shape.get(key)) for key in ("cx", "cy", "rx", "ry"))
        return None if None in (cx, cy, rx, ry) else (cx - rx, cy - ry, cx + rx, cy + ry)
    if shape.tag == "mask":
        left, top, width, height = (text_number(shape.get(key)) for key in ("left", "top", "width", "height"))
        return None if None in (left, top, width, height) else (left, top, left + width, top + height)
    try:
        points = [tuple(float(v) for v in pair.split(",")) for pair in (shape.get("points") or "").split(";")]
    except ValueError:
        return None
    if len(points) < 3 or any(len(p) != 2 or not all(map(math.isfinite, p)) for p in points):
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _rotated_envelope(xmin: float, ymin: float, xmax: float, ymax: float,
                      degrees: float) -> tuple[float, float, float, float]:
    """Envelope of a box turned ``degrees`` clockwise about its centre (CVAT's rotation)."""
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
    half_w, half_h = (xmax - xmin) / 2, (ymax - ymin) / 2
    angle = math.radians(degrees)
    dx = abs(half_w * math.cos(angle)) + abs(half_h * math.sin(angle))
    dy = abs(half_w * math.sin(angle)) + abs(half_h * math.cos(angle))
    return cx - dx, cy - dy, cx + dx, cy + dy


def _resolve_image(root: Path, file_name: str, subset: str, index: DirIndex) -> Path:
    """images/<subset>/<name>, images/<name>, then <name> beside the XML; the first that exists."""
    images = root / CvatLayout.IMAGES_DIR
    candidates = ([images / subset / file_name] if subset else []) + [images / file_name, root / file_name]
    candidates = [Path(os.path.normpath(c)) for c in candidates]
    return next((c for c in candidates if index.exists(c)), candidates[0])


def _files(src: Path) -> list[Path]:
    """The CVAT XML files: ``src`` itself, its annotations.xml, or (datumaro) every CVAT *.xml at its top."""
    if src.is_file():
        return [src] if src.suffix.lower() == ".xml" and _is_cvat(src) else []
    if (src / CvatLayout.FILE).is_file():
        return [src / CvatLayout.FILE] if _is_cvat(src / CvatLayout.FILE) else []
    return [path for path in sorted(src.glob("*.xml")) if path.is_file() and _is_cvat(path)] if src.is_dir() else []


def _files_or_raise(src: Path) -> list[Path]:
    files = _files(src)
    if not files:
        raise DatasetError(f"no CVAT XML ({CvatLayout.FILE}) found", where=str(src),
                           hint="export the task as 'CVAT for images 1.1' and unpack it: annotations.xml + images/")
    return files


def _parse(path: Path) -> ET.ElementTree:
    try:
        tree = ET.parse(path)
    except ET.ParseError as error:
        raise DatasetError(f"XML is not well-formed ({error})", where=Location(str(path), line=error.position[0]),
                           hint="export the annotations from CVAT again") from error
    except OSError as error:
        raise DatasetError(f"cannot read: {error.strerror}", where=str(path)) from error
    if tree.getroot().tag != CvatLayout.ROOT_TAG:
        raise DatasetError(f"root element is <{tree.getroot().tag}>, not <annotations>: not a CVAT XML",
                           where=str(path), hint="export the task as 'CVAT for images 1.1'")
    return tree
