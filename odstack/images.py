"""Image checks and the bytes that go into a record.

JPEG and PNG bytes are stored exactly as they are: re-encoding costs time and quality. Everything the
trainer's decoder (``tf.io.decode_image``, which ignores EXIF) would see differently from what the
annotator saw is converted once, here, so boxes and pixels agree:

- other formats (BMP, TIFF, WebP, GIF, ...) -> JPEG;
- CMYK, 16-bit, float and other unusual modes -> 8-bit RGB JPEG (PNG kept PNG when lossless matters);
- EXIF orientation 2..8 -> pixels transposed, unless the annotation's declared size shows the
  annotator worked on the raw, unrotated pixels.

Probing reads only the header (Pillow opens lazily) and the file's last bytes; ``verify="decode"``
also decodes every image (JPEG at 1/8 scale: the entropy-coded data is still fully read).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

# Guard against decompression bombs without rejecting big aerial/medical images outright.
Image.MAX_IMAGE_PIXELS = 300_000_000

KEEP_MODES = {"JPEG": {"L", "RGB"}, "PNG": {"L", "LA", "RGB", "RGBA", "P"}}
ROTATING_ORIENTATIONS = {5, 6, 7, 8}  # these swap width and height
EXIF_ORIENTATION = 0x0112
JPEG_QUALITY = 95
TAIL_BYTES = 4096


class ImageProblem(Exception):
    """The image cannot be used; ``reason`` is a ``records.Reason`` value."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        self.message = message
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the header says, and what will be stored."""

    raw_width: int
    raw_height: int
    source_format: str
    mode: str
    orientation: int
    apply_orientation: bool
    convert_reason: str | None  # None: bytes stored as they are

    @property
    def width(self) -> int:
        """Width of the pixels the trainer will see."""
        return self.raw_height if self.apply_orientation and self.orientation in ROTATING_ORIENTATIONS \
            else self.raw_width

    @property
    def height(self) -> int:
        return self.raw_width if self.apply_orientation and self.orientation in ROTATING_ORIENTATIONS \
            else self.raw_height

    @property
    def stored_format(self) -> str:
        if self.convert_reason is None:
            return "jpeg" if self.source_format == "JPEG" else "png"
        return "png" if self.source_format == "PNG" else "jpeg"


def _tail_ok(data: bytes, source_format: str) -> bool:
    """Cheap truncation check: JPEG ends with its EOI marker, PNG with its IEND chunk."""
    if source_format == "JPEG":
        return b"\xff\xd9" in data[-TAIL_BYTES:]
    if source_format == "PNG":
        return b"IEND" in data[-64:]
    return True


def _decode_check(image: Image.Image) -> None:
    if image.format == "JPEG":
        image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
    image.load()


def _orientation(image: Image.Image) -> int:
    """EXIF orientation (1 = upright) without decoding pixels."""
    try:
        if image.format == "PNG":
            # PngImageFile.getexif() decodes the whole image to look for a late eXIf chunk; an eXIf
            # chunk before IDAT (where the spec recommends it) is already in ``info``.
            raw = image.info.get("exif")
            if not raw:
                return 1
            exif = Image.Exif()
            exif.load(raw)
        else:
            exif = image.getexif()
        value = int(exif.get(EXIF_ORIENTATION, 1) or 1)
    except Exception:  # a broken EXIF block must not lose the image; treat it as upright
        return 1
    return value if value in range(1, 9) else 1


def read_bytes(path: Path) -> bytes:
    """The file's bytes; ``ImageProblem`` when it is missing, a directory, unreadable or empty."""
    from odstack.annotations import Reason

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageProblem(Reason.MISSING_IMAGE, "image file not found") from None
    except IsADirectoryError:
        raise ImageProblem(Reason.UNREADABLE_IMAGE, "is a directory, not an image file") from None
    except OSError as error:
        raise ImageProblem(Reason.UNREADABLE_IMAGE, f"cannot read image: {error.strerror}") from None
    if not data:
        raise ImageProblem(Reason.CORRUPT_IMAGE, "image file is empty (0 bytes)")
    return data


def embedded_bytes(annotation: Path) -> bytes:
    """The image a LabelMe-style JSON carries as base64 ``imageData``; ``ImageProblem`` when it cannot."""
    import base64
    import binascii
    import json

    from odstack.annotations import Reason

    try:
        text = json.loads(annotation.read_bytes())["imageData"]
        data = base64.b64decode(text, validate=True)
    except (OSError, ValueError, KeyError, TypeError, binascii.Error):
        raise ImageProblem(Reason.CORRUPT_IMAGE, f"image file not found, and the imageData in "
                                                 f"{annotation.name} is not a base64 image") from None
    if not data:
        raise ImageProblem(Reason.CORRUPT_IMAGE,
                           f"image file not found, and the imageData in {annotation.name} is empty")
    return data


def probe(path: Path, verify: str = "fast", declared_size: tuple[int, int] | None = None) -> ImageInfo:
    """``probe_bytes`` of a file."""
    return probe_bytes(read_bytes(path), verify, declared_size)


def probe_bytes(data: bytes, verify: str = "fast", declared_size: tuple[int, int] | None = None) -> ImageInfo:
    """Header facts about an image file's bytes and the conversion it needs; raises ``ImageProblem``.

    verify: "fast" (header + end marker; decodes only when the end marker is missing, since some
    cameras append trailers), "decode" (always decode), "none" (header only).
    """
    from odstack.annotations import Reason

    try:
        with Image.open(io.BytesIO(data)) as image:
            source_format = image.format or "?"
            mode = image.mode
            raw_width, raw_height = image.size
            if verify == "decode" or (verify == "fast" and not _tail_ok(data, source_format)):
                _decode_check(image)
            orientation = _orientation(image)
    except UnidentifiedImageError:
        # Pillow's message names its in-memory buffer object, which means nothing to a user.
        raise ImageProblem(Reason.CORRUPT_IMAGE, "not a readable image (no known image format in the file)") from None
    except Image.DecompressionBombError as error:
        raise ImageProblem(Reason.CORRUPT_IMAGE, f"not a readable image ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:  # Pillow raises these for truncated/corrupt data
        raise ImageProblem(Reason.CORRUPT_IMAGE, f"corrupt image data ({error})") from None

    apply_orientation = orientation != 1
    if apply_orientation and declared_size is not None and orientation in ROTATING_ORIENTATIONS \
            and tuple(declared_size) == (raw_width, raw_height):
        # The annotation states the raw (unrotated) size: the tool showed raw pixels, keep them.
        apply_orientation = False
    reasons = []
    if source_format not in KEEP_MODES:
        reasons.append(f"{source_format} is not JPEG/PNG")
    elif mode not in KEEP_MODES[source_format]:
        reasons.append(f"{mode} pixels")
    if apply_orientation:
        reasons.append(f"EXIF orientation {orientation}")
    return ImageInfo(raw_width, raw_height, source_format, mode, orientation, apply_orientation,
                     ", ".join(reasons) or None)


def stored_bytes(data: bytes, info: ImageInfo) -> bytes:
    """The bytes to put in ``image/encoded``: the file's own, or their conversion (see module doc)."""
    if info.convert_reason is None:
        return data
    with Image.open(io.BytesIO(data)) as image:
        if info.apply_orientation:
            image = ImageOps.exif_transpose(image)
        else:
            image.load()
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            # 16/32-bit integer grey: scale to 8 bits instead of clipping everything to white
            image = image.point(lambda v: v / 256).convert("L")
        elif image.mode == "F":
            image = image.convert("L")
        out = io.BytesIO()
        if info.stored_format == "png":
            image = image.convert("RGBA" if "A" in image.mode else "RGB")
            image.save(out, "PNG")
        else:
            image.convert("RGB").save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()
