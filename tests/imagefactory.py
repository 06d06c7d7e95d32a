"""Write small real (and deliberately odd or broken) image files for tests, at run time."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, features

# The orientation-test images: stored pixels are ORIENT_SIZE (width, height), white, with a
# red ORIENT_BLOCK x ORIENT_BLOCK square in the stored top-left corner. After EXIF
# orientation 6 (rotate 90 deg clockwise) the square sits at the displayed top-right; after
# orientation 8 (90 deg counter-clockwise) at the displayed bottom-left.
ORIENT_SIZE = (64, 48)
ORIENT_BLOCK = 24

# The 16-bit image: left half GRAY16_LEFT, right half 65535 (full range).
GRAY16_LEFT = 32768

# Decompression bombs (tiny files whose header declares a huge size): one beyond Pillow's own
# hard limit (~179 MP), one just over cnn's MAX_PIXELS (100 MP) where Pillow only warns.
BOMB_SIZES = {"bomb.png": (30_000, 30_000), "bomb_just_over.png": (10_100, 10_000)}

UNICODE_NAME = "unicodé ñame 猫 photo.png"


def _noise_rgb(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _orientation_jpeg(path: Path, orientation: int) -> None:
    width, height = ORIENT_SIZE
    pixels = np.full((height, width, 3), 255, dtype=np.uint8)
    pixels[:ORIENT_BLOCK, :ORIENT_BLOCK] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, "JPEG", quality=95, exif=exif.tobytes())


def _png_with_size(path: Path, width: int, height: int) -> None:
    """A valid 8x8 PNG whose IHDR is patched to declare width x height (CRC fixed)."""
    small = Image.new("RGB", (8, 8), (0, 0, 0))
    small.save(path, "PNG")
    data = bytearray(path.read_bytes())
    # Signature (8) + length (4) + b"IHDR" (4) -> width, height start at byte 16.
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF
    data[29:33] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


def make_odd_images(folder: str | Path) -> dict[str, str]:
    """Write odd images into folder; returns {file name: "ok" or "skip"} (expected outcome).

    The file name is the case name; open it as Path(folder) / name.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)
    cases: dict[str, str] = {}

    def ok(name: str) -> Path:
        cases[name] = "ok"
        return folder / name

    def skip(name: str) -> Path:
        cases[name] = "skip"
        return folder / name

    _orientation_jpeg(ok("exif_rot6.jpg"), 6)
    _orientation_jpeg(ok("exif_rot8.jpg"), 8)

    # RGBA: left half fully transparent *black*, right half opaque red.
    rgba = np.zeros((24, 32, 4), dtype=np.uint8)
    rgba[:, 16:] = (255, 0, 0, 255)
    Image.fromarray(rgba, "RGBA").save(ok("rgba.png"))

    palette_img = Image.fromarray(_noise_rgb(rng, 20, 20)).quantize(16)
    palette_img.save(ok("palette.png"))
    # Palette with a transparent index: left half uses index 0 (transparent, black).
    indices = np.ones((20, 20), dtype=np.uint8)
    indices[:, :10] = 0
    pal = Image.fromarray(indices, "P")
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * (254 * 3))
    pal.save(ok("palette_transparent.png"), transparency=0)

    gray16 = np.full((16, 16), 65535, dtype=np.uint16)
    gray16[:, :8] = GRAY16_LEFT
    Image.fromarray(gray16).save(ok("gray16.png"))  # mode I;16, 16-bit PNG

    int32 = np.tile(np.linspace(0, 65535, 16).astype(np.int32), (16, 1))
    Image.fromarray(int32).save(ok("int32.tif"))  # mode I

    gradient = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (32, 1))
    Image.fromarray(gradient, "L").save(ok("gray.png"))
    Image.fromarray(gradient, "L").save(ok("gray.jpg"), quality=90)
    la = np.stack([gradient, np.full_like(gradient, 128)], axis=-1)
    Image.fromarray(la, "LA").save(ok("gray_alpha.png"))

    Image.fromarray(_noise_rgb(rng, 24, 24)).convert("CMYK").save(ok("cmyk.jpg"), quality=90)
    Image.fromarray(gradient > 127).convert("1").save(ok("bilevel.png"))
    float_values = np.tile(np.linspace(0.0, 1.0, 16, dtype=np.float32), (16, 1))
    Image.fromarray(float_values, "F").save(ok("float.tif"))

    # Animated GIF and multi-page TIFF: first frame red, later frames blue.
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255), (0, 0, 255))]
    frames[0].save(ok("animated.gif"), save_all=True, append_images=frames[1:], duration=50)
    frames[0].save(ok("multipage.tif"), save_all=True, append_images=frames[1:])

    Image.new("RGB", (1, 1), (10, 200, 30)).save(ok("tiny_1x1.png"))
    Image.fromarray(_noise_rgb(rng, 40, 30)).save(ok("progressive.jpg"), progressive=True)
    Image.fromarray(_noise_rgb(rng, 20, 20)).save(ok("plain.bmp"))
    if features.check("webp"):
        Image.fromarray(_noise_rgb(rng, 20, 20)).save(ok("plain.webp"))
    Image.new("RGB", (12, 10), (0, 128, 255)).save(ok(UNICODE_NAME))
    Image.new("RGB", (12, 10), (0, 128, 255)).save(ok("UPPER CASE.JPG"), "JPEG")

    full = folder / "_full.jpg"
    Image.fromarray(_noise_rgb(rng, 64, 64)).save(full, quality=90)
    data = full.read_bytes()
    skip("truncated.jpg").write_bytes(data[: len(data) // 2])
    full.unlink()
    png = folder / "_full.png"
    Image.fromarray(_noise_rgb(rng, 32, 32)).save(png)
    data = png.read_bytes()
    skip("truncated.png").write_bytes(data[: len(data) // 2])
    png.unlink()

    skip("empty.jpg").write_bytes(b"")
    skip("text.jpg").write_text("this is not a picture, just some words\n", encoding="utf-8")
    skip("page.png").write_text(
        "<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n", encoding="utf-8"
    )
    skip("garbage.png").write_bytes(bytes(rng.integers(0, 256, 300, dtype=np.uint8)))
    for name, (width, height) in BOMB_SIZES.items():
        _png_with_size(skip(name), width, height)
    return cases


# Well-separated colours for make_class_tree (class i gets _CLASS_COLOURS[i % len]).
_CLASS_COLOURS = [
    (220, 30, 30),
    (30, 200, 30),
    (30, 60, 220),
    (230, 200, 20),
    (200, 30, 200),
    (20, 200, 200),
    (120, 120, 120),
    (250, 130, 20),
]


def make_class_tree(
    root: str | Path, classes: dict[str, int], size: int = 32, seed: int = 0
) -> dict[str, list[Path]]:
    """Write root/<class>/NNN.png|jpg: each class a distinct colour plus mild noise.

    Every third file is a JPEG. Returns {class: [written paths]}.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    written: dict[str, list[Path]] = {}
    for index, (name, count) in enumerate(classes.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        colour = np.array(_CLASS_COLOURS[index % len(_CLASS_COLOURS)], dtype=np.int16)
        written[name] = []
        for i in range(count):
            noise = rng.integers(-20, 21, size=(size, size, 3), dtype=np.int16)
            pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
            ext = ".jpg" if i % 3 == 2 else ".png"
            path = folder / f"{i:03d}{ext}"
            Image.fromarray(pixels).save(path, **({"quality": 90} if ext == ".jpg" else {}))
            written[name].append(path)
    return written


MULTI_COLOURS = {"red": (230, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 230)}


def make_multilabel_images(
    root: str | Path, count: int, size: int = 16, seed: int = 0
) -> list[tuple[str, tuple[str, ...]]]:
    """Write root/img/NNN.png with one to three coloured quadrants on black (plus noise).

    Each colour of MULTI_COLOURS is present with probability 1/2, in its own quadrant (at
    least one); an image's labels are its colours. Returns [(relative path, labels)].
    """
    root = Path(root)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(MULTI_COLOURS)
    half = size // 2
    rows = []
    for i in range(count):
        present = [n for n in names if rng.random() < 0.5] or [names[i % len(names)]]
        quadrants = rng.permutation(4)[: len(present)]
        pixels = rng.integers(0, 30, size=(size, size, 3)).astype(np.int16)
        for name, q in zip(present, quadrants, strict=True):
            y, x = divmod(int(q), 2)
            pixels[y * half : (y + 1) * half, x * half : (x + 1) * half] += MULTI_COLOURS[name]
        rel = f"img/{i:03d}.png"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / rel)
        rows.append((rel, tuple(sorted(present))))
    return rows
