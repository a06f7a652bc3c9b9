"""Small builders shared by the tests: real image files of a given size and format."""
from __future__ import annotations

from pathlib import Path

from PIL import Image


def make_image(path: Path, width: int = 64, height: int = 48, fmt: str = "JPEG", mode: str = "RGB",
               color: tuple[int, int, int] = (200, 30, 30), **save_args) -> Path:
    """Write a real image file (solid colour, a white square in the middle) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (width, height), color)
    image.paste((255, 255, 255), (width // 4, height // 4, width // 2, height // 2))
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path, fmt, **save_args)
    return path
