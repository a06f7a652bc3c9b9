"""Helpers several format modules share: finding image files cheaply and naming them, loading JSON."""
from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterator

from odstack.errors import DatasetError
from odstack.annotations import Location


# image files the readers look for beside annotations (Pillow opens all of them)
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# folder / subset / file-name words for a split, as the labelling tools write them (Roboflow: "valid")
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def relative_name(path: Path, root: Path) -> str:
    """Path relative to the dataset root; relative to its parent for a sibling images/ folder (raccoon)."""
    for base in (root, root.parent):
        try:
            return path.relative_to(base).as_posix()
        except ValueError:
            continue
    return path.name


class DirIndex:
    """Cached folder listings: one listdir per folder instead of a stat per candidate path."""

    def __init__(self) -> None:
        self._listings: dict[Path, set[str]] = {}
        self.last_hit: dict[Path, Path] = {}  # annotation folder -> the folder its last image was found in

    def names(self, directory: Path) -> set[str]:
        if directory not in self._listings:
            try:
                self._listings[directory] = set(os.listdir(directory))
            except OSError:
                self._listings[directory] = set()
        return self._listings[directory]

    def exists(self, path: Path) -> bool:
        return path.name in self.names(path.parent)

    def find_stem(self, directory: Path, stem: str, exts: tuple[str, ...]) -> Path | None:
        """The file in ``directory`` named ``stem`` with one of ``exts`` (case-insensitive), if any."""
        for name in sorted(self.names(directory)):
            base, ext = os.path.splitext(name)
            if base == stem and ext.lower() in exts:
                return directory / name
        return None


def load_json(path: Path, rel: str, what: str, hint: str) -> Any:
    """Parsed JSON; a DatasetError naming the file and line when it cannot be read or parsed."""
    try:
        return json.loads(path.read_bytes())  # bytes: json detects UTF-8/16 and a BOM itself
    except FileNotFoundError as error:
        raise DatasetError(f"{what} not found", where=str(path), hint=hint) from error
    except json.JSONDecodeError as error:
        raise DatasetError(f"cannot parse {what}: {error.msg} (column {error.colno})",
                           where=Location(rel, line=error.lineno), hint="fix the JSON at that line, or export "
                           "the annotations again") from error
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read {what}: {error}", where=rel,
                           hint="check the file is readable UTF-8 JSON") from error


def json_number(value: Any) -> float | None:
    """A finite JSON number as float; None for anything else (strings, booleans, NaN, missing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def text_number(text: str | None) -> float | None:
    """A finite number written as text (surrounding whitespace allowed); None for anything else."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def walk_files(root: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    """Files below root with one of the suffixes (any case), in sorted path order, skipping hidden files
    and folders (also macOS's ._x AppleDouble files) and __MACOSX folders."""
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for filename in sorted(filenames):
            if filename.lower().endswith(suffixes) and not filename.startswith("."):
                yield Path(directory, filename)


def xml_root_has_child(path: Path, root_tag: str, child_tags: tuple[str, ...]) -> bool:
    """True if ``path`` is XML whose root is ``root_tag`` with one of ``child_tags`` as a direct child; parsing
    stops as soon as that is known (detection reads the start of a file, not all of it)."""
    depth = 0
    try:
        for event, element in ET.iterparse(path, events=("start", "end")):
            if event == "end":
                depth -= 1
                continue
            depth += 1
            if depth == 1 and element.tag != root_tag:
                return False
            if depth == 2 and element.tag in child_tags:
                return True
    except (ET.ParseError, OSError, ValueError):
        return False
    return False
