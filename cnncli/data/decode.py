"""One decode path for training and prediction: EXIF, colour modes, 16-bit, bombs, resize."""

from __future__ import annotations

import io
import math
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# How an image of another shape becomes H x W: keep the centre (crop), fit it whole and fill
# the rest (pad, "letterbox"), or stretch it (squish); fastai and Keras offer the same three.
from cnncli.config import PAD_COLOR, RESIZE_POLICIES

RESIZE_POLICY = (
    "EXIF orientation applied, transparency composited on white, then the shorter side "
    "scaled to S (antialiased bilinear) and the centre S x S square kept"
)


_RESAMPLING = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}

# Larger images are refused before their pixels are read (decompression-bomb guard).
MAX_PIXELS = 100_000_000

# JPEG draft decoding keeps at least this multiple of the target size, so quality holds.
_DRAFT_FACTOR = 2


class DecodeError(Exception):
    """An image could not be decoded; str(exc) is 'path: reason'.

    kind sorts the reasons for callers that answer by category (the server's error codes):
    unreadable, not_an_image, image_too_large, corrupt_image, unsupported_mode.
    """

    def __init__(self, path: str | Path, reason: str, kind: str = "corrupt_image") -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
        self.kind = kind


def open_image(
    path: str | Path, *, draft_size: int | None = None, draft_mode: str = "RGB"
) -> Image.Image:
    """Open and fully decode an image file: first frame, EXIF orientation applied, mode RGB
    or L.

    draft_size lets JPEGs decode at a reduced scale that keeps at least
    2 * draft_size pixels on each side (much faster for large photos).
    """
    path = Path(path)
    try:
        info = path.stat()
    except OSError as exc:
        raise DecodeError(path, f"cannot read file ({exc.strerror or exc})", "unreadable") from None
    if stat.S_ISDIR(info.st_mode):
        raise DecodeError(path, "is a folder, not an image file", "unreadable")
    if not stat.S_ISREG(info.st_mode):  # opening a pipe or device can block forever
        raise DecodeError(path, "not a regular file (a pipe or device?)", "unreadable")
    if info.st_size == 0:
        raise DecodeError(path, "empty file (0 bytes)", "not_an_image")
    try:
        with path.open("rb") as fh:
            return _decode(fh, path, draft_size, draft_mode, None)
    except PermissionError:
        raise DecodeError(path, "cannot read file (permission denied)", "unreadable") from None
    except IsADirectoryError:
        raise DecodeError(path, "is a folder, not an image file", "unreadable") from None


def open_image_bytes(
    data: bytes,
    name: str,
    *,
    draft_size: int | None = None,
    draft_mode: str = "RGB",
    formats: tuple[str, ...] | None = None,
) -> Image.Image:
    """open_image for bytes in memory (an upload), reported as `name`: the same checks,
    draft and modes. formats limits which of Pillow's readers may open it."""
    if not data:
        raise DecodeError(name, "empty file (0 bytes)", "not_an_image")
    return _decode(io.BytesIO(data), name, draft_size, draft_mode, formats)


def _decode(fh, where, draft_size, draft_mode, formats) -> Image.Image:
    """The decoding core of open_image and open_image_bytes: every failure a DecodeError."""
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb warning fires at ~89 MP; MAX_PIXELS below is the real limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fh, formats=_readers(formats))
            _check_size(where, img.size)
            # JPEG only (an MPO, a phone's multi-picture JPEG, decodes at full scale): the rule
            # every saved model was trained with.
            if draft_size and img.format == "JPEG":
                side = _DRAFT_FACTOR * draft_size
                img.draft(draft_mode, (side, side))
            # load() decodes every pixel, so it is the verification too: truncated or corrupt
            # data raises here (a separate verify() pass would read the file twice).
            img.load()
            # exif_transpose always returns a new image, detached from the open file.
            img = ImageOps.exif_transpose(img)
    except (DecodeError, PermissionError, IsADirectoryError):
        raise
    except UnidentifiedImageError:
        fh.seek(0)
        reason = _unidentified_reason(fh.read(512), formats)
        raise DecodeError(where, reason, "not_an_image") from None
    except Image.DecompressionBombError as exc:
        # Pillow's hard limit (about 179 MP) is above MAX_PIXELS; report it the same way.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise DecodeError(
            where, f"image too large ({pixels}, limit {MAX_PIXELS:,} pixels)", "image_too_large"
        ) from None
    except MemoryError:
        raise DecodeError(
            where, "image too large (out of memory while decoding)", "image_too_large"
        ) from None
    except Exception as exc:  # corrupt files make Pillow plugins raise almost anything
        raise DecodeError(
            where, f"corrupt or truncated image ({type(exc).__name__}: {exc})"
        ) from None
    try:
        return to_rgb_or_l(img)
    except ValueError as exc:
        raise DecodeError(
            where, f"unsupported image mode {img.mode!r} ({exc})", "unsupported_mode"
        ) from None


def _readers(formats: tuple[str, ...] | None) -> list[str] | None:
    """The formats that this Pillow reads among those asked for (None: every reader)."""
    if formats is None:
        return None
    Image.init()
    return [name for name in formats if name in Image.OPEN]


def _check_size(where, size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise DecodeError(
            where,
            f"image too large ({width} x {height} pixels, limit {MAX_PIXELS:,} pixels)",
            "image_too_large",
        )
    if width < 1 or height < 1:
        raise DecodeError(where, f"image has no pixels ({width} x {height})", "not_an_image")


def _unidentified_reason(head: bytes, formats: tuple[str, ...] | None) -> str:
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
    if formats is not None:
        return f"not an image in a format read here ({', '.join(formats)})"
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


@dataclass(frozen=True)
class Resize:
    """How a decoded image becomes height x width pixels: policy crop, pad or squish."""

    height: int
    width: int
    policy: str = "crop"
    pad_color: tuple[int, int, int] = PAD_COLOR
    # A pretrained backbone's eval transform (timm): crop keeps the centre crop_pct of the
    # shorter side (Resize(floor(S / crop_pct)) + CenterCrop(S)), with its interpolation.
    crop_pct: float = 1.0
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"image size must be >= 1, got {self.height}x{self.width}")
        if self.policy not in RESIZE_POLICIES:
            raise ValueError(
                f"resize must be one of {', '.join(RESIZE_POLICIES)}, got {self.policy!r}"
            )
        object.__setattr__(self, "pad_color", tuple(int(v) for v in self.pad_color))
        if not 0 < self.crop_pct <= 1 or self.interpolation not in _RESAMPLING:
            raise ValueError(
                f"crop_pct must be in (0, 1] and interpolation one of {', '.join(_RESAMPLING)}"
                f", got {self.crop_pct} and {self.interpolation!r}"
            )

    @property
    def resampling(self) -> Image.Resampling:
        """Pillow's filter for the interpolation."""
        return _RESAMPLING[self.interpolation]

    @property
    def hw(self) -> tuple[int, int]:
        """(height, width)."""
        return self.height, self.width

    def describe(self) -> str:
        """The decode rule in words (model.json, preprocess.json)."""
        pretrained = self.crop_pct != 1.0 or self.interpolation != "bilinear"
        if self.policy == "crop" and self.height == self.width and not pretrained:
            return RESIZE_POLICY  # the rule's words from before H x W existed
        h, w = self.height, self.width
        start = "EXIF orientation applied, transparency composited on white, then "
        if self.policy == "crop" and pretrained:
            return start + (
                f"the shorter side scaled (antialiased {self.interpolation}) to "
                f"floor({min(h, w)} / crop_pct {self.crop_pct:g}) and the centre "
                f"{h} x {w} kept (timm's eval transform)"
            )
        if self.policy == "crop":
            return start + (
                f"scaled (antialiased bilinear) to cover {h} x {w} (H x W) and the centre "
                f"{h} x {w} kept"
            )
        if self.policy == "pad":
            return start + (
                f"scaled (antialiased bilinear) to fit inside {h} x {w} (H x W), centred, and "
                f"the rest filled with RGB {list(self.pad_color)} (grayscale: its luma)"
            )
        return start + f"stretched (antialiased bilinear) to {h} x {w} (H x W)"

    def spec(self) -> dict:
        """The JSON fields that say how to resize (bundle and preprocess.json)."""
        size: int | list[int] = self.height if self.height == self.width else [*self.hw]
        spec = {"image_size": size, "height": self.height, "width": self.width}
        spec["resize"] = self.policy
        if self.policy == "pad":
            spec["pad_color"] = list(self.pad_color)
        if self.crop_pct != 1.0 or self.interpolation != "bilinear":
            spec["crop_pct"], spec["interpolation"] = self.crop_pct, self.interpolation
        return spec


def as_resize(size: int | Resize) -> Resize:
    """A Resize from an int (square, centre crop, as before policies existed) or a Resize."""
    if isinstance(size, Resize):
        return size
    return Resize(int(size), int(size))


def resize_from_spec(spec: dict, where: str) -> Resize:
    """Resize.spec() read back; fields a file from before policies lacks default to a
    square centre crop. ValueError names `where`."""
    try:
        size = spec["image_size"]
        if isinstance(size, list) and len(size) == 2:
            height, width = int(size[0]), int(size[1])
        else:
            height = width = int(size)
        height, width = int(spec.get("height", height)), int(spec.get("width", width))
        policy = spec.get("resize", "crop")
        if policy == RESIZE_POLICY:  # bundles from before policies: the crop rule's words
            policy = "crop"
        color = spec.get("pad_color", PAD_COLOR)
        if not (isinstance(color, list | tuple) and len(color) == 3):
            raise ValueError("pad_color must be 3 integers 0..255")
        if not all(0 <= int(v) <= 255 for v in color):
            raise ValueError("pad_color must be 3 integers 0..255")
        crop_pct = float(spec.get("crop_pct", 1.0))
        interpolation = str(spec.get("interpolation", "bilinear"))
        return Resize(height, width, policy, tuple(int(v) for v in color), crop_pct, interpolation)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: bad image size or resize fields ({exc})") from None


def resize_of(data) -> Resize:
    """The Resize of a DataConfig (its image_size, resize and pad_color)."""
    height, width = data.input_hw
    return Resize(
        height, width, data.resize, tuple(data.pad_color), data.crop_pct, data.interpolation
    )


def _fill_value(color: tuple[int, int, int], mode: str) -> int | tuple[int, int, int]:
    """The pad colour in the image's mode: RGB as given, L its ITU-R 601 luma (as convert)."""
    if mode == "RGB":
        return color
    return Image.new("RGB", (1, 1), color).convert("L").getpixel((0, 0))


def decode_array(img: Image.Image, size: int | Resize, channels: int) -> np.ndarray:
    """Resize by policy (an int: square centre crop) to uint8 (H, W, channels)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    spec = as_resize(size)
    img = to_rgb_or_l(img)
    target = "L" if channels == 1 else "RGB"
    if img.mode != target:
        img = img.convert(target)  # L -> RGB replicates; RGB -> L uses ITU-R 601 luma
    out_h, out_w = spec.hw
    width, height = img.size
    if spec.policy == "crop":
        # The largest centred box of the output's aspect; resizing just that box equals
        # "scale to cover, then crop", in one pass.
        if width * out_h > height * out_w:  # wider than the output: trim left and right
            box_w, box_h = height * out_w / out_h, height
        else:
            box_w, box_h = width, width * out_h / out_w
        if spec.crop_pct != 1.0:  # the part of the covering box that the crop keeps
            side = min(out_h, out_w)
            keep = side / math.floor(side / spec.crop_pct)
            box_w, box_h = box_w * keep, box_h * keep
        left, top = (width - box_w) / 2, (height - box_h) / 2
        box = (left, top, left + box_w, top + box_h)
        img = img.resize((out_w, out_h), spec.resampling, box=box, reducing_gap=3.0)
    elif spec.policy == "squish":
        img = img.resize((out_w, out_h), spec.resampling, reducing_gap=3.0)
    else:  # pad: the whole image, scaled to fit, centred on a canvas of the pad colour
        scale = min(out_w / width, out_h / height)
        fit_w = min(out_w, max(1, round(width * scale)))
        fit_h = min(out_h, max(1, round(height * scale)))
        fitted = img.resize((fit_w, fit_h), spec.resampling, reducing_gap=3.0)
        img = Image.new(target, (out_w, out_h), _fill_value(spec.pad_color, target))
        img.paste(fitted, ((out_w - fit_w) // 2, (out_h - fit_h) // 2))
    array = np.asarray(img, dtype=np.uint8)
    return array.reshape(out_h, out_w, channels)


def decode_image(
    path: str | Path,
    size: int | Resize,
    channels: int,
    *,
    data: bytes | None = None,
    formats: tuple[str, ...] | None = None,
) -> np.ndarray:
    """Decode one file to uint8 (H, W, channels) by the resize policy; DecodeError if unreadable.

    `size` is a Resize, or an int for a square centre crop. With `data`, the image is those
    bytes (an upload) and `path` only names it; formats limits the readers (open_image_bytes).
    """
    spec = as_resize(size)
    # Every policy keeps >= 2x the output on both sides when drafting by the longer side.
    draft = math.ceil(max(spec.hw) / spec.crop_pct)
    mode = "L" if channels == 1 else "RGB"
    if data is None:
        img = open_image(path, draft_size=draft, draft_mode=mode)
    else:
        img = open_image_bytes(data, str(path), draft_size=draft, draft_mode=mode, formats=formats)
    return decode_array(img, spec, channels)
