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
from odstack.records import IssueLog

REPORT_VERSION = 1
GRID = 10  # box-size heat map cells per axis
HTML_ISSUE_ROWS = 2000  # the rest stays in report.json


def build(*, src: Path, fmt: str, settings, splits: dict, shard_files: dict[str, list[str]],
          label_ids: dict[str, int], issues: IssueLog, written: list[tuple[str, str, int]], entries: int,
          seconds: float) -> dict[str, Any]:
    """Everything a user (or a later stage) needs to know about the converted dataset."""
    stored_bytes = {name: size for name, _, size in written}
    split_stats: dict[str, Any] = {}
    class_stats: dict[str, dict[str, Any]] = {
        name: {"id": index, "boxes": {}, "images": {}} for name, index in label_ids.items()}
    box_w, box_h = [], []
    size_grid = [[0] * GRID for _ in range(GRID)]
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
    }


def write(directory: Path, report: dict[str, Any]) -> None:
    """report.json and report.html into ``directory``."""
    write_files(directory / "report", report)


def write_files(base: Path, report: dict[str, Any]) -> None:
    """``<base>.json`` and ``<base>.html``, each written whole or not at all."""
    write_json(base.with_name(base.name + ".json"), report)
    write_text_atomic(base.with_name(base.name + ".html"), render_html(report))


def render_html(report: dict[str, Any]) -> str:
    """A one-file page: totals, splits, boxes per class, box sizes, issues."""
    esc = html.escape
    totals, classes = report["totals"], report["classes"]
    most = max([sum(c["boxes"].values()) for c in classes.values()] + [1])
    class_rows = "".join(
        f"<tr><td>{info['id']}</td><td>{esc(name)}</td><td class=n>{info['boxes'].get('train', 0)}</td>"
        f"<td class=n>{info['boxes'].get('val', 0)}</td><td class=n>{info['images'].get('train', 0)}</td>"
        f"<td class=n>{info['images'].get('val', 0)}</td><td><span class=bar style='width:"
        f"{100 * info['boxes'].get('train', 0) / most:.1f}%'></span><span class='bar val' style='width:"
        f"{100 * info['boxes'].get('val', 0) / most:.1f}%'></span></td></tr>" for name, info in classes.items())
    split_rows = "".join(
        f"<tr><td>{esc(name)}</td><td class=n>{s['images']}</td><td class=n>{s['boxes']}</td>"
        f"<td class=n>{s['negatives']}</td><td class=n>{s['bytes'] / 1e6:.1f}</td><td>{len(s['shards'])}</td></tr>"
        for name, s in report["splits"].items())
    grid = report["box_size_grid"]
    peak = max([max(row) for row in grid] + [1])
    cells = "".join(f"<div title='{n} boxes' style='opacity:{0.08 + 0.92 * n / peak if n else 0:.2f}'></div>"
                    for row in reversed(grid) for n in row)
    issue_rows = "".join(
        f"<tr><td>{esc(i['action'])}</td><td>{esc(i['reason'])}</td><td>{esc(i['where'])}</td>"
        f"<td>{esc(i['message'])}</td></tr>" for i in report["issues"][:HTML_ISSUE_ROWS])
    more = len(report["issues"]) - HTML_ISSUE_ROWS
    counts = ", ".join(f"{n} {esc(reason)}" for reasons in report["issue_counts"].values()
                       for reason, n in reasons.items()) or "none"
    return f"""<!doctype html><html><head><meta charset=utf-8><title>odstack data report</title><style>
body{{font:14px system-ui,sans-serif;margin:2em;max-width:75em}} table{{border-collapse:collapse;margin:.5em 0 1.5em}}
td,th{{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}} td.n{{text-align:right}}
.bar{{display:inline-block;height:10px;background:#1f77b4}} .bar.val{{background:#ff7f0e}}
.grid{{display:grid;grid-template-columns:repeat({GRID},22px);gap:1px;background:#eee;width:max-content}}
.grid div{{height:22px;background:#1f77b4}}</style></head><body>
<h1>Data report</h1>
<p><b>{esc(report['source']['path'])}</b> ({esc(report['source']['format'])}): {totals['images']} images,
{totals['boxes']} boxes, {totals['negatives']} negatives, {len(classes)} classes;
skipped {totals['skipped_images']} images and {totals['skipped_boxes']} boxes, clipped {totals['fixed_boxes']} boxes.</p>
<h2>Splits</h2><table><tr><th>split<th>images<th>boxes<th>negatives<th>MB<th>shards</tr>{split_rows}</table>
<h2>Classes</h2><table><tr><th>id<th>name<th>train boxes<th>val boxes<th>train images<th>val images
<th>boxes (<span style=color:#1f77b4>train</span>, <span style=color:#ff7f0e>val</span>)</tr>{class_rows}</table>
<h2>Box sizes</h2><p>Box width (left to right) and height (bottom to top) as a fraction of the image, 0 to 1.</p>
<div class=grid>{cells}</div>
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
    lines.append(f"  details: {report_base}.html (open in a browser) and {report_base}.json")
    LOGGER.info("\n".join(lines))
