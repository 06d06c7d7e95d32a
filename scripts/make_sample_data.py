"""Generate sample_data/: a small seeded synthetic dataset of filled circles, squares, triangles."""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")
SIZE = 64
SUPERSAMPLE = 4  # draw large, then shrink: anti-aliased edges
PER_CLASS = 100
MAX_TILT = 15  # degrees either side of upright
MAX_SHIFT = 0.08  # centre offset, as a fraction of the image side
SEED = 20240611

README = """# sample_data

A tiny synthetic dataset for trying `cnn`: 3 classes (circle, square, triangle) of
bright filled shapes (random hue, size, position and tilt) on dark, noisy, coloured
backgrounds; {per_class} images per class at {size}x{size}, every third image a JPEG and
the rest PNG.

It is generated, deterministically, by `scripts/make_sample_data.py` (seed {seed});
do not edit it by hand. Recreate it with:

    python scripts/make_sample_data.py
"""


def _luma(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark background and a bright shape, each of a random hue.

    Keeping the shape brighter than the background every time lets a small CNN learn
    the shapes from 100 images per class within a few epochs.
    """
    while True:
        background = rng.integers(0, 256, 3).astype(np.float64)
        shape = rng.integers(0, 256, 3).astype(np.float64)
        if _luma(background) < 80 and _luma(shape) > 170:
            return background, shape


def _background(rng: np.random.Generator, colour: np.ndarray) -> np.ndarray:
    """A smooth gradient around colour plus blocky noise (blocks keep the PNGs small)."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (xs * math.cos(angle) + ys * math.sin(angle))[..., None] * rng.uniform(-40, 40)
    coarse = rng.normal(0, 10, (SIZE // 8, SIZE // 8, 3))
    coarse = np.kron(coarse, np.ones((8, 8, 1)))
    fine = np.kron(rng.normal(0, 5, (SIZE // 4, SIZE // 4, 3)), np.ones((4, 4, 1)))
    pixels = colour + ramp + coarse + fine
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _outline(kind: str, cx: float, cy: float, radius: float, angle: float) -> list[tuple]:
    """Polygon points (in supersampled pixels) for a square or triangle."""
    corners = 4 if kind == "square" else 3
    return [
        (
            cx + radius * math.cos(angle + 2 * math.pi * k / corners),
            cy + radius * math.sin(angle + 2 * math.pi * k / corners),
        )
        for k in range(corners)
    ]


def make_image(kind: str, rng: np.random.Generator) -> Image.Image:
    """One SIZE x SIZE RGB image of a filled shape with random colour, size, place, rotation."""
    background, colour = _colours(rng)
    big = SIZE * SUPERSAMPLE
    # Circumradius: similar visual areas for all three shapes at the same draw.
    radius = rng.uniform(0.30, 0.42) * big
    cx, cy = big / 2 + rng.uniform(-MAX_SHIFT, MAX_SHIFT, 2) * big
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    if kind == "circle":
        r = radius * 0.85
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    else:
        upright = -math.pi / 2 if kind == "triangle" else math.pi / 4
        angle = upright + math.radians(rng.uniform(-MAX_TILT, MAX_TILT))
        draw.polygon(_outline(kind, cx, cy, radius, angle), fill=255)
    mask = mask.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    shade = np.clip(colour + rng.normal(0, 6, 3), 0, 255).astype(np.uint8)
    image = Image.fromarray(_background(rng, background))
    image.paste(Image.new("RGB", (SIZE, SIZE), tuple(int(v) for v in shade)), mask=mask)
    return image


def generate(out: Path, per_class: int = PER_CLASS, seed: int = SEED) -> int:
    """Write out/<class>/<class>_NNN.(png|jpg) and out/README.md; returns the image count."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    count = 0
    for index, kind in enumerate(CLASSES):
        rng = np.random.default_rng([seed, index])
        folder = out / kind
        folder.mkdir()
        for i in range(per_class):
            image = make_image(kind, rng)
            if i % 3 == 2:
                image.save(folder / f"{kind}_{i:03d}.jpg", quality=85)
            else:
                image.save(folder / f"{kind}_{i:03d}.png", optimize=True)
            count += 1
    text = README.format(per_class=per_class, size=SIZE, seed=seed)
    (out / "README.md").write_text(text, encoding="utf-8")
    return count


def main() -> None:
    """Command line: python scripts/make_sample_data.py [--out sample_data]."""
    parser = argparse.ArgumentParser(description=__doc__)
    default = Path(__file__).resolve().parent.parent / "sample_data"
    parser.add_argument("--out", type=Path, default=default, help="folder to (re)create")
    parser.add_argument("--per-class", type=int, default=PER_CLASS)
    args = parser.parse_args()
    count = generate(args.out, args.per_class)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {count} images to {args.out} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
