"""`make export TF=1`: export_tf1.sh (the odapi-tf1 step) and odstack.export.tf1 (the odapi step).

TF 1.15 and the OD API cannot run here (Python 3.6 image, GitHub), so the TF1 exporter's output is a
stand-in: a TF1-format SavedModel built with ``tf.compat.v1`` that has the signature
``export_inference_graph.py --input_type image_tensor`` writes (``inputs`` uint8 [?,?,?,3] -> the four
detection outputs plus ``raw_detection_boxes``/``raw_detection_scores``/``detection_multiclass_scores``),
and, for the shell step, a ``python3`` on PATH that takes the exporter's flags and writes its files.
Everything of odstack's runs for real."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from odstack.errors import ConfigError
from odstack.contract import INPUT_KEY, OUTPUT_KEYS, check_signature
from odstack.export import publish, tf1
from odstack.export.saved_model import ExportSettings

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "container_scripts" / "export_tf1.sh"
LABEL_MAP = 'item {\n  id: 1\n  name: "raccoon"\n}\n'


def _tf1_saved_model(path: Path) -> None:
    """A TF1-format SavedModel with the TF1 OD API exporter's signature; its one detection's score is the
    image's mean brightness / 255 and its box the image's top-left quarter, so outputs follow inputs."""
    import tensorflow as tf

    v1 = tf.compat.v1
    with tf.Graph().as_default():
        image = v1.placeholder(tf.uint8, [None, None, None, 3], name="image_tensor")
        batch = tf.shape(image)[0]
        score = tf.reduce_mean(tf.cast(image, tf.float32), axis=[1, 2, 3]) / 255.0           # [B]
        boxes = tf.tile(tf.constant([[[0.0, 0.0, 0.5, 0.5]] + [[0.0, 0.0, 0.0, 0.0]] * 3]), [batch, 1, 1])
        scores = tf.concat([score[:, None], tf.zeros([batch, 3])], axis=1)
        outputs = {
            "detection_boxes": tf.identity(boxes, "detection_boxes"),
            "detection_scores": tf.identity(scores, "detection_scores"),
            "detection_classes": tf.ones([batch, 4], name="detection_classes"),
            "num_detections": tf.ones([batch], name="num_detections"),
            "raw_detection_boxes": tf.identity(boxes, "raw_detection_boxes"),
            "raw_detection_scores": tf.identity(scores[:, :, None], "raw_detection_scores"),
            "detection_multiclass_scores": tf.identity(scores[:, :, None], "detection_multiclass_scores"),
        }
        signature = v1.saved_model.predict_signature_def(inputs={"inputs": image}, outputs=outputs)
        with v1.Session() as session:
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(session, [v1.saved_model.tag_constants.SERVING],
                                                 signature_def_map={"serving_default": signature})
            builder.save()


@pytest.fixture(scope="module")
def stand_in_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tf1") / "saved_model"
    _tf1_saved_model(path)
    return path


def _run_dir(root: Path, step: int = 1200) -> Path:
    """What `make train TF=1 RUN=legacy` leaves: pipeline.config, model_main's checkpoint index and files."""
    run = root / "output" / "legacy"
    run.mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / "label_map.pbtxt").write_text(LABEL_MAP)
    (run / "pipeline.config").write_text(textwrap.dedent(f"""\
        model {{ ssd {{ num_classes: 1 }} }}
        train_input_reader {{
          label_map_path: "{root / 'data' / 'label_map.pbtxt'}"
          tf_record_input_reader {{ input_path: "data/train-*.tfrecord" }}
        }}
        """))
    (run / "checkpoint").write_text(f'model_checkpoint_path: "model.ckpt-{step}"\n'
                                    f'all_model_checkpoint_paths: "model.ckpt-{step}"\n')
    for suffix in (".index", ".meta", ".data-00000-of-00001"):
        (run / f"model.ckpt-{step}{suffix}").write_bytes(b"weights")
    return run


@pytest.fixture()
def fake_exporter(tmp_path, stand_in_model) -> dict[str, str]:
    """PATH with a ``python3`` that stands in for ``python3 -m object_detection.export_inference_graph``
    (TF 1.15 + the OD API, not installable here): it takes the exporter's flags, checks them, and writes
    what the exporter writes (frozen graph, SavedModel, pipeline.config) into --output_directory."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "exporter-args.json"
    (bin_dir / "python3").write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import json, shutil, sys
        from pathlib import Path
        assert sys.argv[1:3] == ["-m", "object_detection.export_inference_graph"], sys.argv
        flags = dict(arg[2:].split("=", 1) for arg in sys.argv[3:])
        Path({str(log)!r}).write_text(json.dumps(flags))
        if not Path(flags["trained_checkpoint_prefix"] + ".index").exists():
            sys.exit("checkpoint not found")
        out = Path(flags["output_directory"])
        out.mkdir(parents=True)
        shutil.copytree({str(stand_in_model)!r}, out / "saved_model")
        shutil.copy(flags["pipeline_config_path"], out / "pipeline.config")
        (out / "frozen_inference_graph.pb").write_bytes(b"graph")
        """))
    (bin_dir / "python3").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ARGS_LOG": str(log)}


def _script(run_dir: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), str(run_dir)], capture_output=True, text=True, env=env)


def test_both_steps_give_the_tf2_contract_and_a_served_version(tmp_path, fake_exporter):
    import tensorflow as tf

    run = _run_dir(tmp_path)
    done = _script(run, fake_exporter)
    assert done.returncode == 0, done.stderr
    flags = json.loads(Path(fake_exporter["ARGS_LOG"]).read_text())
    assert flags["input_type"] == "image_tensor" and flags["trained_checkpoint_prefix"] == f"{run}/model.ckpt-1200"
    assert (run / "tf1_export" / "frozen_inference_graph.pb").exists()
    assert not list(run.glob(".tf1_export.tmp-*"))

    result = tf1.export(ExportSettings(run=str(run), tf1=True, serving_dir=tmp_path / "serving",
                                               model_name="legacy"))
    assert result.step == 1200 and result.saved_model == run / "saved_model"
    assert set(check_signature(result.saved_model, strict=True)) == set(OUTPUT_KEYS)
    served = tf.saved_model.load(str(result.serving)).signatures["serving_default"]
    image = np.full((1, 30, 40, 3), 51, np.uint8)
    out = {k: v.numpy() for k, v in served(**{INPUT_KEY: tf.constant(image)}).items()}
    np.testing.assert_allclose(out["detection_scores"][0, 0], 0.2, atol=1e-6)
    np.testing.assert_allclose(out["detection_boxes"][0, 0], [0, 0, 0.5, 0.5])
    assert out["num_detections"].tolist() == [1.0] and out["detection_classes"].dtype == np.float32
    assert result.serving == tmp_path / "serving" / "legacy" / "1"
    assert (result.serving / publish.LABEL_MAP_ASSET).read_text() == LABEL_MAP
    record = json.loads((run / publish.EXPORT_JSON).read_text())
    assert record["engine"] == "odapi-tf1" and record["step"] == 1200 and record["serving"]["version"] == 1
    assert record["frozen_graph"].endswith("tf1_export/frozen_inference_graph.pb")


def test_script_refuses_runs_without_trained_weights(tmp_path, fake_exporter):
    run = _run_dir(tmp_path, step=0)
    done = _script(run, fake_exporter)
    assert done.returncode == 2 and "no trained weights (step 0)" in done.stderr
    assert not (run / "tf1_export").exists() and not Path(fake_exporter["ARGS_LOG"]).exists()

    (run / "checkpoint").unlink()
    done = _script(run, fake_exporter)
    assert done.returncode == 2 and f"no checkpoint in {run}" in done.stderr

    done = _script(tmp_path / "output" / "nothing", fake_exporter)
    assert done.returncode == 2 and "make train TF=1" in done.stderr


def test_a_failed_export_leaves_the_previous_one(tmp_path, fake_exporter):
    run = _run_dir(tmp_path)
    assert _script(run, fake_exporter).returncode == 0
    (run / "model.ckpt-1200.index").rename(run / "elsewhere.index")  # named in the index, files gone
    done = _script(run, fake_exporter)
    assert done.returncode == 2 and "its files are gone" in done.stderr
    assert (run / "tf1_export" / "saved_model" / "saved_model.pb").exists()
    assert not list(run.glob(".tf1_export.tmp-*"))


def test_odapi_step_without_the_tf1_step_says_what_to_run(tmp_path):
    run = _run_dir(tmp_path)
    with pytest.raises(ConfigError) as error:
        tf1.export(ExportSettings(run=str(run), tf1=True, serving_dir=tmp_path / "serving"))
    assert "make export TF=1 RUN=legacy" in str(error.value.hint)


def test_missing_label_map_is_named_and_nothing_is_written(tmp_path, fake_exporter):
    run = _run_dir(tmp_path)
    assert _script(run, fake_exporter).returncode == 0
    (tmp_path / "data" / "label_map.pbtxt").unlink()
    with pytest.raises(ConfigError) as error:
        tf1.export(ExportSettings(run=str(run), tf1=True, serving_dir=tmp_path / "serving"))
    assert "label_map.pbtxt" in str(error.value) and "label_map_path" in str(error.value)
    assert not (run / "saved_model").exists() and not (tmp_path / "serving").exists()


def test_adapter_refuses_a_signature_that_is_not_one_image(tmp_path):
    import tensorflow as tf

    class TwoInputs(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="a"),
                                      tf.TensorSpec([None], tf.float32, name="b")])
        def serve(self, a, b):
            return {"sum": a + b}

    module = TwoInputs()
    tf.saved_model.save(module, str(tmp_path / "two"), signatures=module.serve.get_concrete_function())
    with pytest.raises(ConfigError, match="input_type=image_tensor"):
        tf1.adapt_tf1_saved_model(tmp_path / "two", tmp_path / "out")
