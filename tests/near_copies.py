"""Near-duplicate copies of real photos, made the ways copies happen: a JPEG saved again,
a resize, a crop of 5-10 %, a small rotation, a brightness change, a screenshot's frame.

Shared by tests/test_duplicates.py and scripts/near_duplicates_bench.py.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageOps

EDITS = ("jpeg", "resize", "crop", "rotate", "brightness", "border")


def edit_image(img: Image.Image, kind: str, rng: random.Random) -> tuple[Image.Image, int]:
    """One near-duplicate edit of an RGB image; returns (image, JPEG quality to save at)."""
    w, h = img.size
    if kind == "jpeg":  # the same picture saved again, at a lower quality
        return img, rng.choice((40, 55, 70))
    if kind == "resize":
        scale = rng.uniform(0.45, 0.75)
        size = (max(8, round(w * scale)), max(8, round(h * scale)))
        return img.resize(size, Image.Resampling.LANCZOS), 90
    if kind == "crop":  # 5-10 % of each dimension cut, shared unevenly between the sides
        cut_w, cut_h = w * rng.uniform(0.05, 0.10), h * rng.uniform(0.05, 0.10)
        left, top = cut_w * rng.random(), cut_h * rng.random()
        box = (round(left), round(top), round(w - (cut_w - left)), round(h - (cut_h - top)))
        return img.crop(box), 90
    if kind == "rotate":  # a few degrees, corners filled black as a rotated scan's would be
        angle = rng.choice((-1, 1)) * rng.uniform(2.0, 6.0)
        return img.rotate(angle, Image.Resampling.BICUBIC, fillcolor=(0, 0, 0)), 90
    if kind == "brightness":
        factor = rng.choice((rng.uniform(0.7, 0.85), rng.uniform(1.15, 1.3)))
        return ImageEnhance.Brightness(img).enhance(factor), 90
    if kind == "border":  # a screenshot: a frame, a title bar, the picture a little smaller
        frame = rng.choice(((30, 30, 30), (240, 240, 240), (60, 90, 160)))
        pad = max(2, round(min(w, h) * rng.uniform(0.03, 0.06)))
        bar = max(4, round(h * rng.uniform(0.05, 0.09)))
        out = ImageOps.expand(img, border=pad, fill=frame)
        canvas = Image.new("RGB", (out.width, out.height + bar), (200, 200, 205))
        ImageDraw.Draw(canvas).rectangle((pad, bar // 4, out.width // 3, bar * 3 // 4), (90,) * 3)
        canvas.paste(out, (0, bar))
        return canvas, 90
    raise ValueError(f"unknown edit {kind!r}")


def save_near_copy(
    original: Path, kind: str, rng: random.Random, folder: Path | None = None
) -> Path:
    """Write an edited copy of original as <folder>/nd_<kind>_<stem>.jpg (folder: its own)."""
    with Image.open(original) as img:
        edited, quality = edit_image(ImageOps.exif_transpose(img).convert("RGB"), kind, rng)
    copy = (folder or original.parent) / f"nd_{kind}_{original.stem}.jpg"
    edited.save(copy, "JPEG", quality=quality)
    return copy
