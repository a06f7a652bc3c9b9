"""TF.js conversion: ``output/<run>/saved_model`` -> ``output/<run>/tfjs/`` (graph model + signature.json).
The Node runner that executes such a model (for `make tfjs`'s check and parity) is the TF.js runtime,
odstack/export/runtimes/tfjs.py.

    python -m odstack tfjs run=<run> quant=none|float16|uint8              (the tfjs image, or .venv/tfjs)
    python -m odstack tfjs saved_model=DIR out=DIR [quant=...] [check=false]  (any SavedModel)

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
:func:`convert`.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from odstack.contract import OUTPUT_KEYS, SIGNATURE_KEY
from odstack.errors import ConfigError
from odstack.export.runtimes.tfjs import SIGNATURE_FILE, TfjsError, run_tfjs_detailed, size_bytes
from odstack.fsio import check_name, replace_dir
from odstack.log import LOGGER, doing
from odstack.tfruntime import import_tensorflow

OUTPUT_DIR = Path("output")
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
    tf = import_tensorflow()  # TF 2.19 of the tfjs environment (it prints CUDA/XLA noise on CPU hosts)

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


def stage(settings: TfjsSettings) -> dict[str, Any]:
    """`make tfjs`: convert, write signature.json, optionally run the result once in Node; log a summary."""
    saved_model, out_dir = settings.saved_model_dir(), settings.out_dir()
    start = time.monotonic()
    LOGGER.info("tfjs: converting %s (signature %s, quant=%s) -> %s", saved_model, settings.signature,
                settings.quant, out_dir)
    doing(f"tensorflowjs_converter on {saved_model} (quant={settings.quant})")
    sig = convert(saved_model, out_dir, settings.quant, settings.signature, settings.shard_mb)
    seconds = time.monotonic() - start
    mapping = ", ".join(f"{k}={sig['outputs'][k]['name'].split(':')[0]}" for k in DETECTION_OUTPUTS)
    LOGGER.info("tfjs: %s (%.1f MB, %.1f s); outputs: %s", out_dir, size_bytes(out_dir) / 1e6, seconds, mapping)
    if settings.check:
        image = np.full((_check_size(sig), _check_size(sig, 2), 3), 128, dtype=np.uint8)
        doing("running the graph model once in Node")
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
