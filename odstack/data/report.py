"""report.json, report.png and the one-screen summary of a data run."""
from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from odstack.log import LOGGER
from odstack.records import IssueLog

REPORT_VERSION = 1


def build(*, src: Path, fmt: str, settings, splits: dict, shard_files: dict[str, list[str]],
          label_ids: dict[str, int], issues: IssueLog, written: list[tuple[str, str, int]], entries: int,
          seconds: float) -> dict[str, Any]:
    """Everything a user (or a later stage) needs to know about the converted dataset."""
    stored_bytes = {name: size for name, _, size in written}
    split_stats: dict[str, Any] = {}
    class_stats: dict[str, dict[str, Any]] = {
        name: {"id": index, "boxes": {}, "images": {}} for name, index in label_ids.items()}
    box_w, box_h = [], []
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
                box_w.append((box.xmax - box.xmin) / item.info.width)
                box_h.append((box.ymax - box.ymin) / item.info.height)
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
        "_plot": {"box_w": box_w, "box_h": box_h},
    }


def write(directory: Path, report: dict[str, Any]) -> None:
    """report.json and report.png into ``directory``."""
    plot_data = report.pop("_plot")
    (directory / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    _plot(directory / "report.png", report, plot_data)


def _plot(path: Path, report: dict[str, Any], plot_data: dict[str, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = report["classes"]
    names = list(classes)[:40]  # beyond 40 classes the bar chart stops being readable
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    ax = axes[0]
    positions = range(len(names))
    train = [classes[n]["boxes"].get("train", 0) for n in names]
    val = [classes[n]["boxes"].get("val", 0) for n in names]
    ax.bar(positions, train, label="train")
    ax.bar(positions, val, bottom=train, label="val")
    ax.set_xticks(list(positions), names, rotation=45, ha="right", fontsize=8)
    ax.set_title("boxes per class")
    ax.legend()
    ax = axes[1]
    if plot_data["box_w"]:
        ax.hist2d(plot_data["box_w"], plot_data["box_h"], bins=20, range=[[0, 1], [0, 1]], cmap="Blues")
    ax.set_xlabel("box width / image width")
    ax.set_ylabel("box height / image height")
    ax.set_title("box sizes")
    ax = axes[2]
    counts = report["issue_counts"]
    labels = [f"{action}:{reason}" for action, reasons in counts.items() for reason in reasons]
    values = [n for reasons in counts.values() for n in reasons.values()]
    ax.barh(range(len(values)), values, color="tab:red")
    ax.set_yticks(range(len(values)), labels, fontsize=8)
    ax.set_title("issues" if values else "issues: none")
    totals = report["totals"]
    fig.suptitle(f"{report['source']['path']} ({report['source']['format']}): {totals['images']} images, "
                 f"{totals['boxes']} boxes, {totals['negatives']} negatives, {len(classes)} classes")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def print_summary(report: dict[str, Any], out: Path) -> None:
    """The one-screen summary at the end of a run."""
    totals, splits = report["totals"], report["splits"]
    lines = [f"data[{report['source']['format']}]: {report['source']['path']} -> {out}  "
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
    lines.append(f"  details: {out / 'report.json'} and report.png")
    LOGGER.info("\n".join(lines))
