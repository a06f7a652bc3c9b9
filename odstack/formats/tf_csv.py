"""TensorFlow-tutorial / VoTT CSV: one row per box, rows of one image grouped by file name.

Two column sets are understood (header names are matched case-insensitively, in any order):

- TF (``xml_to_csv.py``, raccoon ``data/*.csv``, Roboflow ``_annotations.csv``):
  ``filename,width,height,class,xmin,ymin,xmax,ymax``
- VoTT CSV export: ``image,xmin,ymin,xmax,ymax,label``

``src`` is one CSV file or a folder of them. In a folder, ``train*.csv`` / ``val*.csv`` / ``test*.csv``
(or Roboflow's ``train/`` ``valid/`` ``test/`` folders) state the split. Images are never opened here.
"""
from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from odstack.errors import DatasetError
from odstack.formats._common import DirIndex, SPLIT_NAMES, relative_name, text_number
from odstack.annotations import Box, ImageEntry, IssueLog, Location, Reason

NAME = "tf_csv"
DESCRIPTION = "CSV, one box per row: filename,width,height,class,xmin,ymin,xmax,ymax (or VoTT image,...,label)"

LOGGER = logging.getLogger(__name__)


class TfCsvLayout:
    """Column sets, split names and image folders of the CSV layouts."""

    SUFFIX = ".csv"
    ENCODING = "utf-8-sig"  # Excel and pandas on Windows write a BOM
    HEADER_LIMIT = 64 * 1024  # bytes read by detect() to find the header line
    TF_COLUMNS = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")
    VOTT_COLUMNS = ("image", "xmin", "ymin", "xmax", "ymax", "label")
    BOX_COLUMNS = ("xmin", "ymin", "xmax", "ymax")
    # A CSV in a folder with any of these columns is meant as annotations: a wrong header is an error.
    ANNOTATION_HINTS = ("filename", "image", "class", "label", "xmin", "ymin", "xmax", "ymax")
    # File-name prefixes (train_labels.csv) and Roboflow folders; test stays test (its own shards).
    SPLIT_PREFIXES = (("train", "train"), ("val", "val"), ("test", "test"))
    SPLIT_DIRS = SPLIT_NAMES
    IMAGE_DIRS = ("images", "JPEGImages")


@dataclass(frozen=True)
class _Columns:
    """Where each field sits in a row (None: the column set has no such field)."""

    filename: int
    label: int
    box: tuple[int, int, int, int]
    width: int | None = None
    height: int | None = None


def detect(src: Path) -> bool:
    """A .csv (or a folder with one, top level or in train/valid/test) whose header is a known column set."""
    src = Path(src)
    if src.is_file():
        return src.suffix.lower() == TfCsvLayout.SUFFIX and _columns(_header(src)) is not None
    if not src.is_dir():
        return False
    return any(_columns(_header(path)) is not None for path, _ in _candidates(src))


def labels(src: Path) -> list[str] | None:
    """The CSV declares no class list (names are per row), so: None."""
    return None


def read(src: Path, issues: IssueLog) -> Iterator[ImageEntry]:
    """One entry per distinct file name per CSV, in first-seen row order; CSV files in sorted order."""
    src = Path(os.path.abspath(src))
    root = src.parent if src.is_file() else src
    index = DirIndex()
    for path, subset in _sources(src):
        yield from _read_csv(path, root, subset, index, issues)


def _sources(src: Path) -> list[tuple[Path, str | None]]:
    """The annotation CSVs to read, with the split each states (dataset-level problems raise)."""
    if src.is_file():
        if _columns(_header(src)) is None:
            raise _header_error(src)
        return [(src, None)]
    if not src.is_dir():
        raise DatasetError("no such file or folder", where=str(src), hint="point SRC at a .csv or its folder")
    annotated = []
    for path, folder_subset in _candidates(src):
        header = _header(path)
        if _columns(header) is not None:
            annotated.append((path, folder_subset))
        elif header and any(name in TfCsvLayout.ANNOTATION_HINTS for name in header):
            raise _header_error(path)
        else:
            LOGGER.info("%s: not an annotation CSV (header %s), ignored", path, header)
    if not annotated:
        nested = sorted({p.parent.name for p in src.glob(f"*/*{TfCsvLayout.SUFFIX}")})
        hint = (f"point SRC at the folder holding them, e.g. {src / nested[0]}" if nested
                else "expected a .csv with columns filename,width,height,class,xmin,ymin,xmax,ymax")
        raise DatasetError("no annotation CSV found", where=str(src), hint=hint)
    if any(subset for _, subset in annotated):  # Roboflow train/valid/test folders
        return annotated
    if len(annotated) == 1:
        return annotated
    split = [(path, _split_of(path)) for path, _ in annotated]
    if any(subset for _, subset in split):
        # raccoon: train_labels.csv + test_labels.csv + raccoon_labels.csv (their union): the split files win.
        for path, subset in split:
            if subset is None:
                LOGGER.warning("%s: ignored, the train/val/test CSVs next to it state the split", path)
        return [(path, subset) for path, subset in split if subset]
    return annotated


def _candidates(src: Path) -> list[tuple[Path, str | None]]:
    """CSV files at the top of ``src``; failing that, those in train/valid/test folders (Roboflow)."""
    top = [(path, None) for path in _csv_files(src)]
    if top:
        return top
    found = []
    for child in sorted(src.iterdir()) if src.is_dir() else []:
        subset = TfCsvLayout.SPLIT_DIRS.get(child.name.lower())
        if subset and child.is_dir():
            found += [(path, subset) for path in _csv_files(child)]
    return found


def _read_csv(path: Path, root: Path, subset: str | None, index: DirIndex,
              issues: IssueLog) -> Iterator[ImageEntry]:
    rel = relative_name(path, root)
    try:
        # Decode up front so a bad byte is reported with its line, not as a half-read file.
        data = path.read_bytes()
        text = data.decode(TfCsvLayout.ENCODING)
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        issues.skip_image(Reason.UNREADABLE_ANNOTATION, Location(rel, line=line),
                          f"not UTF-8 text ({error.reason} at byte {error.start}); save the CSV as UTF-8")
        return
    except OSError as error:
        issues.skip_image(Reason.UNREADABLE_ANNOTATION, Location(rel), f"cannot read CSV: {error}")
        return

    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    entries: dict[str, ImageEntry] = {}  # insertion order = first-seen order
    last = 0
    try:
        columns = _columns(_normalize(next(reader, [])))
        if columns is None:
            raise _header_error(path)
        last = reader.line_num
        for row in reader:
            line, last = last + 1, reader.line_num  # line_num is where a (multi-line) record ends
            if any(cell.strip() for cell in row):
                _read_row(row, Location(rel, line=line), columns, path, root, subset, entries, index, issues)
    except csv.Error as error:
        issues.skip_image(Reason.UNREADABLE_ANNOTATION, Location(rel, line=last + 1),
                          f"malformed CSV ({error}); fix the quoting on this line")
        return
    yield from entries.values()


def _read_row(row: list[str], where: Location, columns: _Columns, path: Path, root: Path, subset: str | None,
              entries: dict[str, ImageEntry], index: DirIndex, issues: IssueLog) -> None:
    def cell(i: int | None) -> str | None:
        return row[i].strip() if i is not None and i < len(row) else None

    filename = cell(columns.filename)
    if not filename:
        issues.skip_box(Reason.INVALID_VALUE, where, "row has no file name; the box cannot be placed")
        return
    entry = entries.get(filename)
    if entry is None:
        image = _resolve_image(filename, path.parent, root, index)
        entry = entries[filename] = ImageEntry(image=image, name=relative_name(image, root), boxes=[],
                                               where=where, subset=subset)
    if entry.declared_size is None and columns.width is not None:
        entry.declared_size = _size(cell(columns.width), cell(columns.height), where, entry.name, issues)

    label = cell(columns.label) or ""  # "" passes through: the converter reports empty labels
    raw = [cell(i) for i in columns.box]
    if not label and not any(raw):
        return  # an image row without an object: a negative example
    values = [text_number(text) for text in raw]
    if None in values:
        bad = [f"{name}={text!r}" if text is not None else f"{name} missing"
               for name, text, value in zip(TfCsvLayout.BOX_COLUMNS, raw, values) if value is None]
        issues.skip_box(Reason.INVALID_VALUE, where, f"box {label!r}: bad coordinates ({', '.join(bad)})",
                        entry.name)
        return
    entry.boxes.append(Box(label, *values, where=where))


def _size(width: str | None, height: str | None, where: Location, image: str,
          issues: IssueLog) -> tuple[int, int] | None:
    numbers = (text_number(width), text_number(height))
    if None in numbers:
        if width or height:
            issues.note(Reason.INVALID_VALUE, where,
                        f"ignored width={width!r} height={height!r}; the image's own size is used", image)
        return None
    w, h = (int(round(n)) for n in numbers)
    return (w, h) if w > 0 and h > 0 else None


def _resolve_image(filename: str, csv_dir: Path, root: Path, index: DirIndex) -> Path:
    """First existing of: next to the CSV, its images/ folder, ../images (raccoon), the root and root/images.

    The stated name is tried first (it may hold sub-folders), then its basename; when nothing exists
    the path next to the CSV is returned and the converter reports it missing.
    """
    stated = filename.replace("\\", "/")
    if os.path.isabs(stated) and index.exists(Path(os.path.normpath(stated))):
        return Path(os.path.normpath(stated))
    basename = stated.rsplit("/", 1)[-1]
    names = [basename] if os.path.isabs(stated) or ":" in stated.split("/")[0] else [stated, basename]
    dirs = [csv_dir] + [csv_dir / d for d in TfCsvLayout.IMAGE_DIRS] + [csv_dir.parent / "images", root]
    dirs += [root / d for d in TfCsvLayout.IMAGE_DIRS]
    preferred = index.last_hit.get(csv_dir)
    dirs = list(dict.fromkeys(([preferred] if preferred else []) + dirs))  # the folder that held the last image first
    for name in dict.fromkeys(names):
        for directory in dirs:
            candidate = Path(os.path.normpath(directory / name))
            if index.exists(candidate):
                if "/" not in name:
                    index.last_hit[csv_dir] = directory
                return candidate
    return Path(os.path.normpath(csv_dir / names[0]))


def _columns(header: list[str] | None) -> _Columns | None:
    """Field positions for a known column set (TF preferred), or None."""
    if not header:
        return None
    position = {name: i for i, name in reversed(list(enumerate(header)))}  # first occurrence wins
    box = tuple(position.get(name) for name in TfCsvLayout.BOX_COLUMNS)
    if all(name in position for name in TfCsvLayout.TF_COLUMNS):
        return _Columns(position["filename"], position["class"], box, position["width"], position["height"])
    if all(name in position for name in TfCsvLayout.VOTT_COLUMNS):
        return _Columns(position["image"], position["label"], box)
    return None


def _header(path: Path) -> list[str] | None:
    """The first row, normalized; None when it cannot be read.

    Only the first line's bytes are decoded (leniently): a bad byte further down must not hide the file,
    it is reported with its line when the file is read.
    """
    try:
        with open(path, "rb") as handle:
            first = handle.readline(TfCsvLayout.HEADER_LIMIT)
        return _normalize(next(csv.reader([first.decode(TfCsvLayout.ENCODING, "replace").rstrip("\r\n")]), []))
    except (OSError, csv.Error):
        return None


def _normalize(header: list[str]) -> list[str]:
    return [name.strip().lower() for name in header]


def _header_error(path: Path) -> DatasetError:
    header = _header(path)
    return DatasetError(
        f"CSV header {','.join(header) if header else '(empty)'} is not a known column set",
        where=Location(str(path), line=1),
        hint=f"use the columns {','.join(TfCsvLayout.TF_COLUMNS)} (or VoTT's {','.join(TfCsvLayout.VOTT_COLUMNS)})")


def _split_of(path: Path) -> str | None:
    stem = path.stem.lower()
    for prefix, subset in TfCsvLayout.SPLIT_PREFIXES:
        if stem.startswith(prefix):
            return subset
    return None


def _csv_files(directory: Path) -> list[Path]:
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    return [directory / n for n in names
            if n.lower().endswith(TfCsvLayout.SUFFIX) and not n.startswith(".") and (directory / n).is_file()]
