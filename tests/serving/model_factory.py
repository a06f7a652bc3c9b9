"""A small, real SavedModel with the OD API's export signature, and a helper that runs the model server.

The detector here is a TEST MODEL, not a stand-in for odstack's own code: a ``tf.function`` that finds
one saturated-colour blob per class with plain TensorFlow ops, deterministically, in milliseconds. It
exists so the development model server and the Flask client can be tested over real gRPC against a real
``saved_model.pb`` with exactly the signature ``make export`` produces:

    serving_default: input_tensor uint8 [1, H, W, 3]
      -> detection_boxes   float32 [1, N, 4]  normalized ymin, xmin, ymax, xmax
         detection_scores  float32 [1, N]     sorted, highest first
         detection_classes float32 [1, N]     1-based class ids (padding rows carry 1.0, as the OD API's do)
         num_detections    float32 [1]        how many leading rows are real
    image_bytes: encoded_image_string_tensor string [1] (JPEG, PNG, ...) -> the same outputs

Classes: 1 ``red``, 2 ``green``, 3 ``blue`` (``LABELS``). A pixel belongs to a class when that channel is
>= 64 and exceeds both other channels by >= 64. Each class present gives one box, the bounding box of all
its pixels in pixel-edge coordinates (rows 10..29 -> ymin 10/H, ymax 30/H), with score = mean value of
that channel over those pixels / 255. Like a real detector it also resizes its input to a fixed size
(longer side ``FIXED_SIDE``), so an image with a side that scales to 0 pixels is refused with TensorFlow's
error, as real models refuse them. ``make_image`` draws such blobs and ``expected_detections`` gives
the answer with numpy alone, so client tests need no TensorFlow.

This module never imports TensorFlow at module level: ``build_detector_saved_model`` runs the build in
the model server's interpreter (``modelserver_python()``), so tests in a TensorFlow-free venv (the client's)
can still build the model and start the server.

Run as ``python -m tests.serving.model_factory EXPORT_DIR [--max-detections N]`` to build one model.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
LABELS: tuple[str, ...] = ("red", "green", "blue")
MAX_DETECTIONS = 10
#: The second signature, as ``make export`` writes it: one encoded JPEG/PNG/... -> the same outputs.
BYTES_SIGNATURE, BYTES_INPUT_KEY = "image_bytes", "encoded_image_string_tensor"
#: The test model resizes its input so the longer side is FIXED_SIDE px (the result is unused, see _save_detector).
FIXED_SIDE = 64
#: Convolutions of the realistic variant (benchmarks): 320x320 input, 32-64 channels, ~30 ms on one core.
REALISTIC_CONV_LAYERS = 4
#: The label map shipped with each version as ``assets.extra/label_map.pbtxt`` (OD API text format).
LABEL_MAP_PBTXT = "".join(f'item {{\n  id: {i}\n  name: "{n}"\n  display_name: "{n}"\n}}\n'
                          for i, n in enumerate(LABELS, start=1))


@dataclass(frozen=True)
class Blob:
    """A filled rectangle of one class: pixel rows ``top:bottom`` and columns ``left:right``."""

    label: str
    top: int
    left: int
    bottom: int
    right: int
    value: int = 255  # the class channel's value; the detection score is value / 255

    @property
    def class_id(self) -> int:
        return LABELS.index(self.label) + 1


#: A 120x160 grey image with three blobs whose scores (1.0, 0.8, 0.4) straddle common thresholds.
DEFAULT_BLOBS: tuple[Blob, ...] = (
    Blob("red", 10, 20, 50, 60, 255),
    Blob("green", 60, 80, 110, 150, 204),
    Blob("blue", 5, 100, 25, 140, 102),
)


def make_image(height: int = 120, width: int = 160, blobs: Sequence[Blob] = DEFAULT_BLOBS) -> np.ndarray:
    """A uint8 [H, W, 3] mid-grey image with ``blobs`` drawn in pure channel colours."""
    image = np.full((height, width, 3), 128, dtype=np.uint8)
    for blob in blobs:
        colour = [0, 0, 0]
        colour[blob.class_id - 1] = blob.value
        image[blob.top:blob.bottom, blob.left:blob.right] = colour
    return image


def expected_detections(image: np.ndarray) -> list[dict]:
    """What the test model answers for ``image`` [H, W, 3], computed with numpy (same rules, same order)."""
    height, width = image.shape[:2]
    pixels = image.astype(np.int32)
    found = []
    for channel, label in enumerate(LABELS):
        others = np.delete(pixels, channel, axis=2).max(axis=2)
        mask = (pixels[..., channel] >= 64) & (pixels[..., channel] - others >= 64)
        if not mask.any():
            continue
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = [rows[0] / height, cols[0] / width, (rows[-1] + 1) / height, (cols[-1] + 1) / width]
        score = pixels[..., channel][mask].mean() / 255.0
        found.append({"label": label, "class_id": channel + 1, "score": float(score),
                      "box": [float(v) for v in box]})
    return sorted(found, key=lambda d: -d["score"])  # stable: ties keep class order, like the model


def _save_detector(export_dir: Path, max_detections: int, realistic: bool = False) -> None:
    """Build and save the test model (needs TensorFlow; runs in the model server's interpreter). ``realistic``
    adds the compute of a small real detector (input resized to 320x320, REALISTIC_CONV_LAYERS convolutions,
    ~30 ms on one CPU core) whose result only adds 0: same answers, realistic cost (the benchmark's)."""
    import tensorflow as tf

    if max_detections < len(LABELS):
        raise ValueError(f"max_detections must be >= {len(LABELS)}")
    rng = np.random.default_rng(0)
    kernels = [tf.Variable(rng.normal(0, 0.1, (3, 3, 3 if i == 0 else 32 if i == 1 else 64, 32 if i == 0 else 64)),
                           dtype=tf.float32) for i in range(REALISTIC_CONV_LAYERS if realistic else 0)]

    def backbone_cost(image: tf.Tensor) -> tf.Tensor:
        x = tf.image.resize(tf.cast(image, tf.float32)[None] / 255.0, [320, 320])
        for i, kernel in enumerate(kernels):
            x = tf.nn.relu(tf.nn.conv2d(x, kernel, 2 if i < 2 else 1, "SAME"))
        return 0.0 * tf.reduce_sum(x)

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name="input_tensor")])
    def serve(input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
        image = tf.cast(input_tensor[0], tf.int32)
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        boxes, scores = [], []
        for channel in range(len(LABELS)):
            value = image[..., channel]
            others = tf.reduce_max(tf.gather(image, [c for c in range(3) if c != channel], axis=2), axis=2)
            mask = (value >= 64) & (value - others >= 64)
            rows, cols = tf.reduce_any(mask, axis=1), tf.reduce_any(mask, axis=0)
            row_ids, col_ids = tf.range(height), tf.range(width)
            ymin = tf.reduce_min(tf.where(rows, row_ids, height))
            ymax = tf.reduce_max(tf.where(rows, row_ids, -1)) + 1
            xmin = tf.reduce_min(tf.where(cols, col_ids, width))
            xmax = tf.reduce_max(tf.where(cols, col_ids, -1)) + 1
            present = tf.reduce_any(mask)
            size = tf.cast(tf.stack([height, width, height, width]), tf.float32)
            box = tf.cast(tf.stack([ymin, xmin, ymax, xmax]), tf.float32) / tf.maximum(size, 1.0)
            count = tf.reduce_sum(tf.cast(mask, tf.float32))
            mean = tf.reduce_sum(tf.where(mask, tf.cast(value, tf.float32), 0.0)) / tf.maximum(count, 1.0)
            boxes.append(tf.where(present, box, tf.zeros([4])))
            scores.append(tf.where(present, mean / 255.0, 0.0))
        # Like real detectors (Model Garden's resize_and_crop_image, the OD API's image resizers), the graph
        # resizes its input to a fixed size; a side that scales to 0 pixels fails there with TF's own error
        # (a 2000x1 image). The result only adds 0, so answers stay exactly those of expected_detections.
        longest = tf.maximum(height, width)
        probe = tf.cond(longest > 0, lambda: 0.0 * tf.reduce_sum(tf.image.resize(
            tf.cast(image, tf.float32), [height * FIXED_SIDE // longest, width * FIXED_SIDE // longest])),
            lambda: 0.0)
        if kernels:
            probe += tf.cond(longest > 0, lambda: backbone_cost(image), lambda: 0.0)
        scores_t = tf.stack(scores) + probe
        order = tf.argsort(scores_t, direction="DESCENDING", stable=True)
        num = tf.reduce_sum(tf.cast(scores_t > 0.0, tf.int32))
        keep = tf.range(len(LABELS)) < num
        pad = max_detections - len(LABELS)
        out_boxes = tf.where(keep[:, None], tf.gather(tf.stack(boxes), order), 0.0)
        out_scores = tf.where(keep, tf.gather(scores_t, order), 0.0)
        out_classes = tf.where(keep, tf.cast(order + 1, tf.float32), 1.0)
        return {
            "detection_boxes": tf.pad(out_boxes, [[0, pad], [0, 0]])[None],
            "detection_scores": tf.pad(out_scores, [[0, pad]])[None],
            "detection_classes": tf.pad(out_classes, [[0, pad]], constant_values=1.0)[None],
            "num_detections": tf.cast(num, tf.float32)[None],
        }

    @tf.function(input_signature=[tf.TensorSpec([1], tf.string, name=BYTES_INPUT_KEY)])
    def serve_bytes(encoded: tf.Tensor) -> dict[str, tf.Tensor]:
        # JPEGs with the accurate integer DCT, as Pillow (the client's decoder) decodes them
        image = tf.cond(tf.io.is_jpeg(encoded[0]),
                        lambda: tf.io.decode_jpeg(encoded[0], channels=3, dct_method="INTEGER_ACCURATE"),
                        lambda: tf.io.decode_image(encoded[0], channels=3, expand_animations=False))
        return serve(image[None])

    module = tf.Module()
    module.serve, module.serve_bytes, module.kernels = serve, serve_bytes, kernels
    tf.saved_model.save(module, str(export_dir), signatures={"serving_default": serve.get_concrete_function(),
                                                             BYTES_SIGNATURE: serve_bytes.get_concrete_function()})
    extra = export_dir / "assets.extra"
    extra.mkdir(exist_ok=True)
    (extra / "label_map.pbtxt").write_text(LABEL_MAP_PBTXT, encoding="utf-8")


def modelserver_python() -> str:
    """The interpreter with TensorFlow + tensorflow-serving-api: $ODSTACK_MODELSERVER_PYTHON, else
    .venv/modelserver/bin/python, else this interpreter."""
    env = os.environ.get("ODSTACK_MODELSERVER_PYTHON")
    if env:
        return env
    venv = REPO_ROOT / ".venv" / "modelserver" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def _env() -> dict[str, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def build_detector_saved_model(export_dir: Path, max_detections: int = MAX_DETECTIONS, realistic: bool = False) -> Path:
    """Write the test detector to ``export_dir`` (saved_model.pb, variables/, assets.extra/label_map.pbtxt);
    ``realistic``: with a real detector's compute (see _save_detector)."""
    export_dir = Path(export_dir)
    subprocess.run([modelserver_python(), "-m", "tests.serving.model_factory", str(export_dir),
                    "--max-detections", str(max_detections), *(["--realistic"] if realistic else [])],
                   check=True, env=_env(), cwd=REPO_ROOT)
    return export_dir


def add_version(base_path: Path, version: int, saved_model: Path) -> Path:
    """Publish ``saved_model`` as ``base_path/<version>`` atomically (copy aside, then rename), the way
    an exporter should, so the server never sees a half-written version."""
    target = Path(base_path) / str(version)
    staging = Path(base_path) / f".tmp-{version}"
    shutil.copytree(saved_model, staging)
    staging.rename(target)
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ModelServerProcess:
    """``python -m odstack.serving.modelserver`` as a subprocess on 127.0.0.1, gRPC on ``port`` and the REST
    status port on ``rest_port`` (free ports by default). Waiting uses REST, so callers need no gRPC stubs."""

    def __init__(self, args: Sequence[str], port: int | None = None, log_path: Path | None = None):
        self.args = list(args)
        self.port = port or free_port()
        self.rest_port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "ModelServerProcess":
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                [modelserver_python(), "-m", "odstack.serving.modelserver", "--bind_address", "127.0.0.1",
                 "--port", str(self.port), "--rest_api_port", str(self.rest_port), *self.args],
                env=_env(), cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        return self

    def status(self, model_name: str) -> list[dict]:
        """TF Serving's REST model status: [{"version": "1", "state": "AVAILABLE", "status": {...}}, ...]."""
        url = f"http://127.0.0.1:{self.rest_port}/v1/models/{model_name}"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return json.load(answer)["model_version_status"]
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return []
            raise

    def wait_available(self, model_name: str, timeout: float = 60.0, version: int | None = None) -> None:
        """Block until ``version`` (default: any) of ``model_name`` is AVAILABLE."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"model server exited with {self.process.returncode}; log: {self.log_path}")
            try:
                if any(s["state"] == "AVAILABLE" and version in (None, int(s["version"]))
                       for s in self.status(model_name)):
                    return
            except OSError:  # not listening yet
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{model_name} not AVAILABLE on {self.address} after {timeout:.0f} s; log: {self.log_path}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Send ``sig`` (SIGKILL simulates a crash) and reap the process; returns its exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Build odstack's test detector SavedModel.")
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("--max-detections", type=int, default=MAX_DETECTIONS)
    parser.add_argument("--realistic", action="store_true", help="add a small real detector's compute (~30 ms)")
    options = parser.parse_args()
    _save_detector(options.export_dir, options.max_detections, options.realistic)
