"""odstack.train.zoo: the model table, and download -> verify -> unpack over real (loopback) HTTP."""
from __future__ import annotations

import hashlib
import http.server
import io
import socket
import tarfile
import threading
from pathlib import Path

import pytest

from odstack.errors import ConfigError
from odstack.train import zoo

MODEL = zoo.get("ssd_mobilenet_v2_320x320")


def make_archive(path: Path, model: zoo.ZooModel = MODEL, *, top: str | None = None, checkpoint: str = "ckpt-0",
                 skip: tuple[str, ...] = (), extra: dict[str, bytes] | None = None) -> Path:
    """A small archive shaped like the zoo's: <top>/pipeline.config, checkpoint/, saved_model/."""
    top = model.stem if top is None else top
    files = {
        "pipeline.config": b"model { ssd { num_classes: 90 } }\n",
        f"checkpoint/{checkpoint}.index": b"index-bytes",
        f"checkpoint/{checkpoint}.data-00000-of-00001": bytes(range(256)) * 64,
        "checkpoint/checkpoint": f'model_checkpoint_path: "{checkpoint}"\n'.encode(),
        "saved_model/saved_model.pb": b"pb",
    }
    files = {f"{top}/{name}" if top else name: data for name, data in files.items() if name not in skip}
    files.update(extra or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www; yields (base_url, www, requests)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = type("Handler", (_Handler,), {"requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            lambda *a, **k: handler(*a, directory=str(www), **k))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", www, handler.requests
    finally:
        httpd.shutdown()
        httpd.server_close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/zoo"


# ------------------------------------------------------------------------------------------ table
def test_table_has_the_issue_models_with_zoo_values():
    names = zoo.names()
    for name in ("ssd_mobilenet_v2_320x320", "ssd_mobilenet_v2_fpnlite_320x320", "ssd_mobilenet_v2_fpnlite_640x640",
                 "efficientdet_d0", "efficientdet_d1", "efficientdet_d2", "centernet_resnet50_v1_fpn_512x512",
                 "centernet_mobilenetv2_fpn_512x512", "faster_rcnn_resnet50_v1_640x640"):
        assert name in names
    # values from tf2_detection_zoo.md at the pinned tensorflow/models commit
    assert (MODEL.archive, MODEL.speed_ms, MODEL.coco_map) == ("ssd_mobilenet_v2_320x320_coco17_tpu-8.tar.gz", 19, 20.2)
    d0 = zoo.get("efficientdet_d0")
    assert (d0.archive, d0.speed_ms, d0.coco_map, d0.tflite) == ("efficientdet_d0_coco17_tpu-32.tar.gz", 39, 33.6, False)
    frcnn = zoo.get("faster_rcnn_resnet50_v1_640x640")
    assert (frcnn.speed_ms, frcnn.coco_map) == (53, 29.3)
    rows = zoo.table()
    assert [r["name"] for r in rows] == names
    assert set(rows[0]) >= {"name", "archive", "speed_ms", "coco_map", "tflite"}


@pytest.mark.parametrize("spelling", ["ssd_mobilenet_v2_320x320", "SSD_MobileNet_V2_320x320",
                                      "ssd_mobilenet_v2_320x320_coco17_tpu-8.tar.gz",
                                      "ssd_mobilenet_v2_320x320_coco17_tpu-8"])
def test_short_and_archive_names_are_accepted(spelling):
    assert zoo.get(spelling) is MODEL


def test_aliases_and_unknown_names():
    assert zoo.get("ssd_efficientdet_d1_640x640").name == "efficientdet_d1"
    with pytest.raises(ConfigError, match="ssd_mobilenet_v2_320x320") as error:
        zoo.get("ssd_mobilenet_v2_320")
    assert "did you mean" in str(error.value)


def test_urls():
    assert MODEL.url("auto") == ("http://download.tensorflow.org/models/object_detection/tf2/20200711/"
                                 "ssd_mobilenet_v2_320x320_coco17_tpu-8.tar.gz")
    assert zoo.get("centernet_mobilenetv2_fpn_512x512").url().endswith(
        "/20210210/centernet_mobilenetv2fpn_512x512_coco17_od.tar.gz")
    assert MODEL.url("file:///mnt/zoo/") == "file:///mnt/zoo/ssd_mobilenet_v2_320x320_coco17_tpu-8.tar.gz"


# --------------------------------------------------------------------------------------- download
def test_download_over_http_then_cache_hit(server, tmp_path):
    base, www, requests = server
    make_archive(www / MODEL.archive)
    cache = tmp_path / "cache"
    model_dir = zoo.download("ssd_mobilenet_v2_320x320", cache, base)
    assert model_dir == cache / MODEL.stem / MODEL.stem
    assert (model_dir / "pipeline.config").read_text().startswith("model")
    assert zoo.checkpoint_prefix(model_dir, MODEL) == model_dir / "checkpoint" / "ckpt-0"
    assert (cache / MODEL.archive).exists()
    assert not list(cache.glob("*.part")) and not list(cache.glob("*.tmp"))
    assert requests == [f"/{MODEL.archive}"]

    (www / MODEL.archive).unlink()                                   # the second call needs no network
    assert zoo.download(MODEL.archive, cache, closed_port_url()) == model_dir
    assert requests == [f"/{MODEL.archive}"]


def test_download_verifies_a_pinned_sha256(server, tmp_path):
    base, www, _ = server
    archive = make_archive(www / MODEL.archive)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert zoo.download(MODEL.name, tmp_path / "ok", base, sha256=digest).is_dir()
    with pytest.raises(ConfigError, match="sha256"):
        zoo.download(MODEL.name, tmp_path / "bad", base, sha256="0" * 64)
    assert not any((tmp_path / "bad").iterdir())


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_corrupt_archive_is_a_clear_error_and_nothing_is_cached(server, tmp_path, damage):
    base, www, _ = server
    data = make_archive(tmp_path / "good.tar.gz").read_bytes()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = b"<html>not found</html>"
    else:                                                            # a flipped byte in the compressed data
        data = data[:200] + bytes([data[200] ^ 0xFF]) + data[201:]
    (www / MODEL.archive).write_bytes(data)
    cache = tmp_path / "cache"
    with pytest.raises(ConfigError, match="not usable") as error:
        zoo.download(MODEL.name, cache, base)
    assert base in str(error.value)
    assert list(cache.iterdir()) == []                                # no archive, no .part, no unpacked dir


def test_archive_without_the_checkpoint_is_rejected(server, tmp_path):
    base, www, _ = server
    make_archive(www / MODEL.archive, skip=("checkpoint/ckpt-0.index",))
    with pytest.raises(ConfigError, match=r"checkpoint/ckpt-0\.index is missing"):
        zoo.download(MODEL.name, tmp_path / "cache", base)
    make_archive(www / MODEL.archive, skip=("pipeline.config",))
    with pytest.raises(ConfigError, match="pipeline.config"):
        zoo.download(MODEL.name, tmp_path / "cache", base)


def test_archive_escaping_the_cache_is_refused(server, tmp_path):
    base, www, _ = server
    make_archive(www / MODEL.archive, extra={"../../evil.txt": b"x"})
    with pytest.raises(ConfigError, match="cannot unpack"):
        zoo.download(MODEL.name, tmp_path / "cache", base)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()
    assert not (tmp_path / "cache" / MODEL.stem).exists()


def test_unreachable_url_says_where_to_put_the_archive(tmp_path):
    cache = tmp_path / "cache"
    url = closed_port_url()
    with pytest.raises(ConfigError) as error:
        zoo.download(MODEL.name, cache, url)
    message = str(error.value)
    assert f"{url}/{MODEL.archive}" in message
    assert str(cache / MODEL.archive) in message
    assert not any(cache.iterdir())


def test_archive_put_in_the_cache_by_hand_works_offline(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    make_archive(cache / MODEL.archive)
    model_dir = zoo.download(MODEL.name, cache, closed_port_url())
    assert (model_dir / "checkpoint" / "ckpt-0.index").exists()


def test_file_url_and_other_top_directory_and_checkpoint(tmp_path):
    model = zoo.get("centernet_mobilenetv2_fpn_512x512")            # its archive unpacks to another name
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    make_archive(mirror / model.archive, model, top="centernet_mobilenetv2_fpn_od", checkpoint="ckpt-301")
    model_dir = zoo.download(model.name, tmp_path / "cache", mirror.as_uri())
    assert model_dir.name == "centernet_mobilenetv2_fpn_od"
    assert zoo.checkpoint_prefix(model_dir, model).name == "ckpt-301"
