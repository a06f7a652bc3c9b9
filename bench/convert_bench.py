"""Conversion benchmark: SavedModel vs TFLite float vs TFLite int8, CPU latency side by side in one run.

    python -m bench.convert_bench --run shapes                 # an exported + converted run
    python -m bench.convert_bench --train-shapes               # make one first (synthetic shapes, ~2 min)

What runs: the three formats of one run on the same decoded val images, in one process, through the
runners `make parity` uses (TensorFlow for the SavedModel, ai-edge-litert for TFLite), interleaved
(every repeat runs each format once over all images, so load changes hit all three alike), after one
warm-up call each. Reported per format: model-call latency (median, mean, p95 over every image of every
repeat); for TFLite also the latency with its preprocessing (normalize + letterbox resize, done outside
the model; the SavedModel does it inside its graph); file size and ratio to the SavedModel; AP50 on the
same images (pycocotools) and the AP50 points lost.

Goal (issue 4): int8 >= 2x faster than the SavedModel with <= 1 AP50 point lost. Missing formats are
made first (`make export` without publishing, `make tflite QUANT=float,int8` without parity).

Results: bench/results/convert.json and the "Conversion" section of docs/benchmarks.md (only the text
between the convert-bench markers is rewritten).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.report import cpu_model, update_section

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JSON = REPO / "bench" / "results" / "convert.json"
DEFAULT_DOCS = REPO / "docs" / "benchmarks.md"
DOCS_MARK = "convert-bench"
SECTION_TITLE = "## Conversion"
FORMATS = ("saved_model", "tflite_float", "tflite_int8")
GOAL_SPEEDUP = 2.0
GOAL_AP50_POINTS = 1.0


def _train_shapes(name: str) -> str:
    """A small real run to benchmark when none is given: synthetic shapes, 128 px, 400 steps (~2 min)."""
    from odstack.data.convert import DataSettings, convert
    from odstack.data.synthetic import make_shapes
    from odstack.train import stage
    from odstack.train.run import TrainSettings

    src, records = Path("input/bench-shapes"), Path("input/bench-shapes-records")
    if not (records / "label_map.pbtxt").exists():
        make_shapes(src, images=200, size=128, seed=0)
        convert(DataSettings(src=src, out=records, val_fraction=0.2, seed=42))
    stage.train(TrainSettings(engine="tfvision", run=name, data=records, steps=400, image_size=128,
                              from_scratch=True))
    return name


def _ensure_formats(run_name: str) -> Any:
    from odstack.export import parity, resolve_run, saved_model, tflite

    run = resolve_run(run_name)
    if not (run.path / "saved_model" / "saved_model.pb").exists():
        saved_model.export(saved_model.ExportSettings(run=str(run.path), publish=False))
    have = {label for label in parity.RUNNERS["tflite"].find(run.path)}
    missing = [q for q in ("float", "int8") if f"tflite_{q}" not in have]
    if missing:
        tflite.convert(tflite.TFLiteSettings(run=str(run.path), quant=",".join(missing), parity=False))
    return run


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(run, images: int, repeat: int, threads: int) -> dict[str, Any]:
    from odstack.export import parity

    val = parity.load_val_images(run, limit=images)
    found: dict[str, tuple[str, Path]] = {}
    for name in ("saved_model", "tflite"):
        for label, artifact in parity.RUNNERS[name].find(run.path).items():
            found[label] = (name, artifact)
    absent = [f for f in FORMATS if f not in found]
    if absent:
        raise SystemExit(f"convert_bench: {run.path} lacks {absent}")
    latencies: dict[str, list[float]] = {f: [] for f in FORMATS}
    with_pre: dict[str, list[float]] = {f: [] for f in FORMATS}
    predictions: dict[str, list] = {}
    for _ in range(repeat):
        for label in FORMATS:
            name, artifact = found[label]
            preds = parity.RUNNERS[name].predict(artifact, val, threads)
            latencies[label] += [p.seconds * 1000 for p in preds]
            with_pre[label] += [(p.seconds + p.preprocess_seconds) * 1000 for p in preds]
            predictions[label] = preds
    results: dict[str, Any] = {}
    reference = None
    for label in FORMATS:
        name, artifact = found[label]
        runner = parity.RUNNERS[name]
        ap = parity.ap50(val, predictions[label], run.label_map)
        entry = {
            "path": str(artifact), "runtime": runner.runtime(), "size_bytes": runner.size(artifact),
            "latency_ms": {"median": statistics.median(latencies[label]), "mean": statistics.fmean(latencies[label]),
                           "p95": _pct(latencies[label], 0.95)},
            "with_preprocessing_ms": {"median": statistics.median(with_pre[label]),
                                      "mean": statistics.fmean(with_pre[label])},
            "ap50": ap,
        }
        if reference is None:
            reference = entry
        else:
            entry["size_ratio"] = entry["size_bytes"] / reference["size_bytes"]
            entry["speedup_median"] = reference["latency_ms"]["median"] / entry["latency_ms"]["median"]
            entry["speedup_with_preprocessing"] = (reference["latency_ms"]["median"]
                                                   / entry["with_preprocessing_ms"]["median"])
            entry["ap50_points_lost"] = (reference["ap50"] - ap) * 100
            entry["vs_saved_model"] = parity.compare(predictions["saved_model"], predictions[label], 0.3, 0.5)
        results[label] = entry
    int8 = results["tflite_int8"]
    goal = {"speedup_min": GOAL_SPEEDUP, "ap50_points_max": GOAL_AP50_POINTS,
            "met": bool(int8["speedup_with_preprocessing"] >= GOAL_SPEEDUP
                        and int8["ap50_points_lost"] <= GOAL_AP50_POINTS)}
    return {"images": len(val), "repeat": repeat, "threads": threads, "formats": results, "goal": goal,
            "dataset": json.loads(run.run_json.read_text())["data"]}


def _machine() -> dict[str, Any]:
    import tensorflow as tf

    return {"cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "tensorflow": tf.__version__, "load_average": os.getloadavg()[0]}


def render(result: dict[str, Any]) -> str:
    m, f = result["machine"], result["formats"]
    lines = [
        f"SavedModel vs TFLite float vs TFLite int8 of run **{result['run']}** (step {result['step']}, "
        f"input {result['input_size']}), side by side in one process on the same {result['images']} val images "
        f"({result['dataset']}), {result['repeat']} interleaved repeats, {result['threads']} threads, one machine "
        f"({m['cores']} cores, {m['cpu']}, Python {m['python']}, TensorFlow {m['tensorflow']}, "
        f"{f['tflite_float']['runtime']}; 1-minute load average {m['load_average']:.2f} before), measured "
        f"{result['measured']}. Model call only; TFLite's preprocessing (normalize + letterbox, outside its graph; "
        "inside the SavedModel's) in its own column.",
        "",
        "| format | size | size ratio | median ms | p95 ms | median ms incl. preprocessing | speedup | AP50 | AP50 points lost |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label in FORMATS:
        e = f[label]
        ratio = f"{e.get('size_ratio', 1.0):.2f}"
        speed = f"{e['speedup_with_preprocessing']:.1f}x" if "speedup_with_preprocessing" in e else "1.0x"
        lost = f"{e['ap50_points_lost']:.1f}" if "ap50_points_lost" in e else "ref"
        lines.append(f"| {label} | {e['size_bytes'] / 1e6:.2f} MB | {ratio} | {e['latency_ms']['median']:.2f} | "
                     f"{e['latency_ms']['p95']:.2f} | {e['with_preprocessing_ms']['median']:.2f} | {speed} | "
                     f"{e['ap50']:.3f} | {lost} |")
    goal = result["goal"]
    lines += ["", f"Goal (int8 >= {goal['speedup_min']:.0f}x the SavedModel's speed incl. preprocessing, <= "
                  f"{goal['ap50_points_max']:.0f} AP50 point lost): **{'met' if goal['met'] else 'not met'}** on this "
                  "dataset. Float TFLite vs SavedModel: max |box diff| "
                  f"{f['tflite_float']['vs_saved_model']['max_box_diff']:.1e}, max |score diff| "
                  f"{f['tflite_float']['vs_saved_model']['max_score_diff']:.1e}.",
              "Rerun: `PYTHONPATH=. .venv/toco/bin/python -m bench.convert_bench --run <run>` (or `--train-shapes`); "
              "raw numbers: [bench/results/convert.json](../bench/results/convert.json). Compare runs on the same "
              "machine only."]
    return "\n".join(lines)


def update_docs(path: Path, section: str) -> None:
    update_section(path, DOCS_MARK, SECTION_TITLE, section)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="SavedModel vs TFLite float vs int8 CPU latency, side by side.")
    p.add_argument("--run", default="auto", help="run name or directory (default: the only run in output/)")
    p.add_argument("--train-shapes", action="store_true", help="train the run first (synthetic shapes, ~2 min)")
    p.add_argument("--images", type=int, default=0, help="val images (0: all)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", default="auto")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    p.add_argument("--docs", type=Path, default=DEFAULT_DOCS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from odstack.export import parity
    from odstack.log import setup_logging

    setup_logging()
    args = parse_args(argv)
    os.chdir(REPO)
    name = _train_shapes("bench-shapes" if args.run == "auto" else args.run) if args.train_shapes else args.run
    machine = _machine()  # load average before the run
    run = _ensure_formats(name)
    threads = parity._threads(args.threads)
    started = time.monotonic()
    result = measure(run, args.images, args.repeat, threads)
    record = json.loads((run.path / "export.json").read_text())
    result.update(run=run.path.name, step=record["step"], input_size=record.get("image_size"), machine=machine,
                  seconds=round(time.monotonic() - started, 1),
                  measured=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    section = render(result)
    update_docs(args.docs, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
