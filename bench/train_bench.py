"""Training-loop benchmark: tfvision's steps/s at steps_per_loop=20 (the default, so the progress line
advances every 20 steps) against 100 (one tf.function call per 100 steps), side by side in one run.

    python -m bench.train_bench [--interval 100] [--repeats 1]

What runs: synthetic shapes (200 images, 128 px, the demo's size), converted once; then, for each repeat,
each setting in turn (interleaved, so load changes hit both alike), a fresh training run of the default
model from scratch: batch 8, 2 x ``interval`` steps, evaluated every ``interval``, through
``python -m odstack train`` in its own process. The rate compared is the one the training log reports at
the second evaluation: training time of the second interval only (the first holds the graph compilation;
evaluations are excluded). It is printed to 0.1 steps/s, so small differences are within its resolution.

Results: bench/results/train.json and the "Training loop" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.report import cpu_model, update_section

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JSON = REPO / "bench" / "results" / "train.json"
DEFAULT_DOCS = REPO / "docs" / "benchmarks.md"
DOCS_MARK = "train-bench"
SECTION_TITLE = "## Training loop"
SETTINGS = (20, 100)           # steps_per_loop: the default, and the larger loop it is compared with
# _Recorder's line at each evaluation: "train[tfvision]: step 200/200  loss ...  3.1 steps/s"
EVAL_LINE = re.compile(r"train\[tfvision\]: step\s+(\d+)/\d+ .* ([0-9.]+) steps/s")


def _dataset(work: Path) -> Path:
    from odstack.data.convert import DataSettings, convert
    from odstack.data.synthetic import make_shapes

    records = work / "records"
    if not (records / "label_map.pbtxt").exists():
        make_shapes(work / "shapes", images=200, size=128, seed=0)
        convert(DataSettings(src=work / "shapes", out=records, val_fraction=0.2, seed=42))
    return records


def _rate(records: Path, work: Path, steps_per_loop: int, interval: int) -> float:
    """steps/s of the second interval of one fresh run."""
    run = f"bench-train-{steps_per_loop}"
    shutil.rmtree(REPO / "output" / run, ignore_errors=True)
    command = [sys.executable, "-m", "odstack", "train", "engine=tfvision", f"run={run}", f"data={records}",
               f"steps={2 * interval}", f"checkpoint_every={interval}", "image_size=128", "batch=8",
               "init=none", f"steps_per_loop={steps_per_loop}", "gpus=none"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO), ODSTACK_VERBOSE="1"))
    (work / f"{run}.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    shutil.rmtree(REPO / "output" / run, ignore_errors=True)
    rates = {int(m[1]): float(m[2]) for m in EVAL_LINE.finditer(result.stderr)}
    if result.returncode != 0 or 2 * interval not in rates:
        raise SystemExit(f"training with steps_per_loop={steps_per_loop} failed or logged no rate; "
                         f"see {work / f'{run}.log'}")
    return rates[2 * interval]


def run(interval: int, repeats: int, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    records = _dataset(work)
    rates: dict[int, list[float]] = {n: [] for n in SETTINGS}
    for repeat in range(repeats):
        for steps_per_loop in SETTINGS:
            rates[steps_per_loop].append(_rate(records, work, steps_per_loop, interval))
            print(f"repeat {repeat + 1}/{repeats}: steps_per_loop={steps_per_loop}: "
                  f"{rates[steps_per_loop][-1]:.1f} steps/s", flush=True)
    median = {n: statistics.median(r) for n, r in rates.items()}
    return {
        "benchmark": "train_bench", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "load_average": list(os.getloadavg())},
        "workload": {"model": "retinanet_mobilenetv2", "image_size": 128, "batch": 8, "interval": interval,
                     "repeats": repeats, "device": "CPU"},
        "steps_per_second": {str(n): rates[n] for n in SETTINGS},
        "median": {str(n): median[n] for n in SETTINGS},
        "ratio_20_vs_100": median[20] / median[100] if median[100] else None,
    }


def section(result: dict[str, Any]) -> str:
    rows = [f"| {n} | {result['median'][str(n)]:.1f} | {', '.join(f'{r:.1f}' for r in result['steps_per_second'][str(n)])} |"
            for n in SETTINGS]
    machine, workload = result["machine"], result["workload"]
    return "\n".join([
        f"tfvision `{workload['model']}` at {workload['image_size']} px, batch {workload['batch']}, on the CPU; "
        f"steps/s of the second {workload['interval']}-step interval of a fresh run (training time only). "
        f"{machine['cpu']}, {machine['cores']} cores, load average {machine['load_average'][0]:.1f} at the end; "
        f"{result['date']}. `python -m bench.train_bench`.", "",
        "| steps_per_loop | steps/s (median) | each repeat |", "|---|---|---|", *rows, "",
        f"steps_per_loop=20 (the default, for the progress line) runs at **{result['ratio_20_vs_100']:.2f}x** the "
        f"speed of 100: {_verdict(result['ratio_20_vs_100'])} Not measured on a GPU, where the host's share of a "
        "step is larger: `ARGS=\"steps_per_loop=100\"` is the setting to try there."])


def _verdict(ratio: float) -> str:
    if ratio >= 0.97:
        return "the shorter loop costs nothing measurable on this CPU."
    return f"the shorter loop costs {100 * (1 - ratio):.0f} % of the training speed on this CPU."


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "results" / "tmp" / "train")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS)
    parser.add_argument("--render", action="store_true", help="only rewrite the docs section from --json")
    args = parser.parse_args(argv)
    if args.render:
        result = json.loads(args.json.read_text(encoding="utf-8"))
    else:
        result = run(args.interval, args.repeats, args.work)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    update_section(args.docs, DOCS_MARK, SECTION_TITLE, section(result))
    print(section(result))


if __name__ == "__main__":
    main()
