"""COCO object-detection JSON: ``annotations/instances_<split>.json`` or Roboflow ``<split>/_annotations.coco.json``.

Layouts, tried in this order when ``src`` is a directory:

1. ``annotations/<task>_<split>.json`` with images in ``<split>/``, ``images/<split>/``, ``images/`` or
   the root (the official COCO layout: ``instances_train2017.json`` + ``train2017/``). Every task file
   with a bbox per annotation is a detection source (``instances``, ``person_keypoints``: the person
   boxes, ``stuff``); per split the first of those, in that order, is read, since they list the same
   images again;
2. ``_annotations.coco.json`` at the root and/or in ``<split>/`` dirs, images beside each JSON (Roboflow);
3. any other COCO JSON in ``annotations/`` or the root, images beside it or in ``images/``.

``src`` may also be one JSON file. When several JSON files are read they are an existing split, so each
entry's subset comes from the file's split name. bbox is ``[x, y, width, height]`` in pixels.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

from odstack.errors import DatasetError
from odstack.formats._common import SPLIT_NAMES, json_number, load_json
from odstack.annotations import Box, ImageEntry, IssueLog, Location, Reason

NAME = "coco"
DESCRIPTION = "COCO detection JSON (annotations/instances_<split>.json, or Roboflow <split>/_annotations.coco.json)"


class CocoLayout:
    """File names, keys and limits of the COCO layouts read here."""

    ANNOTATIONS_DIR = "annotations"
    # <task>_<split>.json: tasks with a bbox per annotation, in the order one is chosen per split
    BOX_TASKS = ("instances", "person_keypoints", "stuff")
    # tasks without one: captions/image_info have no boxes, panoptic keeps them inside segments_info
    OTHER_TASKS = ("captions", "panoptic", "image_info")
    ROBOFLOW_FILE = "_annotations.coco.json"
    IMAGES_DIR = "images"
    REQUIRED_KEYS = ("images", "annotations", "categories")
    # Split names (lower case, trailing year digits dropped) that say which subset a file is.
    SUBSETS = SPLIT_NAMES
    # detect() parses files up to this size; beyond it, it only looks at the head and the tail, because
    # the official instances_train2017.json is ~450 MB and detection must stay cheap.
    PARSE_LIMIT = 8 << 20
    WINDOW = 256 << 10


# A top-level COCO key followed by its list; matched on raw bytes so big files need not be decoded.
_KEY = {key: re.compile(rb'"%s"\s*:\s*\[' % key.encode()) for key in ("images", "annotations", "categories", "bbox")}


def detect(src: Path) -> bool:
    """True if ``src`` is a COCO JSON file or a directory holding one in a known layout."""
    src = Path(src)
    if src.is_file():
        return src.suffix.lower() == ".json" and _looks_like_coco(src)
    return any(_looks_like_coco(path) for path in _annotation_files(src))


def missing(src: Path) -> str | None:
    """What a folder lacks to be read as COCO detection (for the error when FORMAT=coco does not fit)."""
    src = Path(src)
    ann_dir = src / CocoLayout.ANNOTATIONS_DIR
    others = sorted(p.name for p in (ann_dir.glob("*.json") if ann_dir.is_dir() else [])
                    if _task_and_split(p)[0] in CocoLayout.OTHER_TASKS)
    if others:
        return (f"{', '.join(others)} hold no box per annotation (captions, image lists, or panoptic boxes "
                "inside segments_info); add the instances_<split>.json (or person_keypoints_) files")
    return None


def labels(src: Path) -> list[str]:
    """Category names sorted by category id (over all JSON files), without Roboflow's placeholder class."""
    src = Path(src).resolve()
    root = _root(src)
    declared: list[tuple[int, str]] = []
    for path in _files_or_raise(src):
        rel = _rel(path, root)
        categories = _load(path, rel)["categories"]
        _category_names(categories, rel)  # validates
        # Roboflow adds its workspace name as category 0 (supercategory "none") and makes it the
        # supercategory of the real classes; no box uses it, so it must not become a class.
        parents = {c.get("supercategory") for c in categories if isinstance(c.get("supercategory"), str)}
        declared.extend((c["id"], c["name"]) for c in categories
                        if not (c.get("supercategory") == "none" and c["name"] in parents))
    names: list[str] = []
    for _, name in sorted(declared, key=lambda pair: pair[0]):  # stable: file order breaks id ties
        if name not in names:
            names.append(name)
    return names


def read(src: Path, issues: IssueLog) -> Iterator[ImageEntry]:
    """Every image of every COCO JSON (source order), with its boxes in annotation order."""
    src = Path(src).resolve()
    root = _root(src)
    files = _files_or_raise(src)
    for path in files:
        yield from _read_file(path, root, len(files) > 1, issues)


def _read_file(path: Path, root: Path, is_split: bool, issues: IssueLog) -> Iterator[ImageEntry]:
    rel = _rel(path, root)
    data = _load(path, rel)
    names = _category_names(data["categories"], rel)
    split = _split_name(path, root)
    subset = _subset(split) if is_split else None
    bases = _image_bases(path, root, split)
    existing = [base for base in bases if base.is_dir()]
    # Where a missing image is reported: the most specific folder that exists, else the expected split folder.
    fallback = next((base for base in existing if base != root), bases[0])

    # Annotations refer to images by id, anywhere in the file: collect the images first, then attach
    # each annotation to its image, then yield in image order.
    entries: dict[Any, ImageEntry] = {}
    for index, image in enumerate(data["images"]):
        image_id = _id(image.get("id")) if isinstance(image, dict) else None
        where = Location(rel, item=f"image id {image_id}" if image_id is not None else f"images[{index}]")
        file_name = image.get("file_name") if isinstance(image, dict) else None
        if image_id is None or not isinstance(file_name, str) or not file_name:
            issues.skip_image(Reason.INVALID_VALUE, where,
                              "image entry needs an integer or string 'id' and a non-empty 'file_name'; it is skipped")
            continue
        image_path = _resolve(existing, fallback, file_name)
        name = _name(image_path, root, file_name)
        if image_id in entries:
            issues.skip_image(Reason.DUPLICATE_ENTRY, where,
                              f"image id {image_id} is listed twice; only its first entry is used", image=name)
            continue
        entries[image_id] = ImageEntry(image_path, name, [], where,
                                       declared_size=_declared_size(image, where, name, issues), subset=subset)

    for index, ann in enumerate(data["annotations"]):
        box = _box(ann, index, rel, names, entries, issues)
        if box is not None:
            entries[ann["image_id"]].boxes.append(box)
    yield from entries.values()


def _box(ann: Any, index: int, rel: str, names: dict[int, str], entries: dict[Any, ImageEntry],
         issues: IssueLog) -> Box | None:
    """One annotation as a Box, or None after reporting why it cannot be one."""
    if not isinstance(ann, dict):
        issues.skip_box(Reason.INVALID_VALUE, Location(rel, item=f"annotations[{index}]"),
                        "annotation is not a JSON object; it is skipped")
        return None
    ann_id = _id(ann.get("id"))
    where = Location(rel, item=f"annotation id {ann_id}" if ann_id is not None else f"annotations[{index}]")
    image_id = _id(ann.get("image_id"))
    entry = entries.get(image_id) if image_id is not None else None
    if entry is None:
        issues.skip_box(Reason.INVALID_VALUE, where,
                        f"image_id {ann.get('image_id')!r} is not an image of this file; the box is skipped")
        return None
    bbox = ann.get("bbox")
    if not bbox and ann.get("segmentation"):
        issues.skip_box(Reason.UNSUPPORTED_SHAPE, where,
                        "annotation has only a segmentation (polygon/RLE mask), no bbox; it is skipped",
                        image=entry.name)
        return None
    category = ann.get("category_id")
    if not isinstance(category, int) or isinstance(category, bool):
        issues.skip_box(Reason.INVALID_VALUE, where,
                        f"category_id must be an integer, got {category!r}; the box is skipped", image=entry.name)
        return None
    if category not in names:
        issues.skip_box(Reason.UNKNOWN_LABEL, where,
                        f"category_id {category!r} is not declared in 'categories'; the box is skipped",
                        image=entry.name)
        return None
    values = [json_number(v) for v in bbox] if isinstance(bbox, list) else []
    if len(values) != 4 or None in values:
        issues.skip_box(Reason.INVALID_VALUE, where,
                        f"bbox must be 4 numbers [x, y, width, height], got {bbox!r}; the box is skipped",
                        image=entry.name)
        return None
    x, y, w, h = values
    # TF OD API's create_coco_tf_record keeps crowd boxes and flags them, so they are kept and flagged here.
    return Box(names[category], x, y, x + w, y + h, where=where, is_crowd=bool(ann.get("iscrowd")))


def _annotation_files(src: Path) -> list[Path]:
    """The COCO JSON files of ``src`` in read order (see the module docstring for the layouts)."""
    if src.is_file():
        return [src]
    if not src.is_dir():
        return []
    ann_dir = src / CocoLayout.ANNOTATIONS_DIR
    by_split: dict[str, tuple[int, Path]] = {}  # split -> (task rank, file): one task file per split
    for path in sorted(ann_dir.glob("*.json")) if ann_dir.is_dir() else []:
        task, split = _task_and_split(path)
        if task in CocoLayout.BOX_TASKS:
            rank = CocoLayout.BOX_TASKS.index(task)
            if split not in by_split or rank < by_split[split][0]:
                by_split[split] = (rank, path)
    if by_split:
        return sorted(path for _, path in by_split.values())
    files = [p for p in [src / CocoLayout.ROBOFLOW_FILE] if p.is_file()]
    files += sorted(src.glob(f"*/{CocoLayout.ROBOFLOW_FILE}"))
    if files:
        return files
    loose = (sorted(ann_dir.glob("*.json")) if ann_dir.is_dir() else []) + sorted(src.glob("*.json"))
    return [p for p in loose if p.is_file() and _task_and_split(p)[0] not in CocoLayout.OTHER_TASKS
            and _looks_like_coco(p)]


def _task_and_split(path: Path) -> tuple[str | None, str]:
    """("person_keypoints", "val2017") for person_keypoints_val2017.json; (None, stem) for other names."""
    for task in CocoLayout.BOX_TASKS + CocoLayout.OTHER_TASKS:
        if path.stem.startswith(task + "_") and len(path.stem) > len(task) + 1:
            return task, path.stem[len(task) + 1:]
    return None, path.stem


def _files_or_raise(src: Path) -> list[Path]:
    files = _annotation_files(src)
    if not files:
        raise DatasetError(
            "no COCO annotation JSON found", where=str(src),
            hint="expected annotations/instances_<split>.json, <split>/_annotations.coco.json, or a COCO .json file",
        )
    return files


def _looks_like_coco(path: Path) -> bool:
    """Has top-level 'images', 'annotations' and 'categories' lists (cheaply, for huge files)."""
    try:
        size = path.stat().st_size
        if size <= CocoLayout.PARSE_LIMIT:
            raw = path.read_bytes()
            try:
                data = json.loads(raw)
            except ValueError:
                return _keys_in(raw)  # broken but COCO-shaped: let read() report where it breaks
            return isinstance(data, dict) and all(isinstance(data.get(k), list) for k in CocoLayout.REQUIRED_KEYS)
        with path.open("rb") as handle:
            head = handle.read(CocoLayout.WINDOW)
            handle.seek(max(size - CocoLayout.WINDOW, len(head)))
            return _keys_in(head + b"\n" + handle.read())
    except OSError:
        return False


def _keys_in(text: bytes) -> bool:
    # The official files put images first and categories last, with the annotation list in between: its
    # key is in neither window, but its last entries ("bbox") are in the tail. Cloud Annotations and
    # Supervisely files have neither "images" nor "categories" lists.
    found = {key for key, pattern in _KEY.items() if pattern.search(text)}
    return {"images", "categories"} <= found and bool(found & {"annotations", "bbox"})


def _load(path: Path, rel: str) -> dict:
    """The parsed JSON; DatasetError (with the line) when it cannot be read or lacks the COCO lists."""
    data = load_json(path, rel, "COCO JSON", hint="point SRC at the COCO annotation file or its folder")
    missing = [k for k in CocoLayout.REQUIRED_KEYS if not isinstance(data, dict) or not isinstance(data.get(k), list)]
    if missing:
        raise DatasetError(f"not a COCO detection file: no {', '.join(repr(k) for k in missing)} list", where=rel,
                           hint="a COCO detection JSON needs 'images', 'annotations' and 'categories' lists "
                                "(captions/image_info files have no boxes)")
    return data


def _category_names(categories: list, rel: str) -> dict[int, str]:
    """category id -> name; a bad category is a dataset error because every label depends on it."""
    names: dict[int, str] = {}
    for index, category in enumerate(categories):
        ok = isinstance(category, dict) and isinstance(category.get("name"), str)
        if not ok or not isinstance(category.get("id"), int) or isinstance(category.get("id"), bool):
            raise DatasetError("category needs an integer 'id' and a string 'name'",
                               where=Location(rel, item=f"categories[{index}]"),
                               hint="fix that entry of 'categories' or export the annotations again")
        names.setdefault(category["id"], category["name"])
    return names


def _declared_size(image: dict, where: Location, name: str, issues: IssueLog) -> tuple[int, int] | None:
    width, height = image.get("width"), image.get("height")
    if width is None and height is None:
        return None
    if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        return width, height
    issues.note(Reason.INVALID_VALUE, where,
                f"width/height {width!r}x{height!r} are not positive integers; the image's own size is used",
                image=name)
    return None


def _root(src: Path) -> Path:
    """The dataset root that names are relative to: ``src``, or the folder above ``annotations/``."""
    if src.is_dir():
        return src
    parent = src.parent
    return parent.parent if parent.name == CocoLayout.ANNOTATIONS_DIR else parent


def _split_name(path: Path, root: Path) -> str | None:
    task, split = _task_and_split(path)
    if task is not None:
        return split
    if path.name == CocoLayout.ROBOFLOW_FILE:
        return path.parent.name if path.parent != root else None
    return path.stem


def _subset(split: str | None) -> str | None:
    """"train2017" -> "train", "valid"/"val2017" -> "val", "test2017" -> "test"; anything else has no subset."""
    return CocoLayout.SUBSETS.get(re.sub(r"\d+$", "", split.lower())) if split else None


def _image_bases(path: Path, root: Path, split: str | None) -> list[Path]:
    """Folders an image's file_name may be relative to, most specific first."""
    if path.parent.name == CocoLayout.ANNOTATIONS_DIR and path.parent.parent == root:
        per_split = [root / split, root / CocoLayout.IMAGES_DIR / split] if split else []
        return per_split + [root / CocoLayout.IMAGES_DIR, root]
    return [path.parent, path.parent / CocoLayout.IMAGES_DIR]


def _resolve(bases: list[Path], fallback: Path, file_name: str) -> Path:
    """The image in the first folder that has it (one stat per folder, no decoding); else under ``fallback``."""
    for base in bases:
        if (base / file_name).is_file():
            return base / file_name
    return fallback / file_name


def _name(image: Path, root: Path, file_name: str) -> str:
    try:
        return image.relative_to(root).as_posix()
    except ValueError:  # an absolute file_name outside the dataset
        return Path(file_name).as_posix()


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def _id(value: Any) -> int | str | None:
    """An image/annotation id as a dict key: ints (COCO) or strings (some exporters); else None."""
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None
