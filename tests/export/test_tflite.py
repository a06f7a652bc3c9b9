"""`make tflite` + `make parity` on a real trained detector: float TFLite equals the SavedModel to ~1e-4
(square and letterboxed non-square images), int8 converts and reports its AP loss, NMS is TFLite's
TFLite_Detection_PostProcess (no CombinedNonMaxSuppression), labels ship beside the models, parity.json
has its fields, plug-in runners are judged like the built-in ones, and Edge TPU fails clearly here."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from odstack.errors import ConfigError
from odstack.errors import ExportError
from odstack.export import parity, tflite
from odstack.export.runtimes import tflite as tflite_runtime
from odstack.export.runtimes.base import Runner

from .conftest import CONVERTED_PARITY, IMAGE_SIZE, SCORE_THRESHOLD


@pytest.fixture(scope="module")
def run(exported, converted):
    return exported.run


def test_conversion_ends_in_parity(converted_parity):
    """`make tflite` ran parity at the end, with the default settings (what a user gets)."""
    assert converted_parity["score_threshold"] == parity.ParitySettings().score_threshold
    assert set(converted_parity["formats"]) == {"saved_model", "tflite_float", "tflite_int8"}
    assert converted_parity["formats"]["tflite_float"]["pass"]


@pytest.fixture(scope="module")
def converted_parity(run):
    return json.loads((run.path / CONVERTED_PARITY).read_text())


def test_float_matches_the_saved_model(report):
    entry = report["formats"]["tflite_float"]
    print(f"\ntflite float vs SavedModel: max |dbox| {entry['max_box_diff']:.1e}, max |dscore| "
          f"{entry['max_score_diff']:.1e}, {entry['matched']} detections matched")
    assert entry["pass"] and not entry["quantized"]
    assert entry["matched"] > 0, "nothing above the score threshold: the comparison would be empty"
    assert entry["max_box_diff"] <= 1e-4 and entry["max_score_diff"] <= 1e-4
    assert entry["missing"] == entry["extra"] == 0
    assert abs(entry["ap50_delta"]) <= 0.01  # low-score boxes (below the threshold) may differ: TFLite clips after NMS


def test_float_matches_on_non_square_images(run):
    """The TFLite input is letterboxed outside the model: preprocess/postprocess must mirror the SavedModel."""
    images = []
    for i, val in enumerate(parity.load_val_images(run, limit=8)):
        size = [(160, 96), (90, 140), (301, 211)][i % 3]
        array = np.asarray(Image.fromarray(val.array).resize(size, Image.BILINEAR))
        images.append(parity.ValImage(i + 1, val.filename, array, b""))
    reference = parity.RUNNERS["saved_model"].predict(run.path / "saved_model", images, 2)
    float_model = run.path / "tflite" / "model_float.tflite"
    result = parity.compare(reference, parity.RUNNERS["tflite"].predict(float_model, images, 2), SCORE_THRESHOLD, 0.5)
    assert result["matched"] > 0
    assert result["max_box_diff"] <= 1e-4 and result["max_score_diff"] <= 1e-4, result
    assert result["missing"] == result["extra"] == 0, result


def test_int8_converts_and_reports_its_ap_loss(report, converted):
    entry = report["formats"]["tflite_int8"]
    reference = report["formats"]["saved_model"]
    print(f"\ntflite int8: AP50 {entry['ap50']:.3f} vs {reference['ap50']:.3f}, size ratio {entry['size_ratio']:.2f}, "
          f"{entry['speedup']:.1f}x the SavedModel's speed")
    assert entry["quantized"] and entry["pass"]
    assert 0.0 <= entry["ap50"] <= 1.0 and entry["ap50_delta"] == pytest.approx(entry["ap50"] - reference["ap50"])
    assert entry["size_bytes"] < 0.5 * converted["float"].stat().st_size


def test_nms_is_tflite_detection_postprocess(converted):
    for path in converted.values():
        ops = tflite.check_nms_ops(path)
        assert tflite_runtime.POSTPROCESS_OP in ops
        assert not [op for op in ops if "NonMaxSuppression" in op or "NON_MAX_SUPPRESSION" in op]


def test_labels_and_model_info_ship_beside_the_models(run, converted):
    out = run.path / "tflite"
    assert sorted(p.name for p in out.glob("*.tflite")) == ["model_float.tflite", "model_int8.tflite"]
    # line k names output class k; Model Garden's class 0 is the background
    assert (out / "labels.txt").read_text().splitlines() == ["???", "square", "circle", "triangle"]
    info = json.loads((out / tflite_runtime.INFO_FILE).read_text())
    assert info["input"]["shape"] == [1, IMAGE_SIZE, IMAGE_SIZE, 3] and info["input"]["dtype"] == "float32"
    assert info["input"]["resize"] == "letterbox" and info["class_offset"] == 0
    assert info["variants"]["int8"]["size_bytes"] == converted["int8"].stat().st_size
    assert info["step"] == json.loads((run.path / "export.json").read_text())["step"]


def test_parity_json_fields(run, report):
    assert report == json.loads((run.path / parity.PARITY_JSON).read_text())
    assert {"run", "created", "images", "reference", "score_threshold", "iou_threshold", "tolerance",
            "threads", "formats"} <= set(report)
    assert report["images"] == 24 and report["reference"] == "saved_model"
    assert set(report["formats"]) == {"saved_model", "tflite_float", "tflite_int8"}
    for label, entry in report["formats"].items():
        assert {"path", "runner", "runtime", "size_bytes", "ap50", "latency_ms", "quantized", "detections"} <= set(entry)
        assert entry["latency_ms"]["mean"] > 0 and entry["size_bytes"] > 0
        if label != "saved_model":
            assert {"max_box_diff", "max_score_diff", "matched", "missing", "extra", "ap50_delta", "size_ratio",
                    "speedup", "pass"} <= set(entry)
            assert entry["runtime"].startswith(("ai-edge-litert", "tf.lite"))


def test_a_plugged_in_runner_is_compared_and_judged(run, report, monkeypatch):
    """The TF.js runner plugs in this way: a float format off by 1e-3 fails parity (strict) but is reported."""
    def find(run_dir):
        return {"fake": run_dir / "saved_model"}

    def predict(artifact, images, threads):
        predictions = parity.RUNNERS["saved_model"].predict(artifact, images, threads)
        for p in predictions:
            p.boxes = np.clip(p.boxes + 1e-3, 0, 1)
        return predictions

    monkeypatch.setitem(parity.RUNNERS, "fake", Runner(find=find, predict=predict))
    saved = run.path / parity.PARITY_JSON
    shutil.copy(saved, saved.with_suffix(".keep"))
    try:
        settings = parity.ParitySettings(run=str(run.path), images=6, score_threshold=SCORE_THRESHOLD)
        with pytest.raises(ExportError, match="parity failed for fake"):
            parity.run_parity(settings)  # strict (the default): fails, after writing parity.json
        fake = json.loads(saved.read_text())["formats"]
        assert fake["fake"]["matched"] > 0 and not fake["fake"]["pass"]
        assert fake["fake"]["max_box_diff"] == pytest.approx(1e-3, abs=2e-4)
        assert fake["tflite_float"]["pass"]
    finally:
        shutil.move(saved.with_suffix(".keep"), saved)


def test_edgetpu_fails_clearly_without_the_compiler(run, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match="edgetpu_compiler"):
        tflite.convert(tflite.TFLiteSettings(run=str(run.path), quant="int8", edgetpu=True))
    with pytest.raises(ConfigError, match="int8"):
        tflite.convert(tflite.TFLiteSettings(run=str(run.path), quant="float", edgetpu=True))


def test_quant_names_are_checked():
    assert tflite.quant_list("all") == ["float", "fp16", "dynamic", "int8"]
    assert tflite.quant_list("int8, float,int8") == ["int8", "float"]
    with pytest.raises(ConfigError, match="quant="):
        tflite.quant_list("uint8")


def test_two_stage_odapi_models_are_refused(tmp_path):
    from odstack.contract import Nms
    from odstack.train.engines import odapi
    from odstack.train.run import RunDir

    run = RunDir(tmp_path / "frcnn")
    run.path.mkdir()
    (run.path / "pipeline.config").write_text("model {\n  faster_rcnn {\n    num_classes: 1\n  }\n}\n")
    with pytest.raises(ExportError, match="Faster R-CNN"):
        odapi.tflite_graph(run, tmp_path / "ckpt-1", Nms(), tmp_path)
