"""A tiny learnable image -> prompt task: coloured shapes on coloured backgrounds.

The prompt says what is drawn, so a model that sees the image can predict its embedding, and a
model that ignores it can do no better than the mean target.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw

from img2prompt.io import vector_column, write_parquet

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 180, 60),
    "blue": (40, 60, 220),
    "yellow": (240, 220, 40),
}
BACKGROUNDS = {"white": (250, 250, 250), "black": (10, 10, 10)}
SHAPES = ("circle", "square", "triangle")


def draw(shape: str, colour: tuple, background: tuple, size: int, rng: np.random.Generator):
    image = Image.new("RGB", (size, size), background)
    pen = ImageDraw.Draw(image)
    radius = rng.uniform(0.3, 0.45) * size
    cx, cy = rng.uniform(radius, size - radius, size=2)
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if shape == "circle":
        pen.ellipse(box, fill=colour)
    elif shape == "square":
        pen.rectangle(box, fill=colour)
    else:
        pen.polygon(
            [(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=colour
        )
    return image


def make_shapes_dataset(
    out: Path, encoder, images_per_prompt: int = 6, size: int = 32, folds: int = 2, seed: int = 0
) -> Path:
    """Write PNGs and `out/prompts.parquet`; each prompt's images are spread over the folds, so
    the validation fold holds new images of prompts seen in training."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for colour, rgb in COLOURS.items():
        for shape in SHAPES:
            for background, bg in BACKGROUNDS.items():
                prompt = f"a {colour} {shape} on a {background} background"
                for k in range(images_per_prompt):
                    name = f"{colour}-{shape}-{background}-{k}.png"
                    draw(shape, rgb, bg, size, rng).save(out / name)
                    rows.append((name, prompt, k % folds))
    names, prompts, fold = zip(*rows, strict=True)
    targets = encoder.encode(list(prompts))
    table = pa.table(
        {
            "id": [Path(n).stem for n in names],
            "prompt": list(prompts),
            "target": vector_column(targets),
            "group": np.zeros(len(rows), np.int64),
            "fold": np.asarray(fold, np.int64),
            "image": list(names),
        }
    )
    write_parquet(table, out / "prompts.parquet")
    return out
