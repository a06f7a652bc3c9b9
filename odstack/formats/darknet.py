"""Darknet / CVAT "YOLO 1.1": ``obj.data`` + ``obj.names`` + image lists, images and ``.txt`` side by side.

The layout, as CVAT exports it (and darknet reads it)::

    obj.data          classes = 2 / train = data/train.txt / valid = data/valid.txt / names = data/obj.names
    obj.names         one class name per line, line 1 = class 0
    train.txt         one image path per line: data/obj_train_data/a.jpg (or obj_train_data/a.jpg)
    obj_train_data/   a.jpg + a.txt: one 'class cx cy w h' line (fractions) per box

Paths in ``obj.data`` and the lists are darknet's (relative to its own folder, ``data/...``, or absolute
on the machine that trained): each is found in SRC as the longest tail of it that exists there. The
train/valid/test lists state the split. Without lists, every image in an ``obj_<subset>_data/`` folder
is read. An image without a ``.txt`` is a negative (darknet's rule).
Lines are read as in the YOLO format (odstack/formats/yolo.py).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from odstack.errors import DatasetError
from odstack.formats import yolo
from odstack.formats._common import SPLIT_NAMES, walk_files
from odstack.annotations import ImageEntry, IssueLog, Location, Reason

NAME = "darknet"
DESCRIPTION = "Darknet / CVAT 'YOLO 1.1' (obj.data, obj.names, train.txt, obj_train_data/ with images + .txt)"


class DarknetLayout:
    """File names and keys of the darknet / CVAT YOLO 1.1 layout."""

    DATA_FILE = "obj.data"
    NAMES_FILE = "obj.names"
    # obj.data key -> subset, in reading order
    LISTS = (("train", "train"), ("valid", "val"), ("test", "test"))
    FOLDER_GLOB = "obj_*_data"
    FOLDER_SUBSETS = SPLIT_NAMES


def detect(src: Path) -> bool:
    """An obj.data, or obj.names beside an obj_<subset>_data/ folder."""
    src = Path(src)
    if not src.is_dir():
        return False
    return (src / DarknetLayout.DATA_FILE).is_file() or (
        (src / DarknetLayout.NAMES_FILE).is_file() and any(p.is_dir() for p in src.glob(DarknetLayout.FOLDER_GLOB)))


def labels(src: Path) -> list[str]:
    names = yolo.read_names(_names_path(Path(src), _obj_data(Path(src))))
    return [names[i] for i in sorted(names)]


def read(src: Path, issues: IssueLog) -> Iterator[ImageEntry]:
    """The images of train/valid/test lists (in list order), else of every obj_<subset>_data/ folder."""
    src = Path(os.path.abspath(src))
    settings = _obj_data(src)
    names = yolo.read_names(_names_path(src, settings))
    listed = [(key, subset, _in_src(src, settings[key])) for key, subset in DarknetLayout.LISTS if key in settings]
    seen: set[Path] = set()
    if listed:
        for key, subset, list_path in listed:
            yield from _read_list(src, list_path, subset, names, seen, issues)
        return
    folders = sorted(p for p in src.glob(DarknetLayout.FOLDER_GLOB) if p.is_dir())
    if not folders:
        raise DatasetError("no image list (train.txt) and no obj_<subset>_data/ folder", where=str(src),
                           hint="export again with CVAT's 'YOLO 1.1' format, or name the lists in obj.data")
    for folder in folders:
        subset = DarknetLayout.FOLDER_SUBSETS.get(folder.name[len("obj_"):-len("_data")].lower())
        for image in walk_files(folder, yolo.YoloLayout.IMAGE_EXTS):
            yield from _entry(src, image, subset, names, seen, issues)


def _read_list(src: Path, list_path: Path, subset: str, names: dict[int, str], seen: set[Path],
               issues: IssueLog) -> Iterator[ImageEntry]:
    rel = list_path.relative_to(src).as_posix() if list_path.is_relative_to(src) else str(list_path)
    try:
        lines = list_path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read the image list: {error}", where=rel,
                           hint="obj.data names this list; check it exists and is UTF-8 text") from error
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield from _entry(src, _in_src(src, line.strip()), subset, names, seen, issues,
                              Location(rel, line=number))


def _entry(src: Path, image: Path, subset: str | None, names: dict[int, str], seen: set[Path],
           issues: IssueLog, listed_at: Location | None = None) -> Iterator[ImageEntry]:
    if image in seen:
        return
    seen.add(image)
    if not image.is_relative_to(src):
        # Its label file would be outside SRC too: neither is read (paths are found inside SRC when they can be).
        issues.skip_image(Reason.OUTSIDE_DATASET, listed_at or Location(str(image)),
                          f"listed image {image} is outside the dataset and has no copy in it; it is not read. "
                          "Put the images and their .txt files into SRC", image.name)
        return
    name = image.relative_to(src).as_posix()
    if not image.is_file() and listed_at is not None:
        issues.skip_image(Reason.MISSING_IMAGE, listed_at, f"listed image not found; expected at {image}", name)
        return
    entry = yolo.read_label_file(src, name, image, image.with_suffix(".txt"), subset, names, None, issues)
    if entry is not None:
        yield entry


def _obj_data(src: Path) -> dict[str, str]:
    """obj.data's ``key = value`` lines ({} without the file)."""
    path = src / DarknetLayout.DATA_FILE
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read obj.data: {error}", where=str(path), hint="save it as UTF-8 text") from error
    settings = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.strip().startswith("#"):
            settings[key.strip().lower()] = value.split("#", 1)[0].strip()
    return settings


def _names_path(src: Path, settings: dict[str, str]) -> Path:
    path = _in_src(src, settings["names"]) if settings.get("names") else src / DarknetLayout.NAMES_FILE
    if not path.is_file():
        raise DatasetError("class names file not found", where=str(path),
                           hint="add obj.names (one class name per line, line 1 = class 0)")
    return path


def _in_src(src: Path, darknet_path: str) -> Path:
    """A path written for darknet (``data/obj_train_data/a.jpg``, or an absolute path on the machine that
    trained), as the file in SRC: the longest tail of it that exists in SRC; else the path as stated
    (which the converter reports missing, or refuses when it is outside SRC)."""
    text = darknet_path.replace("\\", "/")
    parts = [part for part in text.split("/") if part]
    for start in range(len(parts)):
        candidate = Path(os.path.normpath(src.joinpath(*parts[start:])))
        if candidate.is_relative_to(src) and candidate.exists():
            return candidate
    return Path(os.path.normpath(src / text))
