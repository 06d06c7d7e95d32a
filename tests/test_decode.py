"""Tests for cnncli.data.decode on real odd image files written at test time."""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnncli.data import decode
from cnncli.data.decode import (
    MAX_PIXELS,
    DecodeError,
    decode_array,
    decode_image,
    open_image,
)
from tests.imagefactory import GRAY16_LEFT, ORIENT_BLOCK, ORIENT_SIZE, make_odd_images


@pytest.fixture(scope="module")
def odd(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("odd")
    return folder, make_odd_images(folder)


def _names(outcome: str) -> list[str]:
    # The case list is fixed by imagefactory; build it once in a scratch folder for ids.
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        return sorted(n for n, o in make_odd_images(scratch).items() if o == outcome)


OK_NAMES = _names("ok")
SKIP_NAMES = _names("skip")


def test_factory_covers_the_required_cases():
    required = {"exif_rot6.jpg", "rgba.png", "gray16.png", "cmyk.jpg", "animated.gif"}
    assert required <= set(OK_NAMES)
    assert {"truncated.jpg", "empty.jpg", "text.jpg", "page.png", "bomb.png"} <= set(SKIP_NAMES)


@pytest.mark.parametrize("name", OK_NAMES)
@pytest.mark.parametrize("channels", [1, 3])
def test_ok_images_decode(odd, name, channels):
    folder, _ = odd
    array = decode_image(folder / name, 24, channels)
    assert array.shape == (24, 24, channels) and array.dtype == np.uint8
    assert open_image(folder / name).mode in ("RGB", "L")


@pytest.mark.parametrize("name", SKIP_NAMES)
def test_bad_files_raise_decode_error_with_path(odd, name):
    folder, _ = odd
    path = folder / name
    with pytest.raises(DecodeError) as info:
        decode_image(path, 24, 3)
    assert str(info.value).startswith(f"{path}: ")
    assert info.value.path == str(path) and info.value.reason
    assert "\n" not in str(info.value)


def _red(pixel) -> bool:
    r, g, b = (int(v) for v in pixel)
    return r > 200 and g < 80 and b < 80


@pytest.mark.parametrize(
    ("name", "corner"),
    [("exif_rot6.jpg", "top-right"), ("exif_rot8.jpg", "bottom-left")],
)
def test_exif_orientation_is_applied(odd, name, corner):
    folder, _ = odd
    img = open_image(folder / name)
    width, height = ORIENT_SIZE
    assert img.size == (height, width)  # rotated by 90 degrees
    pixels = np.asarray(img)
    mid = ORIENT_BLOCK // 2
    corners = {
        "top-left": pixels[mid, mid],
        "top-right": pixels[mid, height - 1 - mid],
        "bottom-left": pixels[width - 1 - mid, mid],
        "bottom-right": pixels[width - 1 - mid, height - 1 - mid],
    }
    assert [c for c, px in corners.items() if _red(px)] == [corner]
    # The same holds after the shared resize/crop: check the quadrant means.
    array = decode_image(folder / name, 32, 3).astype(int)
    top = "top" in corner
    left = "left" in corner
    rows = slice(0, 8) if top else slice(24, 32)
    cols = slice(0, 16) if left else slice(16, 32)
    quadrant = array[rows, cols].mean(axis=(0, 1))
    assert quadrant[0] > 180 and quadrant[1] < 110


def test_sixteen_bit_is_scaled_not_clipped(odd):
    folder, _ = odd
    array = decode_image(folder / "gray16.png", 16, 1)[..., 0]
    expected_left = round(GRAY16_LEFT * 255 / 65535)
    assert abs(int(array[8, 2]) - expected_left) <= 1  # 32768 -> about 128, not 255
    assert int(array[8, 13]) == 255
    int32 = np.asarray(open_image(folder / "int32.tif"))
    assert int32.min() == 0 and int32.max() == 255


def test_rgba_and_palette_transparency_composite_on_white(odd):
    folder, _ = odd
    rgba = np.asarray(open_image(folder / "rgba.png"))
    assert tuple(rgba[12, 4]) == (255, 255, 255)  # transparent black -> white
    assert tuple(rgba[12, 28]) == (255, 0, 0)
    palette = np.asarray(open_image(folder / "palette_transparent.png"))
    assert tuple(palette[10, 3]) == (255, 255, 255)
    assert tuple(palette[10, 15]) == (0, 0, 255)
    gray_alpha = np.asarray(open_image(folder / "gray_alpha.png")).astype(int)
    # value v at alpha 128 over white: (v*128 + 255*127) / 255
    assert abs(gray_alpha[0, 0] - round(255 * 127 / 255)) <= 1
    assert abs(gray_alpha[0, -1] - 255) <= 1


def test_modes_convert_correctly(odd):
    folder, _ = odd
    cmyk = open_image(folder / "cmyk.jpg")
    assert cmyk.mode == "RGB"
    assert open_image(folder / "bilevel.png").mode == "L"
    assert set(np.unique(np.asarray(open_image(folder / "bilevel.png")))) <= {0, 255}
    floats = np.asarray(open_image(folder / "float.tif"))
    assert floats.min() == 0 and floats.max() == 255  # 0..1 floats span the range
    gif = decode_image(folder / "animated.gif", 8, 3)
    assert _red(gif[4, 4])  # first frame only
    tif = decode_image(folder / "multipage.tif", 8, 3)
    assert _red(tif[4, 4])
    tiny = decode_image(folder / "tiny_1x1.png", 16, 3)
    assert (tiny == np.array([10, 200, 30], np.uint8)).all()


def test_channels_replicate_and_luma():
    gray = Image.fromarray(np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1)), "L")
    rgb = decode_array(gray, 16, 3)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    red = Image.new("RGB", (10, 10), (255, 0, 0))
    assert (decode_array(red, 4, 1) == 76).all()  # ITU-R 601 luma of pure red


def test_resize_is_shorter_side_then_centre_crop():
    pixels = np.zeros((40, 120, 3), np.uint8)  # wide: left and right thirds get cropped
    pixels[:, :40] = (255, 0, 0)
    pixels[:, 40:80] = (0, 255, 0)
    pixels[:, 80:] = (0, 0, 255)
    out = decode_array(Image.fromarray(pixels), 20, 3)
    assert out.shape == (20, 20, 3)
    assert (out[:, 2:-2] == (0, 255, 0)).all()


def test_decode_is_deterministic(odd):
    folder, _ = odd
    for name in ("progressive.jpg", "exif_rot6.jpg", "palette.png"):
        first = decode_image(folder / name, 20, 3)
        assert (decode_image(folder / name, 20, 3) == first).all()


def test_bomb_is_refused_quickly_without_allocating(odd):
    folder, _ = odd
    for name in ("bomb.png", "bomb_just_over.png"):
        tracemalloc.start()
        start = time.perf_counter()
        with pytest.raises(DecodeError, match="image too large"):
            decode_image(folder / name, 32, 3)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert elapsed < 1.0 and peak < 5_000_000
    with pytest.raises(DecodeError, match=f"10100 x 10000 pixels, limit {MAX_PIXELS:,}"):
        open_image(folder / "bomb_just_over.png")


def test_specific_reasons(odd):
    folder, _ = odd
    reasons = {}
    for name in ("empty.jpg", "text.jpg", "page.png", "truncated.jpg"):
        with pytest.raises(DecodeError) as info:
            open_image(folder / name)
        reasons[name] = info.value.reason
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert "plain text" in reasons["text.jpg"]
    assert "HTML" in reasons["page.png"]
    assert "truncated" in reasons["truncated.jpg"]


def test_missing_and_unreadable_files(tmp_path, monkeypatch):
    with pytest.raises(DecodeError, match="cannot read file"):
        open_image(tmp_path / "missing.png")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(DecodeError, match="is a folder"):
        open_image(tmp_path / "folder.png")
    path = tmp_path / "locked.png"
    Image.new("RGB", (4, 4)).save(path)
    real_open = Path.open

    def locked_open(self, *args, **kwargs):
        if self.name == "locked.png":
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(decode.Path, "open", locked_open)
    with pytest.raises(DecodeError, match="permission denied"):
        open_image(path)


def test_jpeg_draft_keeps_at_least_twice_the_target(tmp_path):
    path = tmp_path / "big.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (800, 1000, 3), dtype=np.uint8)).save(path)
    img = open_image(path, draft_size=64)
    assert min(img.size) >= 128 and img.size[0] < 1000  # reduced, but not below 2 x 64
    assert decode_image(path, 64, 3).shape == (64, 64, 3)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads all")
def test_unreadable_file_real_permissions(tmp_path):
    path = tmp_path / "locked.png"
    Image.new("RGB", (4, 4)).save(path)
    path.chmod(0)
    try:
        with pytest.raises(DecodeError, match="permission denied"):
            open_image(path)
    finally:
        path.chmod(0o644)


def test_bytes_decode_like_the_file_jpeg_and_mpo(tmp_path):
    """decode_image with data= (an upload) gives the file's pixels for a large JPEG and a
    phone-style MPO (two pictures in one JPEG), where drafting could make them differ; a
    format outside `formats` is refused with the upload's name and kind not_an_image."""
    rng = np.random.default_rng(0)
    first = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    second = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    first.save(tmp_path / "photo.jpg", quality=90)
    first.save(tmp_path / "phone.mpo", format="MPO", save_all=True, append_images=[second])
    with Image.open(tmp_path / "phone.mpo") as check:
        assert check.format == "MPO"
    for name in ("photo.jpg", "phone.mpo"):
        path = tmp_path / name
        for size in (16, 64, 300):
            from_file = decode_image(path, size, 3)
            from_bytes = decode_image(
                name, size, 3, data=path.read_bytes(), formats=("JPEG", "MPO")
            )
            assert np.array_equal(from_file, from_bytes), (name, size)
    first.save(tmp_path / "photo.png")
    with pytest.raises(DecodeError) as refused:
        decode_image(
            "upload 1", 16, 3, data=(tmp_path / "photo.png").read_bytes(), formats=("JPEG",)
        )
    assert refused.value.kind == "not_an_image"
    assert str(refused.value).startswith("upload 1: not an image in a format read here (JPEG)")
    with pytest.raises(DecodeError) as empty:
        decode_image("upload 2", 16, 3, data=b"")
    assert empty.value.kind == "not_an_image" and "empty file" in str(empty.value)
