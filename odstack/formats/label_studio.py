"""Label Studio JSON export: one ``.json`` holding a list of tasks, the images in SRC.

A task, as Label Studio exports it (``Export -> JSON``)::

    {"id": 7, "data": {"image": "/data/upload/3/5d1c0a2e-cat.jpg"},
     "annotations": [{"id": 12, "was_cancelled": false, "result": [
         {"type": "rectanglelabels", "from_name": "label", "to_name": "image",
          "original_width": 640, "original_height": 480, "image_rotation": 0,
          "value": {"x": 10.0, "y": 20.0, "width": 30.0, "height": 40.0, "rotation": 0,
                    "rectanglelabels": ["cat"]}}]}],
     "predictions": [...]}

``x, y, width, height`` are percent (0..100) of the image, ``(x, y)`` its top-left corner; a rotated
rectangle turns about that corner, and is used as its axis-aligned envelope (noted). The first annotation
that was not cancelled is used (others are noted); predictions are a model's, not labels, and are ignored.
A task without annotations was never labelled: the converter reports it (NEGATIVES=keep keeps it).
Polygon, keypoint, brush and other region results are skipped and reported.

Image URLs are resolved against SRC: ``/data/upload/<project>/<file>`` (Label Studio's upload folder),
``/data/local-files/?d=<path>`` (its local storage; the path may start with folders above SRC), and
plain relative paths; the file is looked for at that path, then by its name in SRC and SRC/images.
``http(s)://`` and cloud URLs are not downloaded: such tasks are skipped and reported.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any, Iterator
from urllib.parse import parse_qs, unquote, urlparse

from odstack.errors import DatasetError
from odstack.formats._common import DirIndex, json_number, load_json, relative_name
from odstack.annotations import Box, ImageEntry, IssueLog, Location, Reason

NAME = "label_studio"
DESCRIPTION = "Label Studio JSON export (a list of tasks with annotations[].result[] rectanglelabels)"


class LabelStudioLayout:
    """Keys, result types and URL prefixes of a Label Studio JSON export."""

    SUFFIX = ".json"
    RECTANGLE = "rectanglelabels"
    # region results that are objects but not boxes: skipped and reported
    OTHER_REGIONS = ("polygonlabels", "keypointlabels", "brushlabels", "ellipselabels", "polygon", "keypoint",
                     "brush", "ellipse", "rectangle", "labels")
    UPLOAD_PREFIX = "/data/upload/"
    LOCAL_FILES_PREFIX = "/data/local-files/"
    IMAGE_DIRS = ("images", "upload", "media/upload")
    REMOTE_SCHEMES = ("http", "https", "s3", "gs", "azure-blob")
    PARSE_LIMIT = 64 << 20  # detect() parses files up to this size, and sniffs the head of bigger ones
    HEAD = 64 << 10


_TASK_HEAD = re.compile(rb'^\s*\[\s*\{[^\[\]]*?"(?:data|annotations|predictions|id)"\s*:', re.S)


def detect(src: Path) -> bool:
    """True if ``src`` is (or holds at its top level) a JSON list of tasks with "data" and "annotations"."""
    return bool(_export_files(Path(src)))


def labels(src: Path) -> list[str] | None:
    """The export lists no class set (the labelling config is not in it): None, names are sorted."""
    return None


def read(src: Path, issues: IssueLog) -> Iterator[ImageEntry]:
    """Every task of every export file (files sorted by name, tasks in file order)."""
    src = Path(os.path.abspath(src))
    root = src.parent if src.is_file() else src
    files = _export_files(src)
    if not files:
        raise DatasetError("no Label Studio JSON export found", where=str(src),
                           hint="export the project with Export -> JSON and put that .json beside the images")
    index = DirIndex()
    for path in files:
        rel = relative_name(path, root)
        tasks = load_json(path, rel, "Label Studio export", hint="export the project again (Export -> JSON)")
        if not isinstance(tasks, list):
            raise DatasetError("not a Label Studio JSON export: the top level is not a list of tasks", where=rel,
                               hint="use Export -> JSON (not JSON-MIN or CSV)")
        for number, task in enumerate(tasks):
            entry = _read_task(task, number, rel, root, index, issues)
            if entry is not None:
                yield entry


def _read_task(task: Any, number: int, rel: str, root: Path, index: DirIndex,
               issues: IssueLog) -> ImageEntry | None:
    task_id = task.get("id") if isinstance(task, dict) else None
    where = Location(rel, item=f"task {task_id}" if task_id is not None else f"tasks[{number}]")
    data = task.get("data") if isinstance(task, dict) else None
    url = task_image_url(data)
    if url is None:
        issues.skip_image(Reason.INVALID_VALUE, where, "task has no image URL in 'data'; it is skipped")
        return None
    if urlparse(url).scheme.lower() in LabelStudioLayout.REMOTE_SCHEMES:
        issues.skip_image(Reason.MISSING_IMAGE, where,
                          f"image {url!r} is remote; odstack does not download: put the file in SRC and export "
                          "with a local path", image=url)
        return None
    image = _resolve(url, root, index)
    name = relative_name(image, root)
    # "completions": the name of "annotations" in exports of Label Studio before 1.0
    listed = task.get("annotations") or task.get("completions") or []
    used = [a for a in listed if isinstance(a, dict) and not a.get("was_cancelled")]
    if not used:  # never labelled (or every attempt cancelled): the converter reports it
        return ImageEntry(image, name, [], where, annotated=False)
    annotation = used[0]
    if len(used) > 1:
        issues.note(Reason.DUPLICATE_ENTRY, where,
                    f"{len(used)} annotations of this task; the first (id {annotation.get('id')}) is used", name)
    boxes, size = [], None
    for position, result in enumerate(annotation.get("result") or []):
        box_where = Location(rel, item=f"{where.item}, result {position}")
        box, result_size = _box(result, box_where, name, issues)
        size = size or result_size
        if box is not None:
            boxes.append(box)
    return ImageEntry(image, name, boxes, where, declared_size=size)


def _box(result: Any, where: Location, name: str, issues: IssueLog) -> tuple[Box | None, tuple[int, int] | None]:
    """One rectangle result as a Box, and the image size it states; (None, ...) after reporting why not."""
    if not isinstance(result, dict):
        issues.skip_box(Reason.INVALID_VALUE, where, "result is not a JSON object; it is skipped", name)
        return None, None
    kind = result.get("type")
    width, height = json_number(result.get("original_width")), json_number(result.get("original_height"))
    size = (int(width), int(height)) if width and height and width > 0 and height > 0 else None
    if kind != LabelStudioLayout.RECTANGLE:
        if kind in LabelStudioLayout.OTHER_REGIONS:
            issues.skip_box(Reason.UNSUPPORTED_SHAPE, where,
                            f"{kind} result of image {name}: only rectanglelabels boxes are supported", name)
        return None, size  # choices, textarea, relations...: not objects
    value = result.get("value") if isinstance(result.get("value"), dict) else {}
    names = value.get("rectanglelabels")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        issues.skip_box(Reason.EMPTY_LABEL, where, f"rectangle of image {name} has no label; it is skipped", name)
        return None, size
    if len(names) > 1:
        issues.note(Reason.INVALID_VALUE, where,
                    f"rectangle of image {name} has {len(names)} labels {names}; the first is used", name)
    x, y, w, h = (json_number(value.get(key)) for key in ("x", "y", "width", "height"))
    if None in (x, y, w, h):
        issues.skip_box(Reason.INVALID_VALUE, where,
                        f"rectangle of image {name}: x, y, width, height must be numbers; it is skipped", name)
        return None, size
    rotation = json_number(value.get("rotation")) or 0.0
    if rotation % 360 == 0:
        return Box(names[0], x / 100, y / 100, (x + w) / 100, (y + h) / 100, where=where, normalized=True), size
    if size is None:
        issues.skip_box(Reason.UNSUPPORTED_SHAPE, where,
                        f"rotated rectangle of image {name} without original_width/height; it is skipped", name)
        return None, size
    # Rotation is about the top-left corner, in pixels (percent axes differ in scale).
    left, top, right, bottom = _rotated_envelope(x * size[0] / 100, y * size[1] / 100, w * size[0] / 100,
                                                 h * size[1] / 100, rotation)
    issues.note(Reason.POLYGON_TO_BOX, where,
                f"rectangle of image {name} rotated {rotation:g} degrees: its axis-aligned envelope is used", name)
    return Box(names[0], left, top, right, bottom, where=where), size


def _rotated_envelope(x: float, y: float, w: float, h: float, degrees: float) -> tuple[float, float, float, float]:
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    xs, ys = [], []
    for dx, dy in ((0, 0), (w, 0), (w, h), (0, h)):
        xs.append(x + dx * cos - dy * sin)
        ys.append(y + dx * sin + dy * cos)
    return min(xs), min(ys), max(xs), max(ys)


def task_image_url(data: Any) -> str | None:
    """The task's image URL: data["image"], else the only string value that looks like a file."""
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("image"), str) and data["image"]:
        return data["image"]
    candidates = [v for v in data.values() if isinstance(v, str) and PurePosixPath(urlparse(v).path).suffix]
    return candidates[0] if len(candidates) == 1 else None


def _resolve(url: str, root: Path, index: DirIndex) -> Path:
    """The image file for a task URL, looked for under ``root`` (see the module docstring)."""
    parsed = urlparse(url)
    if parsed.path.startswith(LabelStudioLayout.LOCAL_FILES_PREFIX) and "d" in parse_qs(parsed.query):
        stated = parse_qs(parsed.query)["d"][0]
    elif parsed.path.startswith(LabelStudioLayout.UPLOAD_PREFIX):
        stated = "upload/" + unquote(parsed.path[len(LabelStudioLayout.UPLOAD_PREFIX):])
    else:
        stated = unquote(parsed.path)
    parts = [p for p in PurePosixPath(stated.replace("\\", "/")).parts if p not in ("/", "")]
    # local-files paths are relative to Label Studio's document root, which may be above SRC: try every tail
    candidates = [root.joinpath(*parts[i:]) for i in range(len(parts))]
    if parts:
        candidates += [root / d / parts[-1] for d in LabelStudioLayout.IMAGE_DIRS]
    for candidate in candidates:
        if index.exists(candidate):
            return candidate
    return candidates[0] if candidates else root / stated


def _export_files(src: Path) -> list[Path]:
    if src.is_file():
        return [src] if src.suffix.lower() == LabelStudioLayout.SUFFIX and _looks_like_export(src) else []
    if not src.is_dir():
        return []
    return [p for p in sorted(src.glob(f"*{LabelStudioLayout.SUFFIX}")) if p.is_file() and _looks_like_export(p)]


def _looks_like_export(path: Path) -> bool:
    """A list whose first element is a task: has "data" and "annotations" (or "predictions")."""
    try:
        size = path.stat().st_size
        if size > LabelStudioLayout.PARSE_LIMIT:
            with path.open("rb") as handle:
                return bool(_TASK_HEAD.match(handle.read(LabelStudioLayout.HEAD)))
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        return False
    return "data" in data[0] and ("annotations" in data[0] or "predictions" in data[0])
