#!/usr/bin/env python3
"""Write a synthetic data set whose subject sits near the left or right edge of wide images.

Usage:
    python scripts/make_offcentre.py OUT [--per-class 60]

OUT/red/*.png and OUT/green/*.png: 144x48 noisy photos with a 20x24 square of the class's
colour at a random height, near the left edge in odd-numbered files and near the right edge
in even-numbered ones. A centre crop of the image never contains the square, so
`cnn train OUT --resize crop` can only guess; `--resize pad` and `squish` keep it in view
(docs/results.md, "Resize policy"). Seeded: the same files every time. numpy + Pillow.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 40)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=60)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(args.per_class):
            pixels = rng.integers(60, 196, (48, 144, 3)).astype(np.uint8)
            y = rng.integers(4, 20)
            x = rng.integers(2, 14) if i % 2 else rng.integers(110, 122)
            pixels[y : y + 24, x : x + 20] = colour
            Image.fromarray(pixels).save(folder / f"{i:03d}.png")


if __name__ == "__main__":
    main()
