"""Pictures as PNG bytes for reports: thumbnails of image files (decoded the way the model
sees them), any pixels upscaled to a minimum size, and Grad-CAM heat overlays."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

THUMB_MIN = 96  # thumbnails smaller than this are upscaled (nearest) in the PNG itself


@dataclass
class Thumb:
    """One image in a gallery: PNG bytes and its caption parts."""

    png: bytes
    path: str
    true: str
    predicted: str
    probability: float
    extra_png: bytes | None = None  # Grad-CAM overlay
    words: tuple[str, str] = ("true", "predicted")  # label-issue sheets: given, suggested


def png_bytes(pixels: np.ndarray, min_side: int = 0) -> bytes:
    """uint8 (H, W, C) or (H, W) pixels as PNG; upscaled (nearest) to at least min_side."""
    from PIL import Image

    arr = np.asarray(pixels, np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    img = Image.fromarray(arr)
    if min_side and min(img.size) < min_side:
        scale = -(-min_side // min(img.size))
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def heat_overlay(pixels: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """The image with a jet-coloured (S, S) map in [0, 1] blended over it, uint8 RGB."""
    image = np.asarray(pixels, np.float64)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    x = np.clip(np.asarray(cam, np.float64), 0, 1)[..., None]
    jet = np.clip(1.5 - np.abs(4 * x - np.array([3.0, 2.0, 1.0])), 0, 1) * 255
    return np.clip(0.55 * image + 0.45 * jet, 0, 255).astype(np.uint8)


def thumb_of(bundle, path: str, true: str, predicted: str, p: float, pixels=None) -> Thumb | None:
    """A gallery thumbnail of one image file (None when it no longer decodes)."""
    from cnncli.data.decode import DecodeError, decode_image

    try:
        if pixels is None:
            pixels = decode_image(path, bundle.resize, bundle.channels)
    except (DecodeError, OSError):
        return None
    return Thumb(png_bytes(pixels, THUMB_MIN), path, true, predicted, p)
