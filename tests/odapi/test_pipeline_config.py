"""odstack.train.pipeline_config: the OD API's schema (from the checked-in descriptor set), the path API,
and rendering.

Every fixture in tests/fixtures/odapi/ is a config written for these tests in the OD API's text format
(SSD MobileNet V2, EfficientDet D0, CenterNet, Faster R-CNN, a TF1 quantized SSD, a tiny SSD). Where
the OD API is installed, its own compiled protos must be the same schema and read every render the same.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from odstack.errors import ConfigError
from odstack.train import pipeline_config as pc
from odstack.train.pipeline_config import Ident

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "odapi"
CONFIGS = sorted(FIXTURES.glob("*.config"))
SCHEDULE = ("train_config.optimizer.{momentum_optimizer|adam_optimizer|rms_prop_optimizer}.learning_rate."
            "{cosine_decay_learning_rate|exponential_decay_learning_rate|manual_step_learning_rate}")
RENDER = dict(num_classes=3, label_map="/data/label_map.pbtxt", train_input="/data/train-?????-of-?????.record",
              val_input="/data/val-?????-of-?????.record", steps=1000, batch_size=16,
              fine_tune_checkpoint="/zoo/model/checkpoint/ckpt-0")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def test_fixtures_are_there():
    names = {p.name for p in CONFIGS}
    assert {"ssd_mobilenet_v2_320x320.config", "efficientdet_d0_512x512.config",
            "centernet_resnet50_v1_fpn_512x512.config", "faster_rcnn_resnet50_v1_640x640.config"} <= names


# ================================================================================== the schema
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_fixtures_parse_and_print_as_text_format(path):
    config = pc.load(path.read_text(encoding="utf-8"), str(path))
    printed = config.to_text()
    assert pc.load(printed).message == config.message                     # printing is lossless ...
    assert pc.load(printed).to_text() == printed                          # ... and a fixed point


def test_source_spellings_read_as_the_od_api_reads_them():
    text = ('model { ssd { num_classes: 90 image_resizer { fixed_shape_resizer { height: 320 width: 320 } } } }\n'
            'train_config: { batch_size: 8; num_steps: 100, optimizer < adam_optimizer { } > '
            'fine_tune_checkpoint: "a/b" \'c\' fine_tune_checkpoint_version: V2 }\n'
            'graph_rewriter { quantization { delay: -4 } }\n'
            'eval_config { metrics_set: ["coco_detection_metrics", "x"] }\n'
            'eval_input_reader { shuffle: false } eval_input_reader { shuffle: true }\n')
    config = pc.load(text)
    assert config.get("train_config.fine_tune_checkpoint") == "a/bc"      # adjacent strings concatenate
    assert config.get("graph_rewriter.quantization.delay") == -4
    assert config.get_all("eval_config.metrics_set") == ["coco_detection_metrics", "x"]
    assert config.get("train_config.fine_tune_checkpoint_version") == "V2"
    assert isinstance(config.get("train_config.fine_tune_checkpoint_version"), Ident)
    assert [config.get(f"eval_input_reader[{i}].shuffle") for i in (0, 1)] == [False, True]


def test_floats_read_as_the_config_writes_them():
    # float fields hold float32; the value is the shortest decimal of that float32, as text_format prints it
    config = pc.load("train_config { optimizer { momentum_optimizer { learning_rate { cosine_decay_learning_rate {"
                     " learning_rate_base: .8 warmup_learning_rate: 0.0002500000118743628 } } } } }\n")
    cosine = "train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate"
    assert config.get(f"{cosine}.learning_rate_base") == 0.8
    assert config.get(f"{cosine}.warmup_learning_rate") == 0.00025
    assert "warmup_learning_rate: 0.00025" in config.to_text()


@pytest.mark.parametrize("text, line", [
    ("model {\n  ssd {\n    num_classes 3\n  }\n}\n", 3),        # scalar without ':'
    ("model {\n  ssd {\n  }\n", 3),                             # unclosed block: the last line
    ("model {\n  ssd {\n    num_clases: 3\n  }\n}\n", 3),         # a misspelled field
    ('train_config {\n  fine_tune_checkpoint: "unterminated\n}\n', 2),
])
def test_parse_errors_name_the_line(text, line):
    with pytest.raises(ConfigError) as error:
        pc.load(text, "cfg.config")
    assert f"cfg.config:{line}" in str(error.value)
    assert "protos reject it" in str(error.value)


# ================================================================================== the path API
def test_paths_cross_oneofs_and_repeated_fields():
    config = pc.load(fixture("centernet_resnet50_v1_fpn_512x512.config"))
    assert config.paths("model.{ssd|faster_rcnn|center_net}.num_classes") == ["model.center_net.num_classes"]
    assert config.get("model.{ssd|faster_rcnn|center_net}.num_classes") == 90
    assert config.paths(SCHEDULE) == [
        "train_config.optimizer.adam_optimizer.learning_rate.manual_step_learning_rate"]
    steps = config.get_all(f"{SCHEDULE}.schedule.step")
    assert steps == [90000, 120000]
    assert config.get(f"{SCHEDULE}.schedule[1].learning_rate") == pytest.approx(1e-5)
    assert len(config.paths("train_config.data_augmentation_options")) == 3
    assert config.paths("train_config.data_augmentation_options[2].*") == [
        "train_config.data_augmentation_options[2].random_absolute_pad_image"]
    assert config.get_all("train_config.data_augmentation_options.random_absolute_pad_image.pad_color") == [0, 0, 0]
    assert config.get("model.ssd.num_classes", "absent") == "absent"
    assert not config.has("model.ssd") and config.has("model.center_net")


def test_set_creates_parents_replaces_repeated_and_deletes():
    config = pc.load("eval_config { metrics_set: 'a' batch_size: 1 metrics_set: 'b' }\n")
    config.set("eval_config.metrics_set", ["coco_detection_metrics"])
    assert config.get_all("eval_config.metrics_set") == ["coco_detection_metrics"]
    config.set("train_input_reader.tf_record_input_reader.input_path", ["x", "y"])
    assert config.get_all("train_input_reader.tf_record_input_reader.input_path") == ["x", "y"]
    config.set("train_config.fine_tune_checkpoint_version", Ident("V2"))
    assert "fine_tune_checkpoint_version: V2" in config.to_text()
    assert config.delete("eval_config.batch_size") == 1 and not config.has("eval_config.batch_size")
    with pytest.raises(KeyError):
        config.set("model.{ssd|center_net}.num_classes", 3)          # which one to create?
    with pytest.raises(ValueError):
        config.set("eval_config.{a|b}", 1)
    with pytest.raises(ValueError):
        config.set("train_input_reader", 1)                          # a message, not a scalar


def test_set_on_every_match_of_a_repeated_parent():
    config = pc.load("eval_input_reader { shuffle: false } eval_input_reader { shuffle: true }\n")
    done = config.set("eval_input_reader.label_map_path", "/x/label_map.pbtxt")
    assert done == ["eval_input_reader[0].label_map_path", "eval_input_reader[1].label_map_path"]
    assert config.get_all("eval_input_reader.label_map_path") == ["/x/label_map.pbtxt"] * 2


# ===================================================================================== rendering
def rendered_config(text: str, **overrides) -> tuple[pc.Rendered, pc.PipelineConfig]:
    rendered = pc.render(text, **{**RENDER, **overrides})
    return rendered, pc.load(rendered.text)


@pytest.mark.parametrize("path", [p for p in CONFIGS], ids=lambda p: p.stem)
def test_render_sets_every_field(path):
    rendered, out = rendered_config(path.read_text(encoding="utf-8"))
    assert out.get("model.{ssd|faster_rcnn|center_net}.num_classes") == 3
    assert out.get("train_config.fine_tune_checkpoint") == "/zoo/model/checkpoint/ckpt-0"
    assert out.get("train_config.fine_tune_checkpoint_type") == "detection"
    assert out.get("train_config.fine_tune_checkpoint_version") == "V2"
    assert out.get("train_config.batch_size") == 16
    assert out.get("train_config.num_steps") == 1000
    assert out.get("train_config.use_bfloat16") is False
    assert out.get_all("train_input_reader.tf_record_input_reader.input_path") == [RENDER["train_input"]]
    assert out.get_all("eval_input_reader.tf_record_input_reader.input_path") == [RENDER["val_input"]]
    assert out.get_all("train_input_reader.label_map_path") == [RENDER["label_map"]]
    assert out.get_all("eval_input_reader.label_map_path") == [RENDER["label_map"]]
    assert out.get_all("eval_config.metrics_set") == ["coco_detection_metrics"]
    schedule = rendered.schedule
    assert schedule in ("cosine_decay_learning_rate", "exponential_decay_learning_rate", "manual_step_learning_rate")
    if schedule == "cosine_decay_learning_rate":
        assert out.get(f"{SCHEDULE}.total_steps") == 1000
        assert 0 <= out.get(f"{SCHEDULE}.warmup_steps", 10000) < 1000


@pytest.mark.parametrize("path", [p for p in CONFIGS], ids=lambda p: p.stem)
def test_render_is_lossless_elsewhere(path):
    text = path.read_text(encoding="utf-8")
    rendered, out = rendered_config(text)
    before = pc.load(text)
    for concrete in rendered.changes:                        # forget what rendering set ...
        before.delete(concrete)
        out.delete(concrete)
    assert out.message == before.message                      # ... and everything else is identical


def test_cosine_schedule_scaled_to_steps_and_batch():
    rendered, out = rendered_config(fixture("ssd_mobilenet_v2_320x320.config"), batch_size=32)
    cosine = "train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate"
    assert rendered.template_steps == 50000 and rendered.template_batch == 512
    assert out.get(f"{cosine}.total_steps") == 1000
    assert out.get(f"{cosine}.warmup_steps") == 40                              # 2000 / 50000 of the run
    assert out.get(f"{cosine}.learning_rate_base") == pytest.approx(0.8 * 32 / 512)   # linear scaling rule
    assert out.get(f"{cosine}.warmup_learning_rate") == pytest.approx(0.13333 * 32 / 512, rel=1e-5)


def test_explicit_learning_rate_sets_the_peak_and_keeps_ratios():
    _, out = rendered_config(fixture("faster_rcnn_resnet50_v1_640x640.config"), learning_rate=0.01)
    cosine = "train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate"
    assert out.get(f"{cosine}.learning_rate_base") == 0.01
    assert out.get(f"{cosine}.warmup_learning_rate") == pytest.approx(0.01 * 0.013333 / 0.04, rel=1e-5)
    assert out.get(f"{cosine}.warmup_steps") == 80                              # 2000 / 25000 of 1000


def test_same_batch_keeps_learning_rates():
    _, out = rendered_config(fixture("efficientdet_d0_512x512.config"), batch_size=128)
    cosine = "train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate"
    assert out.get(f"{cosine}.learning_rate_base") == 0.08
    assert out.get("train_config.use_bfloat16") is False


def test_manual_step_schedule_and_adam_scaling():
    _, out = rendered_config(fixture("centernet_resnet50_v1_fpn_512x512.config"))
    manual = "train_config.optimizer.adam_optimizer.learning_rate.manual_step_learning_rate"
    assert out.get_all(f"{manual}.schedule.step") == [643, 857]                 # 90k, 120k of 140k -> of 1000
    factor = math.sqrt(16 / 128)                                                # Adam: square-root scaling
    assert out.get(f"{manual}.initial_learning_rate") == pytest.approx(1e-3 * factor, rel=1e-5)
    assert out.get_all(f"{manual}.schedule.learning_rate") == [pytest.approx(1e-4 * factor, rel=1e-5),
                                                                pytest.approx(1e-5 * factor, rel=1e-5)]


def test_manual_steps_stay_positive_and_increasing_on_tiny_runs():
    _, out = rendered_config(fixture("centernet_resnet50_v1_fpn_512x512.config"), steps=1)
    manual = "train_config.optimizer.adam_optimizer.learning_rate.manual_step_learning_rate"
    assert out.get_all(f"{manual}.schedule.step") == [1, 2]


def test_tiny_runs_keep_cosine_valid():
    for steps in (1, 2, 100):
        _, out = rendered_config(fixture("ssd_mobilenet_v2_320x320.config"), steps=steps)
        cosine = "train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate"
        assert out.get(f"{cosine}.total_steps") == steps
        assert out.get(f"{cosine}.warmup_steps") < steps or steps == 1 and out.get(f"{cosine}.warmup_steps") == 0


def test_cosine_defaults_and_hold_are_capped():
    text = ("model { ssd { num_classes: 1 } }\ntrain_config { num_steps: 100 optimizer { momentum_optimizer {"
            " learning_rate { cosine_decay_learning_rate { total_steps: 100 hold_base_rate_steps: 90 } } } } }\n")
    _, out = rendered_config(text, steps=10)
    cosine = "train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate"
    warmup, hold = out.get(f"{cosine}.warmup_steps"), out.get(f"{cosine}.hold_base_rate_steps")
    assert warmup == 9 and hold == 0          # proto default warmup 10000 of 100 -> capped below total
    assert warmup + hold < 10


def test_tf1_sample_config_exponential_schedule_quantization_and_num_examples():
    rendered, out = rendered_config(fixture("ssd_mobilenet_v2_quantized_300x300_tf1.config"), batch_size=24,
                                  val_images=40, checkpoint_version=None)
    exp = "train_config.optimizer.rms_prop_optimizer.learning_rate.exponential_decay_learning_rate"
    assert out.get(f"{exp}.decay_steps") == 4004                                # 800720 * 1000 / 200000
    assert out.get(f"{exp}.initial_learning_rate") == 0.004                     # same batch: unchanged
    assert out.get("graph_rewriter.quantization.delay") == 240                  # 48000 * 1000 / 200000
    assert out.get("eval_config.num_examples") == 40
    assert not out.has("train_config.fine_tune_checkpoint_version")            # TF1: left alone
    assert out.get_all("eval_config.metrics_set") == ["coco_detection_metrics"]


def test_from_scratch_removes_the_fine_tune_fields():
    rendered, out = rendered_config(fixture("ssd_mobilenet_v2_320x320.config"), fine_tune_checkpoint=None)
    for name in ("fine_tune_checkpoint", "fine_tune_checkpoint_type", "fine_tune_checkpoint_version"):
        assert not out.has(f"train_config.{name}")
        assert rendered.changes[f"train_config.{name}"] is None


def test_render_errors():
    with pytest.raises(ConfigError, match="steps"):
        pc.render(fixture("ssd_mobilenet_v2_320x320.config"), **{**RENDER, "steps": 0})
    with pytest.raises(ConfigError, match="model is not one of"):
        pc.render("model { experimental_model { name: 'x' } }\n", **RENDER)


def test_render_file_writes_atomically(tmp_path):
    out = tmp_path / "run" / "pipeline.config"
    rendered = pc.render_file(FIXTURES / "efficientdet_d0_512x512.config", out, **RENDER)
    assert out.read_text(encoding="utf-8") == rendered.text
    assert rendered.model_type == "ssd"
    assert [p.name for p in out.parent.iterdir()] == ["pipeline.config"]
    with pytest.raises(ConfigError, match="cannot read"):
        pc.render_file(tmp_path / "missing.config", out, **RENDER)


# ================================================================== with the OD API's own protos
@pytest.fixture(scope="module")
def pipeline_pb2():
    return pytest.importorskip("object_detection.protos.pipeline_pb2",
                               reason="the OD API (object_detection, compiled protos) is not installed: "
                                      "`make venvs ODAPI=1` installs it")


def test_the_descriptor_set_is_the_installed_od_apis_schema(pipeline_pb2):
    from google.protobuf import descriptor_pb2

    from odstack import protos

    ours = protos.TrainEvalPipelineConfig.DESCRIPTOR.file
    checked = 0
    pending, seen = [pipeline_pb2.DESCRIPTOR], set()
    while pending:                                   # pipeline.proto and everything it imports
        theirs = pending.pop()
        if theirs.name in seen:
            continue
        seen.add(theirs.name)
        mine = ours.pool.FindFileByName(theirs.name)
        a, b = descriptor_pb2.FileDescriptorProto(), descriptor_pb2.FileDescriptorProto()
        theirs.CopyToProto(a)
        mine.CopyToProto(b)
        for proto in (a, b):                          # protoc's descriptor sets carry json_name, gencode not
            for message in _all_messages(proto.message_type):
                for field in message.field:
                    field.ClearField("json_name")
        assert a == b, theirs.name
        checked += 1
        pending.extend(theirs.dependencies)
    assert checked >= 30


def _all_messages(messages):
    for message in messages:
        yield message
        yield from _all_messages(message.nested_type)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_renders_read_the_same_with_the_od_apis_protos(pipeline_pb2, path):
    from google.protobuf import text_format

    rendered, out = rendered_config(path.read_text(encoding="utf-8"))
    message = pipeline_pb2.TrainEvalPipelineConfig()
    text_format.Parse(rendered.text, message)
    assert message.SerializeToString(deterministic=True) == out.message.SerializeToString(deterministic=True)
    assert message.train_config.fine_tune_checkpoint_version == 2             # V2
