"""Every sample config the OD API ships (``object_detection/configs/tf2``, which scripts/odapi/install_odapi.sh
copies beside the installed package) renders, and the OD API itself (its compiled protos and ``config_util``)
reads the render exactly as odstack's schema does. Runs where the OD API is installed (``make venvs ODAPI=1``)."""
from __future__ import annotations

from pathlib import Path

import pytest

from odstack.train import pipeline_config as pc
from tests.odapi.test_pipeline_config import RENDER

HOW = ("the TF Object Detection API is not installed here: `make venvs ODAPI=1` (with ODAPI_ARCHIVE=<a local "
       "tensorflow/models archive> when GitHub is out of reach) installs it, then `make test` runs these")


def _sample_configs() -> list[Path]:
    try:
        import object_detection
    except ImportError:
        return []
    return sorted((Path(object_detection.__file__).parent / "configs" / "tf2").glob("*.config"))


SAMPLES = _sample_configs()


def _parse(text: str):
    from google.protobuf import text_format
    from object_detection.protos import pipeline_pb2

    message = pipeline_pb2.TrainEvalPipelineConfig()
    text_format.Parse(text, message)
    return message


@pytest.mark.skipif(not SAMPLES, reason=HOW)
def test_the_installed_od_api_ships_its_sample_configs():
    assert len(SAMPLES) >= 40
    assert {"ssd_mobilenet_v2_320x320_coco17_tpu-8.config", "ssd_efficientdet_d0_512x512_coco17_tpu-8.config",
            "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config"} <= {p.name for p in SAMPLES}


@pytest.mark.skipif(not SAMPLES, reason=HOW)
@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_sample_config_renders_and_the_od_api_reads_it_the_same(path, tmp_path):
    from object_detection.utils import config_util

    text = path.read_text(encoding="utf-8")
    # batch 16 against the templates' 64-128: every learning rate is rescaled (where float32 rounding once
    # made two renderers differ in the 6th digit); an explicit peak rescales the others by its ratio
    for settings in (RENDER, dict(RENDER, batch_size=None, learning_rate=0.0123)):
        rendered = pc.render(text, **settings, where=str(path))
        assert _parse(rendered.text).SerializeToString(deterministic=True) == \
            pc.load(rendered.text).message.SerializeToString(deterministic=True)
    rendered = tmp_path / "pipeline.config"
    rendered.write_text(pc.render(text, **RENDER).text, encoding="utf-8")
    configs = config_util.get_configs_from_pipeline_file(str(rendered))
    assert configs["train_config"].num_steps == RENDER["steps"]
    assert configs["train_config"].batch_size == RENDER["batch_size"]
    assert list(configs["train_input_config"].tf_record_input_reader.input_path) == [RENDER["train_input"]]
