"""Untrusted image bytes -> RGB uint8 arrays, and boxes drawn onto JPEGs. Pillow only.

Every failure becomes an :class:`ApiError` (4xx): 400 empty, 413 too many pixels (decompression bombs
are refused from the header, before any pixel is decoded), 415 not an image, 422 undecodable.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from odclient.errors import ApiError

FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")
EXIF_ORIENTATION = 0x0112
COLORS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45")


@dataclass
class Decoded:
    name: str
    image: Image.Image  # RGB, EXIF orientation applied (possibly decoded at a reduced scale)
    width: int          # full size, EXIF orientation applied: what box_px refers to
    height: int


def _open(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """The lazily opened image (header parsed, no pixels decoded), size-checked."""
    if not data:
        raise ApiError(400, "empty_image", f"{name}: the upload is empty (0 bytes)")
    too_large = ApiError(413, "image_too_large", f"{name}: more pixels than MAX_IMAGE_PIXELS={max_pixels}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise too_large from None
        except UnidentifiedImageError:
            raise ApiError(415, "unsupported_media_type",
                           f"{name}: not an image (supported: {', '.join(FORMATS)})") from None
        except Exception as error:  # noqa: BLE001 - any parser failure on untrusted bytes is the client's
            raise ApiError(422, "undecodable_image", f"{name}: cannot read the image header ({error})") from None
    width, height = image.size
    if width < 1 or height < 1 or width * height > max_pixels:
        raise ApiError(413, "image_too_large", f"{name}: {width}x{height} pixels exceeds MAX_IMAGE_PIXELS={max_pixels}")
    return image


def check(data: bytes, name: str, max_pixels: int, max_side: int = 0) -> int:
    """Fail fast (before any inference) on what the header alone shows: empty, not an image, too large.
    Returns the pixels :func:`decode` will produce (a large JPEG decodes at a reduced DCT scale)."""
    image = _open(data, name, max_pixels)
    width, height = image.size
    reduction = _jpeg_reduction(image, max_side)
    image.close()
    return -(-width // reduction) * -(-height // reduction)


def forwardable(data: bytes, name: str, max_pixels: int, max_side: int, min_side: int) -> tuple[int, int] | None:
    """(width, height) when the upload can go to the model server as it is (its encoded-image signature
    decodes it): a plain RGB/grey/palette JPEG or PNG, no EXIF rotation, no resize needed. Else None: the
    client decodes it (EXIF orientation, CMYK, 16-bit, GIF/WEBP/TIFF..., downscale or stretch)."""
    image = _open(data, name, max_pixels)
    try:
        width, height = image.size
        if (image.format not in ("JPEG", "PNG") or image.mode not in ("RGB", "L", "P")
                or (max_side and max(width, height) > max_side) or min(width, height) < min_side):
            return None
        # EXIF: a JPEG's is in its header; a PNG's getexif() would decode every pixel, so any eXIf chunk
        # seen before the pixel data sends it the slow way
        rotated = (image.getexif().get(EXIF_ORIENTATION, 1) != 1 if image.format == "JPEG"
                   else "exif" in image.info)
        return None if rotated else (width, height)
    except Exception:  # noqa: BLE001 - odd metadata: decode() gives the client its answer
        return None
    finally:
        image.close()


def _jpeg_reduction(image: Image.Image, max_side: int) -> int:
    """The DCT scale (1, 2, 4 or 8) of the draft decode below: the largest keeping the longer side >= max_side."""
    longest = max(image.size)
    if not max_side or image.format != "JPEG" or longest < 2 * max_side:
        return 1
    return next(r for r in (8, 4, 2, 1) if -(-longest // r) >= max_side)


def decode(data: bytes, name: str, max_pixels: int, max_side: int = 0) -> Decoded:
    """RGB pixels plus the image's full (EXIF-oriented) size. With ``max_side``, a JPEG at least twice that
    large is decoded at a reduced DCT scale (1/2..1/8, never below ``max_side``): much faster for photos,
    and the model gets a downscaled input anyway. Width/height always describe the full image."""
    image = _open(data, name, max_pixels)
    width, height = image.size
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            if _jpeg_reduction(image, max_side) > 1:
                scale = max_side / max(width, height)
                image.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            if orientation in (5, 6, 7, 8):  # rotated by 90 degrees
                width, height = height, width
            if orientation != 1:  # (exif_transpose and convert copy the pixels even when there is nothing to do)
                image = ImageOps.exif_transpose(image) or image
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            rgb.load()
        except Exception as error:  # noqa: BLE001 - truncated/corrupt data, bombs, odd modes
            raise ApiError(422, "undecodable_image", f"{name}: cannot decode the {image.format} image ({error})") from None
    return Decoded(name, rgb, width, height)


def model_input(image: Image.Image, max_side: int, min_side: int = 0) -> np.ndarray:
    """HxWx3 uint8, downscaled so the longer side is at most ``max_side``, and a side shorter than
    ``min_side`` stretched to it: detectors resize to a fixed size inside the graph, where a 2000x1 image's
    short side becomes 0 pixels and fails. Boxes are normalized, so they still fit the original image."""
    scale = max_side / max(image.size) if max_side and max(image.size) > max_side else 1.0
    size = tuple(max(1, round(side * scale), min_side) for side in image.size)
    if size != image.size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def draw(image: Image.Image, detections: list[dict[str, Any]], quality: int) -> bytes:
    """JPEG bytes of ``image`` with each detection's box and ``label score`` drawn."""
    out = io.BytesIO()
    draw_boxes(image, detections).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def draw_boxes(image: Image.Image, detections: list[dict[str, Any]]) -> Image.Image:
    """A copy of ``image`` with each detection's box (``box_px``) and ``label score`` drawn."""
    canvas = image.copy()
    pen = ImageDraw.Draw(canvas)
    line = max(2, round(max(canvas.size) / 300))
    font = ImageFont.load_default(size=max(12, round(max(canvas.size) / 45)))
    for det in detections:
        box = det["box_px"]
        color = COLORS[det["class_id"] % len(COLORS)]
        pen.rectangle((box["xmin"], box["ymin"], box["xmax"], box["ymax"]), outline=color, width=line)
        text = f"{det['label'] or '#' + str(det['class_id'])} {det['score']:.2f}"
        _, _, text_w, text_h = font.getbbox(text)
        x, y = box["xmin"], box["ymin"] - text_h - 2 * line
        y = y if y >= 0 else box["ymin"]
        pen.rectangle((x, y, x + text_w + 2 * line, y + text_h + 2 * line), fill=color)
        pen.text((x + line, y + line), text, fill="white", font=font)
    return canvas
