"""Pretrained weights by name (tfvision INIT=): the real download/cache/checksum/resume code against a
loopback HTTP server serving a checkpoint archive made here (stand-in for Model Garden's storage, which
cannot be reached from our machines), and the warm start restoring the backbone/FPN and leaving the head new.
"""
from __future__ import annotations

import hashlib
import http.server
import logging
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from odstack.errors import ConfigError
from odstack.train import weights
from odstack.tfruntime import import_tensorflow
from odstack.train.engines import tfvision

COCO = weights.find("retinanet_resnet50_fpn", "coco")


def _model(num_classes: int):
    """A real Model Garden RetinaNet (tfvision's retinanet_mobilenetv2 at 64 px)."""
    import_tensorflow()
    from official.core import exp_factory, task_factory
    from official.vision import registry_imports  # noqa: F401

    params = exp_factory.get_exp_config(tfvision.BASE_EXPERIMENT)
    params.override({"task": {"model": {**tfvision.MODELS["retinanet_mobilenetv2"].model,
                                        "num_classes": num_classes, "input_size": [64, 64, 3]}}}, is_strict=False)
    return task_factory.get_task(params.task).build_model()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A COCO-like detector (91 classes) saved as Model Garden saves its published checkpoints
    (backbone/decoder/head at the root), packed as a .tar.gz like theirs."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("weights-src")
    model = _model(91)
    tf.train.Checkpoint(**model.checkpoint_items).save(str(root / "ckpt" / "ckpt"))
    archive = root / COCO.archive
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root / "ckpt", arcname="retinanet-resnet50fpn")
    return model, archive


class _Server:
    """Serves one file with HTTP Range support; ``cut_after`` drops the first response after N bytes."""

    def __init__(self, path: Path, cut_after: int | None = None):
        self.data, self.cut_after, self.requests = path.read_bytes(), cut_after, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.requests.append(self.headers.get("Range"))
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                body = server.data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    cut, server.cut_after = server.cut_after, None
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/vision"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_unpack_and_cache(source, tmp_path):
    _, archive = source
    server = _Server(archive)
    try:
        prefix = weights.fetch(COCO, tmp_path, server.url)
        assert prefix.with_suffix(".index").exists() and prefix.parent.parent == tmp_path / COCO.stem
        assert (tmp_path / COCO.archive).read_bytes() == archive.read_bytes()
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        assert (tmp_path / f"{COCO.archive}.sha256").read_text().split()[0] == digest
        assert weights.fetch(COCO, tmp_path, server.url) == prefix and len(server.requests) == 1  # cached
    finally:
        server.close()


def test_a_cut_download_resumes_with_a_range_request(source, tmp_path):
    _, archive = source
    half = archive.stat().st_size // 2
    server = _Server(archive, cut_after=half)
    try:
        with pytest.raises(ConfigError, match="resumed next time") as error:
            weights.fetch(COCO, tmp_path, server.url)
        assert f"put it at {tmp_path / COCO.archive}" in str(error.value)
        assert (tmp_path / (COCO.archive + ".part")).stat().st_size == half
        sha = hashlib.sha256(archive.read_bytes()).hexdigest()
        prefix = weights.fetch(COCO, tmp_path, server.url, sha256=sha)
        assert server.requests == [None, f"bytes={half}-"]
        assert (tmp_path / COCO.archive).read_bytes() == archive.read_bytes() and prefix.with_suffix(".index").exists()
    finally:
        server.close()


def test_a_wrong_checksum_keeps_nothing(source, tmp_path):
    _, archive = source
    server = _Server(archive)
    try:
        with pytest.raises(ConfigError, match="not the expected"):
            weights.fetch(COCO, tmp_path, server.url, sha256="0" * 64)
    finally:
        server.close()
    assert not any(tmp_path.iterdir())


def test_offline_names_the_file_and_where_to_put_it_and_a_hand_placed_archive_works(source, tmp_path):
    _, archive = source
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/vision"
    with pytest.raises(ConfigError) as error:
        weights.fetch(COCO, tmp_path, dead)
    text = str(error.value)
    assert f"cannot download {COCO.archive} from {dead}/{COCO.archive}" in text
    assert f"put it at {tmp_path / COCO.archive}" in text and "INIT=none" in text
    (tmp_path / COCO.archive).write_bytes(archive.read_bytes())  # what the hint says to do
    assert weights.fetch(COCO, tmp_path, dead).with_suffix(".index").exists()


def test_warm_start_restores_backbone_and_fpn_and_leaves_the_head_new(source, tmp_path):
    coco_model, archive = source
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    prefix = weights.checkpoint_prefix(tmp_path)
    model = _model(4)  # 3 classes + background: a class head of another shape than COCO's
    fresh_head = [v.numpy().copy() for v in model.head.variables]
    counts = tfvision.warm_start(model, str(prefix), "backbone,decoder")
    assert counts == {"backbone": len(coco_model.backbone.variables), "decoder": len(coco_model.decoder.variables),
                      "head (new)": len(model.head.variables)}
    assert counts["backbone"] > 100 and counts["decoder"] > 10
    for mine, theirs in zip(model.backbone.variables + model.decoder.variables,
                            coco_model.backbone.variables + coco_model.decoder.variables):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.name)
    for before, after in zip(fresh_head, model.head.variables):
        np.testing.assert_array_equal(before, after.numpy())  # untouched by the restore
    box = [(a, b) for a, b in zip(model.head.variables, coco_model.head.variables) if a.shape == b.shape
           and a.shape.rank == 4]
    assert box and not all(np.array_equal(a.numpy(), b.numpy()) for a, b in box)


def test_which_weights_each_model_and_init_gets(caplog):
    logging.getLogger("odstack").propagate = True
    caplog.set_level("INFO", logger="odstack")
    assert weights.resolve("retinanet_resnet50_fpn", "coco") is COCO
    assert COCO.url == "https://storage.googleapis.com/tf_model_garden/vision/retinanet/retinanet-resnet50fpn.tar.gz"
    assert weights.resolve("retinanet_resnet50_fpn", "auto") is COCO
    assert weights.resolve("retinanet_resnet50_fpn", "imagenet").modules == "backbone"
    assert weights.resolve("retinanet_resnet50_fpn", "none") is None
    assert weights.resolve("retinanet_mobilenetv2", "auto") is None
    assert "publishes no pretrained weights for retinanet_mobilenetv2" in caplog.text
    with pytest.raises(ConfigError, match="no coco weights for model retinanet_mobilenetv2"):
        weights.resolve("retinanet_mobilenetv2", "coco")
    with pytest.raises(ConfigError, match="init='cocoa' is not one of"):
        weights.resolve("retinanet_resnet50_fpn", "cocoa")


def test_the_default_model_is_a_pretrained_start_and_from_scratch_the_cpu_sized_one(source, tmp_path):
    """MODEL=auto, INIT=auto (what a user's own data gets): Model Garden's COCO R50-FPN, fetched; INIT=none
    (the demo, CI): retinanet_mobilenetv2 from scratch."""
    _, archive = source
    server = _Server(archive)
    try:
        plan = tfvision._plan(tfvision.TrainSettings(engine="tfvision", weights_cache=tmp_path,
                                                     weights_url=server.url, steps=10))
        assert plan.model.name == "retinanet_resnet50_fpn" and plan.init_modules == "backbone,decoder"
        assert Path(plan.init_checkpoint).with_suffix(".index").exists()
    finally:
        server.close()
    for scratch in ({"init": "none"}, {"from_scratch": True}):
        plan = tfvision._plan(tfvision.TrainSettings(engine="tfvision", steps=10, **scratch))
        assert plan.model.name == "retinanet_mobilenetv2" and plan.init_checkpoint == ""
    defaults = {row["name"]: row["default"] for row in tfvision.models()}
    assert defaults == {"retinanet_mobilenetv2": "with INIT=none (MODEL=auto)",
                        "retinanet_resnet50_fpn": "yes (MODEL=auto)"}


def test_train_settings_fetch_through_the_same_code(source, tmp_path):
    _, archive = source
    server = _Server(archive)
    try:
        settings = tfvision.TrainSettings(engine="tfvision", model="retinanet_resnet50_fpn", init="coco",
                                          weights_cache=tmp_path, weights_url=server.url, steps=10)
        plan = tfvision._plan(settings)
        assert plan.init_modules == "backbone,decoder" and Path(plan.init_checkpoint).with_suffix(".index").exists()
        assert tfvision._plan(tfvision.TrainSettings(engine="tfvision", init="none", steps=10)).init_checkpoint == ""
    finally:
        server.close()
