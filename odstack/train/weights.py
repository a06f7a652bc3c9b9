"""Pretrained weights for the tfvision engine by name: ``init=coco|imagenet|none`` (``INIT=``), downloaded once.

The table lists checkpoints TF Model Garden publishes with its vision model list (tensorflow/models,
official/vision): COCO-trained detectors and ImageNet-trained backbones, with the
input size, the published quality and the licence. Model Garden publishes neither sizes nor checksums
for them: ``sha256`` stays None until pinned (``weights_sha256=`` checks one you know), and every
download's digest is logged and kept beside the archive.

Download: into ``weights_cache`` (default ~/.cache/odstack/weights) as ``<archive>.part``, resumed with an
HTTP Range request when a partial file is there, with a progress bar (a log line every few seconds when
not on a terminal), checked, renamed, then unpacked (``tarfile`` data filter) beside it. Offline: an error
naming the file, its URL and where to put it by hand. ``weights_url=`` replaces the URL's directory (a
mirror, or the tests' loopback server).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from odstack.errors import ConfigError
from odstack.fsio import replace_dir
from odstack.log import LOGGER, progress

INITS = ("auto", "coco", "imagenet", "none")
OK_MARKER = ".odstack-unpacked"
CHUNK = 1 << 20
GARDEN = "https://storage.googleapis.com/tf_model_garden/vision"


@dataclass(frozen=True)
class Weights:
    model: str              # the tfvision model (odstack/train/engines/tfvision.py MODELS) they fit
    init: str               # coco | imagenet
    url: str
    modules: str            # Model Garden init_checkpoint_modules: what is restored (the class head never is)
    input_size: int         # what they were trained at
    quality: str            # as published
    licence: str
    size_bytes: int | None = None   # not published
    sha256: str | None = None       # not published

    @property
    def archive(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        return self.archive.removesuffix(".tar.gz").removesuffix(".tgz")


_LICENCE = "Apache-2.0 (Model Garden code and checkpoints); trained on {data}: check its terms for your use"
WEIGHTS: list[Weights] = [
    Weights("retinanet_resnet50_fpn", "coco", f"{GARDEN}/retinanet/retinanet-resnet50fpn.tar.gz",
            modules="backbone,decoder", input_size=640, quality="COCO box AP 36.8 (R50-FPN, 72 epochs)",
            licence=_LICENCE.format(data="COCO 2017 (annotations CC BY 4.0, images Flickr terms)")),
    Weights("retinanet_resnet50_fpn", "imagenet", f"{GARDEN}/resnet/resnet-50-i224.tar.gz",
            modules="backbone", input_size=224, quality="ImageNet top-1 77.1 (ResNet-50, 200 epochs)",
            licence=_LICENCE.format(data="ImageNet (non-commercial research terms)")),
]


def find(model: str, init: str) -> Weights | None:
    return next((w for w in WEIGHTS if w.model == model and w.init == init), None)


def table() -> list[dict]:
    return [{"model": w.model, "init": w.init, "url": w.url, "input_size": w.input_size, "quality": w.quality,
             "licence": w.licence, "size": w.size_bytes or "not published", "sha256": w.sha256 or "not published"}
            for w in WEIGHTS]


def resolve(model: str, init: str) -> Weights | None:
    """The weights ``init`` asks for with ``model``; None for a start from scratch. auto: COCO, else
    ImageNet, else from scratch (said, with what to pick for a pretrained start)."""
    if init not in INITS:
        raise ConfigError(f"init={init!r} is not one of: {', '.join(INITS)}",
                          hint="coco: a COCO-trained detector's backbone+FPN; imagenet: an ImageNet backbone; "
                               "none: from scratch")
    if init == "none":
        return None
    wanted = ("coco", "imagenet") if init == "auto" else (init,)
    for kind in wanted:
        found = find(model, kind)
        if found:
            return found
    available = ", ".join(f"MODEL={w.model} INIT={w.init}" for w in WEIGHTS)
    if init == "auto":
        LOGGER.warning("train[tfvision]: Model Garden publishes no pretrained weights for %s: training from "
                       "scratch (needs far more data and steps); pretrained starts: %s", model, available)
        return None
    raise ConfigError(f"init={init}: Model Garden publishes no {init} weights for model {model}",
                      hint=f"pretrained starts: {available}; or init_checkpoint=<a local checkpoint>, or INIT=none")


def fetch(weights: Weights, cache: Path, base_url: str = "auto", sha256: str | None = None) -> Path:
    """The local checkpoint prefix of ``weights``: downloaded (resumed), checked and unpacked once."""
    cache = Path(cache).expanduser()
    unpacked = cache / weights.stem
    if (unpacked / OK_MARKER).exists():
        return checkpoint_prefix(unpacked)
    url = weights.url if base_url in ("auto", "", None) else f"{base_url.rstrip('/')}/{weights.archive}"
    archive = cache / weights.archive
    expected = (sha256 or weights.sha256 or "").lower() or None
    if archive.exists():
        LOGGER.info("train[weights]: using %s from the cache", archive)
    else:
        cache.mkdir(parents=True, exist_ok=True)
        part = archive.with_name(archive.name + ".part")
        _download(url, part, archive)
        digest = _sha256(part)
        if expected and digest != expected:
            part.unlink()
            raise ConfigError(f"{weights.archive} from {url} has sha256 {digest}, not the expected {expected}",
                              where=str(archive), hint="download it again (the file was removed); a mirror "
                                                       "(weights_url=) may serve another file")
        os.replace(part, archive)
        (cache / (weights.archive + ".sha256")).write_text(f"{digest}  {weights.archive}\n", encoding="utf-8")
        LOGGER.info("train[weights]: %s downloaded, sha256 %s%s", weights.archive, digest,
                    " (matches)" if expected else " (no published checksum to compare with)")
    if expected and archive.exists() and _sha256(archive) != expected:
        raise ConfigError(f"{archive} does not have the expected sha256 {expected}", where=str(archive),
                          hint="delete it to download it again")
    return _unpack(archive, unpacked)


def _download(url: str, part: Path, archive: Path) -> None:
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            resumed = offset and response.status == 206
            if offset and not resumed:
                LOGGER.info("train[weights]: the server does not resume downloads; starting %s again", part.name)
            start = offset if resumed else 0
            length = int(response.headers.get("Content-Length") or 0)
            total = start + length if length else None
            LOGGER.info("train[weights]: downloading %s%s", url, f" (resuming at {start} bytes)" if resumed else "")
            with part.open("ab" if resumed else "wb") as out, \
                    progress(total=total, initial=start, unit="B", unit_scale=True, desc=archive.name) as bar:
                done, said = start, time.monotonic()
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    bar.update(len(chunk))
                    if time.monotonic() - said >= 10:  # in a log (no bar): a line every 10 s
                        LOGGER.info("train[weights]: %s: %d MB%s", archive.name, done >> 20,
                                    f" of {total >> 20} MB" if total else "")
                        said = time.monotonic()
            if total and done < total:
                raise OSError(f"connection closed after {done} of {total} bytes")
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the partial file is already whole
            return
        raise ConfigError(f"cannot download {archive.name} from {url}: HTTP {error.code} {error.reason}",
                          hint=_by_hand(url, archive)) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        kept = f"; {part.stat().st_size} bytes kept in {part}, resumed next time" if part.exists() else ""
        raise ConfigError(f"cannot download {archive.name} from {url}: {reason}{kept}",
                          hint=_by_hand(url, archive)) from None


def _by_hand(url: str, archive: Path) -> str:
    return (f"offline? download {url} elsewhere and put it at {archive} (it is unpacked from there); or set "
            "weights_url= to a mirror holding the archive, init_checkpoint= to a local checkpoint, or INIT=none")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _unpack(archive: Path, unpacked: Path) -> Path:
    tmp = unpacked.with_name(unpacked.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(tmp, filter="data")
    except (tarfile.TarError, OSError, EOFError) as error:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"cannot unpack {archive}: {error}", where=str(archive),
                          hint="delete it from the cache to download it again") from None
    prefix = checkpoint_prefix(tmp)  # refuse an archive without a checkpoint before it is kept
    (tmp / OK_MARKER).write_text(archive.name + "\n", encoding="utf-8")
    replace_dir(tmp, unpacked)
    LOGGER.info("train[weights]: unpacked %s -> %s", archive.name, unpacked)
    return unpacked / prefix.relative_to(tmp)


def checkpoint_prefix(directory: Path) -> Path:
    """The (highest-numbered) checkpoint prefix anywhere under ``directory``."""
    indexes = sorted(Path(directory).rglob("*.index"),
                     key=lambda p: int(p.stem.rpartition("-")[2]) if p.stem.rpartition("-")[2].isdigit() else -1)
    if not indexes:
        raise ConfigError("no checkpoint (<prefix>.index) in the weights archive", where=str(directory),
                          hint="delete it from the cache; the archive is not a TF checkpoint")
    return indexes[-1].with_suffix("")
