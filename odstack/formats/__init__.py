"""Annotation formats: one module per format, all behind the same small interface.

Each module ``odstack/formats/<name>.py`` defines:

- ``NAME: str``                       its key (== module name == ``FORMAT=`` value)
- ``DESCRIPTION: str``                one line for ``make help``/errors
- ``detect(src: Path) -> bool``       does ``src`` look like this format? (file layout only, cheap)
- ``read(src: Path, issues: IssueLog) -> Iterator[ImageEntry]``
                                      every image of the dataset with its boxes; item-level problems go
                                      to ``issues`` (file + line/object), dataset-level ones raise
                                      ``DatasetError``
- ``labels(src: Path) -> list[str] | None``
                                      the class names in the order the source declares them
                                      (classes.txt, COCO categories, meta.json), or None

Optionally ``missing(src: Path) -> str | None``: what a layout lacks, for the error when ``FORMAT=`` names it
but ``detect`` says no.

Adding a format is adding one module and its name to ``FORMAT_NAMES`` (and the names people type for it
to ``ALIASES``).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from odstack.errors import DatasetError

FORMAT_NAMES = ("supervisely", "tf_csv", "pascal_voc", "coco", "cloud_annotations", "yolo", "label_studio", "labelme",
                "cvat", "darknet")

# The names people type (after lower-casing and turning "-", " " and "." into "_") -> the format.
ALIASES = {
    "voc": "pascal_voc", "pascal": "pascal_voc", "labelimg": "pascal_voc",
    "csv": "tf_csv", "tensorflow_csv": "tf_csv", "vott": "tf_csv", "vott_csv": "tf_csv",
    "coco_json": "coco", "mscoco": "coco", "coco_detection": "coco",
    "ultralytics": "yolo", "yolov5": "yolo", "yolov8": "yolo", "yolo_txt": "yolo", "yolo_ultralytics": "yolo",
    "sly": "supervisely",
    "cloudannotations": "cloud_annotations", "ibm": "cloud_annotations",
    "yolo_darknet": "darknet", "cvat_yolo": "darknet", "yolo_1_1": "darknet", "yolo1_1": "darknet",
    "cvat_xml": "cvat", "cvat_images": "cvat", "cvat_for_images": "cvat", "cvat_for_images_1_1": "cvat",
    "label_me": "labelme", "labelme_json": "labelme",
    "labelstudio": "label_studio", "ls": "label_studio", "label_studio_json": "label_studio",
}


def canonical(name: str) -> str:
    """``name`` as typed (any case, ``-``/space/``.`` for ``_``) -> its FORMAT_NAMES key, if it has one."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_").replace(".", "_")
    return ALIASES.get(key, key)


def resolve(name: str) -> str:
    """The format key for a typed name or alias; a clear error with "did you mean" otherwise."""
    key = canonical(name)
    if key not in FORMAT_NAMES:
        import difflib

        close = difflib.get_close_matches(key, list(FORMAT_NAMES) + list(ALIASES), n=1)
        hint = (f"did you mean FORMAT={canonical(close[0])}?" if close
                else "omit FORMAT to detect it automatically")
        raise DatasetError(f"unknown format {name!r}; known formats: {', '.join(FORMAT_NAMES)} "
                           f"(also accepted: {', '.join(sorted(ALIASES))})", hint=hint)
    return key


def get(name: str) -> ModuleType:
    """The format module called ``name`` (or one of its aliases); a clear error listing the known ones otherwise."""
    return importlib.import_module(f"odstack.formats.{resolve(name)}")


def detect(src: Path) -> str:
    """The one format whose ``detect`` accepts ``src``; an error if none or several do."""
    matches = [name for name in FORMAT_NAMES if get(name).detect(src)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise DatasetError(
            "no known annotation format found here",
            where=str(src),
            hint=f"set FORMAT= to one of {', '.join(FORMAT_NAMES)} (README lists the layout each expects)",
        )
    raise DatasetError(
        f"several annotation formats match: {', '.join(matches)}",
        where=str(src),
        hint=f"choose one with FORMAT={matches[0]} (or another of those listed)",
    )
