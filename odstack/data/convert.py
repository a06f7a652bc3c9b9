"""The data stage: an annotated dataset -> validated, split, sharded OD API TFRecords + label map + report.

Flow (each step's problems go to one IssueLog, so report.json lists every skip with file and reason):

1. read     the format module yields ImageEntry objects (format auto-detected unless given); images whose
            path resolves outside the dataset are refused (allow_outside=true reads and lists them)
2. dedupe   the same image annotated twice is kept once (first wins; the second is reported); images
            without any annotation are reported, and kept as negatives only with negatives=keep
3. split    the source's own split when it states one (split=auto/source; test stays its own split),
            else seeded and class-aware on the annotated labels (split=random)
4. write    in parallel, one worker per shard, each image read ONCE: header (size, format, EXIF
            orientation) and integrity check from the bytes in memory, boxes validated against the
            real size (clipped, or skipped with a reason), then hashed and written; all into a
            temporary directory next to the output, which replaces the output only when everything
            succeeded (and, with STRICT=1, nothing was skipped)

One read per image is what lets the converter keep up with `cp` (docs/benchmarks.md). An image that
turns out unusable while writing (or whose every object was rejected) is dropped from its split; the
report counts what was written. A run that must fail (nothing usable; STRICT=1 with skips or warnings)
prints its summary and keeps its report beside OUT before it raises.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import math
import multiprocessing
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from odstack import formats, images, labelmap, tfrecord
from odstack.data import report as report_module
from odstack.data.split import split_indices
from odstack.errors import ConfigError, DatasetError, StrictModeError
from odstack.fsio import replace_dir
from odstack.log import LOGGER, progress
from odstack.annotations import ImageEntry, IssueLog, Location, Reason

REPORT_NAME = "report.json"
FAILED_REPORT_SUFFIX = ".failed-report"  # <OUT>.failed-report.json/.html beside the output a failed run did not write
# Folders an annotation file given as SRC usually sits in, beside the images/ folder (raccoon's data/*.csv):
# then the dataset is the folder above.
ANNOTATION_DIRS = ("data", "annotations", "labels")
CLIP_TOLERANCE_PX = 0.01  # overshoot below this is float noise of fraction arithmetic, not worth a report
SHARD_TARGET_BYTES = 100 * 1024 * 1024  # ~100 MB shards: big enough for fast reads, many enough to interleave
IMAGES_PER_PARALLEL_SHARD = 500         # below this, one shard per split is fine


@dataclass
class DataSettings:
    """Settings of the data stage (defaults: odstack/cfg/default.yaml, section ``data``)."""

    src: Path
    out: Path
    format: str = "auto"
    val_fraction: float = 0.2
    seed: int = 42
    shards: int | str = "auto"
    split: str = "auto"  # auto: the source's own split if it states one, else random | source | random
    strict: bool = False
    label_map: Path | None = None
    verify: str = "fast"  # fast | decode | none
    workers: int | str = "auto"
    negatives: str = "skip"  # images without an annotation file: skip (reported) | keep (as negatives)
    allow_outside: bool = False  # read images whose paths resolve outside the dataset (each is listed)
    min_examples: int = 10  # a class with fewer boxes than this is warned about
    write_records: bool = True  # false: only the report (`make stats`): images are still read and checked


@dataclass(slots=True)
class CleanBox:
    """A validated box in pixels of the stored image."""

    label: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool
    truncated: bool
    is_crowd: bool


@dataclass(slots=True)
class CleanImage:
    """An image as written: its entry, header facts, validated boxes and stored bytes' digest/size."""

    entry: ImageEntry
    info: images.ImageInfo
    boxes: list[CleanBox] = field(default_factory=list)
    sha256: str = ""
    stored_size: int = 0


@dataclass
class ShardTask:
    path: Path
    entries: list[ImageEntry]
    verify: str
    label_ids: dict[str, int]
    known: dict[str, int] | None
    rejected: list[int] = field(default_factory=list)  # per entry: objects its reader already rejected
    write: bool = True  # false: check only (`make stats`)


@dataclass
class ShardResult:
    """What a worker sends back: per written image its position in the task, header facts, boxes, digest
    and size (not the entry: the parent has it), plus the shard's issues."""

    images: list[tuple[int, images.ImageInfo, list[CleanBox], str, int]]
    issues: list


@dataclass
class ConvertResult:
    out: Path
    report: dict[str, Any]


# ---------------------------------------------------------------------------------------------- helpers

def _worker_count(workers: int | str) -> int:
    if workers == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not Linux
            return max(1, os.cpu_count() or 1)
    return max(1, int(workers))


def _pool(workers: int, counter):
    # fork: workers inherit the imported modules; this process never imports TensorFlow.
    return multiprocessing.get_context("fork").Pool(workers, _init_worker, (counter,))


def _check_paths(settings: DataSettings) -> None:
    src, out = settings.src.resolve(), settings.out.resolve()
    if not settings.src.exists():
        raise ConfigError("dataset not found", where=str(settings.src),
                          hint="put your dataset under input/ and pass SRC=input/<dataset>")
    if out == src or out in src.parents or src in out.parents:
        raise ConfigError(f"output directory {settings.out} and dataset {settings.src} overlap",
                          hint="choose an OUT outside the dataset and not above it (default: input/tf_records)")
    if out.exists():
        if not out.is_dir():
            raise ConfigError("output path exists and is not a directory", where=str(settings.out),
                              hint="choose another OUT")
        if any(out.iterdir()) and not (out / REPORT_NAME).exists():
            raise ConfigError("output directory is not empty and was not written by odstack",
                              where=str(settings.out),
                              hint="choose another OUT, or empty it yourself; odstack replaces only its own outputs")
        if not settings.write_records and any(out.glob("*.record")):
            raise ConfigError("output directory holds records; stats writes only a report and would replace them",
                              where=str(settings.out),
                              hint="choose another OUT for `make stats` (default output/stats)")
    if settings.split not in ("auto", "random", "source"):
        raise ConfigError(f"split={settings.split!r} is not one of: auto, random, source")
    if settings.verify not in ("fast", "decode", "none"):
        raise ConfigError(f"verify={settings.verify!r} is not one of: fast, decode, none")
    if not 0 <= settings.val_fraction < 1:
        raise ConfigError(f"val_fraction={settings.val_fraction} must be in [0, 1)")
    if settings.negatives not in ("skip", "keep"):
        raise ConfigError(f"negatives={settings.negatives!r} is not one of: skip, keep",
                          hint="NEGATIVES=keep writes images that have no annotation file as negatives")


def _remove_stale_temporaries(out: Path) -> None:
    """Remove what killed runs of this output left (``.<name>.tmp-<pid>``, ``.<name>.old-<pid>``): only
    when that process is gone, since a live one may be another run writing right now."""
    for path in sorted(out.parent.glob(f".{out.name}.*-*")):
        kind, _, pid = path.name[len(out.name) + 2:].rpartition("-")
        if kind not in ("tmp", "old") or not pid.isdigit() or _process_alive(int(pid)):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        LOGGER.info("data: removed %s, left by an interrupted run (process %s is gone)", path, pid)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OverflowError:
        return False
    return True


def dataset_root(src: Path) -> Path:
    """The folder every image must be inside: SRC (or, for an annotation file, its folder), or the folder
    above that when it is a data/, annotations/ or labels/ folder beside images/ (raccoon's data/*.csv)."""
    src = Path(os.path.abspath(src))
    folder = src if src.is_dir() else src.parent
    return folder.parent if folder.name.lower() in ANNOTATION_DIRS else folder


def _refuse_outside(entries: list[ImageEntry], root: Path, allow: bool, issues: IssueLog) -> list[ImageEntry]:
    """Images whose path resolves (symlinks followed) outside ``root`` are skipped, unless allowed;
    allowed ones are each listed, so the report says what was read from where."""
    inside = os.path.realpath(root)
    real_dirs: dict[str, str] = {}  # one realpath per folder, not per image: big datasets have few folders
    kept = []
    for entry in entries:
        folder, name = os.path.split(os.path.abspath(entry.image))
        if folder not in real_dirs:
            real_dirs[folder] = os.path.realpath(folder)
        real = os.path.join(real_dirs[folder], name)
        if os.path.islink(real):
            real = os.path.realpath(real)
        if real == inside or real.startswith(inside.rstrip(os.sep) + os.sep):
            kept.append(entry)
        elif allow:
            issues.note(Reason.OUTSIDE_DATASET, entry.where,
                        f"image {entry.name} resolves to {real}, outside the dataset; read because ALLOW_OUTSIDE=1",
                        entry.name)
            kept.append(entry)
        else:
            issues.skip_image(Reason.OUTSIDE_DATASET, entry.where,
                              f"image path {entry.name!r} resolves to {real}, outside the dataset {root}; it is "
                              "not read. Fix the path, or set ALLOW_OUTSIDE=1 if the images live elsewhere on "
                              "purpose", entry.name)
    return kept


def _handle_unannotated(entries: list[ImageEntry], negatives: str, issues: IssueLog) -> list[ImageEntry]:
    """Images found without any annotation file: reported; kept as negatives only with negatives=keep."""
    kept = []
    for entry in entries:
        if entry.annotated:
            kept.append(entry)
        elif negatives == "keep":
            issues.note(Reason.NO_ANNOTATION, entry.where,
                        f"image {entry.name} has no annotation; kept as a negative (NEGATIVES=keep)", entry.name)
            kept.append(entry)
        else:
            issues.skip_image(Reason.NO_ANNOTATION, entry.where,
                              f"image {entry.name} has no annotation; it is skipped. Annotate it, or set "
                              "NEGATIVES=keep if images without annotations show nothing to detect", entry.name)
    return kept


def _dedupe(entries: list[ImageEntry], issues: IssueLog) -> list[ImageEntry]:
    seen: dict[str, ImageEntry] = {}
    kept = []
    for entry in entries:
        key = os.path.abspath(entry.image)
        if key in seen:
            issues.skip_image(Reason.DUPLICATE_ENTRY, entry.where,
                              f"image already annotated at {seen[key].where}; this entry is ignored "
                              "(merge the two annotations if both are needed)", entry.name)
            continue
        seen[key] = entry
        kept.append(entry)
    return kept


def _validate_boxes(entry: ImageEntry, info: images.ImageInfo, known: dict[str, int] | None,
                    issues: IssueLog) -> list[CleanBox]:
    width, height = info.width, info.height
    if entry.declared_size and tuple(entry.declared_size) not in ((width, height), (info.raw_width, info.raw_height)):
        issues.note(Reason.SIZE_MISMATCH, entry.where,
                    f"annotation says {entry.declared_size[0]}x{entry.declared_size[1]} but the image is "
                    f"{width}x{height}; boxes are used as given", entry.name)
    clean: list[CleanBox] = []
    seen: set[tuple] = set()
    for box in entry.boxes:
        skip = lambda reason, message: issues.skip_box(reason, box.where, message, entry.name)  # noqa: E731
        label = box.label.strip() if isinstance(box.label, str) else ""
        if not label:
            skip(Reason.EMPTY_LABEL, "box has an empty label; name its class in the annotation")
            continue
        if known is not None and label not in known:
            skip(Reason.UNKNOWN_LABEL, f"label {label!r} is not in the label map; add it there or fix the label")
            continue
        scale_x, scale_y = (width, height) if box.normalized else (1, 1)
        try:
            xmin, ymin, xmax, ymax = (float(box.xmin) * scale_x, float(box.ymin) * scale_y,
                                      float(box.xmax) * scale_x, float(box.ymax) * scale_y)
        except (TypeError, ValueError):
            skip(Reason.INVALID_VALUE, "box coordinates are not numbers")
            continue
        if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)):
            skip(Reason.INVALID_VALUE, f"box ({box.xmin}, {box.ymin}, {box.xmax}, {box.ymax}) of image "
                                       f"{entry.name}: coordinates are not finite numbers")
            continue
        # Messages in pixels (xmin, ymin, xmax, ymax), whatever the source's units: what a person checks.
        coords = f"({', '.join(_px(v) for v in (xmin, ymin, xmax, ymax))}) px of image {entry.name}"
        if xmin > xmax or ymin > ymax:
            skip(Reason.INVERTED_BOX, f"{label!r} box {coords} has min > max; swap the coordinates in the source")
            continue
        if xmin == xmax or ymin == ymax:
            skip(Reason.ZERO_AREA_BOX, f"{label!r} box {coords} has zero width or height")
            continue
        if xmax <= 0 or ymax <= 0 or xmin >= width or ymin >= height:
            skip(Reason.BOX_OUTSIDE_IMAGE, f"{label!r} box {coords} lies entirely outside the {width}x{height} image")
            continue
        clipped = (max(0.0, xmin), max(0.0, ymin), min(float(width), xmax), min(float(height), ymax))
        overshoot = max(abs(a - b) for a, b in zip(clipped, (xmin, ymin, xmax, ymax)))
        if overshoot > CLIP_TOLERANCE_PX:
            issues.fixed(Reason.BOX_CLIPPED, box.where,
                         f"{label!r} box {coords} extends past the {width}x{height} image; clipped to its border",
                         entry.name)
        key = (label,) + clipped
        if key in seen:
            skip(Reason.DUPLICATE_BOX, f"identical {label!r} box {coords} appears twice; kept once")
            continue
        seen.add(key)
        clean.append(CleanBox(label, *clipped, box.difficult, box.truncated, box.is_crowd))
    return clean


def _px(value: float) -> str:
    """A pixel coordinate as a person reads it: at most one decimal, no "-0"."""
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _label_names(fmt_module, src: Path, settings: DataSettings, known: dict[str, int] | None,
                 labels: list[set[str]]) -> list[str]:
    """Label map order: the given label map (``known``, read from settings.label_map), else the source's
    declared order, else sorted names (``labels``: each entry's)."""
    if known is not None:
        ids = sorted(known.values())
        if ids != list(range(1, len(ids) + 1)):
            raise DatasetError("label map ids must be 1..N without gaps", where=str(settings.label_map),
                               hint="renumber the items 1, 2, 3, ...")
        return sorted(known, key=known.get)
    used = sorted(set().union(*labels))
    declared = list(fmt_module.labels(src) or [])
    return declared + [name for name in used if name not in declared]


def _labels_of(entry: ImageEntry) -> set[str]:
    return {box.label.strip() for box in entry.boxes if isinstance(box.label, str) and box.label.strip()}


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _shard_count(setting: int | str, items: Sequence[ImageEntry], workers: int) -> int:
    if not items:
        return 0
    if setting != "auto":
        return max(1, min(int(setting), len(items)))
    count = math.ceil(sum(_file_size(item.image) for item in items) / SHARD_TARGET_BYTES)
    if len(items) >= IMAGES_PER_PARALLEL_SHARD:
        count = math.ceil(max(count, workers) / workers) * workers  # a multiple of workers: even load
    return max(1, count)


# Shard writing runs in worker processes; the counter feeds the parent's progress bar.
_written_counter = None


def _init_worker(counter) -> None:
    global _written_counter
    _written_counter = counter


def _write_shard(task: ShardTask) -> ShardResult:
    """Check, validate and write every image of one shard (each image file is read once)."""
    issues = IssueLog()
    written: list[tuple[int, images.ImageInfo, list[CleanBox], str, int]] = []
    with tfrecord.RecordWriter(task.path) if task.write else contextlib.nullcontext() as writer:
        for position, entry in enumerate(task.entries):
            try:
                data = _image_bytes(entry, issues)
                info = images.probe_bytes(data, task.verify, entry.declared_size)
                stored = images.stored_bytes(data, info)
            except images.ImageProblem as problem:
                if problem.reason == Reason.MISSING_IMAGE:  # the annotation that names it is the place to look
                    issues.skip_image(problem.reason, entry.where,
                                      f"{problem.message}; expected at {entry.image}", entry.name)
                else:  # the file itself is bad: report it against the file
                    issues.skip_image(problem.reason, Location(entry.name),
                                      f"{problem.message}; fix or remove the file (annotated in {entry.where})",
                                      entry.name)
                _count()
                continue
            if info.convert_reason:
                issues.note(Reason.IMAGE_CONVERTED, entry.where,
                            f"converted ({info.convert_reason}) to {info.stored_format.upper()} so the stored "
                            "pixels match the annotation", entry.name)
            boxes = _validate_boxes(entry, info, task.known, issues)
            objects = len(entry.boxes) + (task.rejected[position] if task.rejected else 0)
            if objects and not boxes:
                # Written without boxes it would tell the trainer "nothing here": wrong, so it is left out.
                issues.skip_image(Reason.ALL_BOXES_REJECTED, entry.where,
                                  f"all {objects} object(s) of image {entry.name} were rejected (see their issues); "
                                  "the image is skipped rather than written as a negative", entry.name)
                _count()
                continue
            digest = hashlib.sha256(stored).hexdigest()
            width, height = info.width, info.height
            if writer is not None:
                writer.write(tfrecord.serialize_example(tfrecord.ExampleData(
                    encoded=stored, image_format=info.stored_format, width=width, height=height,
                    filename=entry.name, source_id=entry.name, sha256=digest,
                    xmin=[b.xmin / width for b in boxes], xmax=[b.xmax / width for b in boxes],
                    ymin=[b.ymin / height for b in boxes], ymax=[b.ymax / height for b in boxes],
                    class_text=[b.label for b in boxes], class_label=[task.label_ids[b.label] for b in boxes],
                    difficult=[int(b.difficult) for b in boxes], truncated=[int(b.truncated) for b in boxes],
                    is_crowd=[int(b.is_crowd) for b in boxes])))
            written.append((position, info, boxes, digest, len(stored)))
            _count()
    return ShardResult(written, issues.issues)


def _image_bytes(entry: ImageEntry, issues: IssueLog) -> bytes:
    """The image file's bytes; when it is missing, the copy its annotation carries (LabelMe imageData)."""
    try:
        return images.read_bytes(entry.image)
    except images.ImageProblem as problem:
        if problem.reason != Reason.MISSING_IMAGE or entry.embedded is None:
            raise
    data = images.embedded_bytes(entry.embedded)
    issues.note(Reason.IMAGE_CONVERTED, entry.where,
                f"image file {entry.name} not found; the copy embedded in the annotation (imageData) is used",
                entry.name)
    return data


def _count() -> None:
    if _written_counter is not None:
        with _written_counter.get_lock():
            _written_counter.value += 1


def _write_csv(path: Path, items: list[CleanImage]) -> None:  # noqa: D103
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"])
        for item in items:
            size = [item.info.width, item.info.height]
            if not item.boxes:
                writer.writerow([item.entry.name, *size, "", "", "", "", ""])
            for box in item.boxes:
                writer.writerow([item.entry.name, *size, box.label,
                                 *(f"{v:g}" for v in (box.xmin, box.ymin, box.xmax, box.ymax))])


# ------------------------------------------------------------------------------------------------ stage

def convert(settings: DataSettings) -> ConvertResult:
    """Run the data stage; returns the output directory and the report (also written as report.json).

    A run that fails on the data (nothing usable, or STRICT=1 and something skipped) still prints its
    summary and keeps its report beside the output it did not write (``<OUT>.failed-report.json``)."""
    started = time.monotonic()
    _check_paths(settings)
    src, out = settings.src, settings.out
    _remove_stale_temporaries(out)
    workers = _worker_count(settings.workers)
    issues = IssueLog()

    given = settings.format not in ("auto", "", None)
    fmt = formats.resolve(settings.format) if given else formats.detect(src)
    fmt_module = formats.get(fmt)
    if given and not fmt_module.detect(src):
        try:
            found = f"; it looks like FORMAT={formats.detect(src)}"
        except DatasetError:
            found = ""
        missing = getattr(fmt_module, "missing", None)
        why = f" ({missing(src)})" if missing is not None and missing(src) else ""
        raise DatasetError(f"this is not a {fmt} dataset{why}{found}", where=str(src),
                           hint="omit FORMAT to detect the format, or fix the layout (see README)")
    LOGGER.info("data[%s]: reading %s", fmt, src)
    entries = _refuse_outside(list(fmt_module.read(src, issues)), dataset_root(src), settings.allow_outside, issues)
    entries = _handle_unannotated(_dedupe(entries, issues), settings.negatives, issues)
    rejected = Counter(issue.image for issue in issues.issues if issue.action == "skipped_box")

    known = labelmap.read(settings.label_map) if settings.label_map else None
    labels = [_labels_of(entry) for entry in entries]
    names = _label_names(fmt_module, src, settings, known, labels) if entries else []
    label_ids = {name: index for index, name in enumerate(names, start=1)}
    planned, split_info = _plan_splits(entries, labels, settings)

    # write everything into a temporary sibling of the output, then swap it in
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        tasks, shard_files = [], {}
        for split_name, items in planned.items():
            count = _shard_count(settings.shards, items, workers)
            shard_files[split_name] = [tfrecord.shard_name(split_name, i, count) for i in range(count)]
            for index, name in enumerate(shard_files[split_name]):
                chunk = items[index * len(items) // count:(index + 1) * len(items) // count]
                tasks.append((split_name, ShardTask(tmp / name, chunk, settings.verify, label_ids, known,
                                                    [rejected[entry.name] for entry in chunk],
                                                    settings.write_records)))
        results = _run_tasks([task for _, task in tasks], workers, len(entries), fmt)
        splits: dict[str, list[CleanImage]] = {name: [] for name in planned}
        for (split_name, task), result in zip(tasks, results):
            splits[split_name].extend(CleanImage(task.entries[position], info, boxes, digest, size)
                                      for position, info, boxes, digest, size in result.images)
            issues.extend(result.issues)
        written = [(c.entry.name, c.sha256, c.stored_size) for items in splits.values() for c in items]
        _note_content_duplicates(written, splits, issues)
        expect_val = settings.split == "source" or settings.val_fraction > 0
        warnings = report_module.dataset_warnings(splits, label_ids, settings.min_examples, expect_val)
        failure = _failure(entries, splits, settings, issues, warnings)
        kept_shards = shard_files if settings.write_records and failure is None else {}
        report = report_module.build(src=src, fmt=fmt, settings=settings, splits=splits, shard_files=kept_shards,
                                     label_ids=label_ids, issues=issues, written=written, entries=len(entries),
                                     seconds=time.monotonic() - started, split=split_info, warnings=warnings)
        if failure is not None:
            kept = _keep_failed_report(report, out)
            report_module.print_summary(report, None, kept)
            failure.hint = f"{failure.hint}; every reason is in {kept}.json (and .html)"
            raise failure
        if settings.write_records:
            labelmap.write(tmp / "label_map.pbtxt", names)
            for split_name, items in splits.items():
                _write_csv(tmp / "tf_csv" / f"{split_name}.csv", items)
        report_module.write_samples(tmp, splits, report)
        report_module.write(tmp, report)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for suffix in (".json", ".html"):  # a failure report of an earlier run no longer describes OUT
        out.with_name(out.name + FAILED_REPORT_SUFFIX + suffix).unlink(missing_ok=True)
    report_module.print_summary(report, out, out / "report")
    return ConvertResult(out=out, report=report)


def _plan_splits(entries: list[ImageEntry], labels: list[set[str]],
                 settings: DataSettings) -> tuple[dict[str, list[ImageEntry]], dict[str, str]]:
    """The images of each split, and how the split was made (for the log and the report).

    auto: the source's own split when it states one (test kept as test), else random. When the source
    has no val, auto draws val from the source's train (test untouched); source does not.
    """
    stated = sorted({entry.subset for entry in entries if entry.subset})
    mode = settings.split if settings.split != "auto" else ("source" if stated else "random")
    if mode == "random":
        train_idx, val_idx = split_indices(labels, settings.val_fraction, settings.seed)
        return ({"train": [entries[i] for i in train_idx], "val": [entries[i] for i in val_idx]},
                {"mode": "random", "description": f"random, seeded (seed {settings.seed}) and class-aware, "
                                                  f"{settings.val_fraction:g} of the images in val"})
    if not stated:
        raise ConfigError("split=source, but this dataset states no train/val split",
                          where=str(settings.src), hint="use SPLIT=random or SPLIT=auto (the default)")
    planned: dict[str, list[ImageEntry]] = {"train": [], "val": [], "test": []}
    for entry in entries:
        planned[entry.subset or "train"].append(entry)
    description = f"the dataset's own split ({', '.join(stated)}), kept; SPLIT=random re-splits"
    unassigned = sum(1 for entry in entries if not entry.subset)
    if unassigned:
        description += f"; {unassigned} image(s) the source puts in no split are in train"
    if settings.split == "auto" and not planned["val"] and settings.val_fraction > 0:
        in_train = [i for i, entry in enumerate(entries) if (entry.subset or "train") == "train"]
        train_idx, val_idx = split_indices([labels[i] for i in in_train], settings.val_fraction, settings.seed)
        planned["train"] = [entries[in_train[i]] for i in train_idx]
        planned["val"] = [entries[in_train[i]] for i in val_idx]
        description += (f"; it has no val, so val is drawn from its train ({settings.val_fraction:g}, seeded, "
                        "class-aware)")
    if not planned["test"]:
        del planned["test"]
    return planned, {"mode": "source", "description": description}


def _run_tasks(tasks: list[ShardTask], workers: int, total: int, fmt: str) -> list[ShardResult]:
    """Write every shard in worker processes; results in task order."""
    if not tasks:
        return []
    # Big shards first so the last worker to finish is not the one that started the biggest job last.
    order = sorted(range(len(tasks)), key=lambda i: -len(tasks[i].entries))
    counter = multiprocessing.get_context("fork").Value("i", 0)
    with _pool(min(workers, len(tasks)), counter) as pool:
        pending = {i: pool.apply_async(_write_shard, (tasks[i],)) for i in order}
        with progress(total=total, desc=f"data[{fmt}]: writing") as bar:
            while not all(p.ready() for p in pending.values()):
                time.sleep(0.1)
                bar.update(counter.value - bar.n)
            bar.update(counter.value - bar.n)
        return [pending[i].get() for i in range(len(tasks))]


def _failure(entries: list[ImageEntry], splits: dict[str, list[CleanImage]], settings: DataSettings,
             issues: IssueLog, warnings: list[dict[str, Any]]) -> DatasetError | StrictModeError | None:
    """Why this run must not write its output, if it must not."""
    if not entries:
        return DatasetError("the dataset has no images", where=str(settings.src),
                            hint="check the annotation files list images, and that FORMAT is right")
    if not any(splits.values()):
        return DatasetError("no usable images: every image was skipped", where=str(settings.src),
                            hint="see the reasons above; most often the image files are not where the "
                                 "annotations say")
    if settings.strict and (issues.skips or warnings):
        return StrictModeError(_strict_message(issues, warnings), where=str(settings.src),
                               hint="fix the listed items, or run without STRICT=1 to skip them")
    return None


def _keep_failed_report(report: dict[str, Any], out: Path) -> Path:
    """Write the report of a failed run beside the output it did not write; returns the path without suffix."""
    base = out.with_name(out.name + FAILED_REPORT_SUFFIX)
    report_module.write_files(base, report)
    return base


def _note_content_duplicates(written: list[tuple[str, str, int]], splits: dict[str, list[CleanImage]],
                             issues: IssueLog) -> None:
    """Byte-identical images under different names: fine for training, but a leak if across splits.
    Every copy after the first is noted, each note naming all the copies."""
    split_of = {c.entry.name: name for name, items in splits.items() for c in items}
    where_of = {c.entry.name: c.entry.where for items in splits.values() for c in items}
    by_digest: dict[str, list[str]] = {}
    for name, digest, _ in written:
        by_digest.setdefault(digest, []).append(name)
    for names in by_digest.values():
        if len(names) > 1:
            names = sorted(names)
            across = len({split_of[n] for n in names}) > 1
            copies = f"{', '.join(names[:-1])} and {names[-1]}"
            for name in names[1:]:
                issues.note(Reason.DUPLICATE_IMAGE_CONTENT, where_of[name],
                            f"same pixels as {names[0]} ({len(names)} byte-identical files: {copies})"
                            + ("; they are in different splits (val leaks into train): remove the copies"
                               if across else ""), name)


def _strict_message(issues: IssueLog, warnings: list[dict[str, Any]]) -> str:
    counts = Counter(i.reason for i in issues.skips)
    lines = []
    if issues.skips:
        lines.append(f"STRICT=1: {len(issues.skips)} item(s) would be skipped "
                     f"({', '.join(f'{n} {r}' for r, n in counts.most_common())}):")
        for issue in issues.skips[:10]:
            lines.append(f"  {issue.where}: {issue.message}")
        if len(issues.skips) > 10:
            lines.append(f"  ... and {len(issues.skips) - 10} more")
    if warnings:
        lines.append(f"STRICT=1: {len(warnings)} warning(s):")
        lines.extend(f"  {warning['message']}" for warning in warnings)
    return "\n".join(lines)
