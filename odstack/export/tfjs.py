"""TF.js conversion: ``output/<run>/saved_model`` -> ``output/<run>/tfjs/`` (graph model + signature.json),
and the Node runner that executes such a model for the parity checks.

    python -m odstack tfjs run=<run> quant=none|float16|uint8      (the tfjs image, or .venv/tfjs)
    python -m odstack.export.tfjs SAVED_MODEL OUT_DIR [--quant ...]  (the same without cfg/default.yaml)

quant=none writes ``output/<run>/tfjs``, float16/uint8 ``output/<run>/tfjs_<quant>`` (weights quantized,
the graph still computes in float32), so the variants sit side by side like the TFLite ones and `make parity`
compares each. What is written to such a directory (replaced as a whole, never left half-written):

    model.json, group1-shard*of*.bin   the graph model (tensorflowjs_converter, tfjs_graph_model)
    signature.json                     input/output names: which converter output (Identity, Identity_1, ...)
                                       is detection_boxes, detection_scores, detection_classes, num_detections

Why signature.json: the converter names a signature's outputs ``Identity_N`` and then tries to give them
their keys back in model.json by matching dtype and shape, which fails for outputs that look alike
(``detection_scores`` and ``detection_classes`` are both float32 [1, N]), so model.json ends up with keys like
``Identity_2:0``. The mapping here comes from the signature function the converter converts: its flat
outputs (the Identity tensors) packed into its output dict the way TensorFlow packs them when it calls the
function (``tf.nest.pack_sequence_as``), then checked against every name and key model.json has.

Environment: this module runs in the tfjs image / ``.venv/tfjs`` (tensorflowjs 4.22 with its own TF 2.19,
which cannot share an environment with the training TF 2.20). TensorFlow is imported lazily and only by
:func:`convert`; :func:`run_tfjs` (Node, ``odstack/export/js/run_tfjs.mjs``) needs numpy and ``node`` only,
so the parity framework can call it from any venv.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from odstack.errors import ConfigError, OdstackError
from odstack.export import OUTPUT_KEYS, SIGNATURE_KEY
from odstack.fsio import check_name, replace_dir
from odstack.log import LOGGER

OUTPUT_DIR = Path("output")
JS_DIR = Path(__file__).resolve().parent / "js"
RUNNER_SCRIPT = JS_DIR / "run_tfjs.mjs"
SIGNATURE_FILE = "signature.json"
#: The OD API export contract (docs/architecture.md): every converted detector must have these outputs.
DETECTION_OUTPUTS = OUTPUT_KEYS
#: quant= value -> converter flags. Weight quantization only: the graph still computes in float32.
QUANTIZATION: dict[str, list[str]] = {
    "none": [],
    "float16": ["--quantize_float16=*"],
    "uint8": ["--quantize_uint8=*"],
}
#: Ops TF.js has no kernel for that detection exports are known to contain, with what to do instead.
UNSUPPORTED_OPS = {
    "CombinedNonMaxSuppression": (
        "TF.js (and TFLite builtins) need NonMaxSuppressionV5/V4, not tf.image.combined_non_max_suppression: "
        "re-export with the OD API's default post-processing (use_combined_nms: false), or for Model Garden "
        "with task.model.detection_generator.nms_version=v1 or v2 (not 'batched')"),
}


class TfjsError(OdstackError):
    """The SavedModel cannot be converted to, or run as, a TF.js graph model."""


@dataclass
class TfjsSettings:
    """Settings of `make tfjs` (defaults: odstack/cfg/default.yaml, section ``tfjs``)."""

    run: str = "auto"
    quant: str = "none"
    saved_model: Path | None = None
    out: Path | None = None
    signature: str = SIGNATURE_KEY
    shard_mb: int = 4
    check: bool = True

    def resolved_run(self) -> str:
        """run=auto: the only run under output/ with a saved_model/ (an error lists them otherwise)."""
        if self.run != "auto":
            return check_name(self.run, "run")
        runs = sorted(p.parent.parent.name for p in OUTPUT_DIR.glob("*/saved_model/saved_model.pb"))
        if len(runs) == 1:
            return runs[0]
        if not runs:
            raise ConfigError("no output/<run>/saved_model to convert", hint="run `make export` first, or pass "
                              "saved_model=<dir>")
        raise ConfigError(f"several runs have a saved_model: {', '.join(runs)}", hint="pick one with RUN=<run>")

    def saved_model_dir(self) -> Path:
        return self.saved_model if self.saved_model else OUTPUT_DIR / self.resolved_run() / "saved_model"

    def out_dir(self) -> Path:
        """output/<run>/tfjs (quant=none) or output/<run>/tfjs_<quant>: variants live side by side."""
        if self.out:
            return self.out
        name = out_name(self.quant)
        if self.saved_model and self.run == "auto":
            return self.saved_model.parent / name
        return OUTPUT_DIR / self.resolved_run() / name


def out_name(quant: str) -> str:
    if quant not in QUANTIZATION:
        raise ConfigError(f"quant={quant!r} is not one of: {', '.join(QUANTIZATION)}")
    return "tfjs" if quant == "none" else f"tfjs_{quant}"


# ------------------------------------------------------------------------------------------ convert
@dataclass
class SavedModelInfo:
    """What the conversion needs to know about one signature of a SavedModel."""

    inputs: dict[str, dict[str, Any]]   # key -> {"name": "input_tensor:0", "dtype": "uint8", "shape": [...]}
    outputs: dict[str, dict[str, Any]]  # key -> {"name": "Identity_1:0", "dtype": "float32", "shape": [...]}
    ops: dict[str, list[str]] = field(default_factory=dict)  # op type -> nodes using it ("function/node")


def inspect_saved_model(saved_model: Path, signature: str = SIGNATURE_KEY) -> SavedModelInfo:
    """Load ``signature`` the way tensorflowjs_converter does and read its structured inputs/outputs (the
    graph tensor names the converter keeps) and every op of the function and the functions it calls."""
    import tensorflow as tf  # TF 2.19 of the tfjs environment; imported only here

    loaded = tf.saved_model.load(str(saved_model), tags=["serve"])
    if signature not in loaded.signatures:
        raise TfjsError(f"no signature {signature!r} in the SavedModel (it has: "
                        f"{', '.join(loaded.signatures) or 'none'})", where=str(saved_model))
    function = loaded.signatures[signature]

    def describe(tensor) -> dict[str, Any]:
        shape = None if tensor.shape.rank is None else [-1 if d is None else int(d) for d in tensor.shape]
        return {"name": tensor.name, "dtype": tensor.dtype.name, "shape": shape}

    structure = function.structured_outputs
    if not isinstance(structure, dict):
        raise TfjsError(f"signature {signature!r} returns {type(structure).__name__}, not a dict of named outputs",
                        where=str(saved_model))
    # The function's flat outputs (the graph tensors Identity, Identity_1, ... that the converter keeps as
    # output nodes) packed into its output structure exactly as TensorFlow does when it calls the function.
    outputs = tf.nest.pack_sequence_as(structure, function.outputs)
    for key, spec in structure.items():
        tensor = outputs[key]
        if tensor.dtype != spec.dtype or not spec.shape.is_compatible_with(tensor.shape):
            raise TfjsError(f"output {key!r}: {tensor.name} is {tensor.dtype.name} {tensor.shape}, the signature "
                            f"says {spec.dtype.name} {spec.shape}", where=str(saved_model))
    placeholders = {t.name: t for t in function.inputs}
    inputs = {}
    for key, spec in function.structured_input_signature[1].items():
        tensor = placeholders.get(f"{spec.name or key}:0")
        inputs[key] = describe(tensor) if tensor is not None else {
            "name": f"{spec.name or key}:0", "dtype": spec.dtype.name,
            "shape": None if spec.shape.rank is None else [-1 if d is None else int(d) for d in spec.shape]}
    ops: dict[str, list[str]] = {}
    graph_def = function.graph.as_graph_def()
    for node in graph_def.node:
        ops.setdefault(node.op, []).append(node.name)
    for fn in graph_def.library.function:
        for node in fn.node_def:
            ops.setdefault(node.op, []).append(f"{fn.signature.name}/{node.name}")
    return SavedModelInfo(inputs=inputs, outputs={k: describe(t) for k, t in outputs.items()}, ops=ops)


def check_ops(ops: dict[str, Iterable[str]], where: str) -> None:
    """Refuse a graph with an op TF.js cannot run (CombinedNonMaxSuppression), naming it and where it is."""
    for op, advice in UNSUPPORTED_OPS.items():
        nodes = list(ops.get(op, ()))
        if nodes:
            shown = ", ".join(nodes[:3]) + (f" (+{len(nodes) - 3} more)" if len(nodes) > 3 else "")
            raise TfjsError(f"the graph uses {op} ({shown}), which TF.js cannot run", where=where, hint=advice)


def model_json_ops(model_json: dict[str, Any]) -> dict[str, list[str]]:
    """op type -> node names of a converted graph model (top-level graph and its control-flow functions)."""
    topology = model_json.get("modelTopology", {})
    ops: dict[str, list[str]] = {}
    for node in topology.get("node", []):
        ops.setdefault(node.get("op", ""), []).append(node.get("name", ""))
    for fn in topology.get("library", {}).get("function", []):
        name = fn.get("signature", {}).get("name", "")
        for node in fn.get("nodeDef", []):
            ops.setdefault(node.get("op", ""), []).append(f"{name}/{node.get('name', '')}")
    return ops


def build_signature(model_json: dict[str, Any], info: SavedModelInfo) -> dict[str, Any]:
    """signature.json: each SavedModel output key -> the converted graph's output tensor, from the signature
    function's structured outputs, cross-checked with the model.json signature the converter wrote (its keys
    are either the real key or, when dtype/shape were ambiguous, the tensor name itself)."""
    signature = model_json.get("signature") or {}
    json_outputs = {entry["name"]: key for key, entry in (signature.get("outputs") or {}).items()}
    json_inputs = {entry["name"]: key for key, entry in (signature.get("inputs") or {}).items()}
    outputs = {}
    for key, tensor in sorted(info.outputs.items()):
        if tensor["name"] not in json_outputs:
            raise TfjsError(f"output {key!r} ({tensor['name']}) is not among model.json's outputs "
                            f"({', '.join(sorted(json_outputs)) or 'none'})")
        written = json_outputs[tensor["name"]]
        if written not in (key, tensor["name"]):
            raise TfjsError(f"model.json names {tensor['name']} {written!r}, the SavedModel calls it {key!r}")
        outputs[key] = {**tensor, "model_json_key": written}
    missing = [key for key in DETECTION_OUTPUTS if key not in outputs]
    if missing:
        raise TfjsError(f"the signature lacks {', '.join(missing)}: it does not follow the OD API export "
                        f"contract (outputs: {', '.join(sorted(outputs))})",
                        hint="export with `make export` (input_tensor -> detection_boxes/scores/classes/"
                        "num_detections)")
    inputs = {}
    for key, tensor in info.inputs.items():
        if tensor["name"] not in json_inputs:
            raise TfjsError(f"input {key!r} ({tensor['name']}) is not among model.json's inputs")
        inputs[key] = tensor
    return {"format": "odstack-tfjs-signature/1", "inputs": inputs, "outputs": outputs,
            "detection_outputs": list(DETECTION_OUTPUTS)}


def converter_command(saved_model: Path, out_dir: Path, quant: str = "none", signature: str = SIGNATURE_KEY,
                      shard_mb: int = 4, python: str | None = None) -> list[str]:
    """tensorflowjs_converter's arguments, run through its ``convert(argv)`` so that paths may contain spaces
    (the console script joins and re-splits its arguments on spaces)."""
    if quant not in QUANTIZATION:
        raise ConfigError(f"quant={quant!r} is not one of: {', '.join(QUANTIZATION)}")
    return [python or sys.executable, "-c",
            "import sys; from tensorflowjs.converters.converter import convert; convert(sys.argv[1:])",
            "--input_format=tf_saved_model", "--output_format=tfjs_graph_model",
            f"--signature_name={signature}", "--saved_model_tags=serve",
            f"--weight_shard_size_bytes={shard_mb * 1024 * 1024}", *QUANTIZATION[quant],
            str(saved_model), str(out_dir)]


def convert(saved_model: Path, out_dir: Path, quant: str = "none", signature: str = SIGNATURE_KEY,
            shard_mb: int = 4) -> dict[str, Any]:
    """Convert ``saved_model`` into ``out_dir`` (replaced atomically); returns signature.json's content."""
    saved_model, out_dir = Path(saved_model), Path(out_dir)
    if not (saved_model / "saved_model.pb").is_file():
        raise TfjsError("no saved_model.pb here", where=str(saved_model), hint="run `make export` first")
    if shard_mb < 1:
        raise ConfigError(f"shard_mb={shard_mb}: must be >= 1")
    if quant not in QUANTIZATION:
        raise ConfigError(f"quant={quant!r} is not one of: {', '.join(QUANTIZATION)}")
    info = inspect_saved_model(saved_model, signature)
    check_ops(info.ops, where=f"{saved_model} ({signature})")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        command = converter_command(saved_model, staging, quant, signature, shard_mb)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
                   CUDA_VISIBLE_DEVICES=os.environ.get("CUDA_VISIBLE_DEVICES", "-1"))
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            raise TfjsError(f"tensorflowjs_converter failed (exit {done.returncode}):\n{tail}", where=str(saved_model))
        model_json = json.loads((staging / "model.json").read_text(encoding="utf-8"))
        check_ops(model_json_ops(model_json), where=str(out_dir / "model.json"))
        sig = build_signature(model_json, info)
        sig.update(quantization=quant, signature_name=signature, source=str(saved_model),
                   converted_by=model_json.get("convertedBy"), generated_by=model_json.get("generatedBy"))
        (staging / SIGNATURE_FILE).write_text(json.dumps(sig, indent=2) + "\n", encoding="utf-8")
        staging.chmod(0o755)
        replace_dir(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sig


def size_bytes(model_dir: Path) -> int:
    """model.json + weight shards (what a browser downloads)."""
    return sum(p.stat().st_size for p in Path(model_dir).iterdir() if p.is_file() and p.name != SIGNATURE_FILE)


def stage(settings: TfjsSettings) -> dict[str, Any]:
    """`make tfjs`: convert, write signature.json, optionally run the result once in Node; log a summary."""
    saved_model, out_dir = settings.saved_model_dir(), settings.out_dir()
    start = time.monotonic()
    LOGGER.info("tfjs: converting %s (signature %s, quant=%s) -> %s", saved_model, settings.signature,
                settings.quant, out_dir)
    sig = convert(saved_model, out_dir, settings.quant, settings.signature, settings.shard_mb)
    seconds = time.monotonic() - start
    mapping = ", ".join(f"{k}={sig['outputs'][k]['name'].split(':')[0]}" for k in DETECTION_OUTPUTS)
    LOGGER.info("tfjs: %s (%.1f MB, %.1f s); outputs: %s", out_dir, size_bytes(out_dir) / 1e6, seconds, mapping)
    if settings.check:
        image = np.full((_check_size(sig), _check_size(sig, 2), 3), 128, dtype=np.uint8)
        result = run_tfjs_detailed(out_dir, [image])
        shapes = {k: list(v.shape) for k, v in result.outputs[0].items()}
        LOGGER.info("tfjs: runs in Node (@tensorflow/tfjs %s, %s backend): %.1f ms per image; output shapes %s",
                    result.tfjs_version, result.backend, result.latency_ms[0], shapes)
    LOGGER.info("tfjs: done. Graph model + signature.json in %s", out_dir)
    return sig


def _check_size(sig: dict[str, Any], axis: int = 1) -> int:
    """The fixed input height/width of the model, else 320."""
    shape = next(iter(sig["inputs"].values())).get("shape") or []
    return shape[axis] if len(shape) == 4 and shape[axis] > 0 else 320


# ----------------------------------------------------------------------------------------- run (Node)
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
    keys = list(outputs) if outputs else [k for k in sig.get("detection_outputs", DETECTION_OUTPUTS)]
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


# ------------------------------------------------------------------------------------ parity plug-in
# odstack/export/parity.py imports this module (its PLUGINS) and runs every tfjs* directory of a run in Node.
# parity is imported only where it can be (not in .venv/tfjs, which lacks its dependencies).
def _parity_find(run_dir: Path) -> dict[str, Path]:
    return {p.parent.name: p for p in sorted(Path(run_dir).glob("tfjs*/model.json"))
            if (p.parent / SIGNATURE_FILE).is_file()}


def _parity_predict(artifact: Path, images: Sequence[Any], threads: int) -> list[Any]:
    """One Node run over the val images (``threads`` is unused: the tfjs CPU and WASM backends run on one
    thread here). Latency: the model call in Node, input tensor to outputs read back, after a warm-up."""
    from odstack.export import parity

    run = run_tfjs_detailed(Path(artifact).parent, [image.array for image in images])
    return [parity.Prediction.from_od_api(outputs, ms / 1000.0) for outputs, ms in zip(run.outputs, run.latency_ms)]


def _register_parity_runner() -> None:
    try:
        from odstack.export import parity
    except ImportError:  # .venv/tfjs / the tfjs image: conversion only
        return
    parity.register_runner("tfjs", parity.Runner(
        find=_parity_find, predict=_parity_predict, quantized=lambda label: label != "tfjs",
        size=lambda artifact: size_bytes(Path(artifact).parent), runtime=runtime))


_register_parity_runner()


# ------------------------------------------------------------------------------------------ CLI
def main(argv: list[str] | None = None) -> int:
    """``python -m odstack.export.tfjs SAVED_MODEL OUT_DIR [--quant ...]``: the conversion without the
    settings file (tests, scripts). `make tfjs` uses ``python -m odstack tfjs key=value ...``."""
    from odstack.log import setup_logging

    parser = argparse.ArgumentParser(prog="python -m odstack.export.tfjs", description=__doc__.split("\n\n")[0])
    parser.add_argument("saved_model", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--quant", choices=list(QUANTIZATION), default="none")
    parser.add_argument("--signature", default=SIGNATURE_KEY)
    parser.add_argument("--shard-mb", type=int, default=4)
    parser.add_argument("--check", action="store_true", help="run the converted model once in Node")
    options = parser.parse_args(argv)
    setup_logging()
    try:
        stage(TfjsSettings(saved_model=options.saved_model, out=options.out_dir, quant=options.quant,
                           signature=options.signature, shard_mb=options.shard_mb, check=options.check))
    except OdstackError as error:
        LOGGER.error("odstack tfjs: error: %s", error)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
