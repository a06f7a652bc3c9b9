"""The TF.js runtime: ``output/<run>/tfjs*/`` graph models (with their signature.json) run in Node with pure-JS
@tensorflow/tfjs (``odstack/export/js/run_tfjs.mjs``). Needs numpy and ``node`` only, so parity calls it
from any venv; the conversion itself is odstack/export/tfjs.py (the tfjs image).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from odstack.contract import OUTPUT_KEYS
from odstack.errors import ConfigError, OdstackError
from odstack.export.runtimes.base import Prediction, ValImage

NAME = "tfjs"
JS_DIR = Path(__file__).resolve().parents[1] / "js"
RUNNER_SCRIPT = JS_DIR / "run_tfjs.mjs"
SIGNATURE_FILE = "signature.json"


class TfjsError(OdstackError):
    """The SavedModel cannot be converted to, or run as, a TF.js graph model."""


# ------------------------------------------------------------------------------------ runner protocol

def find(run_dir: Path) -> dict[str, Path]:
    return {p.parent.name: p for p in sorted(Path(run_dir).glob("tfjs*/model.json"))
            if (p.parent / SIGNATURE_FILE).is_file()}


def predict(artifact: Path, images: Sequence[ValImage], threads: int) -> list[Prediction]:
    """One Node run over the val images (``threads`` is unused: the tfjs CPU and WASM backends run on one
    thread here). Latency: the model call in Node, input tensor to outputs read back, after a warm-up."""
    run = run_tfjs_detailed(Path(artifact).parent, [image.array for image in images])
    return [Prediction.from_od_api(outputs, ms / 1000.0) for outputs, ms in zip(run.outputs, run.latency_ms)]


def quantized(label: str) -> bool:
    return label != "tfjs"


def size(artifact: Path) -> int:
    return size_bytes(Path(artifact).parent)


def size_bytes(model_dir: Path) -> int:
    """model.json + weight shards (what a browser downloads)."""
    return sum(p.stat().st_size for p in Path(model_dir).iterdir() if p.is_file() and p.name != SIGNATURE_FILE)


# ------------------------------------------------------------------------------------ Node
@dataclass
class TfjsRun:
    """One Node run over a list of images."""

    outputs: list[dict[str, np.ndarray]]   # per image: key -> array shaped as TF.js returns it ([1, ...])
    latency_ms: list[float]                # per image, after a warm-up run (input tensor -> outputs read back)
    load_ms: float
    backend: str
    tfjs_version: str


def node_executable() -> str:
    """``$ODSTACK_NODE``, else ``node`` on PATH."""
    node = os.environ.get("ODSTACK_NODE") or shutil.which("node")
    if not node:
        raise TfjsError("node (Node.js) is not installed", hint="the tfjs image has it; locally: apt-get install "
                        "nodejs npm, then `npm ci` in odstack/export/js")
    return node


def node_modules_missing() -> str | None:
    """Why the Node runner cannot run here (None when it can)."""
    if not (JS_DIR / "node_modules" / "@tensorflow" / "tfjs").is_dir():
        return f"{JS_DIR}/node_modules is missing: run `npm ci` in {JS_DIR} (`make venvs` does)"
    return None


def default_backend() -> str:
    """``$ODSTACK_TFJS_BACKEND`` (cpu | wasm), else cpu: the pure-JS reference kernels (wasm is ~4x faster
    on CPU but its kernels differ; both are checked against the SavedModel in tests/export_tfjs)."""
    backend = os.environ.get("ODSTACK_TFJS_BACKEND", "cpu") or "cpu"
    if backend not in ("cpu", "wasm"):
        raise ConfigError(f"ODSTACK_TFJS_BACKEND={backend!r} is not cpu or wasm")
    return backend


def run_tfjs_detailed(model_dir: Path, images: Sequence[np.ndarray], *, backend: str | None = None,
                      outputs: Sequence[str] | None = None, warmup: int = 1, repeat: int = 1,
                      timeout: float | None = 600) -> TfjsRun:
    """Run the TF.js graph model in ``model_dir`` on ``images`` (uint8 RGB [H, W, 3]) in Node with pure-JS
    @tensorflow/tfjs (``backend`` cpu or wasm). ``outputs``: signature keys to return (default: the four
    detection outputs); they are named through ``signature.json``."""
    model_dir = Path(model_dir)
    backend = backend or default_backend()
    problem = node_modules_missing()
    if problem:
        raise TfjsError(problem)
    signature_path = model_dir / SIGNATURE_FILE
    if not signature_path.is_file():
        raise TfjsError("no signature.json next to model.json", where=str(model_dir),
                        hint="convert with `python -m odstack tfjs` (make tfjs)")
    sig = json.loads(signature_path.read_text(encoding="utf-8"))
    keys = list(outputs) if outputs else [k for k in sig.get("detection_outputs", OUTPUT_KEYS)]
    unknown = [k for k in keys if k not in sig["outputs"]]
    if unknown:
        raise TfjsError(f"no output {', '.join(unknown)} in signature.json", where=str(signature_path))
    with tempfile.TemporaryDirectory(prefix="odstack-tfjs-") as tmp:
        tmp_dir = Path(tmp)
        paths = []
        for index, image in enumerate(images):
            image = np.asarray(image)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"image {index}: expected uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
            path = tmp_dir / f"image{index:05d}.npy"
            np.save(path, np.ascontiguousarray(image))
            paths.append(str(path))
        wanted = {"inputs": sig["inputs"], "outputs": {k: {"name": sig["outputs"][k]["name"]} for k in keys}}
        (tmp_dir / "signature.json").write_text(json.dumps(wanted), encoding="utf-8")
        result_path = tmp_dir / "result.json"
        command = [node_executable(), str(RUNNER_SCRIPT), "--model", str(model_dir.resolve()),
                   "--signature", str(tmp_dir / "signature.json"), "--backend", backend,
                   "--warmup", str(warmup), "--repeat", str(repeat), "--out", str(result_path), "--images", *paths]
        if not paths:
            return TfjsRun([], [], 0.0, backend, "")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=JS_DIR, check=False)
        except subprocess.TimeoutExpired:
            raise TfjsError(f"the TF.js runner took more than {timeout:.0f} s", where=str(model_dir)) from None
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            raise TfjsError(f"the TF.js runner failed (exit {done.returncode}):\n{tail}", where=str(model_dir))
        document = json.loads(result_path.read_text(encoding="utf-8"))
    results = []
    for entry in document["results"]:
        results.append({key: np.asarray(value["data"], dtype=_numpy_dtype(value["dtype"])).reshape(value["shape"])
                        for key, value in entry["outputs"].items()})
    return TfjsRun(outputs=results, latency_ms=[float(e["latency_ms"]) for e in document["results"]],
                   load_ms=float(document["load_ms"]), backend=document["backend"],
                   tfjs_version=document["tfjs_version"])


def run_tfjs(model_dir: Path, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The parity framework's runner: per image, detection_boxes/scores/classes/num_detections as TF.js
    computes them (``default_backend()``, shapes with the batch dimension, like the SavedModel's)."""
    return run_tfjs_detailed(model_dir, images).outputs


def _numpy_dtype(dtype: str) -> Any:
    return {"float32": np.float32, "int32": np.int32, "bool": np.bool_}.get(dtype, np.float32)


def runtime() -> str:
    """e.g. "@tensorflow/tfjs 4.22.0 (cpu backend), node v18.20.4"."""
    try:
        package = json.loads((JS_DIR / "node_modules" / "@tensorflow" / "tfjs" / "package.json").read_text())
        node = subprocess.run([node_executable(), "--version"], capture_output=True, text=True, timeout=30, check=False)
        return f"@tensorflow/tfjs {package['version']} ({default_backend()} backend), node {node.stdout.strip()}"
    except (OSError, ValueError, KeyError, OdstackError, subprocess.SubprocessError):
        return "@tensorflow/tfjs (not installed)"
