"""report.json, report.html and the one-screen summary of a data run.

The picture of the dataset is a self-contained HTML page (bars and a box-size heat map in plain
HTML/CSS, every issue in a table) rather than a matplotlib PNG: importing and drawing with matplotlib
cost more than converting a few thousand images, and a page can list every skipped item.
"""
from __future__ import annotations

import html
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from odstack.fsio import write_json, write_text_atomic
from odstack.log import LOGGER
from odstack.annotations import IssueLog

REPORT_VERSION = 2  # 2: warnings, split, test split, image sizes, samples
GRID = 10  # box-size heat map cells per axis
HTML_ISSUE_ROWS = 2000  # the rest stays in report.json
IMBALANCE_RATIO = 10  # most / fewest boxes per class above this is a warning
SIZE_SPREAD = 16  # largest / smallest image area (pixels) above this is a warning (4x each side)
SIZE_BINS = 10  # image-size histogram bars (by the longer side, in pixels)
SPLIT_COLOURS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}
SAMPLES_DIR = "report_samples"  # thumbnails beside report.html, so the page opens offline
SAMPLES_PER_CLASS = 4
SAMPLE_CLASSES = 50  # classes with a mosaic; the rest are in the tables only
THUMB_SIZE = 240  # longer side of a thumbnail, pixels


def write_samples(directory: Path, splits: dict, report: dict[str, Any]) -> None:
    """Thumbnails of a few images per class with every box drawn (the class's own in red), into
    ``directory/report_samples/``; their paths go to report["samples"]."""
    import io

    from PIL import Image, ImageDraw

    from odstack import images

    chosen: dict[str, list] = {}
    for items in splits.values():
        for item in items:
            for label in dict.fromkeys(box.label for box in item.boxes):
                picks = chosen.setdefault(label, [])
                if len(picks) < SAMPLES_PER_CLASS and (len(chosen) <= SAMPLE_CLASSES or picks):
                    picks.append(item)
    if not chosen:
        return
    (directory / SAMPLES_DIR).mkdir(exist_ok=True)
    ids = {name: info["id"] for name, info in report["classes"].items()}
    for label in sorted(chosen, key=lambda name: ids.get(name, 0)):
        paths = []
        for number, item in enumerate(chosen[label]):
            scale = THUMB_SIZE / max(item.info.width, item.info.height)
            size = (max(1, round(item.info.width * scale)), max(1, round(item.info.height * scale)))
            try:  # the bytes as stored (orientation applied), so the boxes sit where the trainer sees them
                stored = images.stored_bytes(item.entry.image.read_bytes(), item.info)
                with Image.open(io.BytesIO(stored)) as opened:
                    opened.draft("RGB", size)  # JPEG: decode at 1/2..1/8 scale, much faster for a thumbnail
                    picture = opened.convert("RGB").resize(size)
            except (OSError, ValueError):
                continue  # changed since it was written: a missing thumbnail is not worth failing for
            draw = ImageDraw.Draw(picture)
            for box in item.boxes:
                draw.rectangle([box.xmin * scale, box.ymin * scale, box.xmax * scale, box.ymax * scale],
                               outline="#ff2020" if box.label == label else "#20a0ff", width=2)
            name = f"{SAMPLES_DIR}/{ids.get(label, 0)}-{number}.jpg"
            picture.save(directory / name, "JPEG", quality=85)
            paths.append(name)
        report["samples"][label] = paths


def dataset_warnings(splits: dict, label_ids: dict[str, int], min_examples: int,
                     expect_val: bool) -> list[dict[str, Any]]:
    """What makes this dataset a poor training/evaluation set, though nothing in it is invalid."""
    warnings: list[dict[str, Any]] = []
    boxes = {split: Counter(box.label for item in items for box in item.boxes) for split, items in splits.items()}
    total = Counter()
    for counter in boxes.values():
        total.update(counter)
    val = splits.get("val", [])
    if expect_val and not val and any(splits.values()):
        warnings.append({"kind": "val_empty", "message": "val is empty: training has nothing to evaluate on "
                         "(SPLIT=random or a val split in the source fixes it)"})
    for name in label_ids:
        if val and total[name] and not boxes.get("val", {}).get(name):
            warnings.append({"kind": "val_missing_class", "class": name,
                             "message": f"val has no boxes of class {name!r}: its accuracy cannot be measured"})
    for name in label_ids:
        if total[name] < min_examples:
            warnings.append({"kind": "rare_class", "class": name,
                             "message": f"class {name!r} has {total[name]} box(es), fewer than {min_examples} "
                                        "(MIN_EXAMPLES): too few to learn it"})
    counted = [(n, name) for name, n in total.items() if n]
    if len(counted) > 1 and max(counted)[0] > IMBALANCE_RATIO * min(counted)[0]:
        (most, most_name), (fewest, fewest_name) = max(counted), min(counted)
        warnings.append({"kind": "class_imbalance",
                         "message": f"heavy class imbalance: {most_name!r} has {most} boxes, {fewest_name!r} "
                                    f"{fewest} (more than {IMBALANCE_RATIO}x)"})
    sizes = [(item.info.width * item.info.height, item.info.width, item.info.height)
             for items in splits.values() for item in items]
    if sizes and max(sizes)[0] > SIZE_SPREAD * min(sizes)[0]:
        (_, w0, h0), (_, w1, h1) = min(sizes), max(sizes)
        warnings.append({"kind": "image_sizes_vary",
                         "message": f"images of very different sizes, from {w0}x{h0} to {w1}x{h1} pixels: "
                                    "small objects of the big ones may vanish when all are resized alike"})
    return warnings


def build(*, src: Path, fmt: str, settings, splits: dict, shard_files: dict[str, list[str]],
          label_ids: dict[str, int], issues: IssueLog, written: list[tuple[str, str, int]], entries: int,
          seconds: float, split: dict[str, str], warnings: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything a user (or a later stage) needs to know about the converted dataset."""
    stored_bytes = {name: size for name, _, size in written}
    split_stats: dict[str, Any] = {}
    class_stats: dict[str, dict[str, Any]] = {
        name: {"id": index, "boxes": {}, "images": {}} for name, index in label_ids.items()}
    box_w, box_h = [], []
    size_grid = [[0] * GRID for _ in range(GRID)]
    longer_sides = [max(item.info.width, item.info.height) for items in splits.values() for item in items]
    for split_name, items in splits.items():
        boxes = sum(len(item.boxes) for item in items)
        split_stats[split_name] = {
            "images": len(items),
            "boxes": boxes,
            "negatives": sum(1 for item in items if not item.boxes),
            "shards": shard_files.get(split_name, []),
            "bytes": sum(stored_bytes.get(item.entry.name, 0) for item in items),
        }
        per_class_boxes, per_class_images = Counter(), Counter()
        for item in items:
            for box in item.boxes:
                per_class_boxes[box.label] += 1
                w, h = (box.xmax - box.xmin) / item.info.width, (box.ymax - box.ymin) / item.info.height
                box_w.append(w)
                box_h.append(h)
                size_grid[min(GRID - 1, int(h * GRID))][min(GRID - 1, int(w * GRID))] += 1
            for label in {box.label for box in item.boxes}:
                per_class_images[label] += 1
        for name in class_stats:
            class_stats[name]["boxes"][split_name] = per_class_boxes[name]
            class_stats[name]["images"][split_name] = per_class_images[name]

    by_reason: dict[str, dict[str, int]] = defaultdict(Counter)
    for issue in issues.issues:
        by_reason[issue.action][issue.reason] += 1
    images_out = sum(s["images"] for s in split_stats.values())
    return {
        "version": REPORT_VERSION,
        "source": {"path": str(src), "format": fmt, "entries": entries},
        "settings": {key: (str(value) if isinstance(value, Path) else value)
                     for key, value in vars(settings).items()},
        "label_map": "label_map.pbtxt",
        "split": split,
        "warnings": warnings,
        "classes": class_stats,
        "splits": split_stats,
        "totals": {
            "images": images_out,
            "boxes": sum(s["boxes"] for s in split_stats.values()),
            "negatives": sum(s["negatives"] for s in split_stats.values()),
            "skipped_images": issues.count("skipped_image"),
            "skipped_boxes": issues.count("skipped_box"),
            "fixed_boxes": issues.count("fixed"),
        },
        "box_size": {
            "width_median": statistics.median(box_w) if box_w else None,
            "height_median": statistics.median(box_h) if box_h else None,
        },
        "issue_counts": {action: dict(counter) for action, counter in sorted(by_reason.items())},
        "issues": [issue.to_json() for issue in issues.issues],
        "seconds": round(seconds, 3),
        "images_per_second": round(images_out / seconds, 1) if seconds > 0 else None,
        "box_size_grid": size_grid,
        "image_size_histogram": _histogram(longer_sides),
        "samples": {},
    }


def _histogram(values: list[int]) -> list[dict[str, int]]:
    """Counts of ``values`` in SIZE_BINS equal ranges from the smallest to the largest."""
    if not values:
        return []
    low, high = min(values), max(values)
    step = max(1, -(-(high - low + 1) // SIZE_BINS))
    counts = Counter((v - low) // step for v in values)
    return [{"from": low + i * step, "to": low + (i + 1) * step - 1, "images": counts[i]}
            for i in range(max(counts) + 1)]


def write(directory: Path, report: dict[str, Any]) -> None:
    """report.json and report.html into ``directory``."""
    write_files(directory / "report", report)


def write_files(base: Path, report: dict[str, Any]) -> None:
    """``<base>.json`` and ``<base>.html``, each written whole or not at all."""
    write_json(base.with_name(base.name + ".json"), report)
    write_text_atomic(base.with_name(base.name + ".html"), render_html(report))


def render_html(report: dict[str, Any]) -> str:
    """A one-file page (plus its sample thumbnails beside it): totals, warnings, splits, boxes per class,
    box sizes, image sizes, sample images per class, issues."""
    esc = html.escape
    totals, classes = report["totals"], report["classes"]
    split_names = list(report["splits"])
    most = max([sum(c["boxes"].values()) for c in classes.values()] + [1])
    class_rows = "".join(
        f"<tr><td>{info['id']}</td><td>{esc(name)}</td>"
        + "".join(f"<td class=n>{info['boxes'].get(split, 0)}</td>" for split in split_names)
        + "".join(f"<td class=n>{info['images'].get(split, 0)}</td>" for split in split_names)
        + "<td>" + "".join(f"<span class=bar style='background:{SPLIT_COLOURS.get(split, '#888')};width:"
                           f"{100 * info['boxes'].get(split, 0) / most:.1f}%'></span>" for split in split_names)
        + "</td></tr>" for name, info in classes.items())
    split_rows = "".join(
        f"<tr><td>{esc(name)}</td><td class=n>{s['images']}</td><td class=n>{s['boxes']}</td>"
        f"<td class=n>{s['negatives']}</td><td class=n>{s['bytes'] / 1e6:.1f}</td><td>{len(s['shards'])}</td></tr>"
        for name, s in report["splits"].items())
    legend = ", ".join(f"<span style=color:{SPLIT_COLOURS.get(split, '#888')}>{esc(split)}</span>"
                       for split in split_names)
    grid = report["box_size_grid"]
    peak = max([max(row) for row in grid] + [1])
    cells = "".join(f"<div title='{n} boxes' style='opacity:{0.08 + 0.92 * n / peak if n else 0:.2f}'></div>"
                    for row in reversed(grid) for n in row)
    ticks = "".join(f"<span>{i / GRID:g}</span>" for i in range(0, GRID + 1, 2))
    histogram = report.get("image_size_histogram", [])
    tallest = max([b["images"] for b in histogram] + [1])
    size_rows = "".join(f"<tr><td class=n>{b['from']}&ndash;{b['to']} px</td><td class=n>{b['images']}</td>"
                        f"<td><span class=bar style='width:{300 * b['images'] / tallest:.0f}px'></span></td></tr>"
                        for b in histogram)
    samples = "".join(
        f"<h3>{esc(name)}</h3><div class=mosaic>"
        + "".join(f"<img src='{esc(path)}' alt='{esc(name)}' loading=lazy>" for path in paths) + "</div>"
        for name, paths in report.get("samples", {}).items())
    warning_items = "".join(f"<li>{esc(w['message'])}</li>" for w in report.get("warnings", []))
    issue_rows = "".join(
        f"<tr><td>{esc(i['action'])}</td><td>{esc(i['reason'])}</td><td>{esc(i['where'])}</td>"
        f"<td>{esc(i['message'])}</td></tr>" for i in report["issues"][:HTML_ISSUE_ROWS])
    more = len(report["issues"]) - HTML_ISSUE_ROWS
    counts = ", ".join(f"{n} {esc(reason)}" for reasons in report["issue_counts"].values()
                       for reason, n in reasons.items()) or "none"
    split_info = report.get("split") or {}
    return f"""<!doctype html><html><head><meta charset=utf-8><title>odstack data report</title><style>
body{{font:14px system-ui,sans-serif;margin:2em;max-width:75em}} table{{border-collapse:collapse;margin:.5em 0 1.5em}}
td,th{{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}} td.n{{text-align:right}}
.bar{{display:inline-block;height:10px;background:#1f77b4}}
.plot{{display:grid;grid-template-columns:auto auto;gap:4px;width:max-content}}
.grid{{display:grid;grid-template-columns:repeat({GRID},22px);gap:1px;background:#eee;width:max-content}}
.grid div{{height:22px;background:#1f77b4}}
.ylabel{{writing-mode:vertical-rl;transform:rotate(180deg);text-align:center}}
.xticks{{display:flex;justify-content:space-between;width:{GRID * 23}px;font-size:11px}}
.mosaic img{{height:120px;margin:2px;border:1px solid #ccc}} .warn{{color:#a50}}</style></head><body>
<h1>Data report</h1>
<p><b>{esc(report['source']['path'])}</b> ({esc(report['source']['format'])}): {totals['images']} images,
{totals['boxes']} boxes, {totals['negatives']} negatives, {len(classes)} classes;
skipped {totals['skipped_images']} images and {totals['skipped_boxes']} boxes, clipped {totals['fixed_boxes']} boxes.</p>
<p>Split: {esc(split_info.get('description', ''))}</p>
{f"<h2 class=warn>Warnings</h2><ul class=warn>{warning_items}</ul>" if warning_items else ""}
<h2>Splits</h2><table><tr><th>split<th>images<th>boxes<th>negatives<th>MB<th>shards</tr>{split_rows}</table>
<h2>Classes</h2><table><tr><th>id<th>name{"".join(f"<th>{esc(s)} boxes" for s in split_names)}
{"".join(f"<th>{esc(s)} images" for s in split_names)}<th>boxes ({legend})</tr>{class_rows}</table>
<h2>Box sizes</h2><p>How many boxes have each size, as a fraction of their image (darker: more boxes).</p>
<div class=plot><div class=ylabel>box height / image height (0 at the bottom to 1)</div>
<div><div class=grid>{cells}</div><div class=xticks>{ticks}</div>
<div>box width / image width (0 to 1)</div></div></div>
<h2>Image sizes</h2><p>Images by their longer side, in pixels.</p>
<table><tr><th>longer side<th>images<th></tr>{size_rows}</table>
{f"<h2>Samples per class</h2><p>A few images of each class with all their boxes drawn.</p>{samples}" if samples else ""}
<h2>Issues</h2><p>{counts}</p><table><tr><th>action<th>reason<th>where<th>message</tr>{issue_rows}</table>
{f"<p>... and {more} more in report.json</p>" if more > 0 else ""}
</body></html>
"""


def print_summary(report: dict[str, Any], out: Path | None, report_base: Path) -> None:
    """The one-screen summary at the end of a run; ``out`` None: the run failed and wrote no records."""
    totals, splits = report["totals"], report["splits"]
    lines = [f"data[{report['source']['format']}]: {report['source']['path']} -> "
             f"{out if out is not None else 'nothing written (the run failed)'}  "
             f"({report['seconds']:.1f} s, {report['images_per_second']} images/s)"]
    if report.get("split"):
        lines.append(f"  split: {report['split']['description']}")
    for name, stats in splits.items():
        lines.append(f"  {name:<5} {stats['images']:>7} images {stats['boxes']:>8} boxes "
                     f"{stats['negatives']:>6} negatives  {len(stats['shards'])} shard(s)")
    lines.append(f"  classes {len(report['classes'])}: "
                 + ", ".join(f"{name}={info['id']}" for name, info in list(report["classes"].items())[:8])
                 + (" ..." if len(report["classes"]) > 8 else ""))
    lines.append(f"  skipped: {totals['skipped_images']} images, {totals['skipped_boxes']} boxes; "
                 f"clipped {totals['fixed_boxes']} boxes")
    for action in ("skipped_image", "skipped_box"):
        for reason, count in report["issue_counts"].get(action, {}).items():
            example = next(i for i in report["issues"] if i["action"] == action and i["reason"] == reason)
            lines.append(f"    {count:>5} x {reason}: e.g. {example['where']}: {example['message']}")
    if report.get("warnings"):
        lines.append(f"  warnings ({len(report['warnings'])}):")
        lines.extend(f"    {warning['message']}" for warning in report["warnings"])
    lines.append(f"  details: {report_base}.html (open in a browser) and {report_base}.json")
    LOGGER.info("\n".join(lines))
