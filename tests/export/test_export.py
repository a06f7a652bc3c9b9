"""`make export` on a real trained detector: the OD API signature exactly, boxes normalized and equal to
Model Garden's own export, no CombinedNonMaxSuppression, the TF Serving layout with monotonically
increasing versions published atomically, and refusal of checkpoints without trained weights."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odstack.errors import ConfigError
from odstack.contract import INPUT_KEY, OUTPUT_KEYS, Nms, check_signature
from odstack.errors import ExportError
from odstack.export import publish, saved_model
from odstack.train.engines import tfvision
from odstack.export.parity import load_val_images
from odstack.train.run import RunDir

from .conftest import IMAGE_SIZE


def _graph_ops(path: Path) -> set[str]:
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    ops = set()
    for meta in proto.meta_graphs:
        ops.update(n.op for n in meta.graph_def.node)
        for function in meta.graph_def.library.function:
            ops.update(n.op for n in function.node_def)
    return ops


def _images(run: RunDir, count: int = 6) -> list[np.ndarray]:
    """Val images, plus non-square resizes of them (the export letterboxes those)."""
    arrays = [v.array for v in load_val_images(run, limit=count)]
    extra = [np.asarray(Image.fromarray(a).resize(size)) for a, size in zip(arrays, [(160, 96), (90, 140)])]
    return arrays + extra


def test_signature_is_exactly_the_od_api_contract(exported):
    import tensorflow as tf

    path = exported.result.saved_model
    assert path == exported.run.path / "saved_model"
    outputs = check_signature(path, strict=True)
    assert set(outputs) == set(OUTPUT_KEYS)
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    assert list(inputs) == [INPUT_KEY]
    assert inputs[INPUT_KEY].dtype == tf.uint8 and inputs[INPUT_KEY].shape.as_list() == [1, None, None, 3]
    shapes = {k: (v.dtype, v.shape.as_list()) for k, v in signature.structured_outputs.items()}
    assert shapes == {"detection_boxes": (tf.float32, [1, 100, 4]), "detection_scores": (tf.float32, [1, 100]),
                      "detection_classes": (tf.float32, [1, 100]), "num_detections": (tf.float32, [1])}
    # the label map travels with the model
    assert (path / "assets.extra" / "label_map.pbtxt").read_text() == exported.run.label_map.read_text()


@pytest.fixture(scope="module")
def garden(exported, tmp_path_factory):
    """Model Garden's own export of the same checkpoint, as a function image -> (normalized boxes, best score,
    class) per anchor: its default (pixel boxes of the resized input clipped to it, per-class scores) with
    ``clipped=True``, else through odstack's module that leaves boxes unclipped for the adapter's NMS."""
    import tensorflow as tf
    from official.vision.serving import export_saved_model_lib

    record = json.loads((exported.run.path / publish.EXPORT_JSON).read_text())
    params = tfvision.run_params(exported.run, {"task": {"model": {"detection_generator": {
        "apply_nms": False}}}})
    assert not params.task.export_config.output_normalized_coordinates  # Model Garden's default: pixels
    signatures = {}
    for clipped in (True, False):
        directory = tmp_path_factory.mktemp("garden")
        module = None if clipped else tfvision.unclipped_detection_module(params, [IMAGE_SIZE, IMAGE_SIZE])
        export_saved_model_lib.export_inference_graph(
            input_type="image_tensor", batch_size=1, input_image_size=[IMAGE_SIZE, IMAGE_SIZE], params=params,
            checkpoint_path=record["checkpoint"], export_dir=str(directory), export_module=module)
        signatures[clipped] = tf.saved_model.load(str(directory)).signatures["serving_default"]

    def run(image: np.ndarray, clipped: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        g = {k: v.numpy()[0] for k, v in signatures[clipped](inputs=tf.constant(image[None])).items()}
        h, w = image.shape[:2]
        boxes = g["decoded_boxes"].reshape(-1, 4) / np.tile(g["image_info"][2], 2) / [h, w, h, w]
        return boxes, g["decoded_box_scores"].max(-1), g["decoded_box_scores"].argmax(-1) + 1

    return run


def _served(exported, image: np.ndarray) -> dict[str, np.ndarray]:
    import tensorflow as tf

    ours = tf.saved_model.load(str(exported.result.saved_model)).signatures["serving_default"]
    return {k: v.numpy()[0] for k, v in ours(input_tensor=tf.constant(image[None])).items()}


def _source_rows(o: dict[str, np.ndarray], boxes: np.ndarray, best: np.ndarray) -> list[int]:
    """For each served detection, the Model Garden row it came from (same box once clipped, same score)."""
    clipped = np.clip(boxes, 0, 1)
    n = int(o["num_detections"])
    return [int(np.argmin(np.abs(clipped - box).max(-1) + np.abs(best - score)))
            for box, score in zip(o["detection_boxes"][:n], o["detection_scores"][:n])]


def test_boxes_are_normalized_and_equal_model_gardens_own_output(exported, garden):
    """Every detection of our export is one of Model Garden's own decoded boxes, normalized to the image and
    clipped to it, with that box's best score and class; the top-scoring box is always kept. Leaving boxes
    unclipped until after NMS changes nothing else: clipped, they are Model Garden's default output."""
    record = json.loads((exported.run.path / publish.EXPORT_JSON).read_text())
    compared = 0
    for image in _images(exported.run):
        boxes, best, classes = garden(image, clipped=True)
        unclipped, unclipped_best, _ = garden(image, clipped=False)
        np.testing.assert_allclose(np.clip(unclipped, 0, 1), np.clip(boxes, 0, 1), atol=1e-5)
        np.testing.assert_allclose(unclipped_best, best, atol=1e-6)
        assert (unclipped < -1e-3).any() or (unclipped > 1 + 1e-3).any()  # some boxes do cross the edge
        o = _served(exported, image)
        n = int(o["num_detections"])
        for k, j in enumerate(_source_rows(o, boxes, best)):
            np.testing.assert_allclose(o["detection_boxes"][k], np.clip(boxes[j], 0, 1), atol=1e-5)
            assert abs(o["detection_scores"][k] - best[j]) < 1e-6 and o["detection_classes"][k] == classes[j]
        if best.max() >= record["nms"]["score_threshold"]:
            assert n > 0 and abs(o["detection_scores"][0] - best.max()) < 1e-6
        assert ((o["detection_boxes"][:n] >= 0) & (o["detection_boxes"][:n] <= 1)).all()
        assert (o["detection_boxes"][:n, 2:] >= o["detection_boxes"][:n, :2]).all()  # ymin<=ymax, xmin<=xmax
        assert (np.diff(o["detection_scores"][:n]) <= 0).all()  # highest first
        assert (o["detection_scores"][:n] >= record["nms"]["score_threshold"]).all()
        # padding rows as the OD API pads them
        assert (o["detection_scores"][n:] == 0).all() and (o["detection_boxes"][n:] == 0).all()
        assert (o["detection_classes"][n:] == 1.0).all()
        compared += n
    assert compared > 0, "the trained model detected nothing: the comparison would be empty"


def test_nms_is_class_agnostic_nms_v5_on_unclipped_boxes(exported, garden):
    """One detection per place: no two kept boxes overlap by more than the IoU threshold, whatever their
    class, measured before clipping (TFLite's post-processing op cannot clip first; parity needs one rule)."""
    from odstack.export.parity import iou

    record = json.loads((exported.run.path / publish.EXPORT_JSON).read_text())
    for image in _images(exported.run):
        boxes, best, _ = garden(image, clipped=False)
        kept = boxes[_source_rows(_served(exported, image), boxes, best)]
        overlaps = iou(kept, kept) - np.eye(len(kept))
        assert (overlaps <= record["nms"]["iou_threshold"] + 1e-6).all()
    assert "NonMaxSuppressionV5" in _graph_ops(exported.result.saved_model)


def test_adapter_clips_after_nms(tmp_path):
    """Two boxes that cross the image edge overlap by 0.33 as predicted but are the same box once clipped: both are
    kept, as TFLite_Detection_PostProcess keeps them, and come out clipped. The Model Garden side is a
    hand-made module with its decoded-detections signature (the adapter's input), not a detector."""
    import tensorflow as tf

    class Garden(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name="inputs")])
        def serve(self, inputs):
            # pixels of the scaled input: the image is 100 x 200, scaled by 0.5 to 50 x 100
            boxes = tf.constant([[[10.0, -70.0, 40.0, 20.0], [10.0, -10.0, 40.0, 20.0]]])
            scores = tf.constant([[[0.9, 0.1], [0.1, 0.8]]])
            info = tf.constant([[[100.0, 200.0], [50.0, 100.0], [0.5, 0.5], [0.0, 0.0]]])
            return {"decoded_boxes": boxes, "decoded_box_scores": scores, "image_info": info}

    module = Garden()
    tf.saved_model.save(module, str(tmp_path / "garden"), signatures=module.serve.get_concrete_function())
    nms = Nms(max_detections=5, score_threshold=0.05, iou_threshold=0.5)
    tfvision.adapt_to_od_api(tmp_path / "garden", tmp_path / "adapted", nms, tf)
    served = tf.saved_model.load(str(tmp_path / "adapted")).signatures["serving_default"]
    o = {k: v.numpy()[0] for k, v in served(input_tensor=tf.zeros([1, 100, 200, 3], tf.uint8)).items()}
    assert int(o["num_detections"]) == 2
    np.testing.assert_allclose(o["detection_boxes"][:2], [[0.2, 0.0, 0.8, 0.2], [0.2, 0.0, 0.8, 0.2]], atol=1e-6)
    np.testing.assert_allclose(o["detection_scores"][:2], [0.9, 0.8], atol=1e-6)
    assert o["detection_classes"][:2].tolist() == [1.0, 2.0]


def test_no_combined_nms_in_the_served_graph(exported):
    ops = _graph_ops(exported.result.saved_model)
    assert "CombinedNonMaxSuppression" not in ops
    assert not any(op.startswith("BatchedNonMaxSuppression") for op in ops)


def test_best_checkpoint_by_default_and_export_json(exported):
    run = exported.run
    best = run.metrics()["best"]
    record = json.loads((run.path / publish.EXPORT_JSON).read_text())
    assert Path(record["checkpoint"]).parent == run.best_dir
    assert record["step"] == best["step"] == exported.result.step
    assert record["metrics"]["AP50"] == best["AP50"]
    assert record["image_size"] == [IMAGE_SIZE, IMAGE_SIZE]
    assert record["serving"]["version"] == 1
    print(f"\nexport: SavedModel + serving copy in {exported.seconds:.0f} s")


def test_serving_layout(exported):
    base = exported.serving_dir / exported.run.path.name
    version = base / "1"
    assert exported.result.serving == version
    assert (version / "saved_model.pb").exists() and (version / "variables").is_dir()
    assert (version / "assets.extra" / "label_map.pbtxt").read_text() == exported.run.label_map.read_text()
    assert [p.name for p in base.iterdir()] == ["1"]  # no staging leftovers


def test_serving_version_has_tf_servings_warmup_file_for_the_models_size(exported):
    """assets.extra/tf_serving_warmup_requests: a TFRecord of PredictionLog (one Predict call) that the
    exported signature runs; TF Serving replays it before the version serves."""
    import tensorflow as tf

    from odstack import protos

    version = exported.serving_dir / exported.run.path.name / "1"
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(version / "assets.extra" / "tf_serving_warmup_requests"))]
    assert len(records) == 2  # serving_default and image_bytes
    request = protos.PredictionLog.FromString(records[0]).predict_log.request
    assert request.model_spec.signature_name == "serving_default"
    proto = tf.make_tensor_proto(0)
    proto.ParseFromString(request.inputs["input_tensor"])
    image = tf.make_ndarray(proto)
    size = json.loads((exported.run.path / "export.json").read_text())["image_size"]
    assert image.shape == (1, *size, 3) and image.dtype == np.uint8
    outputs = tf.saved_model.load(str(version)).signatures["serving_default"](input_tensor=tf.constant(image))
    assert outputs["detection_boxes"].shape[0] == 1
    jpeg_request = protos.PredictionLog.FromString(records[1]).predict_log.request
    assert jpeg_request.model_spec.signature_name == "image_bytes"
    assert set(jpeg_request.inputs) == {"encoded_image_string_tensor"}


def test_image_bytes_signature_matches_serving_default(exported):
    """Parity of the second signature: a PNG or JPEG through image_bytes gives serving_default's answer on
    the pixels Pillow (the client) decodes from it."""
    import io

    import tensorflow as tf

    loaded = tf.saved_model.load(str(exported.result.saved_model))
    tensor_sig, bytes_sig = loaded.signatures["serving_default"], loaded.signatures["image_bytes"]
    assert list(bytes_sig.structured_input_signature[1]) == ["encoded_image_string_tensor"]
    assert set(bytes_sig.structured_outputs) == set(OUTPUT_KEYS)
    for pixels in _images(exported.run, 3):
        for fmt in ("PNG", "JPEG"):
            out = io.BytesIO()
            Image.fromarray(pixels).save(out, format=fmt, quality=90)
            decoded = np.asarray(Image.open(io.BytesIO(out.getvalue())).convert("RGB"))  # the client's decode
            want = tensor_sig(input_tensor=decoded[tf.newaxis])
            got = bytes_sig(encoded_image_string_tensor=tf.constant([out.getvalue()]))
            for key in OUTPUT_KEYS:
                np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), atol=1e-5, err_msg=f"{fmt} {key}")


def test_best_f1_threshold_ships_beside_the_label_map(exported):
    """Issue 11: the threshold the evaluation of the exported checkpoint found is the model's default."""
    step = exported.result.step
    best_f1 = next(h for h in exported.run.metrics()["history"] if h["step"] == step)["best_f1"]
    for model in (exported.result.saved_model, exported.result.serving):
        saved = json.loads((model / "assets.extra" / "thresholds.json").read_text())
        assert saved == {"score_threshold": best_f1["threshold"], "source": f"best F1 on val, step {step}"}
    assert json.loads((exported.run.path / publish.EXPORT_JSON).read_text())["thresholds"] == saved


def test_versions_increase_and_skip_non_integer_dirs(exported, tmp_path):
    source = exported.result.saved_model
    root = tmp_path / "serving"
    first = publish.export_serving(source, root, "m", exported.run.label_map)
    second = publish.export_serving(source, root, "m", exported.run.label_map)
    assert (first.name, second.name) == ("1", "2")
    (root / "m" / "7").mkdir()               # a version published by hand
    (root / "m" / ".tmp-9-1").mkdir()        # a staging dir of a crashed export: not a version
    (root / "m" / "notes").mkdir()
    assert publish.export_serving(source, root, "m", exported.run.label_map).name == "8"


def test_publish_is_atomic(exported, tmp_path, monkeypatch):
    source, root = exported.result.saved_model, tmp_path / "serving"
    publish.export_serving(source, root, "m", exported.run.label_map)

    # a failure while copying leaves no new version behind (and no half-written one visible to the server)
    def broken(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(publish.shutil, "copyfile", broken)
        with pytest.raises(OSError):
            publish.export_serving(source, root, "m", exported.run.label_map)
    assert sorted(p.name for p in (root / "m").iterdir() if p.name.isdigit()) == ["1"]

    # another exporter takes version 2 between our listing and our rename: we publish as 3
    real_rename = os.rename

    def racing(src, dst):
        if Path(dst).name == "2" and not Path(dst).exists():
            shutil.copytree(source, dst)
        return real_rename(src, dst)

    monkeypatch.setattr(publish.os, "rename", racing)
    published = publish.export_serving(source, root, "m", exported.run.label_map)
    assert published.name == "3"
    assert (published / "saved_model.pb").exists()
    assert not [p for p in (root / "m").iterdir() if p.name.startswith(".tmp")]


def _copy_run(run: RunDir, destination: Path) -> RunDir:
    destination.mkdir(parents=True)
    for name in ("run.json", "pipeline.yaml", "params.yaml", "label_map.pbtxt"):
        shutil.copy2(run.path / name, destination / name)
    return RunDir(destination)


def test_refuses_a_run_without_checkpoint(exported, tmp_path):
    empty = _copy_run(exported.run, tmp_path / "output" / "empty")
    with pytest.raises(ConfigError, match="no checkpoint"):
        saved_model.export(saved_model.ExportSettings(run=str(empty.path), serving_dir=tmp_path / "serving"))
    assert not (empty.path / "saved_model").exists() and not (tmp_path / "serving").exists()


@pytest.mark.parametrize("which", ["best", "latest"])
def test_refuses_an_untrained_checkpoint(exported, tmp_path, which):
    """A step-0 checkpoint (the OD API's initial save on a short run) is refused, whichever is asked for."""
    import tensorflow as tf

    untrained = _copy_run(exported.run, tmp_path / "output" / "untrained")
    tf.train.Checkpoint(global_step=tf.Variable(0, dtype=tf.int64), weights=tf.Variable(tf.zeros([3, 3]))).write(
        str(untrained.path / "ckpt-0"))
    (untrained.path / "checkpoint").write_text('model_checkpoint_path: "ckpt-0"\n')
    with pytest.raises(ExportError, match="no trained weights"):
        saved_model.export(saved_model.ExportSettings(run=str(untrained.path), checkpoint=which,
                                                      serving_dir=tmp_path / "serving"))
    assert not (untrained.path / "saved_model").exists() and not (tmp_path / "serving").exists()


def test_bad_settings_are_rejected_before_any_work(exported, tmp_path):
    with pytest.raises(ConfigError, match="model_name"):
        saved_model.export(saved_model.ExportSettings(run=str(exported.run.path), model_name="a b"))
    with pytest.raises(ConfigError, match="checkpoint=nope"):
        saved_model.export(saved_model.ExportSettings(run=str(exported.run.path), checkpoint="nope",
                                                      serving_dir=tmp_path))
    with pytest.raises(ConfigError, match="iou_threshold"):
        saved_model.export(saved_model.ExportSettings(run=str(exported.run.path), iou_threshold=0))


def test_odapi_runs_need_the_od_api(exported, tmp_path):
    from odstack.train.engines import odapi

    if odapi.available():
        pytest.skip("the OD API is installed here: exporter_main_v2 is exercised by the odapi tests")
    run = _copy_run(exported.run, tmp_path / "output" / "od")
    info = json.loads(run.run_json.read_text())
    run.run_json.write_text(json.dumps(dict(info, engine="odapi")))
    (run.path / "pipeline.config").write_text("model {\n  ssd {\n  }\n}\n")
    for file in exported.run.best_dir.iterdir():
        shutil.copy2(file, run.path / file.name)
    with pytest.raises(ConfigError, match="Object Detection API"):
        saved_model.export(saved_model.ExportSettings(run=str(run.path), checkpoint="latest",
                                                      serving_dir=tmp_path / "serving"))
