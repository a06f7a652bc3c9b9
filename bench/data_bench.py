"""Data-stage benchmark: odstack's converter side by side with ``cp -r`` and the classic TF script.

    make bench                                     # N=2000 images, 3 repeats
    python -m bench.data_bench --images 500 --repeat 1 --skip-classic

What runs (same files, same machine, one after the other, page cache warmed before every run):

- ``cp``               ``cp -r images/ dest/``: the I/O limit of reading and writing the same bytes
- ``classic``          bench/classic_generate_tfrecord.py: pandas + PIL + one ``tf.io.TFRecordWriter``
- ``odstack``          ``python -m odstack data ... verify=fast`` (the defaults: header + end-marker check)
- ``odstack_decode``   the same with ``verify=decode`` (every image decoded)
- ``odstack_workers1`` the same with ``workers=1`` (shows what the parallel writer buys)
- ``odstack_quarter``  (memory) odstack at N/4 images; with ``--scale``: ``odstack_4x`` at 4N instead

The dataset is the raccoon fixture (tests/fixtures/raccoon) replicated to N real files under unique
names; each copy gets a tiny JPEG comment segment with its name, so the copies are byte-distinct (no
content-duplicate notes in odstack's report) and still valid JPEGs with unchanged pixels.

Every contender is its own subprocess. Memory: ``peak_rss_mib`` is the largest resident set of any one
process of the contender's tree (wait4's ru_maxrss, which covers the child and the descendants it
reaped; read through GNU time where installed, because a direct fork + exec from this process would
floor it at this process's own RSS); ``peak_pss_mib`` is the peak of the whole tree's summed PSS
(proportional set size: pages shared by forked workers count once), sampled from /proc every 50 ms.

Results: bench/results/data.json and the "Data stage" section of docs/benchmarks.md (only the text
between the data-bench markers is rewritten). The run fails if a converter writes fewer examples than
there are images.
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report import cpu_model, package_versions, update_section

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "raccoon"
FIXTURE_CSV = FIXTURE / "data" / "test_labels.csv"
CLASSIC_SCRIPT = Path(__file__).resolve().parent / "classic_generate_tfrecord.py"
DEFAULT_JSON = REPO / "bench" / "results" / "data.json"
DEFAULT_DOCS = REPO / "docs" / "benchmarks.md"
DOCS_MARK = "data-bench"
MARK_START = f"<!-- {DOCS_MARK}:start -->"  # bench.report.update_section's markers
SECTION_TITLE = "## Data stage"
TF_COLUMNS = ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"]

# Goals of the data-stage issue.
GOAL_VS_CP = 0.8        # odstack images/s >= 0.8 x cp's
GOAL_VS_CLASSIC = 5.0   # odstack >= 5 x the classic script (whole command)
GOAL_MEMORY_FLAT = 1.25  # peak RSS at 4x the images <= 1.25 x the peak RSS at 1x ...
GOAL_KIB_PER_IMAGE = 1.0  # ... and it grows <= 1 KiB per image (<= ~1 GiB per million images): at a few
#                           thousand images the fixed ~80 MiB hides a per-image cost the slope still shows

MIB = 1024 * 1024


# --------------------------------------------------------------------------------------- dataset

@dataclass
class Dataset:
    root: Path
    images: Path
    csv: Path                # all N images
    count: int
    bytes: int
    subsets: dict[int, tuple[Path, int]] = field(default_factory=dict)  # image count -> (CSV, image bytes)


def _fixture_rows() -> tuple[list[Path], dict[str, list[list[str]]]]:
    with open(FIXTURE_CSV, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows: dict[str, list[list[str]]] = {}
        for row in reader:
            rows.setdefault(row["filename"], []).append([row[c] for c in TF_COLUMNS])
    images = sorted(FIXTURE.joinpath("images").iterdir())
    missing = [p.name for p in images if p.name not in rows]
    if missing:
        raise SystemExit(f"data_bench: {FIXTURE_CSV} has no rows for {missing[:5]}")
    return images, rows


def _unique_copy(data: bytes, tag: str) -> bytes:
    """The same image with a JPEG comment (COM) segment naming the copy: byte-distinct, same pixels."""
    if data[:2] != b"\xff\xd8":
        return data
    comment = f"odstack-bench {tag}".encode()
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + data[2:]


def build_dataset(root: Path, count: int, subsets: tuple[int, ...] = ()) -> Dataset:
    """``root/images/`` with ``count`` real files and ``root/labels.csv`` (TF columns); one CSV per subset."""
    sources, rows = _fixture_rows()
    images = root / "images"
    images.mkdir(parents=True)
    blobs = {path.name: path.read_bytes() for path in sources}
    table: list[list[str]] = []
    names: list[str] = []
    total = 0
    for index in range(count):
        source = sources[index % len(sources)]
        stem, suffix = os.path.splitext(source.name)
        name = f"{stem}-{index:06d}{suffix}"
        data = _unique_copy(blobs[source.name], name)
        (images / name).write_bytes(data)
        total += len(data)
        names.append(name)
        table.extend([name, *row[1:]] for row in rows[source.name])
    dataset = Dataset(root=root, images=images, csv=root / "labels.csv", count=count, bytes=total)
    _write_csv(dataset.csv, table)
    for size in subsets:
        keep = set(names[:size])
        path = root / f"labels-{size}.csv"
        _write_csv(path, [row for row in table if row[0] in keep])
        dataset.subsets[size] = (path, sum((images / name).stat().st_size for name in keep))
    return dataset


def _write_csv(path: Path, table: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(TF_COLUMNS)
        writer.writerows(table)


def warm_cache(*folders: Path) -> None:
    """Read every file once so each contender starts with the same warm page cache."""
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                with open(path, "rb") as handle:
                    while handle.read(1 << 20):
                        pass


# ------------------------------------------------------------------------------------ measurement

class PssSampler(threading.Thread):
    """Peak of the summed PSS of a process and all its descendants, polled from /proc."""

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_kib = 0
        self._halt = threading.Event()

    @staticmethod
    def _children(pid: int) -> list[int]:
        found = []
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as handle:
                    found += [int(c) for c in handle.read().split()]
        except OSError:
            pass
        return found

    @staticmethod
    def _pss_kib(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                for line in handle:
                    if line.startswith("Pss:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def sample(self) -> None:
        total, todo, seen = 0, [self.pid], set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            total += self._pss_kib(pid)
            todo += self._children(pid)
        self.peak_kib = max(self.peak_kib, total)

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


@dataclass
class Run:
    seconds: float
    peak_rss_mib: float
    peak_pss_mib: float
    stdout: str


def _gnu_time() -> str | None:
    """GNU time, when installed: it forks the command from its own tiny process, so the command's
    max RSS is not floored at this (bigger) Python process's RSS, as a direct fork + exec would be."""
    path = shutil.which("time", path="/usr/bin:/bin")
    if not path:
        return None
    probe = subprocess.run([path, "-f", "%M", "true"], capture_output=True, text=True)
    return path if probe.returncode == 0 and probe.stderr.strip().isdigit() else None


GNU_TIME = _gnu_time()


def run_measured(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> Run:
    """Run ``cmd``; wall time, largest process RSS (wait4) and peak tree PSS. Fails loudly on exit != 0."""
    out_path, rss_path = log.with_suffix(".out"), log.with_suffix(".rss")
    launch = [GNU_TIME, "-f", "%M", "-o", str(rss_path), *cmd] if GNU_TIME else cmd
    with open(out_path, "wb") as out, open(log, "wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(launch, stdout=out, stderr=err, env=env, cwd=REPO)
        sampler = PssSampler(process.pid)
        sampler.sample()    # at once, from this thread: a short command (cp of a few files) can end before
        sampler.start()     # the sampling thread's first look, which then saw no process at all
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        sampler.stop()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"data_bench: {' '.join(cmd)} failed with exit {process.returncode}:\n{tail}")
    max_rss_kib = int(rss_path.read_text().split()[-1]) if GNU_TIME else usage.ru_maxrss
    return Run(seconds, max_rss_kib / 1024, sampler.peak_kib / 1024, out_path.read_text(errors="replace"))


def count_records(paths: list[Path]) -> int:
    from odstack import tfrecord

    return sum(1 for _ in tfrecord.read_examples(paths))


# ------------------------------------------------------------------------------------- contenders

@dataclass
class Contender:
    key: str
    label: str
    images: int
    make_cmd: Any            # (out: Path) -> list[str]
    check: Any               # (out: Path) -> int (items written)
    env: dict[str, str] | None = None
    runs: list[Run] = field(default_factory=list)
    extra: list[dict[str, float]] = field(default_factory=list)


def _odstack_contender(key: str, label: str, csv_path: Path, images: int, **settings: str) -> Contender:
    env = dict(os.environ, PYTHONPATH=str(REPO), ODSTACK_VERBOSE="0")

    def make_cmd(out: Path) -> list[str]:
        args = [f"src={csv_path}", f"out={out}", "format=tf_csv"] + [f"{k}={v}" for k, v in settings.items()]
        return [sys.executable, "-m", "odstack", "data", *args]

    def check(out: Path) -> int:
        return count_records(sorted(out.glob("*.record")))

    return Contender(key, label, images, make_cmd, check, env)


def contenders(dataset: Dataset, args: argparse.Namespace) -> tuple[list[Contender], list[Contender]]:
    """(speed contenders at N, memory contenders at the other size)."""
    n = dataset.count

    def cp_check(out: Path) -> int:
        return sum(1 for _ in out.iterdir())

    speed = [Contender("cp", "`cp -r images/ dest/`", n, lambda out: ["cp", "-r", str(dataset.images), str(out)],
                       cp_check)]
    if not args.skip_classic:
        classic_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        speed.append(Contender(
            "classic", "classic script (pandas + PIL + TF writer)", n,
            lambda out: [sys.executable, str(CLASSIC_SCRIPT), "--csv", str(dataset.csv),
                         "--images", str(dataset.images), "--out", str(out / "all.record")],
            lambda out: count_records([out / "all.record"]), classic_env))
    speed += [
        _odstack_contender("odstack", "odstack `verify=fast` (default)", dataset.csv, n, verify="fast"),
        _odstack_contender("odstack_decode", "odstack `verify=decode`", dataset.csv, n, verify="decode"),
        _odstack_contender("odstack_workers1", "odstack `workers=1`", dataset.csv, n, verify="fast", workers="1"),
    ]
    memory = []
    for size, (path, _) in sorted(dataset.subsets.items()):
        memory.append(_odstack_contender("odstack_quarter", "odstack `verify=fast`, memory run", path, size,
                                         verify="fast"))
    return speed, memory


def _prepare_out(contender: Contender, scratch: Path) -> Path:
    out = scratch / contender.key
    shutil.rmtree(out, ignore_errors=True)
    if contender.key == "classic":
        out.mkdir(parents=True)
    return out


def run_all(items: list[Contender], repeat: int, scratch: Path, warm: list[Path]) -> None:
    """Round-robin over the contenders ``repeat`` times (drift hits all alike); checks every output."""
    scratch.mkdir(parents=True, exist_ok=True)
    for round_index in range(repeat):
        for contender in items:
            out = _prepare_out(contender, scratch)
            os.sync()  # the previous run's writeback must not land inside this one's timing
            warm_cache(*warm)
            run = run_measured(contender.make_cmd(out), scratch / f"{contender.key}-{round_index}.log", contender.env)
            written = contender.check(out)
            if written != contender.images:
                raise SystemExit(f"data_bench: {contender.key} wrote {written} items for {contender.images} images "
                                 f"(logs: {scratch})")
            contender.runs.append(run)
            if contender.key == "classic":
                contender.extra.append(json.loads(run.stdout.strip().splitlines()[-1]))
            elif contender.key.startswith("odstack"):
                report = json.loads((out / "report.json").read_text())
                contender.extra.append({"convert_seconds": report["seconds"]})
            print(f"  round {round_index + 1}/{repeat} {contender.key:<17} {run.seconds:7.2f} s  "
                  f"{contender.images / run.seconds:8.0f} img/s  rss {run.peak_rss_mib:6.0f} MiB  "
                  f"pss {run.peak_pss_mib:6.0f} MiB", flush=True)
            shutil.rmtree(out, ignore_errors=True)


def summarize(contender: Contender, dataset_bytes: int) -> dict[str, Any]:
    seconds = statistics.median(r.seconds for r in contender.runs)
    result: dict[str, Any] = {
        "label": contender.label,
        "images": contender.images,
        "repeats": len(contender.runs),
        "seconds": round(seconds, 3),
        "seconds_all": [round(r.seconds, 3) for r in contender.runs],
        "images_per_second": round(contender.images / seconds, 1),
        "mb_per_second": round(dataset_bytes / seconds / 1e6, 1),
        "peak_rss_mib": round(max(r.peak_rss_mib for r in contender.runs), 1),
        # median: a sample taken while a process forks can count its pages twice (sampling, not exact)
        "peak_pss_mib": round(statistics.median(r.peak_pss_mib for r in contender.runs), 1),
    }
    if contender.key == "classic":
        loop = statistics.median(e["loop_seconds"] for e in contender.extra)
        result.update(loop_seconds=round(loop, 3), loop_images_per_second=round(contender.images / loop, 1),
                      tf_import_seconds=round(statistics.median(e["tf_import_seconds"] for e in contender.extra), 3))
    elif contender.extra:
        convert = statistics.median(e["convert_seconds"] for e in contender.extra)
        result.update(convert_seconds=round(convert, 3),
                      convert_images_per_second=round(contender.images / convert, 1))
    return result


# ------------------------------------------------------------------------------------- reporting

def machine_info() -> dict[str, Any]:
    try:
        memory = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        memory = None
    return {
        "load_average_1m": round(os.getloadavg()[0], 2),  # others' work on a shared machine shows here
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": cpu_model(),
        "memory_mib": memory,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": package_versions("tensorflow", "pandas", "pillow", "numpy", "tfrecords", "protobuf"),
    }


def build_results(dataset: Dataset, speed: list[Contender], memory: list[Contender],
                  args: argparse.Namespace) -> dict[str, Any]:
    results = {c.key: summarize(c, dataset.bytes) for c in speed}
    mem = {}
    for contender in memory:
        mem[contender.key] = summarize(contender, dataset.subsets[contender.images][1])
    ods = results["odstack"]
    ratios: dict[str, Any] = {
        "odstack_vs_cp": round(ods["images_per_second"] / results["cp"]["images_per_second"], 3),
        "odstack_vs_workers1": round(ods["images_per_second"] / results["odstack_workers1"]["images_per_second"], 3),
    }
    if "classic" in results:
        classic = results["classic"]
        ratios["odstack_vs_classic_whole"] = round(classic["seconds"] / ods["seconds"], 3)
        ratios["odstack_vs_classic_loop"] = round(classic["loop_seconds"] / ods["seconds"], 3)
    memory_ratio = None
    if mem:
        small = min([ods] + list(mem.values()), key=lambda r: r["images"])
        large = max([ods] + list(mem.values()), key=lambda r: r["images"])
        added = large["images"] - small["images"]
        memory_ratio = {
            "small_images": small["images"], "large_images": large["images"],
            "peak_rss_ratio": round(large["peak_rss_mib"] / small["peak_rss_mib"], 3),
            "peak_pss_ratio": round(large["peak_pss_mib"] / small["peak_pss_mib"], 3),
            "rss_kib_per_image": round((large["peak_rss_mib"] - small["peak_rss_mib"]) * 1024 / added, 2),
            "pss_kib_per_image": round((large["peak_pss_mib"] - small["peak_pss_mib"]) * 1024 / added, 2),
        }
        ratios["memory_large_vs_small"] = memory_ratio
    goals = {
        "vs_cp": {"goal": f">= {GOAL_VS_CP}x cp", "value": ratios["odstack_vs_cp"],
                  "met": ratios["odstack_vs_cp"] >= GOAL_VS_CP},
    }
    if "odstack_vs_classic_whole" in ratios:
        goals["vs_classic"] = {"goal": f">= {GOAL_VS_CLASSIC:g}x classic (whole command)",
                               "value": ratios["odstack_vs_classic_whole"],
                               "met": ratios["odstack_vs_classic_whole"] >= GOAL_VS_CLASSIC}
    if memory_ratio:
        worst = max(memory_ratio["peak_rss_ratio"], memory_ratio["peak_pss_ratio"])
        slope = memory_ratio["rss_kib_per_image"]
        goals["memory_flat"] = {"goal": f"memory flat: peak at {large['images']} images <= {GOAL_MEMORY_FLAT}x "
                                        f"that at {small['images']}, and peak RSS grows <= "
                                        f"{GOAL_KIB_PER_IMAGE:g} KiB/image", "value": worst,
                                "kib_per_image": slope,
                                "met": worst <= GOAL_MEMORY_FLAT and slope <= GOAL_KIB_PER_IMAGE}
    return {
        "benchmark": "data",
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "python -m bench.data_bench " + " ".join(args.argv),
        "machine": machine_info(),
        "dataset": {"source": "tests/fixtures/raccoon (40 images) replicated", "images": dataset.count,
                    "bytes": dataset.bytes, "mb": round(dataset.bytes / 1e6, 1),
                    "boxes": len(dataset.csv.read_text().splitlines()) - 1},
        "method": {"repeat": args.repeat,
                   "statistic": "median seconds; peak RSS: max over repeats; peak PSS: median over repeats",
                   "cache": "warm (every file read once before each run)",
                   "peak_rss_mib": "largest single-process RSS of the contender's tree (wait4 ru_maxrss, "
                                   + ("via GNU time)" if GNU_TIME else "direct; floored at this process's RSS)"),
                   "peak_pss_mib": "peak of the tree's summed PSS, sampled every 50 ms"},
        "contenders": results,
        "memory": mem,
        "ratios": ratios,
        "goals": goals,
    }


def render_section(results: dict[str, Any]) -> str:
    """The Markdown between the data-bench markers."""
    machine, data = results["machine"], results["dataset"]
    lines = [
        f"Converting the raccoon images replicated to **{data['images']} images ({data['mb']} MB)**, "
        f"side by side on one machine ({machine['cores']} cores, {machine['cpu'] or 'unknown CPU'}, "
        f"Python {machine['python']}, TensorFlow {machine['versions'].get('tensorflow')}; 1-minute load average "
        f"{_load_text(machine.get('load_average_1m'))}), warm page cache, "
        f"median of {results['method']['repeat']} runs, measured {results['date']}. Every time is the whole "
        "command (interpreter start and imports included). Peak RSS: the largest single process; "
        "peak PSS: all processes of the run together (shared pages counted once).",
        "",
        "| contender | seconds | images/s | MB/s | peak RSS MiB | peak PSS MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = list(results["contenders"].values()) + list(results["memory"].values())
    for row in rows:
        label = row["label"]
        if row["images"] != data["images"]:
            label += f" ({row['images']} images)"
        lines.append(f"| {label} | {row['seconds']:.2f} | {row['images_per_second']:,.0f} | "
                     f"{row['mb_per_second']:.1f} | {row['peak_rss_mib']:.0f} | {row['peak_pss_mib']:.0f} |")
    classic = results["contenders"].get("classic")
    lines.append("")
    if classic:
        lines.append(f"The classic script's loop alone (TensorFlow import of {classic['tf_import_seconds']:.1f} s and "
                     f"CSV read excluded) runs at {classic['loop_images_per_second']:,.0f} images/s.")
    ods = results["contenders"]["odstack"]
    if "convert_images_per_second" in ods:
        lines.append(f"odstack's own `convert()` time (report.json, without interpreter start) is "
                     f"{ods['convert_seconds']:.2f} s ({ods['convert_images_per_second']:,.0f} images/s).")
    lines += ["", "| goal | measured | met |", "| --- | ---: | :---: |"]
    ratios = results["ratios"]
    for key, goal in results["goals"].items():
        value = f"{goal['value']:.2f}x"
        if key == "vs_classic" and "odstack_vs_classic_loop" in ratios:
            value += f" (vs its loop alone: {ratios['odstack_vs_classic_loop']:.2f}x)"
        if key == "memory_flat":
            mem = ratios["memory_large_vs_small"]
            value = (f"RSS {mem['peak_rss_ratio']:.2f}x, PSS {mem['peak_pss_ratio']:.2f}x; "
                     f"+{mem['rss_kib_per_image']:.1f} KiB RSS (+{mem['pss_kib_per_image']:.1f} KiB PSS) per image")
        lines.append(f"| {goal['goal']} | {value} | {'met' if goal['met'] else '**not met**'} |")
    lines += [
        "",
        f"Parallel speed-up (default workers vs `workers=1`): {ratios['odstack_vs_workers1']:.2f}x.",
        "",
        "Rerun: `make bench` (or `PYTHONPATH=. .venv/odapi/bin/python -m bench.data_bench --images N "
        "--repeat R`); raw numbers: [bench/results/data.json](../bench/results/data.json). "
        "Only one machine's numbers are here: compare runs on the same machine only.",
    ]
    return "\n".join(lines)


def _load_text(load: Any) -> str:
    if isinstance(load, dict):
        return f"{load['before']} before, {load['after']} after"
    return str(load)


def update_docs(path: Path, section: str) -> None:
    update_section(path, DOCS_MARK, SECTION_TITLE, section)


# ------------------------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.data_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="dataset size N (default 2000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender; the median is reported")
    parser.add_argument("--scale", action="store_true",
                        help="memory check at 4N images instead of N/4 (slower, larger dataset)")
    parser.add_argument("--skip-classic", action="store_true", help="leave out the classic TensorFlow script")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a new one in /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help="Markdown file whose data section is rewritten")
    parser.add_argument("--no-docs", action="store_true", help="do not touch the Markdown file")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if args.images < 8 or args.repeat < 1:
        parser.error("--images must be >= 8 and --repeat >= 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="odstack-data-bench-", dir=args.workdir))
    try:
        n = args.images
        print(f"data_bench: building {n} images in {scratch}", flush=True)
        dataset = build_dataset(scratch / "dataset", n * 4 if args.scale else n, () if args.scale else (n // 4,))
        warm = [dataset.root]
        if args.scale:
            # the speed contenders use the first N images (their own folder, so cp copies N); 4N is the memory run
            big = dataset
            dataset = _shrink(big, n)
            dataset.subsets = {big.count: (big.csv, big.bytes)}
            warm = [dataset.root, big.root]
        speed, memory = contenders(dataset, args)
        if args.scale:
            for contender in memory:
                contender.key = "odstack_4x"
        print(f"data_bench: {dataset.count} images, {dataset.bytes / 1e6:.1f} MB; {args.repeat} round(s)", flush=True)
        load_before = round(os.getloadavg()[0], 2)
        run_all(speed, args.repeat, scratch / "runs", [dataset.root])
        run_all(memory, args.repeat, scratch / "runs", warm)
        results = build_results(dataset, speed, memory, args)
        results["machine"]["load_average_1m"] = {"before": load_before, "after": round(os.getloadavg()[0], 2)}
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if not args.no_docs:
        update_docs(args.docs, render_section(results))
    print(render_section(results))
    print(f"\ndata_bench: wrote {args.json}" + ("" if args.no_docs else f" and {args.docs}"))
    return results


def _shrink(dataset: Dataset, count: int) -> Dataset:
    """A view of ``dataset`` holding its first ``count`` images in their own folder (for --scale)."""
    root = dataset.root.parent / "dataset-n"
    images = root / "images"
    images.mkdir(parents=True)
    table: list[list[str]] = []
    total = 0
    with open(dataset.csv, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        keep: set[str] = set()
        for row in reader:
            if row[0] not in keep:
                if len(keep) == count:
                    continue
                keep.add(row[0])
                shutil.copyfile(dataset.images / row[0], images / row[0])
                total += (images / row[0]).stat().st_size
            table.append(row)
    small = Dataset(root=root, images=images, csv=root / "labels.csv", count=count, bytes=total)
    _write_csv(small.csv, table)
    return small


if __name__ == "__main__":
    main()
