"""Serving benchmark: REST upload through gunicorn -> gRPC, side by side with a direct gRPC Predict.

    make bench-serving                   (= .venv/client/bin/python -m bench.serving_bench)
    python -m bench.serving_bench --requests 50 --repeat 2
    python -m bench.serving_bench --soak 600 --concurrency 16     (on demand only: 10 minutes)

Both paths hit the same development model server (odstack.serving.modelserver, from .venv/modelserver)
serving the same model with the same signature, one after the other, interleaved per repeat, at
concurrency 1 and 8:

- ``direct``  a gRPC client's own work: the PredictRequest (by default the JPEG as it is, for the model's
              ``image_bytes`` signature; ``--signature serving_default``: the decoded uint8 image) and
              Predict over one shared channel
- ``rest``    ``POST /v1/detect`` with the JPEG as a multipart upload, keep-alive connection per thread,
              through container_scripts/client.sh (gunicorn, WEB_CONCURRENCY x THREADS), which checks it,
              forwards it (or decodes it, with ``serving_default``), calls Predict and answers JSON:
              everything a REST user pays for

By default two models are built into a temporary serving directory and served by one model server:
``demo`` (tests/serving/model_factory.py's test detector, milliseconds) and ``realistic`` (the same with a
small real detector's compute: 320 px, ~30 ms on one CPU core). ``--serving-dir DIR --model NAME``
benchmarks an exported model instead (e.g. output/serving),
``--model-server HOST:PORT`` reuses a running server. Load generator, gunicorn and model server share
the machine's cores, as they would on one host.

Soak (``--soak SECONDS``): the REST path alone at ``--concurrency`` for that long; RSS of the gunicorn
tree and of the model server sampled every few seconds; growth = last sample vs the sample after the first
10 % of the run (warm-up). Goals: 0 errors, RSS growth <= 10 %.

Results: bench/results/serving.json (soak: serving_soak.json) and the "Serving" section of
docs/benchmarks.md (only the text between the serving-bench markers is rewritten).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import http.client
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "client"))

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from tensorflow.core.framework import types_pb2  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

from bench.report import cpu_model, package_versions, update_section  # noqa: E402
from odclient.tfserving import OUTPUT_KEYS, make_tensor  # noqa: E402
from tests.client.support import Gunicorn, multipart  # noqa: E402
from tests.serving.model_factory import (BYTES_INPUT_KEY, BYTES_SIGNATURE, ModelServerProcess,  # noqa: E402
                                         add_version, build_detector_saved_model, make_image)

DEFAULT_JSON = REPO / "bench" / "results" / "serving.json"
DEFAULT_SOAK_JSON = REPO / "bench" / "results" / "serving_soak.json"
DEFAULT_DOCS = REPO / "docs" / "benchmarks.md"
DOCS_MARK = "serving-bench"
MARK_START = f"<!-- {DOCS_MARK}:start -->"  # bench.report.update_section's markers
SECTION_TITLE = "## Serving"
GOAL_P50_OVERHEAD = 0.10
GOAL_THROUGHPUT = 0.9
GOAL_RSS_GROWTH = 0.10


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(q: float) -> float:
            return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 2) if lat else 0.0

        return {"requests": len(lat), "errors": self.errors, "first_error": self.first_error or None,
                "seconds": round(self.seconds, 3),
                "throughput_rps": round(len(lat) / self.seconds, 1) if self.seconds else 0.0,
                "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
                "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else 0.0}


def run_load(make_call: Callable[[], Callable[[], None]], concurrency: int, total: int | None,
             duration: float | None = None, on_tick: Callable[[], None] | None = None) -> Load:
    """``total`` calls (or ``duration`` seconds) spread over ``concurrency`` threads; each thread gets its
    own callable from ``make_call`` (its own connection)."""
    load, lock = Load(), threading.Lock()
    barrier = threading.Barrier(concurrency + 1)
    stop_at: list[float] = []

    def worker(count: int) -> None:
        call = make_call()
        barrier.wait()
        done = 0
        while (done < count) if duration is None else (time.monotonic() < stop_at[0]):
            t0 = time.perf_counter()
            try:
                call()
                with lock:
                    load.latencies.append(time.perf_counter() - t0)
            except Exception as error:  # noqa: BLE001 - counted, reported
                with lock:
                    load.errors += 1
                    load.first_error = load.first_error or repr(error)[:300]
            done += 1

    per_thread = [(total or 0) // concurrency + (1 if i < (total or 0) % concurrency else 0) for i in range(concurrency)]
    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in per_thread]
    for thread in threads:
        thread.start()
    if duration is not None:
        stop_at.append(time.monotonic() + duration)
    start = time.perf_counter()
    barrier.wait()
    while any(t.is_alive() for t in threads):
        if on_tick:
            on_tick()
        for thread in threads:
            thread.join(timeout=1.0 if on_tick else None)
    load.seconds = time.perf_counter() - start
    return load


def direct_caller(channel: grpc.Channel, jpeg: bytes, pixels: np.ndarray, model: str,
                  signature: str) -> Callable[[], Callable[[], None]]:
    """A gRPC client's own work for one image: the PredictRequest (the JPEG as it is for the encoded-image
    signature, else the decoded pixels as a uint8 tensor) and Predict over one shared channel."""
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

    def make() -> Callable[[], None]:
        def call() -> None:
            req = predict_pb2.PredictRequest()
            req.model_spec.name = model
            req.model_spec.signature_name = signature
            if signature == BYTES_SIGNATURE:
                req.inputs[BYTES_INPUT_KEY].dtype = types_pb2.DT_STRING
                req.inputs[BYTES_INPUT_KEY].tensor_shape.dim.add(size=1)
                req.inputs[BYTES_INPUT_KEY].string_val.append(jpeg)
            else:
                req.inputs["input_tensor"].CopyFrom(make_tensor(pixels[np.newaxis]))
            req.output_filter.extend(OUTPUT_KEYS)
            response = stub.Predict(req, timeout=30)
            if "detection_boxes" not in response.outputs:
                raise RuntimeError("no detection_boxes")
        return call
    return make


def rest_caller(base: str, body: bytes, ctype: str, model: str) -> Callable[[], Callable[[], None]]:
    host, port = base.rsplit(":", 1)

    def make() -> Callable[[], None]:
        state: dict[str, http.client.HTTPConnection] = {}

        def call() -> None:
            connection = state.get("c") or http.client.HTTPConnection(host, int(port), timeout=30)
            state["c"] = connection
            try:
                connection.request("POST", f"/v1/detect?model={model}", body=body, headers={"Content-Type": ctype})
                response = connection.getresponse()
                payload = response.read()
            except Exception:
                connection.close()
                state.pop("c", None)
                raise
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
        return call
    return make


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def machine_info() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
            "versions": package_versions("grpcio", "protobuf", "flask", "gunicorn", "numpy", "pillow"),
            "loadavg_before": round(os.getloadavg()[0], 2)}


@dataclass
class Stack:
    address: str
    gunicorn: Gunicorn
    models: dict[str, str]  # label in the results -> served model name
    cleanup: list[Callable[[], None]]

    def close(self) -> None:
        for step in reversed(self.cleanup):
            step()


#: The default models: the test detector (milliseconds) and its realistic variant (a small real detector's
#: compute: 320 px input, ~30 ms on one CPU core); same answers, so the same checks hold for both.
DEFAULT_MODELS = {"demo": ("detector", False), "realistic": ("detector_320", True)}


def start_stack(args: argparse.Namespace, scratch: Path) -> Stack:
    cleanup: list[Callable[[], None]] = []
    serving_dir = args.serving_dir
    if serving_dir is None:
        serving_dir = scratch / "serving"
        models = {label: name for label, (name, _) in DEFAULT_MODELS.items()}
        for label, (name, realistic) in DEFAULT_MODELS.items():
            add_version(serving_dir / name, 1, build_detector_saved_model(scratch / label, realistic=realistic))
    else:
        models = {args.model: args.model}
    address = args.model_server
    if address is None:
        config = scratch / "models.config"
        config.write_text("model_config_list {\n" + "".join(
            f'  config {{ name: "{name}" base_path: "{Path(serving_dir).resolve() / name}" model_platform: "tensorflow" }}\n'
            for name in models.values()) + "}\n", encoding="utf-8")
        server = ModelServerProcess(["--model_config_file", str(config)], log_path=scratch / "modelserver.log").start()
        cleanup.append(server.stop)
        for name in models.values():
            server.wait_available(name, timeout=120)
        address = server.address
    env = {"TF_SERVING_ADDR": address, "SERVING_DIR": str(serving_dir), "MODEL_NAME": next(iter(models.values())),
           "WEB_CONCURRENCY": str(args.workers), "THREADS": str(args.threads)}
    if args.signature != BYTES_SIGNATURE:
        env["BYTES_SIGNATURE_NAME"] = ""  # the client decodes every upload: the uint8-tensor path
    gunicorn = Gunicorn(env, scratch / "gunicorn.log").start()
    cleanup.append(gunicorn.stop)
    return Stack(address, gunicorn, models, cleanup)


def bench_image(width: int, height: int) -> tuple[bytes, np.ndarray]:
    """A JPEG of the test detector's blobs, and its decoded pixels (what the client sends the model)."""
    out = io.BytesIO()
    Image.fromarray(make_image(height, width)).save(out, format="JPEG", quality=90)
    jpeg = out.getvalue()
    return jpeg, np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def run_side_by_side(args: argparse.Namespace, stack: Stack, model: str) -> dict[str, Any]:
    jpeg, pixels = bench_image(args.width, args.height)
    body, ctype = multipart([("image", "bench.jpg", jpeg, "image/jpeg")])
    channel = grpc.insecure_channel(stack.address)
    callers = {"direct": direct_caller(channel, jpeg, pixels, model, args.signature),
               "rest": rest_caller(stack.gunicorn.base, body, ctype, model)}
    for name, caller in callers.items():  # warm-up: connections, first-call paths, caches
        warm = run_load(caller, max(args.concurrency_levels), args.warmup)
        if warm.errors:
            raise SystemExit(f"serving_bench: {name} warm-up failed: {warm.first_error}")
    loads: dict[tuple[str, int], list[Load]] = {}
    for _ in range(args.repeat):
        for concurrency in args.concurrency_levels:
            for name, caller in callers.items():
                loads.setdefault((name, concurrency), []).append(run_load(caller, concurrency, args.requests))
    channel.close()

    results: dict[str, Any] = {"runs": {}, "ratios": {}, "goals": {}}
    for (name, concurrency), runs in loads.items():
        merged = Load([lat for run in runs for lat in run.latencies], sum(r.errors for r in runs),
                      next((r.first_error for r in runs if r.first_error), ""), sum(r.seconds for r in runs))
        row = merged.summary()
        row["throughput_rps"] = round(statistics.median(len(r.latencies) / r.seconds for r in runs), 1)
        results["runs"][f"{name}_c{concurrency}"] = {"path": name, "concurrency": concurrency, **row}
    for concurrency in args.concurrency_levels:
        direct, rest = results["runs"][f"direct_c{concurrency}"], results["runs"][f"rest_c{concurrency}"]
        results["ratios"][f"c{concurrency}"] = {
            "p50_overhead": round(rest["p50_ms"] / direct["p50_ms"] - 1, 3),
            "p95_overhead": round(rest["p95_ms"] / direct["p95_ms"] - 1, 3),
            "p50_added_ms": round(rest["p50_ms"] - direct["p50_ms"], 2),
            "throughput_ratio": round(rest["throughput_rps"] / direct["throughput_rps"], 3)}
    low, high = min(args.concurrency_levels), max(args.concurrency_levels)
    results["goals"] = {
        "p50_overhead": {"goal": f"<= {GOAL_P50_OVERHEAD:.0%} at concurrency {low}",
                         "measured": results["ratios"][f"c{low}"]["p50_overhead"],
                         "met": results["ratios"][f"c{low}"]["p50_overhead"] <= GOAL_P50_OVERHEAD},
        "throughput": {"goal": f">= {GOAL_THROUGHPUT}x direct at concurrency {high}",
                       "measured": results["ratios"][f"c{high}"]["throughput_ratio"],
                       "met": results["ratios"][f"c{high}"]["throughput_ratio"] >= GOAL_THROUGHPUT},
        "errors": {"goal": "0 errors", "measured": sum(r["errors"] for r in results["runs"].values()),
                   "met": all(r["errors"] == 0 for r in results["runs"].values())}}
    results["image"] = {"width": args.width, "height": args.height, "jpeg_bytes": len(jpeg)}
    results["model"] = model
    return results


def run_soak(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    jpeg, _ = bench_image(args.width, args.height)
    body, ctype = multipart([("image", "bench.jpg", jpeg, "image/jpeg")])
    caller = rest_caller(stack.gunicorn.base, body, ctype, next(iter(stack.models.values())))
    run_load(caller, args.concurrency, args.warmup)
    assert stack.gunicorn.process is not None
    server_pid = None
    host, port = stack.address.rsplit(":", 1)
    for conn in Path("/proc").glob("[0-9]*/cmdline"):  # the model server process serving that port
        try:
            text = conn.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "odstack.serving.modelserver" in text and f"--port {port}" in text:
            server_pid = int(conn.parent.name)
    samples: list[dict[str, Any]] = []
    start = time.monotonic()
    interval = max(1.0, args.soak / 60)

    def sample() -> None:
        if samples and time.monotonic() - samples[-1]["t"] - start < interval:
            return
        pids = [stack.gunicorn.process.pid, *stack.gunicorn.workers()]  # type: ignore[union-attr]
        samples.append({"t": round(time.monotonic() - start, 1), "gunicorn_rss_kib": rss_kib(pids),
                        "workers": len(pids) - 1,
                        "modelserver_rss_kib": rss_kib([server_pid]) if server_pid else None})

    workers_before = stack.gunicorn.workers()
    load = run_load(caller, args.concurrency, None, duration=args.soak, on_tick=sample)
    sample()
    warm = next((s for s in samples if s["t"] >= args.soak * 0.1), samples[0])
    last = samples[-1]

    def growth(key: str) -> float | None:
        return round(last[key] / warm[key] - 1, 4) if warm.get(key) and last.get(key) else None

    summary = load.summary()
    return {"seconds": args.soak, "concurrency": args.concurrency, **summary,
            "workers_restarted": stack.gunicorn.workers() != workers_before,
            "rss_growth": {"gunicorn": growth("gunicorn_rss_kib"), "modelserver": growth("modelserver_rss_kib")},
            "goals": {"errors": summary["errors"] == 0,
                      "rss_growth": (growth("gunicorn_rss_kib") or 0) <= GOAL_RSS_GROWTH},
            "samples": samples}


def render_section(results: dict[str, Any], soak: dict[str, Any] | None) -> str:
    m = results["machine"]
    first = next(iter(results["models"].values()))
    signature = results.get("signature", "serving_default")
    sent = ("the JPEG as it is to the model's `image_bytes` signature (decoded by the model server)"
            if signature == BYTES_SIGNATURE else "decoded pixels (uint8 tensor) to `serving_default`")
    lines = [
        f"REST upload through gunicorn → gRPC vs a direct gRPC Predict with the same signature (both send {sent}), "
        f"same development model server, side by side in one run on one machine ({m['cores']} cores, {m['cpu']}, "
        f"Python {m['python']}, grpcio {m['versions'].get('grpcio', '?')}, gunicorn {m['versions'].get('gunicorn', '?')}; "
        f"1-minute load average {m['loadavg_before']} before, {m.get('loadavg_after', '?')} after), "
        f"measured {results['measured_at']}. "
        f"Image: {first['image']['width']}x{first['image']['height']} JPEG ({first['image']['jpeg_bytes']:,} bytes); "
        f"gunicorn {results['gunicorn']['workers']} workers x {results['gunicorn']['threads']} threads; "
        f"{results['requests']} requests per cell x {results['repeat']} repeats, interleaved. Load generator, "
        "gunicorn and model server share the cores. Models: `demo` is the test detector (milliseconds); "
        "`realistic` adds a small real detector's compute (320 px input, four convolutions, ~25-30 ms on one core).",
    ]
    for label, model in results["models"].items():
        lines += ["", f"**{label}** (`{model['model']}`)", "",
                  "| path | concurrency | p50 ms | p95 ms | p99 ms | req/s | errors |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for row in model["runs"].values():
            path = "direct gRPC Predict" if row["path"] == "direct" else "REST upload → gunicorn → gRPC"
            lines.append(f"| {path} | {row['concurrency']} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | "
                         f"{row['p99_ms']:.2f} | {row['throughput_rps']:.1f} | {row['errors']} |")
        lines += ["", "| concurrency | p50 overhead | p95 overhead | p50 added | throughput REST / direct |",
                  "| ---: | ---: | ---: | ---: | ---: |"]
        for key, ratio in model["ratios"].items():
            lines.append(f"| {key[1:]} | {ratio['p50_overhead']:+.1%} | {ratio['p95_overhead']:+.1%} | "
                         f"{ratio['p50_added_ms']:+.2f} ms | {ratio['throughput_ratio']:.2f}x |")
        lines += ["", "| goal | measured | met |", "| --- | ---: | :---: |"]
        for key, goal in model["goals"].items():
            measured = goal["measured"]
            shown = {"p50_overhead": f"{measured:+.1%}", "throughput": f"{measured:.2f}x"}.get(key, str(measured))
            lines.append(f"| {goal['goal']} | {shown} | {'met' if goal['met'] else '**not met**'} |")
    lines.append("")
    if soak:
        g = soak["rss_growth"]
        lines.append(f"Soak ({soak.get('measured_at', '?')}): REST path at concurrency {soak['concurrency']} for "
                     f"{soak['seconds']} s: {soak['requests']:,} requests, {soak['errors']} errors, p50 {soak['p50_ms']} ms, "
                     f"p99 {soak['p99_ms']} ms; RSS growth after warm-up: gunicorn "
                     f"{'n/a' if g['gunicorn'] is None else format(g['gunicorn'], '+.1%')}, model server "
                     f"{'n/a' if g['modelserver'] is None else format(g['modelserver'], '+.1%')}; "
                     f"workers restarted: {'yes' if soak['workers_restarted'] else 'no'} "
                     f"(goals: 0 errors, growth <= {GOAL_RSS_GROWTH:.0%}: "
                     f"{'met' if all(soak['goals'].values()) else '**not met**'}).")
    else:
        lines.append("Soak: not run yet (`python -m bench.serving_bench --soak 600 --concurrency 16`, on demand).")
    lines += ["", "Rerun: `make bench-serving` (or `PYTHONPATH=. .venv/client/bin/python -m bench.serving_bench`); raw "
              "numbers: [bench/results/serving.json](../bench/results/serving.json). Compare runs on the same machine only."]
    return "\n".join(lines)


def update_docs(path: Path, section: str) -> None:
    update_section(path, DOCS_MARK, SECTION_TITLE, section)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="REST-through-gunicorn vs direct gRPC Predict, side by side.")
    p.add_argument("--requests", type=int, default=100, help="requests per path x concurrency x repeat")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--warmup", type=int, default=40)
    p.add_argument("--concurrency-levels", type=int, nargs="+", default=[1, 8])
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--workers", type=int, default=2, help="gunicorn WEB_CONCURRENCY")
    p.add_argument("--threads", type=int, default=4, help="gunicorn THREADS per worker")
    p.add_argument("--model", default="detector", help="with --serving-dir: the model to benchmark")
    p.add_argument("--serving-dir", type=Path, help="serve this model base dir (default: build the demo and "
                                                    "realistic test detectors)")
    p.add_argument("--signature", default=BYTES_SIGNATURE, choices=[BYTES_SIGNATURE, "serving_default"],
                   help="what both paths send: the JPEG to image_bytes (default) or pixels to serving_default")
    p.add_argument("--model-server", help="HOST:PORT of a running model server (default: start one)")
    p.add_argument("--soak", type=float, help="soak mode: seconds of REST load (not run by default)")
    p.add_argument("--concurrency", type=int, default=16, help="soak concurrency")
    p.add_argument("--json", type=Path, help=f"results file (default {DEFAULT_JSON.relative_to(REPO)}, "
                                             f"soak: {DEFAULT_SOAK_JSON.relative_to(REPO)})")
    p.add_argument("--docs", type=Path, default=DEFAULT_DOCS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="odstack-serving-bench-"))
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    machine = machine_info()
    stack = start_stack(args, scratch)
    try:
        if args.soak:
            out = args.json or DEFAULT_SOAK_JSON
            results = {"measured_at": stamp, "machine": machine, **run_soak(args, stack)}
        else:
            out = args.json or DEFAULT_JSON
            results = {"measured_at": stamp, "machine": machine, "signature": args.signature,
                       "gunicorn": {"workers": args.workers, "threads": args.threads},
                       "requests": args.requests, "repeat": args.repeat,
                       "models": {label: run_side_by_side(args, stack, name) for label, name in stack.models.items()}}
    finally:
        stack.close()
        shutil.rmtree(scratch, ignore_errors=True)
    results["machine"]["loadavg_after"] = round(os.getloadavg()[0], 2)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    side = results if not args.soak else _load(out.with_name(DEFAULT_JSON.name))
    soak = results if args.soak else _load(out.with_name(DEFAULT_SOAK_JSON.name))
    if side:
        update_docs(args.docs, render_section(side, soak))
    print(json.dumps({k: v for k, v in results.items() if k not in ("samples", "machine")}, indent=1))
    return results


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    main()
