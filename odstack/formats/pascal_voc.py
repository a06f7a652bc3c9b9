"""Pascal VOC / LabelImg XML: one ``<annotation>`` file per image.

Two layouts are read the same way, by walking every ``*.xml`` below ``src`` (sorted):

- flat / LabelImg: ``annotations/*.xml`` + ``images/*.jpg`` (raccoon), or XML files next to the images
  (Roboflow's VOC export puts them in ``train/``, ``valid/``, ``test/``);
- VOC devkit: ``Annotations/`` + ``JPEGImages/`` + optional ``ImageSets/Main/{train,val,trainval,test}.txt``.

Only the XML is parsed: images are never opened here (the converter decodes them once, later).
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections import deque
from pathlib import Path, PureWindowsPath
from typing import Iterator

from odstack.errors import DatasetError
from odstack.formats._common import (DirIndex, IMAGE_EXTS, SPLIT_NAMES, relative_name, text_number, walk_files,
                                     xml_root_has_child)
from odstack.annotations import Box, ImageEntry, IssueLog, Location, Reason

NAME = "pascal_voc"
DESCRIPTION = "Pascal VOC / LabelImg XML (annotations/*.xml + images/, or VOC devkit Annotations/ + JPEGImages/)"


class VocLayout:
    """File names and tags of the VOC layout."""

    SUFFIX = ".xml"
    ROOT_TAG = "annotation"
    ANNOTATIONS_DIR = "annotations"  # compared lower-case: VOC says Annotations, LabelImg users annotations
    IMAGE_DIRS = ("images", "JPEGImages")
    IMAGE_EXTS = IMAGE_EXTS
    IMAGESETS = ("ImageSets", "Main")
    # (list file, subset), in priority order: an id in train.txt and trainval.txt stays "train".
    # test stays test (its own shards); trainval only matters when train/val lists are absent.
    SUBSET_LISTS = (("train", "train"), ("val", "val"), ("test", "test"), ("trainval", "train"))
    # Roboflow-style split folders (first path component under src) when there is no ImageSets list.
    SPLIT_DIRS = SPLIT_NAMES
    BOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")
    DETECT_SAMPLE = 3  # XML files sniffed by detect()
    DETECT_DEPTH = 3  # VOCdevkit/VOC2012/Annotations/*.xml is depth 2 below VOCdevkit
    SKIP_DIRS = ("__MACOSX",)


def detect(src: Path) -> bool:
    """True if one of the first few XML files below ``src`` is a VOC ``<annotation>`` (cheap sniff)."""
    src = Path(src)
    if not src.is_dir():
        return False
    return any(_looks_like_voc(path) for path in _sample_xml(src))


def labels(src: Path) -> list[str] | None:
    """VOC declares no class list (names come from each <object>), so: None."""
    return None


def read(src: Path, issues: IssueLog) -> Iterator[ImageEntry]:
    """Every annotated image below ``src``, one entry per XML file, in sorted path order."""
    root = Path(os.path.abspath(src))
    if not root.is_dir():
        raise DatasetError("not a directory", where=str(src),
                           hint="point SRC at the folder holding the .xml files (and images)")
    xml_files = list(walk_files(root, (VocLayout.SUFFIX,)))
    if not xml_files:
        raise DatasetError("no .xml annotation files found", where=str(src),
                           hint="expected annotations/*.xml + images/ or VOC Annotations/ + JPEGImages/")
    index = DirIndex()
    subsets: dict[Path, dict[str, tuple[str, Path, int]] | None] = {}
    annotated: set[Path] = set()
    xml_stems: dict[Path, set[str]] = {}  # devkit -> stems of its XML files
    for xml_path in xml_files:
        entry = _read_xml(xml_path, root, index, subsets, issues)
        xml_stems.setdefault(_devkit(xml_path), set()).add(xml_path.stem)
        if entry is not None:
            annotated.add(entry.image)
            yield entry
    yield from _unannotated(root, annotated, xml_stems, subsets, index)


def _unannotated(root: Path, annotated: set[Path], xml_stems: dict[Path, set[str]], subsets: dict,
                 index: DirIndex) -> Iterator[ImageEntry]:
    """Images without an XML: ImageSets ids that have none, then other images in the folders the
    annotated images are in (LabelImg saves no XML for an image left empty). The converter reports them."""
    for devkit, lists in sorted(subsets.items()):
        for image_id, (subset, list_path, line) in (lists or {}).items():
            if image_id in xml_stems.get(devkit, ()):
                continue
            image = next((found for d in VocLayout.IMAGE_DIRS
                          if (found := index.find_stem(devkit / d, image_id, VocLayout.IMAGE_EXTS))), None)
            image = image or _join(devkit / VocLayout.IMAGE_DIRS[-1], image_id + ".jpg")
            if image not in annotated:
                annotated.add(image)
                yield ImageEntry(image=image, name=relative_name(image, root), boxes=[], annotated=False,
                                 where=Location(relative_name(list_path, root), line=line), subset=subset)
    for folder in sorted({image.parent for image in annotated if index.exists(image)}):
        for name in sorted(index.names(folder)):
            image = folder / name
            if os.path.splitext(name)[1].lower() in VocLayout.IMAGE_EXTS and not _skipped(name) \
                    and image not in annotated:
                parts = image.relative_to(root).parts if image.is_relative_to(root) else ()
                yield ImageEntry(image=image, name=relative_name(image, root), boxes=[], annotated=False,
                                 where=Location(relative_name(image, root)),
                                 subset=VocLayout.SPLIT_DIRS.get(parts[0].lower()) if len(parts) > 1 else None)


def _read_xml(xml_path: Path, root: Path, index: DirIndex, subsets: dict, issues: IssueLog) -> ImageEntry | None:
    rel = xml_path.relative_to(root).as_posix()
    try:
        tree = ET.parse(xml_path)
    except ET.ParseError as error:
        line, column = error.position
        issues.skip_image(Reason.UNREADABLE_ANNOTATION, Location(rel, line=line),
                          f"XML is not well-formed ({error}, column {column}); fix or remove this file")
        return None
    except (OSError, ValueError) as error:
        issues.skip_image(Reason.UNREADABLE_ANNOTATION, Location(rel), f"cannot read XML: {error}")
        return None
    ann = tree.getroot()
    if ann.tag != VocLayout.ROOT_TAG:
        issues.skip_image(Reason.UNREADABLE_ANNOTATION, Location(rel),
                          f"root element is <{ann.tag}>, not <annotation>: not a VOC file; remove it or "
                          f"move it out of the dataset")
        return None

    image = _resolve_image(xml_path, root, ann, index)
    name = relative_name(image, root)
    boxes = []
    for number, obj in enumerate(ann.findall("object"), start=1):
        box = _read_object(obj, Location(rel, item=f"object {number}"), name, issues)
        if box is not None:
            boxes.append(box)
    return ImageEntry(image=image, name=name, boxes=boxes, where=Location(rel),
                      declared_size=_declared_size(ann, rel, name, issues),
                      subset=_subset(xml_path, root, subsets))


def _read_object(obj: ET.Element, where: Location, image: str, issues: IssueLog) -> Box | None:
    label = (obj.findtext("name") or "").strip()  # "" passes through: the converter reports empty labels
    bndbox = obj.find("bndbox")
    if bndbox is None:
        shapes = ", ".join(sorted({child.tag for child in obj} - {"name", "pose", "truncated", "difficult",
                                                                  "occluded", "part", "attributes"}))
        issues.skip_box(Reason.UNSUPPORTED_SHAPE, where,
                        f"object {label!r} has no <bndbox> ({shapes or 'no shape'}); only boxes are supported",
                        image)
        return None
    values, bad = [], []
    for tag in VocLayout.BOX_FIELDS:
        text = bndbox.findtext(tag)
        number = text_number(text)
        if number is None:
            bad.append(f"{tag}={text!r}" if text is not None else f"{tag} missing")
        values.append(number)
    if bad:
        issues.skip_box(Reason.INVALID_VALUE, where,
                        f"object {label!r}: bad <bndbox> coordinates ({', '.join(bad)})", image)
        return None
    xmin, ymin, xmax, ymax = values
    return Box(label, xmin, ymin, xmax, ymax, where=where,
               difficult=_flag(obj.findtext("difficult")), truncated=_flag(obj.findtext("truncated")))


def _declared_size(ann: ET.Element, rel: str, image: str, issues: IssueLog) -> tuple[int, int] | None:
    size = ann.find("size")
    if size is None:
        return None
    texts = (size.findtext("width"), size.findtext("height"))
    numbers = [text_number(text) for text in texts]
    if None in numbers:
        if any(text and text.strip() for text in texts):
            issues.note(Reason.INVALID_VALUE, Location(rel, item="size"),
                        f"ignored <size> width={texts[0]!r} height={texts[1]!r}; the image's own size is used",
                        image)
        return None
    width, height = (int(round(n)) for n in numbers)
    # LabelImg writes 0 x 0 when it could not read the image: that means "unknown", not a size.
    return (width, height) if width > 0 and height > 0 else None


def _resolve_image(xml_path: Path, root: Path, ann: ET.Element, index: DirIndex) -> Path:
    """First existing candidate of <filename> (then the basename of <path>) in the usual places.

    Places, in order: the XML's own folder, a sibling images/ or JPEGImages/ folder, the dataset root
    (and its images/ / JPEGImages/), the <folder> LabelImg records. For a folder called Annotations the
    siblings come first, so a missing image is reported where it should have been (JPEGImages/).
    """
    xml_dir = xml_path.parent
    siblings = [xml_dir.parent / d for d in VocLayout.IMAGE_DIRS]
    dirs = siblings + [xml_dir] if xml_dir.name.lower() == VocLayout.ANNOTATIONS_DIR else [xml_dir] + siblings
    dirs += [root] + [root / d for d in VocLayout.IMAGE_DIRS]
    folder = (ann.findtext("folder") or "").strip()
    if folder and "/" not in folder and "\\" not in folder and folder not in (".", ".."):
        dirs += [xml_dir.parent / folder, root / folder]
    dirs = list(dict.fromkeys(dirs))

    names = []
    filename = (ann.findtext("filename") or "").strip().replace("\\", "/")
    if filename:
        # An absolute <filename> is the annotator's machine: only its basename means anything here.
        names += [filename.rsplit("/", 1)[-1]] if filename.startswith("/") or ":" in filename else [filename]
        names.append(filename.rsplit("/", 1)[-1])
    path_text = (ann.findtext("path") or "").strip()
    if path_text:
        names.append(PureWindowsPath(path_text).name)  # PureWindowsPath splits on both / and \
    names = [n for n in dict.fromkeys(names) if n]

    for candidate_name in names:
        for directory in dirs:
            candidate = _join(directory, candidate_name)
            if index.exists(candidate):
                return candidate
    # Some tools write <filename> without extension, or none at all: match on the stem.
    stems = [n for n in names if not Path(n).suffix] if names else [xml_path.stem]
    for stem in stems:
        for directory in dirs:
            found = index.find_stem(directory, stem, VocLayout.IMAGE_EXTS)
            if found is not None:
                return found
    return _join(dirs[0], names[0] if names else xml_path.stem + ".jpg")


def _devkit(xml_path: Path) -> Path:
    xml_dir = xml_path.parent
    return xml_dir.parent if xml_dir.name.lower() == VocLayout.ANNOTATIONS_DIR else xml_dir


def _subset(xml_path: Path, root: Path,
            cache: dict[Path, dict[str, tuple[str, Path, int]] | None]) -> str | None:
    """Split from the devkit's ImageSets/Main lists; else from a train/valid/test folder; else None."""
    devkit = _devkit(xml_path)
    if devkit not in cache:
        cache[devkit] = _read_imagesets(devkit)
    lists = cache[devkit]
    if lists is not None:
        listed = lists.get(xml_path.stem)
        return listed[0] if listed else None
    parts = xml_path.relative_to(root).parts
    return VocLayout.SPLIT_DIRS.get(parts[0].lower()) if len(parts) > 1 else None


def _read_imagesets(devkit: Path) -> dict[str, tuple[str, Path, int]] | None:
    """image id -> (subset, list file, line) from ImageSets/Main; None when the devkit has no list."""
    main = devkit.joinpath(*VocLayout.IMAGESETS)
    found: dict[str, tuple[str, Path, int]] = {}
    any_list = False
    for list_name, subset in VocLayout.SUBSET_LISTS:
        path = main / f"{list_name}.txt"
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError:
            continue
        any_list = True
        for number, line in enumerate(text.splitlines(), start=1):
            fields = line.split()
            if fields:
                found.setdefault(fields[0], (subset, path, number))
    return found if any_list else None


def _sample_xml(src: Path) -> Iterator[Path]:
    """The first few XML files breadth-first (top folder first), never deeper than DETECT_DEPTH."""
    queue, found = deque([(src, 0)]), 0
    while queue and found < VocLayout.DETECT_SAMPLE:
        directory, depth = queue.popleft()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if _skipped(entry.name):
                continue
            if entry.is_dir() and depth < VocLayout.DETECT_DEPTH:
                queue.append((Path(entry.path), depth + 1))
            elif entry.name.lower().endswith(VocLayout.SUFFIX) and entry.is_file() and found < VocLayout.DETECT_SAMPLE:
                found += 1
                yield Path(entry.path)


def _looks_like_voc(path: Path) -> bool:
    """Root <annotation> with a <filename> or <object> child."""
    return xml_root_has_child(path, VocLayout.ROOT_TAG, ("filename", "object"))


def _skipped(name: str) -> bool:
    return name.startswith(".") or name in VocLayout.SKIP_DIRS  # ._x.xml are AppleDouble files


def _flag(text: str | None) -> bool:
    return (text or "").strip().lower() in ("1", "true", "yes")


def _join(directory: Path, name: str) -> Path:
    return Path(os.path.normpath(directory / name))
