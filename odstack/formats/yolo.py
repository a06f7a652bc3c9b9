"""YOLO (darknet / Ultralytics): one ``.txt`` per image, a line ``class cx cy w h`` (fractions) per box.

Layouts (all may hold sub-folders below ``images/``):

- darknet / LabelImg: ``images/`` + ``labels/`` + ``classes.txt`` or ``obj.names`` (top level or in labels/)
- Ultralytics: ``images/{train,val}`` + ``labels/{train,val}`` + ``data.yaml`` (``names:`` list or dict)
- Roboflow's Ultralytics export: ``{train,valid,test}/{images,labels}`` + ``data.yaml``

An image's label file is its path with ``images`` replaced by ``labels`` and the suffix by ``.txt``
(Ultralytics' rule). Images are never opened here.

Lines other than boxes, read as Ultralytics reads them when it trains a detector on them:

- pose (``data.yaml`` has ``kpt_shape: [K, D]``): ``class cx cy w h`` + K*D keypoint values; the box is
  the first five fields;
- segmentation: ``class x1 y1 x2 y2 x3 y3 ...``; the box is the polygon's bounding box (noted).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import yaml

from odstack.errors import DatasetError
from odstack.formats._common import IMAGE_EXTS, SPLIT_NAMES, text_number, walk_files
from odstack.annotations import Box, ImageEntry, IssueLog, Location, Reason

NAME = "yolo"
DESCRIPTION = "YOLO txt (darknet/Ultralytics): images/ + labels/*.txt + classes.txt, obj.names or data.yaml"


class YoloLayout:
    """Folder and file names of the YOLO layouts."""

    IMAGES = "images"
    LABELS = "labels"
    LABEL_SUFFIX = ".txt"
    # First found wins; data.yaml is the most explicit (ids may have gaps), LabelImg puts classes.txt in labels/.
    NAMES_FILES = ("data.yaml", "data.yml", "classes.txt", "obj.names", "labels/classes.txt")
    NOT_LABELS = ("classes.txt",)
    IMAGE_EXTS = IMAGE_EXTS
    # Split folder -> subset (test stays test: its own shards). Dict order = reading order of Roboflow folders.
    SPLIT_DIRS = SPLIT_NAMES
    FIELDS = 5  # class cx cy w h


def detect(src: Path) -> bool:
    """A labels/ folder (top level or in a split folder) with .txt files, next to images/ or a names file."""
    src = Path(src)
    if not src.is_dir():
        return False
    pairs = _pairs(src)
    has_labels = any(_has_label_files(labels_dir) for _, labels_dir, _ in pairs)
    has_images = any(images_dir.is_dir() for images_dir, _, _ in pairs)
    return has_labels and (has_images or _names_file(src) is not None)


def missing(src: Path) -> str | None:
    """What a folder lacks to be read as YOLO (for the error when FORMAT=yolo is given but does not fit)."""
    src = Path(src)
    if not src.is_dir():
        return "SRC is not a folder"
    pairs = _pairs(src)
    lacking = []
    if not any(_has_label_files(labels_dir) for _, labels_dir, _ in pairs):
        lacking.append("a labels/ folder with .txt label files (top level, or in train/ valid/ test/)")
    if not any(images_dir.is_dir() for images_dir, _, _ in pairs) and _names_file(src) is None:
        lacking.append("an images/ folder beside labels/, or a classes.txt / obj.names / data.yaml")
    return ("missing " + "; and ".join(lacking)) if lacking else None


def labels(src: Path) -> list[str] | None:
    """Class names in id order, from data.yaml / classes.txt / obj.names."""
    names, _ = _names(Path(src))
    return [names[i] for i in sorted(names)]


def read(src: Path, issues: IssueLog) -> Iterator[ImageEntry]:
    """One entry per image file below images/ (sorted by name); no or an empty .txt is a negative."""
    src = Path(os.path.abspath(src))
    names, names_path = _names(src)
    keypoint_values = _keypoint_values(names_path)
    pairs = [pair for pair in _pairs(src) if pair[0].is_dir()]
    if not pairs:
        raise DatasetError("no images/ folder found", where=str(src),
                           hint="expected images/ + labels/, images/{train,val}/ + labels/{train,val}/, "
                                "or {train,valid}/images/ + {train,valid}/labels/")
    found = []  # (name, image, label file, subset)
    expected_labels = set()
    for images_dir, labels_dir, subset in pairs:
        for image in walk_files(images_dir, YoloLayout.IMAGE_EXTS):
            inner = image.relative_to(images_dir)
            label = (labels_dir / inner).with_suffix(YoloLayout.LABEL_SUFFIX)
            expected_labels.add(label)
            # images/train/x.jpg: the first folder under images/ states the split
            # (trailing digits dropped: Ultralytics' coco128 has images/train2017/)
            split = YoloLayout.SPLIT_DIRS.get(re.sub(r"\d+$", "", inner.parts[0].lower())) \
                if len(inner.parts) > 1 else None
            found.append((image.relative_to(src).as_posix(), image, label, subset or split))
    if not found:
        raise DatasetError("no image files found", where=str(src),
                           hint=f"put the images ({', '.join(YoloLayout.IMAGE_EXTS)}) under images/")
    _report_orphans(src, pairs, expected_labels, issues)
    for name, image, label, subset in sorted(found, key=lambda f: f[0]):
        entry = read_label_file(src, name, image, label, subset, names, keypoint_values, issues)
        if entry is not None:
            yield entry


def read_label_file(src: Path, name: str, image: Path, label: Path, subset: str | None,
                 names: dict[int, str], keypoint_values: int | None, issues: IssueLog) -> ImageEntry | None:
    """The entry of one image from its label file (``label``; missing: a negative); None if unreadable."""
    rel = label.relative_to(src).as_posix()
    try:
        data = label.read_bytes()
    except FileNotFoundError:
        return ImageEntry(image=image, name=name, boxes=[], where=Location(name), subset=subset)
    except OSError as error:
        issues.skip_image(Reason.UNREADABLE_ANNOTATION, Location(rel), f"cannot read label file: {error}", name)
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        issues.skip_image(Reason.UNREADABLE_ANNOTATION, Location(rel, line=line),
                          f"not a text label file ({error.reason} at byte {error.start})", name)
        return None
    boxes = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if fields:
            box = _read_line(fields, Location(rel, line=number), names, keypoint_values, name, issues)
            if box is not None:
                boxes.append(box)
    return ImageEntry(image=image, name=name, boxes=boxes, where=Location(rel), subset=subset)


def _read_line(fields: list[str], where: Location, names: dict[int, str], keypoint_values: int | None,
               image: str, issues: IssueLog) -> Box | None:
    count = len(fields)
    polygon = False
    if keypoint_values is not None:
        if count != YoloLayout.FIELDS + keypoint_values:
            issues.skip_box(Reason.INVALID_VALUE, where,
                            f"{count} fields, expected {YoloLayout.FIELDS + keypoint_values} ('class cx cy w h' + "
                            f"{keypoint_values} keypoint values, as data.yaml's kpt_shape says)", image)
            return None
        fields = fields[:YoloLayout.FIELDS]  # a pose line's box; the keypoints are not kept
    elif count >= 7 and count % 2 == 1:
        polygon = True  # class x1 y1 x2 y2 x3 y3 ...: an Ultralytics segmentation polygon
    elif count != YoloLayout.FIELDS:
        issues.skip_box(Reason.INVALID_VALUE, where,
                        f"{count} fields, expected 5 ('class cx cy w h') or a polygon 'class x1 y1 x2 y2 x3 y3 ...'; "
                        "for pose labels (box + keypoints) add kpt_shape: [keypoints, values] to data.yaml", image)
        return None
    values = [text_number(text) for text in fields]
    if None in values or not values[0].is_integer():
        issues.skip_box(Reason.INVALID_VALUE, where,
                        f"not numbers: {' '.join(fields)!r} (expected an integer class, then fractions)", image)
        return None
    class_id = int(values[0])
    if class_id not in names:
        issues.skip_box(Reason.UNKNOWN_LABEL, where,
                        f"class id {class_id} is not in the class list (ids {min(names)}..{max(names)})", image)
        return None
    if polygon:
        xs, ys = values[1::2], values[2::2]
        issues.note(Reason.POLYGON_TO_BOX, where,
                    f"segmentation polygon with {len(xs)} points: its bounding box is used", image)
        return Box(names[class_id], min(xs), min(ys), max(xs), max(ys), where=where, normalized=True)
    cx, cy, w, h = values[1:]
    return Box(names[class_id], cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, where=where, normalized=True)


def _report_orphans(src: Path, pairs: list, expected: set[Path], issues: IssueLog) -> None:
    """A label file without its image is data lost: say so instead of dropping it silently."""
    for _, labels_dir, _ in pairs:
        for label in walk_files(labels_dir, (YoloLayout.LABEL_SUFFIX,)):
            if label not in expected and label.name not in YoloLayout.NOT_LABELS:
                rel = label.relative_to(src).as_posix()
                issues.skip_image(Reason.MISSING_IMAGE, Location(rel),
                                  "label file has no image with the same name under images/")


def _pairs(src: Path) -> list[tuple[Path, Path, str | None]]:
    """(images folder, labels folder, subset) of every layout; the folders may not exist."""
    pairs = [(src / YoloLayout.IMAGES, src / YoloLayout.LABELS, None)]
    for folder, subset in YoloLayout.SPLIT_DIRS.items():
        if (src / folder).is_dir():
            pairs.append((src / folder / YoloLayout.IMAGES, src / folder / YoloLayout.LABELS, subset))
    return pairs


def _names(src: Path) -> tuple[dict[int, str], Path]:
    """{class id: name} from the first names file found; a missing/unusable one is a DatasetError."""
    path = _names_file(src)
    if path is None:
        raise DatasetError("no class names file", where=str(src),
                           hint="add classes.txt (one name per line, line 1 = class 0) or a data.yaml with "
                                "'names: [...]'")
    return read_names(path), path


def read_names(path: Path) -> dict[int, str]:
    """{class id: name} of a names file: data.yaml's ``names:``, or one name per line (classes.txt, obj.names)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read class names: {error}", where=str(path),
                           hint="save it as UTF-8 text") from error
    if path.suffix in (".yaml", ".yml"):
        names = _yaml_names(text, path)
    else:
        lines = [line.strip() for line in text.splitlines()]
        while lines and not lines[-1]:  # trailing blank lines are not classes
            lines.pop()
        names = dict(enumerate(lines))
    if not names:
        raise DatasetError("the class names file declares no class", where=str(path),
                           hint="list the class names, one per line (or under 'names:' in data.yaml)")
    return names


def _load_yaml(text: str, path: Path):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise DatasetError(f"not valid YAML: {getattr(error, 'problem', error)}",
                           where=Location(str(path), line=mark.line + 1 if mark else None),
                           hint="fix the YAML syntax") from error


def _keypoint_values(names_path: Path) -> int | None:
    """K*D of data.yaml's ``kpt_shape: [K, D]`` (a pose dataset), else None."""
    if names_path.suffix not in (".yaml", ".yml"):
        return None
    data = _load_yaml(names_path.read_text(encoding="utf-8-sig"), names_path)
    shape = data.get("kpt_shape") if isinstance(data, dict) else None
    if shape is None:
        return None
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise DatasetError(f"kpt_shape must be [keypoints, values per keypoint], got {shape!r}",
                           where=str(names_path), hint="e.g. kpt_shape: [17, 3] (x, y, visibility)")
    return shape[0] * shape[1]


def _yaml_names(text: str, path: Path) -> dict[int, str]:
    data = _load_yaml(text, path)
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, list):
        return {i: str(name) for i, name in enumerate(names)}
    if isinstance(names, dict):
        try:
            return {int(key): str(name) for key, name in names.items()}
        except (TypeError, ValueError) as error:
            raise DatasetError(f"'names:' keys must be class ids: {error}", where=str(path),
                               hint="write names as '0: cat' lines or a list ['cat', ...]") from error
    raise DatasetError("no 'names:' list or mapping", where=str(path),
                       hint="add names: ['cat', 'dog'] (or 0: cat / 1: dog lines)")


def _names_file(src: Path) -> Path | None:
    for relative in YoloLayout.NAMES_FILES:
        if (src / relative).is_file():
            return src / relative
    return None


def _has_label_files(labels_dir: Path) -> bool:
    """Any .txt label (not classes.txt) in the folder or one level below it; stops at the first."""
    try:
        entries = list(os.scandir(labels_dir))
    except OSError:
        return False
    for entry in entries:
        if entry.name.endswith(YoloLayout.LABEL_SUFFIX) and entry.name not in YoloLayout.NOT_LABELS:
            return True
    for entry in entries:
        if entry.is_dir():
            try:
                if any(e.name.endswith(YoloLayout.LABEL_SUFFIX) for e in os.scandir(entry.path)):
                    return True
            except OSError:
                continue
    return False
