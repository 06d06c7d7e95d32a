#!/usr/bin/env python3
"""A real multi-label image set: 2x2 mosaics of Fashion-MNIST images, labelled by their classes.

Usage:
    python scripts/make_fashion_mosaics.py ../shared/data/fashion_mnist OUT [--train 10000]
        [--test 2000] [--seed 0]

Writes OUT/train/NNNNN.png and OUT/test/NNNNN.png (56x56 grayscale: four 28x28 images in a
2x2 grid) and OUT/labels.csv with columns path,labels,split: labels is the set of the four
images' classes joined by ';' (1 to 4 labels per mosaic), split is train or test. Train
mosaics use only Fashion-MNIST training images and test mosaics only its test images,
drawn uniformly at random (seeded), so the test set shares no picture with training.

    cnn train OUT --labels OUT/labels.csv      # val is split from train (iterative stratification)
    cnn eval runs/train                        # the test rows

Standard library + numpy + Pillow; the IDX files may be gzipped (as in ../shared/data).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import struct
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = [
    "T-shirt_top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle_boot",
]
PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX file (gzipped or not) as a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(source: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28), labels (N,)) of one Fashion-MNIST split."""
    found = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        stem = f"{PREFIX[split]}-{kind}"
        path = next((source / n for n in (stem + ".gz", stem) if (source / n).is_file()), None)
        if path is None:
            raise FileNotFoundError(f"{source}: missing {stem}(.gz)")
        found.append(read_idx(path))
    return found[0], found[1]


def mosaics(
    images: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """count 56x56 mosaics of four random images each, and each mosaic's sorted label set."""
    picks = rng.integers(0, len(images), size=(count, 4))
    tiles = images[picks].reshape(count, 2, 2, 28, 28)
    grid = tiles.transpose(0, 1, 3, 2, 4).reshape(count, 56, 56)
    names = [tuple(CLASSES[c] for c in sorted(set(labels[row].tolist()))) for row in picks]
    return grid, names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="folder with the Fashion-MNIST IDX files")
    parser.add_argument("out", type=Path, help="output folder (created)")
    parser.add_argument("--train", type=int, default=10_000, help="training mosaics")
    parser.add_argument("--test", type=int, default=2_000, help="test mosaics")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = []
    for split, count in (("train", args.train), ("test", args.test)):
        images, labels = load(args.source, split)
        grid, names = mosaics(images, labels, count, rng)
        (args.out / split).mkdir(parents=True, exist_ok=True)
        for i, (pixels, label_set) in enumerate(zip(grid, names, strict=True)):
            rel = f"{split}/{i:05d}.png"
            Image.fromarray(pixels).save(args.out / rel)
            rows.append((rel, ";".join(label_set), split))
    with (args.out / "labels.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("path", "labels", "split"))
        writer.writerows(rows)
    sizes = np.bincount([len(r[1].split(";")) for r in rows], minlength=5)[1:]
    print(f"{len(rows)} mosaics in {args.out}; labels per mosaic 1..4: {sizes.tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
