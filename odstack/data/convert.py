"""The data stage: an annotated dataset -> validated, split, sharded OD API TFRecords + label map + report.

Flow (each step's problems go to one IssueLog, so report.json lists every skip with file and reason):

1. read     the format module yields ImageEntry objects (format auto-detected unless given)
2. dedupe   the same image annotated twice is kept once (first wins; the second is reported)
3. probe    in parallel, each image's header (+ end marker): size, format, EXIF orientation
4. validate boxes against the real image size: clip, or skip with a reason
5. split    seeded and class-aware, or the source's own split (split=source)
6. write    in parallel, one worker per shard, into a temporary directory next to the output;
            the directory replaces the output only when everything succeeded
"""
from __future__ import annotations

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
from odstack.data.split import split_indices
from odstack.errors import ConfigError, DatasetError, StrictModeError
from odstack.log import LOGGER, progress
from odstack.records import ImageEntry, IssueLog, Reason

REPORT_NAME = "report.json"
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
    split: str = "random"  # random | source
    strict: bool = False
    label_map: Path | None = None
    verify: str = "fast"  # fast | decode | none
    workers: int | str = "auto"


@dataclass
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


@dataclass
class CleanImage:
    entry: ImageEntry
    info: images.ImageInfo
    boxes: list[CleanBox] = field(default_factory=list)


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


def _pool(workers: int):
    # fork: workers inherit the imported modules; this process never imports TensorFlow.
    return multiprocessing.get_context("fork").Pool(workers)


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
    if settings.split not in ("random", "source"):
        raise ConfigError(f"split={settings.split!r} is not one of: random, source")
    if settings.verify not in ("fast", "decode", "none"):
        raise ConfigError(f"verify={settings.verify!r} is not one of: fast, decode, none")
    if not 0 <= settings.val_fraction < 1:
        raise ConfigError(f"val_fraction={settings.val_fraction} must be in [0, 1)")


def _dedupe(entries: list[ImageEntry], issues: IssueLog) -> list[ImageEntry]:
    seen: dict[Path, ImageEntry] = {}
    kept = []
    for entry in entries:
        key = entry.image.resolve()
        if key in seen:
            issues.skip_image(Reason.DUPLICATE_ENTRY, entry.where,
                              f"image already annotated at {seen[key].where}; this entry is ignored "
                              "(merge the two annotations if both are needed)", entry.name)
            continue
        seen[key] = entry
        kept.append(entry)
    return kept


def _probe_one(args: tuple[Path, str, tuple[int, int] | None]):
    path, verify, declared = args
    try:
        return images.probe(path, verify, declared)
    except images.ImageProblem as problem:
        return problem.reason, problem.message


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
        coords = f"({box.xmin}, {box.ymin}, {box.xmax}, {box.ymax})"
        if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)):
            skip(Reason.INVALID_VALUE, f"box coordinates {coords} are not finite numbers")
            continue
        if xmin > xmax or ymin > ymax:
            skip(Reason.INVERTED_BOX, f"box {coords} has min > max; swap the coordinates in the source")
            continue
        if xmin == xmax or ymin == ymax:
            skip(Reason.ZERO_AREA_BOX, f"box {coords} has zero width or height")
            continue
        if xmax <= 0 or ymax <= 0 or xmin >= width or ymin >= height:
            skip(Reason.BOX_OUTSIDE_IMAGE, f"box {coords} lies entirely outside the {width}x{height} image")
            continue
        clipped = (max(0.0, xmin), max(0.0, ymin), min(float(width), xmax), min(float(height), ymax))
        if clipped != (xmin, ymin, xmax, ymax):
            issues.fixed(Reason.BOX_CLIPPED, box.where,
                         f"box {coords} extends past the {width}x{height} image; clipped to its border", entry.name)
        key = (label,) + clipped
        if key in seen:
            skip(Reason.DUPLICATE_BOX, f"identical {label!r} box {coords} appears twice; kept once")
            continue
        seen.add(key)
        clean.append(CleanBox(label, *clipped, box.difficult, box.truncated, box.is_crowd))
    return clean


def _label_names(fmt_module, src: Path, settings: DataSettings, clean: list[CleanImage]) -> list[str]:
    """Label map order: the given label map, else the source's declared order, else sorted names."""
    if settings.label_map is not None:
        mapping = labelmap.read(settings.label_map)
        ids = sorted(mapping.values())
        if ids != list(range(1, len(ids) + 1)):
            raise DatasetError("label map ids must be 1..N without gaps", where=str(settings.label_map),
                               hint="renumber the items 1, 2, 3, ...")
        return sorted(mapping, key=mapping.get)
    used = sorted({box.label for image in clean for box in image.boxes})
    declared = list(fmt_module.labels(src) or [])
    return declared + [name for name in used if name not in declared]


def _shard_count(setting: int | str, items: Sequence[CleanImage], sizes: dict[Path, int], workers: int) -> int:
    if not items:
        return 0
    if setting != "auto":
        return max(1, min(int(setting), len(items)))
    total = sum(sizes.get(item.entry.image, 0) for item in items)
    by_size = math.ceil(total / SHARD_TARGET_BYTES)
    by_parallelism = min(workers, math.ceil(len(items) / IMAGES_PER_PARALLEL_SHARD))
    return max(1, by_size, by_parallelism)


# Shard writing runs in worker processes; the counter feeds the parent's progress bar.
_written_counter = None


def _init_worker(counter) -> None:
    global _written_counter
    _written_counter = counter


def _write_shard(task: tuple[Path, list[tuple[CleanImage, list[int]]]]) -> list[tuple[str, str, int]]:
    """Write one shard; returns (image name, sha256, stored bytes) per image."""
    path, items = task
    written = []
    with tfrecord.RecordWriter(path) as writer:
        for item, class_ids in items:
            data = images.stored_bytes(item.entry.image, item.info)
            digest = hashlib.sha256(data).hexdigest()
            width, height = item.info.width, item.info.height
            boxes = item.boxes
            writer.write(tfrecord.serialize_example(tfrecord.ExampleData(
                encoded=data, image_format=item.info.stored_format, width=width, height=height,
                filename=item.entry.name, source_id=item.entry.name, sha256=digest,
                xmin=[b.xmin / width for b in boxes], xmax=[b.xmax / width for b in boxes],
                ymin=[b.ymin / height for b in boxes], ymax=[b.ymax / height for b in boxes],
                class_text=[b.label for b in boxes], class_label=class_ids,
                difficult=[int(b.difficult) for b in boxes], truncated=[int(b.truncated) for b in boxes],
                is_crowd=[int(b.is_crowd) for b in boxes])))
            written.append((item.entry.name, digest, len(data)))
            if _written_counter is not None:
                with _written_counter.get_lock():
                    _written_counter.value += 1
    return written


def _write_csv(path: Path, items: list[CleanImage]) -> None:
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


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move ``tmp`` to ``out``; an existing (odstack-made) ``out`` is swapped out, then removed."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ stage

def convert(settings: DataSettings) -> ConvertResult:
    """Run the data stage; returns the output directory and the report (also written as report.json)."""
    started = time.monotonic()
    _check_paths(settings)
    src = settings.src
    workers = _worker_count(settings.workers)
    issues = IssueLog()

    fmt = formats.detect(src) if settings.format in ("auto", "", None) else settings.format
    fmt_module = formats.get(fmt)
    if settings.format not in ("auto", "", None) and not fmt_module.detect(src):
        try:
            found = f"; it looks like FORMAT={formats.detect(src)}"
        except DatasetError:
            found = ""
        raise DatasetError(f"this is not a {fmt} dataset{found}", where=str(src),
                           hint="omit FORMAT to detect the format, or fix the layout (see README)")
    LOGGER.info("data[%s]: reading %s", fmt, src)
    entries = _dedupe(list(fmt_module.read(src, issues)), issues)
    if not entries:
        raise DatasetError("the dataset has no images", where=str(src),
                           hint="check the annotation files list images, and that FORMAT is right")

    # probe images in parallel (header + end marker only unless verify=decode)
    jobs = [(e.image, settings.verify, e.declared_size) for e in entries]
    clean: list[CleanImage] = []
    known = labelmap.read(settings.label_map) if settings.label_map else None
    with _pool(workers) as pool:
        results = pool.imap(_probe_one, jobs, chunksize=32)
        for entry, result in progress(zip(entries, results), total=len(entries), desc=f"data[{fmt}]: checking"):
            if isinstance(result, tuple):
                reason, message = result
                hint = "; fix or remove the file" if reason != Reason.MISSING_IMAGE else \
                    f"; expected at {entry.image}"
                issues.skip_image(reason, entry.where, f"{message}{hint}", entry.name)
                continue
            if result.convert_reason:
                issues.note(Reason.IMAGE_CONVERTED, entry.where,
                            f"converted ({result.convert_reason}) to {result.stored_format.upper()} so the "
                            "stored pixels match the annotation", entry.name)
            clean.append(CleanImage(entry, result, _validate_boxes(entry, result, known, issues)))
    if not clean:
        raise DatasetError("no usable images: every image was skipped", where=str(src),
                           hint="see the reasons above; most often the image files are not where the "
                                "annotations say")

    names = _label_names(fmt_module, src, settings, clean)
    label_ids = {name: index for index, name in enumerate(names, start=1)}

    # split
    if settings.split == "source":
        if not any(item.entry.subset for item in clean):
            raise ConfigError("split=source, but this dataset states no train/val split",
                              where=str(src), hint="use SPLIT=random (the default)")
        splits = {"train": [c for c in clean if c.entry.subset != "val"],
                  "val": [c for c in clean if c.entry.subset == "val"]}
    else:
        train_idx, val_idx = split_indices([{b.label for b in c.boxes} for c in clean],
                                           settings.val_fraction, settings.seed)
        splits = {"train": [clean[i] for i in train_idx], "val": [clean[i] for i in val_idx]}

    if settings.strict and issues.skips:
        raise StrictModeError(_strict_message(issues), where=str(src),
                              hint="fix the listed items, or run without STRICT=1 to skip them")

    # write everything into a temporary sibling of the output, then swap it in
    out = settings.out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        sizes = {c.entry.image: c.entry.image.stat().st_size for c in clean}
        tasks, shard_files = [], {}
        for split_name, items in splits.items():
            count = _shard_count(settings.shards, items, sizes, workers)
            shard_files[split_name] = []
            for index in range(count):
                chunk = items[index * len(items) // count:(index + 1) * len(items) // count]
                name = tfrecord.shard_name(split_name, index, count)
                shard_files[split_name].append(name)
                tasks.append((tmp / name, [(c, [label_ids[b.label] for b in c.boxes]) for c in chunk]))
        counter = multiprocessing.get_context("fork").Value("i", 0)
        written: list[tuple[str, str, int]] = []
        with multiprocessing.get_context("fork").Pool(min(workers, len(tasks)), _init_worker, (counter,)) as pool:
            pending = pool.map_async(_write_shard, tasks)
            with progress(total=len(clean), desc=f"data[{fmt}]: writing") as bar:
                while not pending.ready():
                    pending.wait(0.2)
                    bar.update(counter.value - bar.n)
                bar.update(counter.value - bar.n)
            for shard in pending.get():
                written.extend(shard)
        labelmap.write(tmp / "label_map.pbtxt", names)
        for split_name, items in splits.items():
            _write_csv(tmp / "tf_csv" / f"{split_name}.csv", items)
        _note_content_duplicates(written, splits, issues)
        from odstack.data import report as report_module

        report = report_module.build(src=src, fmt=fmt, settings=settings, splits=splits, shard_files=shard_files,
                                     label_ids=label_ids, issues=issues, written=written, entries=len(entries),
                                     seconds=time.monotonic() - started)
        report_module.write(tmp, report)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report_module.print_summary(report, out)
    return ConvertResult(out=out, report=report)


def _note_content_duplicates(written: list[tuple[str, str, int]], splits: dict[str, list[CleanImage]],
                             issues: IssueLog) -> None:
    """Byte-identical images under different names: fine for training, but a leak if across splits."""
    split_of = {c.entry.name: name for name, items in splits.items() for c in items}
    where_of = {c.entry.name: c.entry.where for items in splits.values() for c in items}
    by_digest: dict[str, list[str]] = {}
    for name, digest, _ in written:
        by_digest.setdefault(digest, []).append(name)
    for names in by_digest.values():
        if len(names) > 1:
            names = sorted(names)
            across = len({split_of[n] for n in names}) > 1
            issues.note(Reason.DUPLICATE_IMAGE_CONTENT, where_of[names[1]],
                        f"same pixels as {names[0]}" + (" and they are in different splits (val leaks into "
                                                         "train); remove one copy" if across else ""), names[1])


def _strict_message(issues: IssueLog) -> str:
    counts = Counter(i.reason for i in issues.skips)
    lines = [f"STRICT=1: {len(issues.skips)} item(s) would be skipped "
             f"({', '.join(f'{n} {r}' for r, n in counts.most_common())}):"]
    for issue in issues.skips[:10]:
        lines.append(f"  {issue.where}: {issue.message}")
    if len(issues.skips) > 10:
        lines.append(f"  ... and {len(issues.skips) - 10} more")
    return "\n".join(lines)
