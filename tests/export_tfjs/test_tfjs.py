"""TF.js conversion (odstack/export/tfjs.py) and the Node runner (odstack/export/runtimes/tfjs.py + js/run_tfjs.mjs).

The chain under test: a SavedModel with the OD API signature -> ``python -m odstack tfjs`` in
``.venv/tfjs`` (tensorflowjs 4.22 with its own TF 2.19, run as a subprocess: it cannot share this process's
TF 2.20) -> model.json + shards + signature.json -> Node with pure-JS @tensorflow/tfjs (CPU backend) on
uint8 images -> the four detection outputs, compared with what the SavedModel itself answers (run in a
TensorFlow interpreter, ``tests.serving.model_factory.modelserver_python()``).

Models: the test detector of tests/serving/model_factory.py (a real tf.function SavedModel: blob finding,
argsort, padding -- outputs that look alike, which is what breaks the converter's own output naming), a tiny
model using tf.image.combined_non_max_suppression (must be refused), and any real export found in
output/*/saved_model (skipped when there is none).

Needs: .venv/tfjs (dockerfiles/requirements/tfjs.txt), node, and odstack/export/js/node_modules (npm ci);
`make test` creates them. Without them these tests skip and say which is missing.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from odstack.export import tfjs
from odstack.export.runtimes import tfjs as tfjs_runtime
from tests.serving.conftest import detector_saved_model  # noqa: F401  (session fixture: the test detector)
from tests.serving.model_factory import (MAX_DETECTIONS, REPO_ROOT, Blob, expected_detections,
                                         make_image, modelserver_python)

TFJS_PYTHON = Path(os.environ.get("ODSTACK_TFJS_PYTHON", REPO_ROOT / ".venv" / "tfjs" / "bin" / "python"))
FLOAT_TOLERANCE = 1e-4


def _missing() -> str | None:
    if not TFJS_PYTHON.exists():
        return f"no {TFJS_PYTHON}: create .venv/tfjs from dockerfiles/requirements/tfjs.txt (make venvs)"
    if not (os.environ.get("ODSTACK_NODE") or shutil.which("node")):
        return "node (Node.js) is not installed"
    return tfjs_runtime.node_modules_missing()


#: on every test that converts or runs a model (the pure ones run anywhere)
needs_tfjs = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))

IMAGES = [
    make_image(),                                                             # three blobs, 120x160
    make_image(96, 96, [Blob("green", 3, 4, 90, 20, 180)]),                   # one blob
    make_image(64, 80, []),                                                   # nothing: num_detections 0
    make_image(200, 150, [Blob("blue", 100, 10, 190, 140, 255), Blob("red", 0, 0, 5, 5, 130)]),
]


def _env() -> dict[str, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1", ODSTACK_HEARTBEAT_S="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def convert(saved_model: Path, out_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m odstack tfjs`` in .venv/tfjs, as `make tfjs` runs it (RUNNER=local)."""
    return subprocess.run([str(TFJS_PYTHON), "-m", "odstack", "tfjs", f"saved_model={saved_model}", f"out={out_dir}",
                           "check=false", *args],
                          env=_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)


_REFERENCE = r"""
import sys, numpy as np, tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
serve = model.signatures["serving_default"]
key = next(iter(serve.structured_input_signature[1]))
images = np.load(sys.argv[2], allow_pickle=True)
results = {}
for i, image in enumerate(images["images"]):
    out = serve(**{key: tf.constant(image[None])})
    for name, value in out.items():
        results[f"{i}/{name}"] = value.numpy()
np.savez(sys.argv[3], **results)
"""


def saved_model_outputs(saved_model: Path, images: list[np.ndarray], tmp_path: Path) -> list[dict[str, np.ndarray]]:
    """What the SavedModel answers, computed with TensorFlow in its own interpreter."""
    packed = np.empty(len(images), dtype=object)
    packed[:] = images
    np.savez(tmp_path / "images.npz", images=packed)
    subprocess.run([modelserver_python(), "-c", _REFERENCE, str(saved_model), str(tmp_path / "images.npz"),
                    str(tmp_path / "reference.npz")], env=_env(), check=True, capture_output=True, timeout=600)
    with np.load(tmp_path / "reference.npz") as data:
        results = [{} for _ in images]
        for name in data.files:
            index, key = name.split("/", 1)
            results[int(index)][key] = data[name]
    return results


def max_differences(got: list[dict[str, np.ndarray]], want: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Largest absolute difference per detection output over all images (shapes must agree)."""
    worst = {key: 0.0 for key in tfjs.DETECTION_OUTPUTS}
    for mine, theirs in zip(got, want, strict=True):
        for key in tfjs.DETECTION_OUTPUTS:
            assert mine[key].shape == theirs[key].shape, key
            worst[key] = max(worst[key], float(np.max(np.abs(mine[key].astype(np.float64) - theirs[key]))))
    return worst


@pytest.fixture(scope="module")
def reference(detector_saved_model: Path,  # noqa: F811
              tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, np.ndarray]]:
    return saved_model_outputs(detector_saved_model, IMAGES, tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="module")
def converted(detector_saved_model: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    """quant -> converted model directory (converted once per module and quantization)."""
    cache: dict[str, Path] = {}

    def get(quant: str) -> Path:
        if quant not in cache:
            out = tmp_path_factory.mktemp(f"tfjs-{quant}") / "run dir" / "tfjs"  # a space: paths must survive it
            done = convert(detector_saved_model, out, f"quant={quant}")
            assert done.returncode == 0, done.stderr[-3000:]
            cache[quant] = out
            SAID[quant] = done.stderr
        return cache[quant]

    return get


SAID: dict[str, str] = {}  # what each conversion logged


# ------------------------------------------------------------------------------------------ conversion
@needs_tfjs
def test_conversion_writes_graph_model_and_signature(converted) -> None:
    out = converted("none")
    model_json = json.loads((out / "model.json").read_text())
    assert model_json["format"] == "graph-model"
    assert model_json["convertedBy"] == "TensorFlow.js Converter v4.22.0"
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".bin")
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "staging directory left behind"
    sig = json.loads((out / tfjs.SIGNATURE_FILE).read_text())
    assert sig["inputs"] == {"input_tensor": {"name": "input_tensor:0", "dtype": "uint8", "shape": [1, -1, -1, 3]}}
    assert sig["quantization"] == "none"
    assert set(tfjs.DETECTION_OUTPUTS) <= set(sig["outputs"])
    assert sig["outputs"]["detection_boxes"]["shape"] == [1, MAX_DETECTIONS, 4]
    assert "tfjs: tensorflowjs_converter on " in SAID["none"]      # the heartbeat (every 1 s here) said what runs


@needs_tfjs
def test_signature_maps_identity_outputs(converted) -> None:
    """scores and classes are both float32 [1, N]: the converter cannot tell them apart and leaves their
    model.json keys as tensor names. signature.json must still name every Identity_N correctly."""
    out = converted("none")
    model_json = json.loads((out / "model.json").read_text())
    json_keys = set(model_json["signature"]["outputs"])
    assert "detection_scores" not in json_keys and "detection_classes" not in json_keys  # the converter's gap
    sig = json.loads((out / tfjs.SIGNATURE_FILE).read_text())
    names = {key: entry["name"] for key, entry in sig["outputs"].items()}
    # nest.flatten order of the signature's dict = sorted keys: boxes, classes, scores, num_detections
    assert names == {"detection_boxes": "Identity:0", "detection_classes": "Identity_1:0",
                     "detection_scores": "Identity_2:0", "num_detections": "Identity_3:0"}
    assert {entry["name"] for entry in model_json["signature"]["outputs"].values()} == set(names.values())


@needs_tfjs
def test_float_model_matches_saved_model(converted, reference) -> None:
    run = tfjs_runtime.run_tfjs_detailed(converted("none"), IMAGES)
    assert run.backend == "cpu" and run.tfjs_version == "4.22.0"
    worst = max_differences(run.outputs, reference)
    print(f"\ntfjs float32 vs SavedModel, max abs diff: {worst}; "
          f"latency {np.mean(run.latency_ms):.1f} ms/image (Node, cpu)")
    assert max(worst.values()) <= FLOAT_TOLERANCE, worst
    # and both give the right answer (numpy ground truth of the test detector), so a swapped mapping fails
    for image, outputs in zip(IMAGES, run.outputs):
        truth = expected_detections(image)
        count = int(outputs["num_detections"][0])
        assert count == len(truth)
        np.testing.assert_allclose(outputs["detection_scores"][0, :count], [d["score"] for d in truth], atol=1e-5)
        np.testing.assert_array_equal(outputs["detection_classes"][0, :count], [d["class_id"] for d in truth])
        np.testing.assert_allclose(outputs["detection_boxes"][0, :count],
                                   np.reshape([d["box"] for d in truth], (-1, 4)), atol=1e-5)


@needs_tfjs
def test_run_tfjs_is_the_parity_runner(converted, reference) -> None:
    """run_tfjs(model_dir, images) -> per image exactly the four detection outputs, float32, batch dim kept."""
    results = tfjs_runtime.run_tfjs(converted("none"), IMAGES[:2])
    assert len(results) == 2
    for mine, theirs in zip(results, reference[:2]):
        assert set(mine) == set(tfjs.DETECTION_OUTPUTS)
        for key, value in mine.items():
            assert value.dtype == np.float32 and value.shape == theirs[key].shape


@needs_tfjs
def test_wasm_backend_agrees(converted, reference) -> None:
    run = tfjs_runtime.run_tfjs_detailed(converted("none"), IMAGES, backend="wasm")
    assert run.backend == "wasm"
    assert max(max_differences(run.outputs, reference).values()) <= FLOAT_TOLERANCE


@needs_tfjs
@pytest.mark.parametrize("quant", ["float16", "uint8"])
def test_quantized_models_report_their_error(converted, reference, quant: str) -> None:
    """Weight quantization: smaller shards, bounded error (reported; the test model has few float weights)."""
    out = converted(quant)
    assert json.loads((out / tfjs.SIGNATURE_FILE).read_text())["quantization"] == quant
    model_json = json.loads((out / "model.json").read_text())
    quantized = [w for group in model_json["weightsManifest"] for w in group["weights"] if "quantization" in w]
    assert quantized, "no weight was quantized"
    run = tfjs_runtime.run_tfjs_detailed(out, IMAGES)
    worst = max_differences(run.outputs, reference)
    print(f"\ntfjs {quant} vs SavedModel, max abs diff: {worst}; size {tfjs.size_bytes(out)} bytes "
          f"(float32: {tfjs.size_bytes(converted('none'))})")
    for mine, theirs in zip(run.outputs, reference):
        np.testing.assert_array_equal(mine["num_detections"], theirs["num_detections"])
    assert worst["detection_boxes"] <= 0.05 and worst["detection_scores"] <= 0.05, worst


# ---------------------------------------------------------------------------------------- refusals
_COMBINED_NMS_MODEL = r"""
import sys, tensorflow as tf
@tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name="input_tensor")])
def serve(input_tensor):
    mean = tf.reduce_mean(tf.cast(input_tensor, tf.float32) / 255.0, axis=[1, 2])            # [1, 3]
    box = tf.concat([mean[:, :2] * 0.5, mean[:, :2] * 0.5 + 0.5], axis=1)                    # [1, 4]
    boxes = tf.reshape(box, [1, 1, 1, 4]) + tf.reshape(tf.range(4, dtype=tf.float32), [1, 4, 1, 1]) * 0.1
    scores = tf.tile(mean[:, None, :], [1, 4, 1])                                             # [1, 4, 3]
    b, s, c, n = tf.image.combined_non_max_suppression(boxes, scores, 5, 5, clip_boxes=False)
    return {"detection_boxes": b, "detection_scores": s, "detection_classes": c + 1.0,
            "num_detections": tf.cast(n, tf.float32)}
module = tf.Module()
module.serve = serve
tf.saved_model.save(module, sys.argv[1], signatures={"serving_default": serve.get_concrete_function()})
"""


@needs_tfjs
def test_combined_nms_is_refused_with_the_op_named(tmp_path: Path) -> None:
    saved_model = tmp_path / "combined_nms"
    subprocess.run([modelserver_python(), "-c", _COMBINED_NMS_MODEL, str(saved_model)], env=_env(), check=True,
                   capture_output=True, timeout=600)
    done = convert(saved_model, tmp_path / "tfjs")
    assert done.returncode == 2, done.stderr[-3000:]
    message = done.stderr
    assert "CombinedNonMaxSuppression" in message and "TF.js cannot run" in message
    assert "NonMaxSuppressionV5" in message  # what to do instead
    assert "Traceback" not in message
    assert not (tmp_path / "tfjs").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["combined_nms"]  # no staging directory left


def test_check_ops_finds_combined_nms_in_a_converted_graph() -> None:
    """The same refusal on a model.json (e.g. converted elsewhere with --skip_op_check), functions included."""
    model_json = {"modelTopology": {"node": [{"name": "x", "op": "Placeholder"}], "library": {"function": [
        {"signature": {"name": "body"}, "nodeDef": [{"name": "nms", "op": "CombinedNonMaxSuppression"}]}]}}}
    ops = tfjs.model_json_ops(model_json)
    assert ops["CombinedNonMaxSuppression"] == ["body/nms"]
    with pytest.raises(tfjs.TfjsError, match="CombinedNonMaxSuppression"):
        tfjs.check_ops(ops, where="model.json")
    tfjs.check_ops({"NonMaxSuppressionV5": ["nms"]}, where="model.json")


@needs_tfjs
def test_missing_saved_model_is_a_clear_error(tmp_path: Path) -> None:
    done = convert(tmp_path / "nothing", tmp_path / "tfjs")
    assert done.returncode == 2 and "no saved_model.pb here" in done.stderr and "Traceback" not in done.stderr


@needs_tfjs
def test_runner_needs_signature_json(converted, tmp_path: Path) -> None:
    copy = shutil.copytree(converted("none"), tmp_path / "copy")
    (copy / tfjs.SIGNATURE_FILE).unlink()
    with pytest.raises(tfjs.TfjsError, match="signature.json"):
        tfjs_runtime.run_tfjs(copy, IMAGES[:1])
    with pytest.raises(ValueError, match="uint8"):
        tfjs_runtime.run_tfjs(converted("none"), [IMAGES[0].astype(np.float32)])


# ---------------------------------------------------------------------------------------- settings
def test_settings_resolve_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tfjs, "OUTPUT_DIR", tmp_path)
    with pytest.raises(tfjs.ConfigError, match="no output/<run>/saved_model"):
        tfjs.TfjsSettings().saved_model_dir()
    (tmp_path / "a" / "saved_model").mkdir(parents=True)
    (tmp_path / "a" / "saved_model" / "saved_model.pb").write_bytes(b"")
    assert tfjs.TfjsSettings().saved_model_dir() == tmp_path / "a" / "saved_model"
    assert tfjs.TfjsSettings().out_dir() == tmp_path / "a" / "tfjs"
    (tmp_path / "b" / "saved_model").mkdir(parents=True)
    (tmp_path / "b" / "saved_model" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(tfjs.ConfigError, match="several runs"):
        tfjs.TfjsSettings().saved_model_dir()
    assert tfjs.TfjsSettings(run="b").out_dir() == tmp_path / "b" / "tfjs"
    with pytest.raises(tfjs.ConfigError, match="letters"):
        tfjs.TfjsSettings(run="../x").saved_model_dir()
    with pytest.raises(tfjs.ConfigError, match="quant"):
        tfjs.converter_command(Path("a"), Path("b"), quant="int8")


# ------------------------------------------------------------------------------- real exported models
# output/*/saved_model (make export), plus any listed in $ODSTACK_TEST_SAVED_MODELS (os.pathsep-separated dirs)
REAL_EXPORTS = sorted(REPO_ROOT.glob("output/*/saved_model/saved_model.pb")) + [
    Path(p) / "saved_model.pb" for p in os.environ.get("ODSTACK_TEST_SAVED_MODELS", "").split(os.pathsep) if p]


_REAL_CONVERTED: dict[Path, Path] = {}  # each real export is converted once for both backends


def images_for(saved_model: Path, count: int = 4) -> list[np.ndarray]:
    """A few val images of the run that exported ``saved_model`` (so the detector finds something), else
    the bundled raccoon photos."""
    from PIL import Image

    from odstack.export import parity
    from odstack.train.run import RunDir

    with contextlib.suppress(Exception):  # no run.json or dataset next to this export: the fixtures
        images = [v.array for v in parity.load_val_images(RunDir(saved_model.parent), limit=count,
                                                          ground_truth=False)]
        if images:
            return images
    return [np.asarray(Image.open(p).convert("RGB")) for p in
            sorted((REPO_ROOT / "tests" / "fixtures" / "raccoon" / "images").glob("*.jpg"))[:count]]


@needs_tfjs
@pytest.mark.skipif(not REAL_EXPORTS, reason="no real export in output/*/saved_model (make train && make export)")
@pytest.mark.parametrize("saved_model_pb", REAL_EXPORTS, ids=lambda p: p.parent.parent.name)
@pytest.mark.parametrize("backend", ["cpu", "wasm"])
def test_real_export_matches_saved_model(saved_model_pb: Path, backend: str, tmp_path: Path,
                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    images = images_for(saved_model_pb.parent)
    out = _REAL_CONVERTED.get(saved_model_pb)
    if out is None:
        out = tmp_path_factory.mktemp("real") / "tfjs"
        done = convert(saved_model_pb.parent, out)
        assert done.returncode == 0, done.stderr[-3000:]
        _REAL_CONVERTED[saved_model_pb] = out
    run = tfjs_runtime.run_tfjs_detailed(out, images, backend=backend)
    want = saved_model_outputs(saved_model_pb.parent, images, tmp_path)
    worst = max_differences(run.outputs, want)
    print(f"\n{saved_model_pb.parent}: tfjs float32 ({backend}) vs SavedModel max abs diff {worst}; "
          f"{sum(int(w['num_detections'][0]) for w in want)} detections; "
          f"{np.mean(run.latency_ms):.1f} ms/image (Node); {tfjs.size_bytes(out) / 1e6:.1f} MB")
    assert worst["num_detections"] == 0
    assert max(worst.values()) <= FLOAT_TOLERANCE, worst


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q", "-s"]))
