"""Supervisely project: ``meta.json`` + dataset dirs, each with ``ann/<image name>.json`` and ``img/<image name>``.

Layout (as Supervisely's "download as JSON" writes it)::

    project/meta.json                  {"classes": [{"title": "cat", "shape": "rectangle", ...}], ...}
    project/<dataset>/ann/a.jpg.json   {"size": {"height", "width"}, "objects": [...]}
    project/<dataset>/img/a.jpg

Only ``rectangle`` objects become boxes; their two exterior points are opposite corners ``[x, y]`` in
pixels, in any order. A dataset dir named train/val/valid/validation/test is an existing split.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from odstack.errors import DatasetError
from odstack.formats._common import SPLIT_NAMES, json_number
from odstack.annotations import Box, ImageEntry, IssueLog, Location, Reason

NAME = "supervisely"
DESCRIPTION = "Supervisely project (meta.json + <dataset>/ann/*.json + <dataset>/img/)"


class SuperviselyLayout:
    """File and folder names, keys and split names of a Supervisely project."""

    META_FILE = "meta.json"
    ANN_DIR = "ann"
    IMG_DIR = "img"
    ANN_SUFFIX = ".json"
    RECTANGLE = "rectangle"
    SUBSETS = SPLIT_NAMES


def detect(src: Path) -> bool:
    """True if ``src`` holds ``meta.json`` and at least one ``<dataset>/ann/`` folder."""
    src = Path(src)
    try:
        return (src / SuperviselyLayout.META_FILE).is_file() and bool(_datasets(src))
    except OSError:
        return False


def labels(src: Path) -> list[str]:
    """Class titles in meta.json order (every class, whatever its shape)."""
    return _classes(Path(src).resolve())


def read(src: Path, issues: IssueLog) -> Iterator[ImageEntry]:
    """Every annotated image, dataset dirs and ann files in sorted order; objects in file order."""
    root = Path(src).resolve()
    known = set(_classes(root))
    datasets = _datasets(root)
    if not datasets:
        raise DatasetError("no dataset folder with an ann/ folder next to meta.json", where=str(root),
                           hint="a Supervisely project is meta.json plus <dataset>/ann/*.json and <dataset>/img/")
    for dataset in datasets:
        subset = SuperviselyLayout.SUBSETS.get(dataset.name.lower())
        ann_dir = dataset / SuperviselyLayout.ANN_DIR
        for ann_path in sorted(p for p in ann_dir.iterdir()
                               if p.name.endswith(SuperviselyLayout.ANN_SUFFIX) and p.is_file()):
            entry = _read_ann(ann_path, root, known, subset, issues)
            if entry is not None:
                yield entry


def _read_ann(ann_path: Path, root: Path, known: set[str], subset: str | None,
              issues: IssueLog) -> ImageEntry | None:
    """One ann file as an entry; None (reported) when the file cannot be parsed."""
    rel = ann_path.relative_to(root).as_posix()
    # "a.jpg.json" annotates img/"a.jpg": the image keeps its own extension.
    image = ann_path.parent.parent / SuperviselyLayout.IMG_DIR / ann_path.name[: -len(SuperviselyLayout.ANN_SUFFIX)]
    name = image.relative_to(root).as_posix()
    try:
        data = json.loads(ann_path.read_bytes())
    except json.JSONDecodeError as error:
        issues.skip_image(Reason.UNREADABLE_ANNOTATION, Location(rel, line=error.lineno),
                          f"cannot parse annotation JSON: {error.msg} (column {error.colno}); the image is skipped",
                          image=name)
        return None
    except (OSError, UnicodeDecodeError) as error:
        issues.skip_image(Reason.UNREADABLE_ANNOTATION, Location(rel),
                          f"cannot read annotation file: {error}; the image is skipped", image=name)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("objects"), list):
        issues.skip_image(Reason.UNREADABLE_ANNOTATION, Location(rel),
                          "not a Supervisely annotation (no 'objects' list); the image is skipped", image=name)
        return None
    where = Location(rel)
    boxes = [box for index, obj in enumerate(data["objects"])
             if (box := _box(obj, Location(rel, item=f"objects[{index}]"), known, name, issues)) is not None]
    return ImageEntry(image, name, boxes, where, declared_size=_size(data.get("size"), where, name, issues),
                      subset=subset)


def _box(obj: Any, where: Location, known: set[str], name: str, issues: IssueLog) -> Box | None:
    """One rectangle object as a Box, or None after reporting why it cannot be one."""
    if not isinstance(obj, dict):
        issues.skip_box(Reason.INVALID_VALUE, where, "object is not a JSON object; it is skipped", image=name)
        return None
    shape = obj.get("geometryType")
    if shape != SuperviselyLayout.RECTANGLE:
        if shape is None:
            issues.skip_box(Reason.INVALID_VALUE, where, "object has no geometryType; it is skipped", image=name)
        else:
            issues.skip_box(Reason.UNSUPPORTED_SHAPE, where,
                            f"{where.item} is a {shape!r}, not a rectangle; only rectangles become boxes, "
                            "so it is skipped", image=name)
        return None
    title = obj.get("classTitle")
    if not isinstance(title, str):
        issues.skip_box(Reason.INVALID_VALUE, where, f"classTitle must be a string, got {title!r}; the box is skipped",
                        image=name)
        return None
    if title and title not in known:  # "" passes through: the converter reports empty labels itself
        issues.skip_box(Reason.UNKNOWN_LABEL, where,
                        f"class {title!r} is not declared in meta.json; the box is skipped", image=name)
        return None
    points = obj.get("points")
    exterior = points.get("exterior") if isinstance(points, dict) else None
    corners = [(json_number(p[0]), json_number(p[1])) if isinstance(p, list) and len(p) == 2 else (None, None)
               for p in exterior] if isinstance(exterior, list) else []
    if len(corners) < 2 or any(None in corner for corner in corners):
        issues.skip_box(Reason.INVALID_VALUE, where,
                        f"points.exterior must be two [x, y] number pairs, got {exterior!r}; the box is skipped",
                        image=name)
        return None
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    # Supervisely stores opposite corners, not necessarily top-left first.
    return Box(title, min(xs), min(ys), max(xs), max(ys), where=where)


def _classes(root: Path) -> list[str]:
    """Class titles from meta.json; DatasetError if it is missing, unparseable or has no classes list."""
    meta = root / SuperviselyLayout.META_FILE
    hint = "a Supervisely project has meta.json at its root; download the project again as Supervisely JSON"
    try:
        data = json.loads(meta.read_bytes())
    except FileNotFoundError as error:
        raise DatasetError("meta.json not found", where=str(meta), hint=hint) from error
    except json.JSONDecodeError as error:
        raise DatasetError(f"cannot parse meta.json: {error.msg} (column {error.colno})",
                           where=Location(SuperviselyLayout.META_FILE, line=error.lineno),
                           hint="fix the JSON at that line or download the project again") from error
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read meta.json: {error}", where=SuperviselyLayout.META_FILE, hint=hint) from error
    classes = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(classes, list):
        raise DatasetError("meta.json has no 'classes' list", where=SuperviselyLayout.META_FILE, hint=hint)
    titles: list[str] = []
    for index, cls in enumerate(classes):
        title = cls.get("title") if isinstance(cls, dict) else None
        if not isinstance(title, str):
            raise DatasetError("class needs a string 'title'",
                               where=Location(SuperviselyLayout.META_FILE, item=f"classes[{index}]"), hint=hint)
        if title not in titles:
            titles.append(title)
    return titles


def _datasets(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and (d / SuperviselyLayout.ANN_DIR).is_dir())


def _size(size: Any, where: Location, name: str, issues: IssueLog) -> tuple[int, int] | None:
    if size is None:
        return None
    width = size.get("width") if isinstance(size, dict) else None
    height = size.get("height") if isinstance(size, dict) else None
    if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        return width, height
    issues.note(Reason.INVALID_VALUE, where,
                f"size {size!r} has no positive integer width/height; the image's own size is used", image=name)
    return None
