"""TFLite of ENGINE=odapi runs: which models `make tflite` takes (the same rule as `make models`), and the
exact preprocessing its model_info.json describes (the OD API's own fixed_shape_resizer). The real
converted model (outputs by role, float parity 1e-4) is checked by the OD API chain (test_chain.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from odstack.contract import ODAPI_RESIZE
from odstack.errors import ExportError
from odstack.export.runtimes import tflite as tflite_runtime
from odstack.train.engines import odapi
from odstack.train import zoo

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "odapi"


@pytest.mark.parametrize("model, config", [
    ("ssd_mobilenet_v2_320x320", "ssd_mobilenet_v2_320x320.config"),
    ("efficientdet_d0", "efficientdet_d0_512x512.config"),
    ("centernet_resnet50_v1_fpn_512x512", "centernet_resnet50_v1_fpn_512x512.config"),
    ("faster_rcnn_resnet50_v1_640x640", "faster_rcnn_resnet50_v1_640x640.config")])
def test_make_models_says_what_make_tflite_does(model, config):
    row = next(r for r in zoo.table() if r["name"] == model)
    try:
        odapi.tflite_spec(FIXTURES / config)
        accepted = True
    except ExportError:
        accepted = False
    assert row["tflite"] is accepted


def test_refusal_names_the_reason(tmp_path):
    with pytest.raises(ExportError, match="two-stage"):
        odapi.tflite_spec(FIXTURES / "faster_rcnn_resnet50_v1_640x640.config")
    no_resizer = tmp_path / "pipeline.config"
    no_resizer.write_text("model { ssd { num_classes: 1 image_resizer { keep_aspect_ratio_resizer { } } } }\n")
    with pytest.raises(ExportError, match="keep_aspect_ratio_resizer, not a fixed_shape_resizer"):
        odapi.tflite_spec(no_resizer)


def test_spec_of_an_ssd_mobilenet():
    spec = odapi.tflite_spec(FIXTURES / "ssd_mobilenet_v2_320x320.config")
    assert spec["input"]["shape"] == [1, 320, 320, 3]
    assert spec["input"]["mean"] == [127.5] * 3 and spec["input"]["std"] == [127.5] * 3
    assert spec["input"]["resize_method"] == ODAPI_RESIZE and spec["class_offset"] == 1


def test_preprocessing_is_the_od_api_fixed_shape_resizer_and_normalization():
    pytest.importorskip("object_detection.builders.image_resizer_builder",
                        reason="the TF Object Detection API is not installed: `make venvs ODAPI=1`")
    import tensorflow as tf
    from google.protobuf import text_format
    from object_detection.builders import image_resizer_builder
    from object_detection.protos import image_resizer_pb2

    spec = odapi.tflite_spec(FIXTURES / "ssd_mobilenet_v2_320x320.config")
    resizer = image_resizer_builder.build(text_format.Parse(
        "fixed_shape_resizer { height: 320 width: 320 }", image_resizer_pb2.ImageResizer()))
    image = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)   # a raccoon photo's size
    resized = resizer(tf.cast(image, tf.float32))[0].numpy()
    theirs = (2.0 / 255.0) * resized - 1.0              # SSD MobileNet v2's feature extractor preprocess()
    ours, occupied = tflite_runtime.preprocess(image, spec)
    assert occupied == (320.0, 320.0)
    assert np.abs(ours[0] - theirs).max() < 1e-5       # half-pixel-centre resizing differs by ~0.1 here


def test_centernet_mobilenetv2_is_not_listed_as_tflite():
    # `make models` said tflite=True for it while `make tflite` refuses every CenterNet
    assert zoo.get("centernet_mobilenetv2_fpn_512x512").tflite is False
    assert [m.name for m in zoo.MODELS if m.tflite] == [
        "ssd_mobilenet_v2_320x320", "ssd_mobilenet_v2_fpnlite_320x320", "ssd_mobilenet_v2_fpnlite_640x640"]
