"""The OD API chain, end to end through the Makefile as a user runs it (RUNNER=local): `make data` on the
raccoon sample -> `make train ENGINE=odapi MODEL=ssd_mobilenet_v2_320x320` (100 steps) -> resumed to 200
(re-planned) -> `make eval` -> `make export` -> `make tflite QUANT=float,int8` -> `make tfjs` -> `make parity`
-> `make serve-bg` + one REST detection.

The zoo archive is a stand-in (tests/odapi/zoo_standin.py: the zoo's layout, the OD API's own sample
config, a randomly initialised checkpoint saved as the zoo's are), served over loopback HTTP, because the
zoo cannot be downloaded here: the real download -> verify -> cache -> fine-tune path runs on it.
Training is short, on the CPU, from weights that are random, so AP is low: what is checked is that every
stage runs and that the float formats agree with the SavedModel to 1e-4.

About 8 minutes on 2 cores: `make test-odapi` runs it (CI does, after `make test`), with the OD API
installed (`make venvs ODAPI=1 [ODAPI_ARCHIVE=...]`).
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from odstack.train.engines import odapi
from tests.serving.model_factory import free_port

REPO = Path(__file__).resolve().parents[2]
RUN = "ci-odapi-chain"
STEM = "ssd_mobilenet_v2_320x320_coco17_tpu-8"

pytestmark = [
    pytest.mark.skipif(os.environ.get("ODSTACK_ODAPI_CHAIN") != "1",
                       reason="the OD API chain runs with `make test-odapi` (about 8 minutes)"),
    pytest.mark.skipif(not odapi.available(),
                       reason="the TF Object Detection API is not installed: `make venvs ODAPI=1 "
                              "[ODAPI_ARCHIVE=<a local tensorflow/models archive>]`"),
]


def make(*args: str, log: Path, check: bool = True) -> subprocess.CompletedProcess:
    """`make ARGS RUNNER=local` in the repository, its output appended to ``log``; heartbeats every 2 s."""
    command = ["make", "--no-print-directory", *args, "RUNNER=local"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800,
                            env=dict(os.environ, ODSTACK_VERBOSE="1", ODSTACK_HEARTBEAT_S="2"))
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(command)}  (exit {result.returncode})\n{result.stdout}{result.stderr}")
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed (exit {result.returncode}); the end of its output:\n"
                    f"{(result.stdout + result.stderr)[-4000:]}")
    return result


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The whole chain's working state: directories, the loopback zoo, a clean run name."""
    root = tmp_path_factory.mktemp("odapi-chain")
    www = root / "www"
    subprocess.run([sys.executable, "-m", "tests.odapi.zoo_standin", STEM, str(www)], cwd=REPO, check=True,
                   env=dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
                            PYTHONPATH=str(REPO)), capture_output=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    leftovers = [REPO / "output" / RUN, REPO / "output" / "serving" / RUN]
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    state = {"root": root, "log": root / "chain.log", "records": root / "records",
             "zoo": f"zoo_url=http://127.0.0.1:{server.server_address[1]} zoo_cache={root / 'zoo'}",
             "run": REPO / "output" / RUN}
    print(f"chain log: {state['log']}")
    yield state
    server.shutdown()
    make("serve-down", log=state["log"], check=False)
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)


def _train(chain, steps: int, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    return make("train", "ENGINE=odapi", "MODEL=ssd_mobilenet_v2_320x320", f"RUN={RUN}", f"DATA={chain['records']}",
                f"STEPS={steps}", "BATCH=2", "GPUS=none", f"ARGS={chain['zoo']} checkpoint_every=100 progress_every=1",
                *extra,
                log=chain["log"], check=check)


def test_1_data(chain):
    make("data", "SRC=tests/fixtures/raccoon", f"OUT={chain['records']}", log=chain["log"])
    report = json.loads((chain["records"] / "report.json").read_text())
    assert report["splits"]["val"]["images"] > 0


def test_2_train_from_the_zoo_checkpoint(chain):
    trained = _train(chain, 100)
    run = chain["run"]
    said = trained.stdout + trained.stderr
    assert "train[odapi]: training on CPU (gpus=none)" in said                  # the device choice, said first
    assert "train[odapi] step 100/100  loss " in said                           # the progress line, from its log
    assert "model_lib_v2.py" not in said and "model_lib_v2.py" in (run / "train.log").read_text()
    assert (chain["root"] / "zoo" / f"{STEM}.tar.gz").exists()                 # downloaded once, cached
    config = (run / "pipeline.config").read_text()
    assert f'fine_tune_checkpoint: "{chain["root"] / "zoo" / STEM / STEM / "checkpoint" / "ckpt-0"}"' in config
    assert "num_classes: 1" in config
    metrics = json.loads((run / "metrics.json").read_text())
    assert [h["step"] for h in metrics["history"]] == [100]
    _assert_read_out(run, metrics["history"][-1], said)


def _assert_read_out(run: Path, entry: dict, said: str) -> None:
    """The evaluation read-out of the OD API engine: as tfvision's, from the OD API's own COCO evaluator."""
    assert set(entry["per_class"]) == {"raccoon"} and entry["per_class"]["raccoon"]["val_boxes"] > 0
    assert 0.0 <= entry["best_f1"]["threshold"] <= 1.0
    saved = json.loads((run / "eval" / "insight.json").read_text())
    assert saved["step"] == entry["step"] and saved["per_class"] == entry["per_class"]
    assert saved["per_class"]["raccoon"]["AP50"] == pytest.approx(entry["AP50"], abs=1e-6)   # one class: its mAP
    drawn = saved["drawn"]
    assert drawn["pr_curves.png"] == 1 and drawn["f1_curve.png"] == 2 and drawn["confusion_matrix.png"] == 4
    assert drawn["results.png"] >= 3 and drawn["val_mosaic.png"] == 8          # train losses (TensorBoard), AP, AP50
    confusion = json.loads((run / "eval" / "confusion_matrix.json").read_text())
    assert confusion["matrix"][0][0] + confusion["matrix"][1][0] == entry["per_class"]["raccoon"]["val_boxes"]
    assert "best-F1 score threshold" in said                                     # the table, said by make


def test_3_resume_to_more_steps(chain):
    refused = _train(chain, 200, check=False)                                   # more than planned: say so
    assert refused.returncode == 2 and "REPLAN=1" in refused.stdout + refused.stderr
    _train(chain, 200, "REPLAN=1")
    metrics = json.loads((chain["run"] / "metrics.json").read_text())
    assert [h["step"] for h in metrics["history"]] == [100, 200]
    assert odapi.checkpoint_step(odapi.latest_checkpoint(chain["run"])) == 200


def test_4_eval(chain):
    evaluated = make("eval", f"RUN={RUN}", f"DATA={chain['records']}", log=chain["log"])
    latest = json.loads((chain["run"] / "metrics.json").read_text())["latest"]
    assert latest["step"] == 200 and 0.0 <= latest["AP50"] <= 1.0
    _assert_read_out(chain["run"], latest, evaluated.stdout + evaluated.stderr)


def test_5_export_tflite_tfjs_and_parity(chain):
    published = make("export", f"RUN={RUN}", f"MODEL_NAME={RUN}", log=chain["log"])
    assert "export: exporting ckpt-" in published.stderr                         # the heartbeat: what runs
    assert (chain["run"] / "saved_model" / "saved_model.pb").exists()
    exported = json.loads((chain["run"] / "export.json").read_text())
    history = json.loads((chain["run"] / "metrics.json").read_text())["history"]  # the read-out's threshold ships
    best_f1 = next(h for h in history if h["step"] == exported["step"])["best_f1"]
    assert json.loads((chain["run"] / "saved_model" / "assets.extra" / "thresholds.json").read_text()) == {
        "score_threshold": best_f1["threshold"], "source": f"best F1 on val, step {exported['step']}"}
    assert list((REPO / "output" / "serving" / RUN).glob("*/saved_model.pb"))
    converted = make("tflite", f"RUN={RUN}", "QUANT=float,int8", f"DATA={chain['records']}", log=chain["log"])
    assert "tflite: converting int8" in converted.stderr or "tflite: int8: calibrating" in converted.stderr
    info = json.loads((chain["run"] / "tflite" / "model_info.json").read_text())
    assert info["input"]["resize_method"] == "bilinear_v1" and info["input"]["shape"] == [1, 300, 300, 3]
    make("tfjs", f"RUN={RUN}", log=chain["log"])
    make("parity", f"RUN={RUN}", f"DATA={chain['records']}", log=chain["log"])
    parity = json.loads((chain["run"] / "parity.json").read_text())
    formats = parity["formats"]
    assert {"saved_model", "tflite_float", "tflite_int8", "tfjs"} <= set(formats)
    for name in ("tflite_float", "tfjs"):                                         # float: the same model
        assert formats[name]["pass"], formats[name]
        assert formats[name]["max_box_diff"] <= 1e-4 and formats[name]["max_score_diff"] <= 1e-4
        assert formats[name]["missing"] == formats[name]["extra"] == 0
    assert isinstance(formats["tflite_int8"]["ap50_delta"], float)                 # int8: its AP loss, reported


def test_6_serve_and_detect_over_rest(chain):
    port = free_port()
    make("serve-bg", f"MODEL_NAME={RUN}", f"CLIENT_PORT={port}", log=chain["log"])
    image = next((REPO / "tests" / "fixtures" / "raccoon" / "images").glob("*.jpg"))
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/detect", data=image.read_bytes(),
                                     headers={"Content-Type": "image/jpeg"}, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    [result] = answer["images"]
    assert result["model"]["name"] == RUN and result["model"]["version"] >= 1
    assert isinstance(result["detections"], list)
