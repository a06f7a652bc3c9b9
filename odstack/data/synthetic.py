"""A small synthetic "shapes" detection dataset, written as COCO JSON so it goes through `make data`.

Why it exists: CI and `make demo` must train and evaluate a real detector without downloading
anything, in a few minutes on 2 CPU cores. Coloured squares, circles and triangles on noisy
backgrounds are learnable from scratch in a few hundred steps (AP50 near 1.0), so an accuracy
assertion on them catches a broken data -> train -> eval path instead of measuring luck.

The dataset is written in a *supported annotation format*, not as TFRecords, so using it also
exercises the converter (format detection, probing, splitting, sharding). Layout (Roboflow-style
COCO, one folder; ``odstack.formats.coco`` detects it)::

    <out>/_annotations.coco.json     images, annotations (bbox = [x, y, w, h] pixels), categories
    <out>/shape_00000.jpg ...        the images, beside the JSON

Everything is derived from ``seed``: the same arguments give the same files, byte for byte.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ANNOTATION_FILE = "_annotations.coco.json"

# One fixed colour per class: the classes differ in shape *and* colour, which keeps the set easy on
# purpose (it checks the pipeline, not the model's capacity). Colours are far from the grey background.
CLASSES: dict[str, tuple[int, int, int]] = {
    "square": (220, 40, 40),
    "circle": (40, 200, 60),
    "triangle": (50, 80, 230),
}


@dataclass
class SynthSettings:
    """Settings of ``python -m odstack synth`` (section ``synth`` of cfg/default.yaml)."""

    out: Path = Path("input/shapes")
    images: int = 200
    size: int = 128
    seed: int = 0


@dataclass(frozen=True)
class _Shape:
    label: str
    x0: int  # box in pixel-edge coordinates: [x0, x1) x [y0, y1)
    y0: int
    x1: int
    y1: int


def make_shapes(out: Path, images: int = 200, size: int = 128, seed: int = 0,
                max_objects: int = 3) -> Path:
    """Write ``images`` JPEGs of ``size``x``size`` px with 1..``max_objects`` shapes each into ``out``.

    Returns ``out``. Objects do not overlap (so every box is fully visible) and are 18-45 % of the
    image side. ``out`` is created; existing files of a previous run with the same names are replaced.
    """
    if images < 1 or size < 32 or max_objects < 1:
        raise ValueError("make_shapes needs images >= 1, size >= 32 and max_objects >= 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(CLASSES)
    coco_images: list[dict] = []
    coco_annotations: list[dict] = []
    for index in range(images):
        shapes = _place(rng, size, int(rng.integers(1, max_objects + 1)), names)
        file_name = f"shape_{index:05d}.jpg"
        # 4:4:4 chroma: the default 4:2:0 smears the coloured edges the boxes are tight around
        _draw(rng, size, shapes).save(out / file_name, "JPEG", quality=92, subsampling=0)
        image_id = index + 1
        coco_images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        for shape in shapes:
            coco_annotations.append({
                "id": len(coco_annotations) + 1, "image_id": image_id,
                "category_id": names.index(shape.label) + 1,
                "bbox": [shape.x0, shape.y0, shape.x1 - shape.x0, shape.y1 - shape.y0],
                "area": (shape.x1 - shape.x0) * (shape.y1 - shape.y0), "iscrowd": 0,
            })
    coco = {
        "info": {"description": f"odstack synthetic shapes (seed {seed})", "version": "1"},
        "images": coco_images,
        "annotations": coco_annotations,
        "categories": [{"id": i, "name": name, "supercategory": "shape"} for i, name in enumerate(names, 1)],
    }
    (out / ANNOTATION_FILE).write_text(json.dumps(coco, indent=1) + "\n", encoding="utf-8")
    return out


def _place(rng: np.random.Generator, size: int, count: int, names: list[str]) -> list[_Shape]:
    """Up to ``count`` non-overlapping shapes (rejection sampling; a crowded draw just yields fewer)."""
    shapes: list[_Shape] = []
    for _ in range(count * 20):
        if len(shapes) == count:
            break
        side = int(rng.integers(int(size * 0.18), int(size * 0.45) + 1))
        x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        candidate = _Shape(names[int(rng.integers(len(names)))], x0, y0, x0 + side, y0 + side)
        # a 2 px gap keeps the shapes from touching, so every box is unambiguous
        if all(candidate.x1 + 2 <= s.x0 or s.x1 + 2 <= candidate.x0 or
               candidate.y1 + 2 <= s.y0 or s.y1 + 2 <= candidate.y0 for s in shapes):
            shapes.append(candidate)
    return shapes


def _draw(rng: np.random.Generator, size: int, shapes: list[_Shape]) -> Image.Image:
    base = rng.integers(90, 170)
    noise = rng.normal(0, 18, size=(size, size, 3))
    background = np.clip(base + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(background, "RGB")
    draw = ImageDraw.Draw(image)
    for shape in shapes:
        colour = CLASSES[shape.label]
        # PIL's ellipse/rectangle corners are inclusive pixels, so [x0, x1 - 1] fills exactly x0..x1-1
        corners = (shape.x0, shape.y0, shape.x1 - 1, shape.y1 - 1)
        if shape.label == "square":
            draw.rectangle(corners, fill=colour)
        elif shape.label == "circle":
            draw.ellipse(corners, fill=colour)
        else:
            draw.polygon([(shape.x0, shape.y1 - 1), (shape.x1 - 1, shape.y1 - 1),
                          ((shape.x0 + shape.x1 - 1) / 2, shape.y0)], fill=colour)
    return image
