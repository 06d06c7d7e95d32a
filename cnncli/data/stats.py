"""Dataset statistics for the recipe: counts from the split, sizes and colour from file headers.

Everything here is cheap: the counts come from the scan's split, and sizes, aspect ratios
and colour modes come from the headers of a seeded sample of the training images (Pillow
reads a header without decoding any pixel). The only pixels read are those of at most
PIXEL_SAMPLE colour-mode files of that sample, at reduced scale, to see whether they are
gray images saved as RGB (scans, X-rays, grayscale photos exported as colour JPEGs); the
data set itself is never decoded to choose a recipe.
"""

from __future__ import annotations

import statistics
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cnncli.data.scan import Dataset
from cnncli.data.split import seeded_rank

# Header reads are a few tens of microseconds each; this many is well under a second.
HEADER_SAMPLE = 400

# Colour-mode files whose pixels are checked for colour (decoded at <= 64 px each).
PIXEL_SAMPLE = 32
# A pixel is gray when its channels differ by at most this (JPEG rounding, chroma noise).
GRAY_SPREAD = 12
# An image is gray when at most this share of its pixels are not.
COLOUR_PIXELS = 0.002

# Pillow modes whose pixels carry no colour.
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


@dataclass
class DatasetStats:
    """What the recipe may look at; a plain record, so tests can make one up."""

    classes: list[str]
    train_counts: list[int]  # training images per class (an image counts once per label)
    val_images: int = 0
    multi_label: bool = False
    # From the sampled headers (0 / empty when none could be read):
    sampled: int = 0
    median_width: int = 0
    median_height: int = 0
    median_short_side: int = 0
    min_short_side: int = 0
    # Median of long side / short side (1.0 = square); wide_share: share above 1.5.
    median_aspect: float = 1.0
    wide_share: float = 0.0
    gray_share: float = 0.0  # share of sampled files with a grayscale colour mode
    # Colour-mode files of the sample whose pixels were checked, and how many were gray.
    colour_checked: int = 0
    colour_gray: int = 0
    formats: dict[str, int] = field(default_factory=dict)

    @property
    def train_images(self) -> int:
        """Training images in all (an image with several labels counts for each)."""
        return sum(self.train_counts)

    @property
    def per_class(self) -> int:
        """Median training images per class."""
        return int(statistics.median(self.train_counts)) if self.train_counts else 0

    @property
    def imbalance(self) -> float:
        """Largest class over smallest (1.0 = balanced)."""
        if not self.train_counts:
            return 1.0
        return max(self.train_counts) / max(min(self.train_counts), 1)

    @property
    def grayscale(self) -> bool:
        """Every sampled image is grayscale: by its file mode, or (colour-mode files) by
        its pixels, every checked one."""
        if self.sampled == 0:
            return False
        return self.gray_share == 1.0 or 0 < self.colour_checked == self.colour_gray

    def as_dict(self) -> dict[str, Any]:
        """The statistics plus the derived values, for recipe.json."""
        derived = {
            "train_images": self.train_images,
            "per_class": self.per_class,
            "imbalance": round(self.imbalance, 3),
            "grayscale": self.grayscale,
        }
        return {**asdict(self), **derived}


def header_info(path: Path) -> tuple[int, int, str, str] | None:
    """(width, height, mode, format) from an image file's header, or None if unreadable.

    EXIF rotation is ignored: it swaps width and height but not the short side.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                return img.width, img.height, img.mode, img.format or "?"
    except Exception:  # unreadable files are the decoder's business; here they are skipped
        return None


def gray_pixels(path: Path) -> bool | None:
    """Whether a colour-mode image holds only gray pixels (None if it cannot be decoded).

    Decoded at reduced scale (JPEG draft, then a 64 px thumbnail): enough to see colour.
    """
    import numpy as np
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                img.draft("RGB", (64, 64))
                img = img.convert("RGB")
                img.thumbnail((64, 64))
                pixels = np.asarray(img, dtype=np.int16)
    except Exception:  # the decoder reports broken files; here they are skipped
        return None
    spread = pixels.max(axis=2) - pixels.min(axis=2)
    return float(np.mean(spread > GRAY_SPREAD)) <= COLOUR_PIXELS


def dataset_stats(dataset: Dataset, sample: int = HEADER_SAMPLE, seed: int = 0) -> DatasetStats:
    """Statistics of a scanned dataset: class counts, sizes/colour of sampled headers, and
    whether the sample's colour-mode files are gray images (at most PIXEL_SAMPLE decoded)."""
    train = dataset.splits.get("train", [])
    counts = [0] * len(dataset.classes)
    for _, label in train:
        for index in label if isinstance(label, tuple) else (label,):
            counts[index] += 1
    stats = DatasetStats(
        classes=list(dataset.classes),
        train_counts=counts,
        val_images=len(dataset.splits.get("val", [])),
        multi_label=dataset.multi_label,
    )
    paths = sorted((p for p, _ in train), key=lambda p: (seeded_rank(seed, p), p))[:sample]
    headers = [(p, header_info(dataset.root / p)) for p in paths]
    infos = [i for _, i in headers if i is not None]
    stats = add_header_stats(stats, infos)
    if infos and stats.gray_share < 1.0:
        colour = [p for p, i in headers if i is not None and i[2] not in _GRAY_MODES]
        checks = [gray_pixels(dataset.root / p) for p in colour[:PIXEL_SAMPLE]]
        stats.colour_checked = sum(c is not None for c in checks)
        stats.colour_gray = sum(c is True for c in checks)
    return stats


def add_header_stats(stats: DatasetStats, infos: list[tuple[int, int, str, str]]) -> DatasetStats:
    """Fill the size, aspect and colour fields from (width, height, mode, format) tuples."""
    if not infos:
        return stats
    shorts = [min(w, h) for w, h, _, _ in infos]
    aspects = [max(w, h) / max(min(w, h), 1) for w, h, _, _ in infos]
    stats.sampled = len(infos)
    stats.median_width = int(statistics.median(w for w, _, _, _ in infos))
    stats.median_height = int(statistics.median(h for _, h, _, _ in infos))
    stats.median_short_side = int(statistics.median(shorts))
    stats.min_short_side = min(shorts)
    stats.median_aspect = round(statistics.median(aspects), 3)
    stats.wide_share = round(sum(a > 1.5 for a in aspects) / len(infos), 3)
    stats.gray_share = round(sum(m in _GRAY_MODES for _, _, m, _ in infos) / len(infos), 3)
    formats: dict[str, int] = {}
    for _, _, _, fmt in infos:
        formats[fmt] = formats.get(fmt, 0) + 1
    stats.formats = formats
    return stats
