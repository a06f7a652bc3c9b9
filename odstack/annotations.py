"""The common in-memory model every annotation format is read into.

A format module turns its files into ``ImageEntry`` objects (one image, its boxes, and where in the
source each came from). Everything downstream -- validation, splitting, TFRecord writing, the report --
works on these alone, so adding a format never touches the converter.

Problems found while reading go to an ``IssueLog``: each issue names the file (and line/object when
known), a reason from ``Reason`` and a human sentence saying what to do. Nothing is dropped silently.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable


@dataclass(frozen=True, slots=True)
class Location:
    """Where something came from: a file, and optionally a line number and/or an item inside it."""

    file: str
    line: int | None = None
    item: str | None = None

    def __str__(self) -> str:
        text = self.file if self.line is None else f"{self.file}:{self.line}"
        return text if self.item is None else f"{text} ({self.item})"


@dataclass(slots=True)
class Box:
    """One object box, as the source states it.

    Coordinates are pixels of the image as annotated, unless ``normalized`` is true, in which case
    they are fractions (0..1) of the image width/height (YOLO, Cloud Annotations).
    """

    label: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    where: Location
    normalized: bool = False
    difficult: bool = False
    truncated: bool = False
    is_crowd: bool = False


@dataclass(slots=True)
class ImageEntry:
    """One image of the source dataset with all of its boxes (possibly none: a negative example).

    ``image`` is the absolute path of the image file (it may not exist: the converter reports that).
    ``name`` is the image's path relative to the dataset root, POSIX style; it becomes
    ``image/filename`` and ``image/source_id`` so outputs never depend on where the dataset lives.
    ``declared_size`` is the (width, height) the annotation states, if any.
    ``subset`` is the split the source itself assigns ("train"/"val"/"test"), if any.
    ``annotated`` is false for an image found without any annotation file (an image beside LabelImg
    XMLs that was never saved, an ImageSets id without its XML): the converter reports it, and keeps
    it as a negative only when asked to (negatives=keep).
    ``embedded`` is an annotation file that carries the image itself (LabelMe's base64 ``imageData``),
    used when the image file is missing.
    """

    image: Path
    name: str
    boxes: list[Box]
    where: Location
    declared_size: tuple[int, int] | None = None
    subset: str | None = None
    annotated: bool = True
    embedded: Path | None = None


class Reason:
    """The fixed vocabulary of issue reasons (keys in report.json)."""

    MISSING_IMAGE = "missing_image"
    UNREADABLE_IMAGE = "unreadable_image"
    CORRUPT_IMAGE = "corrupt_image"
    UNREADABLE_ANNOTATION = "unreadable_annotation"
    INVALID_VALUE = "invalid_value"
    UNSUPPORTED_SHAPE = "unsupported_shape"
    EMPTY_LABEL = "empty_label"
    UNKNOWN_LABEL = "unknown_label"
    BOX_OUTSIDE_IMAGE = "box_outside_image"
    BOX_CLIPPED = "box_clipped"
    ZERO_AREA_BOX = "zero_area_box"
    INVERTED_BOX = "inverted_box"
    DUPLICATE_ENTRY = "duplicate_entry"
    DUPLICATE_BOX = "duplicate_box"
    DUPLICATE_IMAGE_CONTENT = "duplicate_image_content"
    SIZE_MISMATCH = "size_mismatch"
    IMAGE_CONVERTED = "image_converted"
    ALL_BOXES_REJECTED = "all_boxes_rejected"  # had objects, none usable: not a negative
    NO_ANNOTATION = "no_annotation"            # an image without any annotation file
    OUTSIDE_DATASET = "outside_dataset"        # a path that resolves outside SRC
    POLYGON_TO_BOX = "polygon_to_box"          # a polygon/keypoint shape used as its bounding box


@dataclass
class Issue:
    """One reported problem. ``action`` says what odstack did: skipped_image, skipped_box, fixed, note."""

    action: str
    reason: str
    where: Location
    message: str
    image: str | None = None

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["where"] = str(self.where)
        data["file"] = self.where.file
        data["line"] = self.where.line
        data["item"] = self.where.item
        return data


@dataclass
class IssueLog:
    """Collects every skip, fix and note of a run, for report.json and STRICT mode."""

    issues: list[Issue] = field(default_factory=list)

    def skip_image(self, reason: str, where: Location, message: str, image: str | None = None) -> None:
        self.issues.append(Issue("skipped_image", reason, where, message, image))

    def skip_box(self, reason: str, where: Location, message: str, image: str | None = None) -> None:
        self.issues.append(Issue("skipped_box", reason, where, message, image))

    def fixed(self, reason: str, where: Location, message: str, image: str | None = None) -> None:
        self.issues.append(Issue("fixed", reason, where, message, image))

    def note(self, reason: str, where: Location, message: str, image: str | None = None) -> None:
        self.issues.append(Issue("note", reason, where, message, image))

    def extend(self, issues: Iterable[Issue]) -> None:
        self.issues.extend(issues)

    @property
    def skips(self) -> list[Issue]:
        return [i for i in self.issues if i.action.startswith("skipped")]

    def count(self, action: str) -> int:
        return sum(1 for i in self.issues if i.action == action)
