"""One decode path for training and prediction: EXIF, colour modes, 16-bit, bombs, resize."""

from __future__ import annotations

import re
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

RESIZE_POLICY = (
    "EXIF orientation applied, transparency composited on white, then the shorter side "
    "scaled to S (antialiased bilinear) and the centre S x S square kept"
)

# Larger images are refused before their pixels are read (decompression-bomb guard).
MAX_PIXELS = 100_000_000

# JPEG draft decoding keeps at least this multiple of the target size, so quality holds.
_DRAFT_FACTOR = 2


class DecodeError(Exception):
    """An image file could not be decoded; str(exc) is 'path: reason'."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def open_image(
    path: str | Path, *, draft_size: int | None = None, draft_mode: str = "RGB"
) -> Image.Image:
    """Open and fully decode an image: first frame, EXIF orientation applied, mode RGB or L.

    draft_size lets JPEGs decode at a reduced scale that keeps at least
    2 * draft_size pixels on each side (much faster for large photos).
    """
    path = Path(path)
    try:
        info = path.stat()
    except OSError as exc:
        raise DecodeError(path, f"cannot read file ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise DecodeError(path, "is a folder, not an image file")
    if not stat.S_ISREG(info.st_mode):  # opening a pipe or device can block forever
        raise DecodeError(path, "not a regular file (a pipe or device?)")
    if info.st_size == 0:
        raise DecodeError(path, "empty file (0 bytes)")
    try:
        with path.open("rb") as fh, warnings.catch_warnings():
            # Pillow's own bomb warning fires at ~89 MP; MAX_PIXELS below is the real limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fh)
            _check_size(path, img.size)
            if draft_size and img.format == "JPEG":
                side = _DRAFT_FACTOR * draft_size
                img.draft(draft_mode, (side, side))
            # load() decodes every pixel, so it is the verification too: truncated or corrupt
            # data raises here (a separate verify() pass would read the file twice).
            img.load()
            # exif_transpose always returns a new image, detached from the open file.
            img = ImageOps.exif_transpose(img)
    except DecodeError:
        raise
    except PermissionError:
        raise DecodeError(path, "cannot read file (permission denied)") from None
    except IsADirectoryError:
        raise DecodeError(path, "is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise DecodeError(path, _unidentified_reason(path)) from None
    except Image.DecompressionBombError as exc:
        # Pillow's hard limit (about 179 MP) is above MAX_PIXELS; report it the same way.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise DecodeError(
            path, f"image too large ({pixels}, limit {MAX_PIXELS:,} pixels)"
        ) from None
    except MemoryError:
        raise DecodeError(path, "image too large (out of memory while decoding)") from None
    except Exception as exc:  # corrupt files make Pillow plugins raise almost anything
        raise DecodeError(
            path, f"corrupt or truncated image ({type(exc).__name__}: {exc})"
        ) from None
    try:
        return to_rgb_or_l(img)
    except ValueError as exc:
        raise DecodeError(path, f"unsupported image mode {img.mode!r} ({exc})") from None


def _check_size(path: Path, size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise DecodeError(
            path, f"image too large ({width} x {height} pixels, limit {MAX_PIXELS:,} pixels)"
        )
    if width < 1 or height < 1:
        raise DecodeError(path, f"image has no pixels ({width} x {height})")


def _unidentified_reason(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError:
        head = b""
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<svg")):
        return "not an image: the file holds HTML/XML text (a saved web page?)"
    try:
        head.decode("utf-8")
        is_text = b"\x00" not in head
    except UnicodeDecodeError:
        is_text = False
    if is_text:
        return "not an image: the file holds plain text"
    return "not an image in a format Pillow can read"


def to_rgb_or_l(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit 'RGB' or 'L' (alpha composited on white)."""
    mode = img.mode
    if mode in ("RGB", "L"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I;16") or mode == "I":
        # 16-bit (and 32-bit integer) data: map 0..65535 onto 0..255 by value, not by clipping.
        values = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
        return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), "L")
    if mode == "F":
        return Image.fromarray(_float_to_uint8(np.asarray(img, dtype=np.float64)), "L")
    if mode == "P":
        has_alpha = "transparency" in img.info or img.palette.mode == "RGBA"
        img = img.convert("RGBA" if has_alpha else "RGB")
        return _composite_on_white(img) if has_alpha else img
    if mode in ("LA", "La", "PA"):
        img = img.convert("LA") if mode != "PA" else img.convert("RGBA")
        return _composite_on_white(img)
    if mode in ("RGBA", "RGBa"):
        return _composite_on_white(img.convert("RGBA"))
    # CMYK, YCbCr, RGBX, HSV, ...: Pillow's converter knows these.
    return img.convert("RGB")


def _float_to_uint8(values: np.ndarray) -> np.ndarray:
    """Float images: 0..1 data is scaled to 0..255; anything else is read as 0..255."""
    values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
    if values.size and values.min() >= 0.0 and values.max() <= 1.0:
        values = values * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _composite_on_white(img: Image.Image) -> Image.Image:
    """RGBA/LA -> RGB/L, blending each pixel over a white background by its alpha."""
    pixels = np.asarray(img, dtype=np.uint32)
    colour, alpha = pixels[..., :-1], pixels[..., -1:]
    blended = (colour * alpha + 255 * (255 - alpha) + 127) // 255
    out_mode = "L" if img.mode == "LA" else "RGB"
    blended = blended.astype(np.uint8)
    return Image.fromarray(blended[..., 0] if out_mode == "L" else blended, out_mode)


def decode_array(img: Image.Image, image_size: int, channels: int) -> np.ndarray:
    """Resize (shorter side to image_size) and centre-crop to uint8 (S, S, channels)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    img = to_rgb_or_l(img)
    target = "L" if channels == 1 else "RGB"
    if img.mode != target:
        img = img.convert(target)  # L -> RGB replicates; RGB -> L uses ITU-R 601 luma
    width, height = img.size
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    # Resizing just the centre square equals "scale shorter side, then crop", in one pass.
    img = img.resize(
        (image_size, image_size),
        Image.Resampling.BILINEAR,
        box=(left, top, left + side, top + side),
        reducing_gap=3.0,
    )
    array = np.asarray(img, dtype=np.uint8)
    return array.reshape(image_size, image_size, channels)


def decode_image(path: str | Path, image_size: int, channels: int) -> np.ndarray:
    """Decode one file to uint8 (image_size, image_size, channels); DecodeError if unreadable."""
    img = open_image(path, draft_size=image_size, draft_mode="L" if channels == 1 else "RGB")
    return decode_array(img, image_size, channels)
