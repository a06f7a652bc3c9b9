"""The TF2 Detection Model Zoo: the models odstack fine-tunes with the OD API, and their download cache.

Names, archives, speed and COCO mAP are those of the zoo table, research/object_detection/g3doc/
tf2_detection_zoo.md at tensorflow/models@45ecd69155b8279d550e1d51f1cc01e5f0eeaebb (speed: ms per
image on an Nvidia V100 as the zoo measured it; mAP: COCO 2017 val). A model is named by its short
name (``ssd_mobilenet_v2_320x320``), its archive (``ssd_mobilenet_v2_320x320_coco17_tpu-8.tar.gz``)
or the archive's stem.

Cache layout (``train.zoo_cache``, default ~/.cache/odstack/zoo)::

    <cache>/<archive>.tar.gz      the archive as downloaded (or put there by hand when offline)
    <cache>/<archive stem>/       its unpacked contents, with .odstack-ok once verified and complete

``base_url``: ``auto`` is the official zoo (each archive under its own date directory); any other
value is a flat mirror: ``<base_url>/<archive>`` (``file:///mnt/zoo``, ``http://127.0.0.1:8000``).
"""
from __future__ import annotations

import difflib
import gzip
import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from odstack.errors import ConfigError
from odstack.fsio import replace_dir
from odstack.log import LOGGER, progress

ZOO_URL = "http://download.tensorflow.org/models/object_detection/tf2"
ZOO_DOC = ("https://github.com/tensorflow/models/blob/master/research/object_detection/g3doc/"
           "tf2_detection_zoo.md")
OK_MARKER = ".odstack-ok"
# odstack's TFLite path (export_tflite_graph_tf2 + TFLite_Detection_PostProcess): SSD models with a fixed
# input size. Not EfficientDet (an SSD whose keep_aspect_ratio_resizer pads, which the TFLite input spec
# does not describe yet), CenterNet (other outputs, not wired in) or Faster R-CNN (no TFLite export:
# crop-and-resize over a dynamic number of proposals).
TFLITE_ARCHS = ("ssd",)
TFLITE_RESIZERS = ("fixed_shape_resizer",)


def tflite_supported(arch: str, resizer: str) -> bool:
    """The one rule for `make models` (zoo table) and `make tflite` (the run's pipeline.config)."""
    return arch in TFLITE_ARCHS and resizer in TFLITE_RESIZERS
CHUNK = 1 << 20


@dataclass(frozen=True)
class ZooModel:
    """One entry of the zoo table."""

    name: str              # short name: what MODEL= takes
    title: str             # as the zoo table writes it
    archive: str           # file name of the archive
    date: str              # the official URL's date directory
    speed_ms: int          # zoo table "Speed (ms)"
    coco_map: float        # zoo table "COCO mAP"
    arch: str              # the config's meta-architecture: model { <arch> { ... } } (ssd, center_net, faster_rcnn)
    resizer: str           # its image_resizer: fixed_shape_resizer or keep_aspect_ratio_resizer
    batch: int             # odstack's default batch: one GPU of ~16 GB (the zoo trained on 8-32 TPU cores)
    checkpoint: str | None = "ckpt-0"   # checkpoint/<prefix> inside the archive; None: whichever ckpt-N it has
    sha256: str | None = None           # pinned digest of the archive, where known

    @property
    def tflite(self) -> bool:
        """odstack's TFLite path takes it (one rule, by meta-architecture, for `make models` and `make tflite`)."""
        return tflite_supported(self.arch, self.resizer)

    @property
    def stem(self) -> str:
        return self.archive.removesuffix(".tar.gz")

    def url(self, base_url: str = "auto") -> str:
        if base_url in ("", "auto"):
            return f"{ZOO_URL}/{self.date}/{self.archive}"
        return f"{base_url.rstrip('/')}/{self.archive}"


MODELS: tuple[ZooModel, ...] = (
    ZooModel("ssd_mobilenet_v2_320x320", "SSD MobileNet v2 320x320",
             "ssd_mobilenet_v2_320x320_coco17_tpu-8.tar.gz", "20200711", 19, 20.2, "ssd", "fixed_shape_resizer", 32),
    ZooModel("ssd_mobilenet_v2_fpnlite_320x320", "SSD MobileNet V2 FPNLite 320x320",
             "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.tar.gz", "20200711", 22, 22.2, "ssd", "fixed_shape_resizer", 32),
    ZooModel("ssd_mobilenet_v2_fpnlite_640x640", "SSD MobileNet V2 FPNLite 640x640",
             "ssd_mobilenet_v2_fpnlite_640x640_coco17_tpu-8.tar.gz", "20200711", 39, 28.2, "ssd", "fixed_shape_resizer", 16),
    ZooModel("efficientdet_d0", "EfficientDet D0 512x512",
             "efficientdet_d0_coco17_tpu-32.tar.gz", "20200711", 39, 33.6, "ssd", "keep_aspect_ratio_resizer", 16),
    ZooModel("efficientdet_d1", "EfficientDet D1 640x640",
             "efficientdet_d1_coco17_tpu-32.tar.gz", "20200711", 54, 38.4, "ssd", "keep_aspect_ratio_resizer", 8),
    ZooModel("efficientdet_d2", "EfficientDet D2 768x768",
             "efficientdet_d2_coco17_tpu-32.tar.gz", "20200711", 67, 41.8, "ssd", "keep_aspect_ratio_resizer", 4),
    ZooModel("centernet_resnet50_v1_fpn_512x512", "CenterNet Resnet50 V1 FPN 512x512",
             "centernet_resnet50_v1_fpn_512x512_coco17_tpu-8.tar.gz", "20200711", 27, 31.2, "center_net", "keep_aspect_ratio_resizer", 16),
    ZooModel("centernet_mobilenetv2_fpn_512x512", "CenterNet MobileNetV2 FPN 512x512",
             "centernet_mobilenetv2fpn_512x512_coco17_od.tar.gz", "20210210", 6, 23.4, "center_net", "keep_aspect_ratio_resizer", 32,
             checkpoint=None),
    ZooModel("faster_rcnn_resnet50_v1_640x640", "Faster R-CNN ResNet50 V1 640x640",
             "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.tar.gz", "20200711", 53, 29.3, "faster_rcnn", "keep_aspect_ratio_resizer", 8),
)

# other spellings people use: the sample config names and the zoo's own titles
ALIASES = {
    "ssd_efficientdet_d0_512x512": "efficientdet_d0",
    "ssd_efficientdet_d1_640x640": "efficientdet_d1",
    "ssd_efficientdet_d2_768x768": "efficientdet_d2",
    "efficientdet_d0_512x512": "efficientdet_d0",
    "efficientdet_d1_640x640": "efficientdet_d1",
    "efficientdet_d2_768x768": "efficientdet_d2",
    "centernet_mobilenetv2fpn_512x512": "centernet_mobilenetv2_fpn_512x512",
}


def names() -> list[str]:
    return [model.name for model in MODELS]


def get(name: str) -> ZooModel:
    """The zoo entry for a short name, an archive name or an archive stem (case-insensitive)."""
    key = name.strip().lower().removesuffix(".tar.gz")
    key = ALIASES.get(key, key)
    for model in MODELS:
        if key in (model.name, model.stem.lower()):
            return model
    close = difflib.get_close_matches(key, names() + [m.stem for m in MODELS], n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(f"model={name!r} is not in odstack's TF2 zoo list",
                      hint=f"{hint}choose one of: {', '.join(names())} (`make models` lists them), "
                           "or pass a pipeline .config file")


def table() -> list[dict]:
    """One row per model, for `make models`."""
    return [{"name": m.name, "title": m.title, "archive": m.archive, "speed_ms": m.speed_ms,
             "coco_map": m.coco_map, "arch": m.arch, "tflite": m.tflite, "batch": m.batch} for m in MODELS]


def download(name: str, cache: Path, base_url: str = "auto", sha256: str | None = None) -> Path:
    """Download (once), verify and unpack a zoo model; return the directory holding its pipeline.config.

    An archive already in the cache (downloaded earlier or put there by hand) is verified and unpacked
    without any network access; an unpacked, verified model returns at once.
    """
    model = get(name)
    cache = Path(cache).expanduser()
    expected_sha = sha256 or model.sha256
    unpacked = cache / model.stem
    if (unpacked / OK_MARKER).exists():
        return _model_dir(unpacked)
    archive = cache / model.archive
    url = model.url(base_url)
    if not archive.exists():
        cache.mkdir(parents=True, exist_ok=True)
        part = archive.with_name(archive.name + ".part")
        try:
            _fetch(url, part)
            _verify(part, model, expected_sha, source=url)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, archive)
    else:
        LOGGER.info("train[zoo]: using %s from the cache", archive)
        _verify(archive, model, expected_sha, source=str(archive))
    return _unpack(archive, unpacked, model)


def checkpoint_prefix(model_dir: Path, model: ZooModel | None = None) -> Path:
    """The fine-tune checkpoint prefix inside an unpacked model (checkpoint/ckpt-0 for most)."""
    directory = Path(model_dir) / "checkpoint"
    if model is not None and model.checkpoint:
        return directory / model.checkpoint
    indexes = sorted(directory.glob("ckpt-*.index"), key=lambda p: _ckpt_number(p.stem))
    if not indexes:
        raise ConfigError("no checkpoint/ckpt-N.index in the unpacked model", where=str(model_dir),
                          hint="delete this directory and its archive from the cache to download it again")
    return indexes[-1].with_suffix("")


def _ckpt_number(stem: str) -> int:
    tail = stem.rpartition("-")[2]
    return int(tail) if tail.isdigit() else -1


def _fetch(url: str, part: Path) -> None:
    LOGGER.info("train[zoo]: downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, part.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with progress(total=total, unit="B", unit_scale=True, desc=part.name) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise ConfigError(
            f"cannot download the model archive from {url}: {reason}",
            hint=f"offline? download {part.name.removesuffix('.part')} elsewhere and put it at "
                 f"{part.with_suffix('')} (it is verified and unpacked from there), or set "
                 "zoo_url= to a mirror (file:///dir or http://host/dir holding the archives). "
                 f"The archive list: {ZOO_DOC}") from None


def _members_ok(names: list[str], model: ZooModel) -> str | None:
    """None if the archive holds one model dir with pipeline.config and its checkpoint index, else why not."""
    configs = [n for n in names if n.rstrip("/").endswith("pipeline.config") and n.count("/") <= 1]
    if len(configs) != 1:
        return f"expected one pipeline.config in the archive's top directory, found {len(configs)}"
    top = configs[0].rpartition("/")[0]
    prefix = f"{top}/checkpoint/" if top else "checkpoint/"
    if model.checkpoint:
        wanted = f"{prefix}{model.checkpoint}.index"
        if wanted not in names:
            return f"{wanted} is missing"
    elif not any(n.startswith(prefix + "ckpt-") and n.endswith(".index") for n in names):
        return f"{prefix}ckpt-N.index is missing"
    return None


def _verify(archive: Path, model: ZooModel, sha256: str | None, source: str) -> None:
    """One streaming pass: sha256 of the bytes, every tar header and file read (gzip CRC and length are
    checked at its end, so truncation or corruption fails here), then the expected members."""
    digest = hashlib.sha256()
    problem = None
    try:
        with archive.open("rb") as raw:
            hashing = _HashingReader(raw, digest)
            with gzip.GzipFile(fileobj=hashing, mode="rb") as unzipped:
                names = []
                with tarfile.open(fileobj=unzipped, mode="r|") as tar:
                    for member in tar:
                        names.append(member.name.removeprefix("./"))
                        if member.isfile():
                            data = tar.extractfile(member)
                            while data is not None and data.read(CHUNK):
                                pass
                while unzipped.read(CHUNK):       # the rest of the gzip stream, up to its CRC trailer
                    pass
            while hashing.read(CHUNK):
                pass
        if sha256 and digest.hexdigest() != sha256.lower():
            problem = f"sha256 {digest.hexdigest()} does not match the pinned {sha256}"
        else:
            problem = _members_ok(names, model)
    except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error) as error:
        problem = f"not a readable .tar.gz ({error})"
    if problem:
        raise ConfigError(f"model archive from {source} is not usable: {problem}", where=str(archive),
                          hint=f"the download was corrupt or is not {model.archive}: download it again "
                               f"(a file put in the cache by hand must be deleted or replaced first)")
    LOGGER.info("train[zoo]: %s verified (sha256 %s)", model.archive, digest.hexdigest())


class _HashingReader:
    """A read-only file wrapper that hashes what passes through it."""

    def __init__(self, raw, digest) -> None:
        self._raw = raw
        self._digest = digest

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._digest.update(data)
        return data


def _unpack(archive: Path, unpacked: Path, model: ZooModel) -> Path:
    tmp = unpacked.with_name(unpacked.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(tmp, filter="data")      # refuses absolute paths, '..', links leaving tmp, devices
    except (tarfile.TarError, OSError) as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"cannot unpack {archive}: {error}", where=str(archive),
                          hint="delete it from the cache and download it again") from None
    (tmp / OK_MARKER).write_text(model.archive + "\n", encoding="utf-8")
    replace_dir(tmp, unpacked)
    LOGGER.info("train[zoo]: unpacked %s into %s", model.archive, unpacked)
    return _model_dir(unpacked)


def _model_dir(unpacked: Path) -> Path:
    """The archive's top directory (where pipeline.config is): usually <stem>/, sometimes another name."""
    if (unpacked / "pipeline.config").exists():
        return unpacked
    found = sorted(unpacked.glob("*/pipeline.config"))
    if len(found) != 1:
        raise ConfigError("unpacked model has no single pipeline.config", where=str(unpacked),
                          hint="delete this directory from the cache to unpack it again")
    return found[0].parent
