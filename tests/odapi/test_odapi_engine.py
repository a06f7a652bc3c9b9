"""ENGINE=odapi: the engine contract, its model_main_tf2 orchestration, and (where the OD API is
installed) a real from-scratch training run.

The orchestration tests replace the two subprocesses (model_main_tf2 and the evaluation) by fakes that
behave like model_main_tf2 does: a save at step 0, training in loops of 100 steps, a save only once
``checkpoint_every_n`` steps have passed. Everything else (zoo download over loopback HTTP, rendering,
chunking, checkpoint checks, metrics.json, best/) is the real code.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest

from odstack import labelmap
from odstack.errors import ConfigError, OdstackError
from odstack.train import pipeline_config as pc
from odstack.train import zoo
from odstack.train.engines import odapi
from odstack.train.run import DatasetInfo, RunDir, TrainSettings
from tests.odapi.test_zoo import make_archive, server  # noqa: F401  (server is a fixture)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "odapi"
MODEL = zoo.get("ssd_mobilenet_v2_320x320")


# ===================================================================================== contract
def test_engine_contract():
    assert odapi.NAME == "odapi"
    rows = odapi.models()
    assert [r["name"] for r in rows] == zoo.names()
    default = [r for r in rows if r["default"]]
    assert [r["name"] for r in default] == ["ssd_mobilenet_v2_320x320"]
    assert {"name", "archive", "speed_ms", "coco_map", "tflite"} <= set(rows[0])
    assert rows[0]["tflite"] is True and next(r for r in rows if r["name"] == "efficientdet_d0")["tflite"] is False


def test_without_the_od_api_train_and_evaluate_say_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(odapi, "available", lambda: False)
    run = RunDir(tmp_path / "run")
    for call in (lambda: odapi.train(run, TrainSettings(engine="odapi"), None),
                 lambda: odapi.evaluate(run, tmp_path / "ckpt-1", None)):
        with pytest.raises(ConfigError) as error:
            call()
        assert "object_detection" in str(error.value)
        assert "ODAPI=1" in str(error.value) and "ENGINE=tfvision" in str(error.value)


@pytest.mark.parametrize("step, total, chunk, targets", [
    (0, 1000, 200, [200, 400, 600, 800, 1000]), (0, 300, 1000, [300]), (200, 300, 100, [300]),
    (300, 300, 100, []), (0, 500, 300, [300, 500])])
def test_chunk_targets(step, total, chunk, targets):
    assert odapi.chunk_targets(step, total, chunk) == targets


def _checkpoint_files(directory: Path, number: int) -> Path:
    prefix = directory / f"ckpt-{number}"
    prefix.with_name(prefix.name + ".index").write_bytes(b"i")
    prefix.with_name(prefix.name + ".data-00000-of-00001").write_bytes(b"d")
    (directory / "checkpoint").write_text(f'model_checkpoint_path: "ckpt-{number}"\n'
                                          f'all_model_checkpoint_paths: "ckpt-{number}"\n')
    return prefix


def test_latest_and_resolve_checkpoint(tmp_path):
    assert odapi.latest_checkpoint(tmp_path) is None
    prefix = _checkpoint_files(tmp_path, 3)
    assert odapi.latest_checkpoint(tmp_path) == prefix
    assert odapi.resolve_checkpoint(tmp_path) == prefix
    assert odapi.resolve_checkpoint(prefix) == prefix
    assert odapi.resolve_checkpoint(prefix.with_name("ckpt-3.index")) == prefix
    with pytest.raises(ConfigError, match="no such checkpoint"):
        odapi.resolve_checkpoint(tmp_path / "ckpt-9")
    prefix.with_name("ckpt-3.index").unlink()
    assert odapi.latest_checkpoint(tmp_path) is None                   # named but gone
    with pytest.raises(ConfigError, match="no checkpoint"):
        odapi.resolve_checkpoint(tmp_path)


# ============================================================== orchestration with fake processes
def make_dataset(directory: Path, names=("cat", "dog", "fox")) -> DatasetInfo:
    directory.mkdir(parents=True)
    labelmap.write(directory / "label_map.pbtxt", list(names))
    for split in ("train", "val"):
        (directory / f"{split}-00000-of-00001.record").write_bytes(b"")
    return DatasetInfo.load(directory)


class FakeOdApi:
    """Stands in for model_main_tf2 (train loop + CheckpointManager) and the evaluation subprocess."""

    def __init__(self, honour_checkpoint_every_n: bool = True):
        self.honour = honour_checkpoint_every_n
        self.steps: dict[str, int] = {}          # checkpoint prefix -> step
        self.commands: list[list[str]] = []
        self.evaluated: list[str] = []

    def run(self, command, env, log_path, what, on_line=None):
        self.commands.append(command)
        assert env["TF_USE_LEGACY_KERAS"] == "1"
        flags = dict(c[2:].split("=", 1) for c in command if c.startswith("--") and "=" in c)
        model_dir = Path(flags["model_dir"])
        config = pc.load(Path(flags["pipeline_config_path"]).read_text())
        assert config.get("train_config.num_steps") is not None
        latest = odapi.latest_checkpoint(model_dir)
        step = self.steps[str(latest)] if latest else 0
        number = len(self.steps)
        if latest is None:                                       # manager.save() at step 0
            number += 1
            self.steps[str(_checkpoint_files(model_dir, number))] = 0
        every = int(flags["checkpoint_every_n"]) if self.honour else 1000
        saved = step
        for _ in range(step, int(flags["num_train_steps"]), 100):    # loops of 100 steps
            step += 100
            if step - saved >= every:
                number += 1
                self.steps[str(_checkpoint_files(model_dir, number))] = step
                saved = step
        log_path.write_text("fake model_main_tf2\n")

    def step(self, prefix):
        return self.steps[str(prefix)]

    def evaluate(self, run, checkpoint, data, env, beat=True):
        self.evaluated.append(Path(checkpoint).name)
        step = self.steps[str(checkpoint)]
        ap = {100: 0.2, 200: 0.5, 300: 0.4}.get(step, 0.3)         # best at step 200
        return {"AP": ap, "AP50": ap + 0.3, "AP75": ap, "APs": -1.0, "APm": ap, "APl": ap, "ARmax100": ap,
                "step": step}


def _model_main_tf2_calls(fake: FakeOdApi) -> list[list[str]]:
    """The commands that ran model_main_tf2 (through the engine's own `train` subcommand)."""
    return [c for c in fake.commands if c[1:4] == ["-m", odapi.__name__, "train"]]


@pytest.fixture
def fake(monkeypatch):
    fake = FakeOdApi()
    monkeypatch.setattr(odapi, "available", lambda: True)
    monkeypatch.setattr(odapi, "_run", fake.run)
    monkeypatch.setattr(odapi, "checkpoint_step", fake.step)
    monkeypatch.setattr(odapi, "_evaluate", fake.evaluate)
    return fake


def zoo_settings(tmp_path, base_url, **overrides) -> TrainSettings:
    values = dict(engine="odapi", model="ssd_mobilenet_v2_320x320", run="r1", data=tmp_path / "records",
                  steps=250, zoo_cache=tmp_path / "zoo", zoo_url=base_url)
    values.update(overrides)
    return TrainSettings(**values)


def serve_zoo_archive(www: Path) -> None:
    """The fake zoo archive carries a real pipeline.config (the SSD fixture)."""
    make_archive(www / MODEL.archive, extra={})
    staging = www / "staging"
    shutil.unpack_archive(www / MODEL.archive, staging)
    shutil.copyfile(FIXTURES / "ssd_mobilenet_v2_320x320.config", staging / MODEL.stem / "pipeline.config")
    (www / MODEL.archive).unlink()
    shutil.make_archive(str(www / MODEL.stem), "gztar", staging)
    (www / f"{MODEL.stem}.tar.gz").rename(www / MODEL.archive)
    shutil.rmtree(staging)


def test_train_downloads_renders_chunks_evaluates_and_keeps_the_best(fake, server, tmp_path):  # noqa: F811
    base, www, requests = server
    serve_zoo_archive(www)
    data = make_dataset(tmp_path / "records")
    run = RunDir(tmp_path / "output" / "r1")
    odapi.train(run, zoo_settings(tmp_path, base), data)

    assert requests == [f"/{MODEL.archive}"]
    # steps=250 -> 300 (loops of 100); checkpoint_every=auto -> 50 -> 100: three chunks, one save each
    trained = _model_main_tf2_calls(fake)
    assert [(c[-3], c[-2]) for c in trained] == [
        ("--num_train_steps=100", "--checkpoint_every_n=100"), ("--num_train_steps=200", "--checkpoint_every_n=100"),
        ("--num_train_steps=300", "--checkpoint_every_n=100")]
    assert fake.evaluated == ["ckpt-2", "ckpt-3", "ckpt-4"]            # ckpt-1 is step 0: never evaluated

    config = pc.load((run.path / "pipeline.config").read_text())
    model_dir = tmp_path / "zoo" / MODEL.stem / MODEL.stem
    assert config.get("train_config.fine_tune_checkpoint") == str(model_dir / "checkpoint" / "ckpt-0")
    assert config.get("train_config.fine_tune_checkpoint_type") == "detection"
    assert config.get("train_config.batch_size") == MODEL.batch
    assert config.get("train_config.num_steps") == 300
    assert config.get("model.ssd.num_classes") == 3
    assert config.get("train_input_reader.tf_record_input_reader.input_path") == str(
        (tmp_path / "records").absolute() / "train-?????-of-?????.record")
    assert config.get("eval_input_reader.label_map_path") == str(run.label_map.resolve())

    metrics = json.loads(run.metrics_json.read_text())
    assert [h["step"] for h in metrics["history"]] == [100, 200, 300]
    assert metrics["best"]["step"] == 200 and metrics["best"]["AP"] == 0.5
    assert metrics["latest"]["step"] == 300
    assert "step" not in {k for k in metrics["latest"] if k not in ("step", "checkpoint")}
    assert sorted(p.name for p in run.best_dir.iterdir()) == ["checkpoint", "ckpt-3.data-00000-of-00001",
                                                             "ckpt-3.index"]
    assert json.loads(run.run_json.read_text())["engine"] == "odapi"

    # resume: same run, more steps, re-planned on request -> no download, continues from step 300,
    # re-renders the schedule
    (www / MODEL.archive).unlink()
    fake.commands.clear()
    odapi.train(run, zoo_settings(tmp_path, base, steps=500, checkpoint_every=200, replan=True), data)
    trained = _model_main_tf2_calls(fake)
    assert [(c[-3], c[-2]) for c in trained] == [("--num_train_steps=400", "--checkpoint_every_n=100"),
                                                 ("--num_train_steps=500", "--checkpoint_every_n=100")]
    assert requests == [f"/{MODEL.archive}"]
    config = pc.load((run.path / "pipeline.config").read_text())
    assert config.get("train_config.num_steps") == 500
    assert config.get("train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate"
                      ".total_steps") == 500
    assert [h["step"] for h in json.loads(run.metrics_json.read_text())["history"]] == [100, 200, 300, 400, 500]

    fake.commands.clear()                                                # nothing left to do
    odapi.train(run, zoo_settings(tmp_path, base, steps=500), data)
    assert fake.commands == []


def test_a_final_step_that_is_not_saved_is_an_error(monkeypatch, server, tmp_path):  # noqa: F811
    fake = FakeOdApi(honour_checkpoint_every_n=False)                    # the --checkpoint_every_n=1000 trap
    monkeypatch.setattr(odapi, "available", lambda: True)
    monkeypatch.setattr(odapi, "_run", fake.run)
    monkeypatch.setattr(odapi, "checkpoint_step", fake.step)
    monkeypatch.setattr(odapi, "_evaluate", fake.evaluate)
    base, www, _ = server
    serve_zoo_archive(www)
    data = make_dataset(tmp_path / "records")
    with pytest.raises(OdstackError, match="trained to step 100 but ckpt-1 holds step 0"):  # the empty one
        odapi.train(RunDir(tmp_path / "output" / "r1"), zoo_settings(tmp_path, base, steps=100), data)


def test_own_config_from_scratch_needs_no_zoo(fake, tmp_path):
    data = make_dataset(tmp_path / "records")
    run = RunDir(tmp_path / "output" / "tiny")
    settings = TrainSettings(engine="odapi", model=str(FIXTURES / "ssd_mobilenet_v2_tiny_128.config"), run="tiny",
                             data=data.directory, steps=100, from_scratch=True, zoo_url="http://127.0.0.1:9/none")
    odapi.train(run, settings, data)
    config = pc.load((run.path / "pipeline.config").read_text())
    assert not config.has("train_config.fine_tune_checkpoint")
    assert config.get("train_config.batch_size") == 8                   # the config's own batch
    with pytest.raises(ConfigError, match="fine_tune_checkpoint"):     # not from scratch: needs a checkpoint
        odapi.train(RunDir(tmp_path / "output" / "t2"),
                    TrainSettings(engine="odapi", model=settings.model, run="t2", data=data.directory), data)


def test_no_val_shards_trains_without_evaluating(fake, tmp_path):
    data = make_dataset(tmp_path / "records")
    (data.directory / "val-00000-of-00001.record").unlink()
    data = DatasetInfo.load(data.directory)
    run = RunDir(tmp_path / "output" / "tiny")
    odapi.train(run, TrainSettings(engine="odapi", model=str(FIXTURES / "ssd_mobilenet_v2_tiny_128.config"),
                                   run="tiny", data=data.directory, steps=200, checkpoint_every=100,
                                   from_scratch=True), data)
    assert fake.evaluated == [] and not run.metrics_json.exists()
    assert fake.step(odapi.latest_checkpoint(run.path)) == 200


# ====================================================== for real, where the OD API is installed
@pytest.fixture(scope="module")
def object_detection():
    # the package itself only (its model code needs TF_USE_LEGACY_KERAS=1 before TensorFlow is imported,
    # which the engine sets for its subprocesses; this test process never imports TensorFlow)
    module = pytest.importorskip("object_detection",
                                 reason="the TF Object Detection API is not installed (CI cannot install it): "
                                        "scripts/odapi/install_odapi.sh installs it into a venv")
    if not odapi.available():
        pytest.skip("object_detection is there but not its model_main_tf2")
    return module


@pytest.mark.skipif(os.environ.get("ODSTACK_ODAPI_CHAIN") != "1",
                    reason="a real OD API training run (~3 min): `make test-odapi` runs it with the chain")
def test_real_training_from_scratch_resume_and_evaluate(object_detection, tmp_path):
    """A tiny SSD from scratch on synthetic shapes: 100 steps, resumed to 200, evaluated (~3 min, 2 CPUs)."""
    from google.protobuf import text_format
    from object_detection.protos import pipeline_pb2

    from odstack.data.convert import DataSettings, convert
    from odstack.data.synthetic import make_shapes

    make_shapes(tmp_path / "shapes", images=60, size=128, seed=3)
    convert(DataSettings(src=tmp_path / "shapes", out=tmp_path / "records", workers=1, shards=1))
    data = DatasetInfo.load(tmp_path / "records")
    run = RunDir(tmp_path / "output" / "tiny")
    settings = dict(engine="odapi", model=str(FIXTURES / "ssd_mobilenet_v2_tiny_128.config"), run="tiny",
                    data=data.directory, checkpoint_every=100, from_scratch=True, gpus="none")
    odapi.train(run, TrainSettings(steps=100, **settings), data)
    odapi.train(run, TrainSettings(steps=200, replan=True, **settings), data)

    message = pipeline_pb2.TrainEvalPipelineConfig()
    text_format.Parse((run.path / "pipeline.config").read_text(), message)
    assert message.train_config.num_steps == 200 and message.model.ssd.num_classes == 3
    metrics = json.loads(run.metrics_json.read_text())
    assert [h["step"] for h in metrics["history"]] == [100, 200]
    assert odapi.checkpoint_step(odapi.latest_checkpoint(run.path)) == 200
    best = metrics["best"]
    again = odapi.evaluate(run, run.best_dir, data)
    assert again["step"] == best["step"]
    assert again["AP"] == pytest.approx(best["AP"], abs=1e-6)
    assert set(again) == set(odapi.COCO_KEYS) | {"step", "per_class", "best_f1"}   # and the read-out
    assert set(again["per_class"]) == {"circle", "square", "triangle"} == set(metrics["latest"]["per_class"])
    assert list((run.path / "train").glob("events.out.tfevents.*"))
    assert list((run.path / "eval").glob("events.out.tfevents.*"))


# ============================================================== resuming: the plan, the input size
def _trained_run(fake, server, tmp_path, **overrides) -> tuple[RunDir, DatasetInfo, str]:  # noqa: F811
    base, www, _ = server
    serve_zoo_archive(www)
    data = make_dataset(tmp_path / "records")
    run = RunDir(tmp_path / "output" / "r1")
    odapi.train(run, zoo_settings(tmp_path, base, steps=300, checkpoint_every=300, **overrides), data)
    return run, data, base


def test_resuming_to_more_steps_than_planned_is_refused_unless_replanned(fake, server, tmp_path, caplog):  # noqa: F811
    run, data, base = _trained_run(fake, server, tmp_path)
    config_before, run_json_before = (run.path / "pipeline.config").read_text(), run.run_json.read_text()
    fake.commands.clear()
    with pytest.raises(ConfigError) as error:
        odapi.train(run, zoo_settings(tmp_path, base, steps=500), data)
    message = str(error.value)
    # at step 300 of 300 the cosine is at 0; re-planned to 500 steps (warm-up 12 -> 20 steps, in proportion)
    # it is back at 0.5 * (1 + cos(pi * (300 - 20) / (500 - 20))) = 37 % of the peak
    cosine = "train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate"
    peak = pc.load(config_before).get(f"{cosine}.learning_rate_base")
    assert pc.load(config_before).get(f"{cosine}.warmup_steps") == 12
    assert "is at step 300 of the 300 steps it planned" in message and "warm restart" in message
    assert f"goes from 0 to {0.5 * peak * (1 + math.cos(math.pi * 280 / 480)):.3g}" in message
    assert "STEPS=300" in message and "REPLAN=1" in message
    assert fake.commands == []
    assert (run.path / "pipeline.config").read_text() == config_before   # nothing rewritten
    assert run.run_json.read_text() == run_json_before

    with caplog.at_level("WARNING", logger="odstack"):
        odapi.train(run, zoo_settings(tmp_path, base, steps=500, replan=True), data)
    assert "re-planning run r1 from 300 to 500 steps at step 300" in caplog.text
    assert pc.load((run.path / "pipeline.config").read_text()).get("train_config.num_steps") == 500


def test_resuming_within_the_plan_keeps_the_schedule(fake, server, tmp_path):  # noqa: F811
    run, data, base = _trained_run(fake, server, tmp_path)
    # an interrupted run: the plan said 600, the run got to 300
    config = pc.load((run.path / "pipeline.config").read_text())
    config.set("train_config.num_steps", 600)
    (run.path / "pipeline.config").write_text(config.to_text())
    fake.commands.clear()
    odapi.train(run, zoo_settings(tmp_path, base, steps=600, checkpoint_every=300), data)
    trained = _model_main_tf2_calls(fake)
    assert [c[-3] for c in trained] == ["--num_train_steps=600"]


def test_image_size_is_rendered_into_the_resizer_and_kept_on_resume(fake, server, tmp_path):  # noqa: F811
    run, data, base = _trained_run(fake, server, tmp_path, image_size=256)
    config = pc.load((run.path / "pipeline.config").read_text())
    assert config.get("model.ssd.image_resizer.fixed_shape_resizer.height") == 256
    assert config.get("model.ssd.image_resizer.fixed_shape_resizer.width") == 256
    with pytest.raises(ConfigError, match="trains at 256 px; image_size=320 cannot change that"):
        odapi.train(run, zoo_settings(tmp_path, base, steps=300, image_size=320), data)
    odapi.train(run, zoo_settings(tmp_path, base, steps=300, image_size=256), data)      # the same: fine


def test_image_size_of_a_keep_aspect_ratio_model():
    text = (FIXTURES / "efficientdet_d0_512x512.config").read_text()
    rendered = pc.render(text, num_classes=2, label_map="/l.pbtxt", train_input="/t", val_input="/v", steps=100,
                         image_size=384)
    config = pc.load(rendered.text)
    assert config.get("model.ssd.image_resizer.keep_aspect_ratio_resizer.max_dimension") == 384
    assert config.get("model.ssd.image_resizer.keep_aspect_ratio_resizer.min_dimension") == 384
    assert pc.input_size(config) == 384


def test_a_first_attempt_that_never_trained_is_not_resumed(fake, server, tmp_path, monkeypatch, caplog):  # noqa: F811
    from odstack.train import stage

    base, www, _ = server
    monkeypatch.chdir(tmp_path)
    make_dataset(tmp_path / "records")
    settings = dict(engine="odapi", run="r1", data=tmp_path / "records", steps=100, zoo_cache=tmp_path / "zoo")
    with pytest.raises(ConfigError, match="cannot download"):              # nothing served yet
        stage.train(TrainSettings(model="ssd_mobilenet_v2_fpnlite_320x320", zoo_url=base, **settings))
    assert RunDir.named("r1").exists() is False or RunDir.named("r1").trained() is False
    serve_zoo_archive(www)
    with caplog.at_level("INFO", logger="odstack"):                        # another model, same RUN: fine
        stage.train(TrainSettings(model="ssd_mobilenet_v2_320x320", zoo_url=base, **settings))
    assert "new run output/r1" in caplog.text and "resuming" not in caplog.text
    assert json.loads(RunDir.named("r1").run_json.read_text())["model"] == "ssd_mobilenet_v2_320x320"


# ============================================================== progress and devices of model_main_tf2
# model_lib_v2's lines every 100 steps (absl with --alsologtostderr, and TF's python logger), numpy 1 and 2
MODEL_MAIN_LINES = """\
I1201 23:41:02.120512 139872 model_lib_v2.py:705] Step 200 per-step time 0.500s
INFO:tensorflow:Step 200 per-step time 0.500s
I1201 23:41:02.121733 139872 model_lib_v2.py:708] {'Loss/classification_loss': np.float32(0.61),
 'Loss/localization_loss': np.float32(0.31),
 'Loss/regularization_loss': np.float32(0.15),
 'Loss/total_loss': np.float32(1.07),
 'learning_rate': np.float32(0.0004)}
INFO:tensorflow:{'Loss/classification_loss': 0.61,
 'Loss/total_loss': 1.07,
 'learning_rate': 0.0004}
"""


def test_model_main_tf2_output_feeds_the_progress_line():
    from odstack.log import LiveProgress

    progress = LiveProgress(total=400, desc="train[odapi]", initial=100, log_every=3600, quiet=3600)
    try:
        output = odapi.TrainOutput(progress)
        output.target = 300
        for line in MODEL_MAIN_LINES.splitlines(keepends=True):
            output(line)
        assert progress.line() == ("train[odapi] step 200/400  loss 1.070  lr 0.0004  2.0 steps/s  ETA 1:40")
        assert progress.doing == "training"
        output.target = 200                                     # the chunk's last step: it saves, then exits
        output(MODEL_MAIN_LINES.splitlines()[0])
        assert progress.doing == "saving step 200"
    finally:
        progress.close()


def test_the_device_line_is_said_and_a_refusal_is_the_users_error(tmp_path, caplog):
    import sys

    logging_on(caplog)
    said = odapi.TrainOutput(None)
    said(odapi.DEVICES_LINE + "training on CPU: no GPU visible (this TensorFlow is a CPU-only build) — make doctor\n")
    assert any("train[odapi]: training on CPU: no GPU visible" in r.getMessage() and r.levelname == "WARNING"
               for r in caplog.records)
    refusal = json.dumps({"message": "gpus=all, but TensorFlow sees no GPU: x", "hint": "make doctor"})
    command = [sys.executable, "-c", f"print({odapi.DEVICE_ERROR_LINE + refusal!r}); raise SystemExit(3)"]
    with pytest.raises(ConfigError, match="gpus=all, but TensorFlow sees no GPU") as raised:
        odapi._run(command, dict(os.environ), tmp_path / "train.log", "model_main_tf2", odapi.TrainOutput(None))
    assert raised.value.hint == "make doctor"


@pytest.mark.parametrize("gpus", ["all", "0"])
def test_the_train_subcommand_refuses_gpus_this_machine_lacks_before_model_main_tf2(gpus, tmp_path):
    """The real TensorFlow device query, in the subprocess (no GPU is visible here, nor in CI)."""
    pytest.importorskip("tensorflow")
    command = odapi.train_command(tmp_path / "pipeline.config", tmp_path, 100, 100, gpus)
    env = dict(odapi._environment(None), CUDA_VISIBLE_DEVICES="-1")     # whatever this machine has: none
    with pytest.raises(ConfigError, match=f"gpus={gpus}.*TensorFlow sees no GPU"):
        odapi._run(command, env, tmp_path / "train.log", "model_main_tf2", odapi.TrainOutput(None))
    log = (tmp_path / "train.log").read_text()
    assert odapi.DEVICE_ERROR_LINE in log and "model_lib_v2" not in log     # refused before it started


def logging_on(caplog) -> None:
    import logging

    logging.getLogger("odstack").propagate = True
    caplog.set_level("INFO", logger="odstack")
