"""What goes into image/encoded: JPEG/PNG as they are; everything else converted so that the pixels the
trainer decodes (TensorFlow ignores EXIF) match the boxes the annotator drew."""
from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from odstack import images
from odstack.images import ImageProblem
from tests.helpers import make_image

tf = pytest.importorskip("tensorflow")


def _decode(data: bytes) -> np.ndarray:
    """Decode like the OD API input pipeline does."""
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()


@pytest.mark.parametrize("fmt, mode", [("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "P")])
def test_jpeg_and_png_are_stored_byte_for_byte(tmp_path, fmt, mode):
    path = make_image(tmp_path / f"a.{fmt.lower()}", 40, 30, fmt=fmt, mode=mode)
    info = images.probe(path)
    assert info.convert_reason is None
    assert images.stored_bytes(path.read_bytes(), info) == path.read_bytes()
    assert (info.width, info.height, info.stored_format) == (40, 30, fmt.lower().replace("jpeg", "jpeg"))


@pytest.mark.parametrize("fmt, mode, stored", [
    ("BMP", "RGB", "jpeg"), ("TIFF", "RGB", "jpeg"), ("WEBP", "RGB", "jpeg"), ("GIF", "P", "jpeg"),
    ("JPEG", "CMYK", "jpeg"),
])
def test_other_formats_and_modes_are_converted_to_8bit_rgb(tmp_path, fmt, mode, stored):
    path = make_image(tmp_path / f"a.{fmt.lower()}", 40, 30, fmt=fmt, mode=mode)
    info = images.probe(path)
    assert info.convert_reason
    data = images.stored_bytes(path.read_bytes(), info)
    assert info.stored_format == stored
    pixels = _decode(data)
    assert pixels.shape == (30, 40, 3) and pixels.dtype == np.uint8
    # the white square of make_image survives the conversion
    assert pixels[12, 15].min() > 200


def test_sixteen_bit_grey_is_scaled_not_saturated(tmp_path):  # stays PNG (lossless), 8-bit
    array = np.full((20, 30), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    path = tmp_path / "g16.png"
    Image.fromarray(array).save(path)
    info = images.probe(path)
    assert info.convert_reason and info.stored_format == "png"
    pixels = _decode(images.stored_bytes(path.read_bytes(), info))
    assert 120 <= int(pixels[5, 5, 0]) <= 136


def _rotated_jpeg(path, orientation: int):
    """Raw pixels 60x40 with a white block top-left; EXIF orientation 6 shows it rotated 90° clockwise."""
    raw = Image.new("RGB", (60, 40), (0, 0, 0))
    raw.paste((255, 255, 255), (0, 0, 20, 10))
    exif = Image.Exif()
    exif[0x0112] = orientation
    raw.save(path, "JPEG", exif=exif.tobytes(), quality=95)
    return path


def test_exif_rotation_is_applied_so_pixels_match_displayed_boxes(tmp_path):
    path = _rotated_jpeg(tmp_path / "r.jpg", 6)
    info = images.probe(path)
    assert (info.raw_width, info.raw_height) == (60, 40)
    assert (info.width, info.height) == (40, 60) and "orientation 6" in info.convert_reason
    pixels = _decode(images.stored_bytes(path.read_bytes(), info))
    assert pixels.shape == (60, 40, 3)
    # displayed (rotated clockwise): the block is now at the top-right, 10 wide and 20 high
    assert pixels[5, 35].min() > 200 and pixels[5, 5].max() < 60


def test_exif_rotation_not_applied_when_annotation_states_raw_size(tmp_path):
    path = _rotated_jpeg(tmp_path / "r.jpg", 6)
    info = images.probe(path, declared_size=(60, 40))
    assert info.convert_reason is None and (info.width, info.height) == (60, 40)
    assert images.stored_bytes(path.read_bytes(), info) == path.read_bytes()


@pytest.mark.parametrize("writer, reason", [
    (lambda p: p.write_bytes(b""), "corrupt_image"),
    (lambda p: p.write_text("hello, I am text"), "corrupt_image"),
    (lambda p: p.write_bytes(make_image(p.with_suffix(".tmp"), 300, 200).read_bytes()[:900]), "corrupt_image"),
    (lambda p: p.mkdir(), "unreadable_image"),
    (lambda p: None, "missing_image"),
])
def test_problems_are_classified(tmp_path, writer, reason):
    path = tmp_path / "x.jpg"
    writer(path)
    with pytest.raises(ImageProblem) as caught:
        images.probe(path)
    assert caught.value.reason == reason


def test_decompression_bomb_is_refused_without_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (25_000, 25_000)).save(path)  # 625 Mpx of black compresses to a few KB
    assert path.stat().st_size < 200_000
    with pytest.raises(ImageProblem) as caught:
        images.probe(path)
    assert caught.value.reason == "corrupt_image" and "decompression bomb" in caught.value.message.lower()


def test_fast_check_decodes_when_the_end_marker_is_missing_and_keeps_good_trailers(tmp_path):
    good = make_image(tmp_path / "g.jpg", 300, 200).read_bytes()
    trailer = tmp_path / "trailer.jpg"
    trailer.write_bytes(good + b"\x00" * 5000)  # camera-style padding after EOI: still a fine image
    assert images.probe(trailer).width == 300
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good[: len(good) - 50])
    with pytest.raises(ImageProblem):
        images.probe(cut)
