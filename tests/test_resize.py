"""Resize policies (crop, pad, squish) and H x W inputs, on pixels and in the config."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnncli.config import (
    ConfigError,
    RunConfig,
    dumps_toml,
    loads_toml,
    parse_color,
    parse_image_size,
)
from cnncli.data.decode import (
    PAD_COLOR,
    RESIZE_POLICY,
    Resize,
    decode_array,
    decode_image,
    open_image,
    resize_from_spec,
    resize_of,
)
from cnncli.model.shapes import layer_table, param_shapes

RED = (255, 0, 0)
BACKGROUND = (0, 0, 255)


def _off_centre_object(tmp_path):
    """A 120x40 (W x H) blue photo with a red 24x24 object near its left edge, as a PNG."""
    pixels = np.zeros((40, 120, 3), np.uint8)
    pixels[:] = BACKGROUND
    pixels[8:32, 4:28] = RED
    path = tmp_path / "wide.png"
    Image.fromarray(pixels).save(path)
    return path


def _red(out: np.ndarray) -> np.ndarray:
    return (out[..., 0] > 200) & (out[..., 1] < 60) & (out[..., 2] < 60)


def test_pad_keeps_the_off_centre_object_where_crop_cuts_it(tmp_path):
    path = _off_centre_object(tmp_path)
    crop = decode_image(path, Resize(24, 24, "crop"), 3)
    pad = decode_image(path, Resize(24, 24, "pad"), 3)
    assert crop.shape == pad.shape == (24, 24, 3)
    # The centre 40x40 square of the photo holds none of the object.
    assert not _red(crop).any()
    # Letterbox: the photo scaled by 24/120 fills rows 8..15 (8 px tall), the rest is pad.
    assert (pad[:8] == PAD_COLOR).all() and (pad[16:] == PAD_COLOR).all()
    red = np.argwhere(_red(pad))
    # The whole 24x24 object shows as about 4.8 x 4.8 px at the left, within the photo band.
    rows, cols = red[:, 0], red[:, 1]
    assert 9 <= rows.min() and rows.max() <= 14 and cols.min() <= 2 and 4 <= cols.max() <= 6
    assert 12 <= len(red) <= 36


def test_pad_colour_and_grayscale_fill(tmp_path):
    path = _off_centre_object(tmp_path)
    black = decode_image(path, Resize(24, 24, "pad", (0, 0, 0)), 3)
    assert (black[:8] == 0).all()
    gray = decode_image(path, Resize(24, 24, "pad", (255, 0, 0)), 1)
    assert gray.shape == (24, 24, 1) and (gray[:8] == 76).all()  # luma of pure red


def test_squish_keeps_everything_and_stretches():
    pixels = np.zeros((16, 64, 3), np.uint8)  # 4:1; the left quarter red, the rest blue
    pixels[:] = BACKGROUND
    pixels[:, :16] = RED
    img = Image.fromarray(pixels)
    squish = decode_array(img, Resize(16, 16, "squish"), 3)
    crop = decode_array(img, Resize(16, 16, "crop"), 3)
    assert (squish[:, :3] == RED).all() and (squish[:, 5:] == BACKGROUND).all()
    assert not _red(crop).any()
    # Squish does not pad: every pixel comes from the image.
    assert not (squish == PAD_COLOR).all(axis=-1).any()


def test_non_square_outputs_for_every_policy():
    pixels = np.zeros((40, 40, 3), np.uint8)
    pixels[:10] = RED  # the top quarter of a square photo
    img = Image.fromarray(pixels)
    for policy in ("crop", "pad", "squish"):
        assert decode_array(img, Resize(8, 24, policy), 3).shape == (8, 24, 3), policy
    # A wide 8x24 crop of a square keeps its middle band: no red from the top quarter.
    assert not _red(decode_array(img, Resize(8, 24, "crop"), 3)).any()
    # Pad keeps it all: red at the top of the 8 px tall photo, pad left and right.
    pad = decode_array(img, Resize(8, 24, "pad"), 3)
    assert (pad[:, :8] == PAD_COLOR).all() and (pad[:, 16:] == PAD_COLOR).all()
    assert _red(pad[:2, 8:16]).all()


def test_int_size_is_the_old_square_centre_crop(tmp_path):
    path = _off_centre_object(tmp_path)
    assert (decode_image(path, 16, 3) == decode_image(path, Resize(16, 16), 3)).all()
    img = open_image(path)
    assert (decode_array(img, Resize(16, 16), 3) == decode_image(path, 16, 3)).all()


def test_old_specs_mean_square_crop_and_new_ones_round_trip():
    old = resize_from_spec({"image_size": 32, "channels": 3, "resize": RESIZE_POLICY}, "x")
    assert old == Resize(32, 32, "crop")
    assert resize_from_spec({"image_size": 32, "channels": 3}, "x") == Resize(32, 32)
    for spec in (Resize(24, 40, "pad", (1, 2, 3)), Resize(16, 16, "squish"), Resize(8, 12)):
        assert resize_from_spec(spec.spec(), "x") == spec
    with pytest.raises(ValueError, match="x: bad"):
        resize_from_spec({"image_size": 32, "resize": "stretchy"}, "x")


def test_image_size_and_colour_flags_parse():
    assert parse_image_size("64") == 64
    assert parse_image_size("48,64") == [48, 64]
    assert parse_image_size(" 32 , 32 ") == 32
    for bad in ("0", "3,x", "x", "", "16,16,16", "2000", "3"):
        with pytest.raises(ConfigError, match="--image-size takes N or H,W"):
            parse_image_size(bad)
    assert parse_color("0") == [0, 0, 0]
    assert parse_color("10,20,30") == [10, 20, 30]
    assert parse_color("#ff8000") == [255, 128, 0]
    for bad in ("256", "1,2", "#12345", "red"):
        with pytest.raises(ConfigError, match="--pad-color"):
            parse_color(bad)


def test_config_round_trips_h_w_and_policy():
    cfg = RunConfig()
    cfg.data.image_size, cfg.data.resize, cfg.data.pad_color = [48, 64], "pad", [0, 0, 0]
    back = loads_toml(dumps_toml(cfg))
    assert back.data.image_size == [48, 64] and back.data.input_hw == (48, 64)
    assert resize_of(back.data) == Resize(48, 64, "pad", (0, 0, 0))
    square = loads_toml("[data]\nimage_size = [32, 32]\n")
    assert square.data.image_size == 32 and resize_of(square.data) == Resize(32, 32)
    for text, message in (
        ("[data]\nimage_size = [32]\n", "image_size"),
        ("[data]\nimage_size = [2, 64]\n", "4..1024"),
        ('[data]\nresize = "fit"\n', "data.resize"),
        ("[data]\npad_color = [0, 0]\n", "pad_color"),
    ):
        with pytest.raises(ConfigError, match=message):
            loads_toml(text)


def test_shapes_follow_height_and_width():
    cfg = RunConfig().model
    rows = layer_table(cfg, (32, 64), 3, 5)
    assert rows[0].out_shape == (32, 64, 32)
    flatten = next(r for r in rows if r.kind == "flatten")
    assert flatten.out_shape == (4 * 8 * 128,)  # three 2x2 pools: 32x64 -> 4x8
    assert param_shapes(cfg, (32, 64), 3, 5)["dense1/kernel"][0] == (4 * 8 * 128, 128)
    with pytest.raises(ConfigError, match="layer pool3: output would be 0x8 from a 1x16"):
        layer_table(cfg, (4, 64), 3, 5)


def test_a_bundle_saved_before_resize_policies_loads_as_square_crop(tmp_path):
    import json

    from cnncli.inference.bundle import load_bundle, save_bundle

    cfg = RunConfig()
    cfg.data.image_size = 16
    shapes = param_shapes(cfg.model, 16, 3, 2)
    arrays = {k: np.zeros(shape, np.float32) for k, (shape, _) in shapes.items()}
    save_bundle(tmp_path / "model", cfg, ["a", "b"], arrays, {})
    meta_path = tmp_path / "model" / "model.json"
    meta = json.loads(meta_path.read_text())
    # model.json as written before H x W and policies existed.
    meta["preprocess"] = {
        "image_size": 16,
        "channels": 3,
        "resize": RESIZE_POLICY,
        "normalize": "x / 127.5 - 1 (uint8 -> [-1, 1])",
        "layout": "NHWC",
    }
    meta_path.write_text(json.dumps(meta))
    bundle = load_bundle(tmp_path / "model")
    assert bundle.resize == Resize(16, 16, "crop") and bundle.image_hw == (16, 16)
