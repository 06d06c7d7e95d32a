"""Augmentation ops: each op alone on synthetic images, the pipeline, determinism, parsing."""

from __future__ import annotations

import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnncli.augment import ops as augment
from cnncli.augment.ops import (
    OP_NAMES,
    PRESETS,
    apply_params,
    format_ops,
    make_augment,
    parse_ops,
    resolve_ops,
    sample_params,
)


@functools.cache
def jitted_apply(ops_items: tuple[tuple[str, float], ...], fill: str):
    return jax.jit(lambda images, params: apply_params(images, params, dict(ops_items), fill))


def run_op(
    image: np.ndarray, ops: dict[str, float], fill: str = "constant", **params
) -> np.ndarray:
    """Apply explicit parameters to one (H, W) or (H, W, C) image; returns float32 (H, W, C)."""
    if image.ndim == 2:
        image = image[..., None]
    batch = {name: jnp.asarray([value]) for name, value in params.items()}
    return np.asarray(jitted_apply(tuple(ops.items()), fill)(jnp.asarray(image[None]), batch))[0]


def dot_image(size: int, y: int, x: int) -> np.ndarray:
    image = np.zeros((size, size), np.uint8)
    image[y, x] = 255
    return image


def brightest(image: np.ndarray) -> tuple[int, int]:
    y, x = np.unravel_index(np.argmax(image[..., 0]), image.shape[:2])
    return int(y), int(x)


# ---------------------------------------------------------------- each op alone


def test_flip_mirrors_a_known_pattern():
    pattern = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    out = run_op(pattern, {"flip": 1.0}, flip=1.0)
    np.testing.assert_array_equal(out, pattern[:, ::-1].astype(np.float32))
    out = run_op(pattern, {"vflip": 1.0}, vflip=1.0)
    np.testing.assert_array_equal(out, pattern[::-1].astype(np.float32))
    unflipped = run_op(pattern, {"flip": 1.0}, flip=0.0)
    np.testing.assert_array_equal(unflipped, pattern.astype(np.float32))


def test_translate_by_k_pixels_moves_a_dot_by_k():
    size = 32
    out = run_op(
        dot_image(size, 10, 12), {"translate": 0.5}, translate_y=3 / size, translate_x=-5 / size
    )
    assert brightest(out) == (13, 7)
    assert out[13, 7, 0] == pytest.approx(255.0, abs=1e-3)
    assert out.sum() == pytest.approx(255.0, abs=1e-2)


def test_fill_modes_decide_what_shows_beyond_the_border():
    row = (np.arange(8, dtype=np.uint8) * 10 + 10)[None, :].repeat(3, axis=0)  # 10, 20, ... 80
    shifted = {
        fill: run_op(row, {"translate": 0.5}, fill, translate_y=0.0, translate_x=2 / 8)[0, :, 0]
        for fill in ("constant", "edge", "reflect")
    }
    np.testing.assert_allclose(shifted["constant"][:4], [0, 0, 10, 20], atol=1e-3)
    np.testing.assert_allclose(shifted["edge"][:4], [10, 10, 10, 20], atol=1e-3)
    np.testing.assert_allclose(shifted["reflect"][:4], [30, 20, 10, 20], atol=1e-3)


def test_zoom_keeps_the_centre_and_scales_offsets():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (33, 33, 3), dtype=np.uint8)
    for scale in (0.7, 1.3):
        out = run_op(image, {"zoom": 0.5}, "reflect", zoom=scale)
        np.testing.assert_allclose(out[16, 16], image[16, 16], atol=0.5)
    # A dot 4 px right of the centre lands 6 px right of it when zoomed in 1.5x.
    out = run_op(dot_image(33, 16, 20), {"zoom": 0.5}, zoom=1.5)
    assert brightest(out) == (16, 22)


def test_rotate_90_moves_a_dot_anticlockwise():
    out = run_op(dot_image(33, 16, 22), {"rotate": 90.0}, rotate=90.0)
    assert brightest(out) == (10, 16)
    assert out[10, 16, 0] == pytest.approx(255.0, abs=0.5)


def test_crop_resizes_the_kept_window_back():
    image = np.zeros((32, 32, 3), np.uint8)
    image[:16, :16] = (255, 0, 0)  # red top-left quadrant, black elsewhere
    out = run_op(image, {"crop": 0.75}, crop_scale=0.5, crop_y=0.25, crop_x=0.25)
    # Half-pixel centres: only the outermost ring samples across the window's edge.
    assert out[1:-1, 1:-1, 0].min() == pytest.approx(255.0, abs=1e-3)
    assert out[1:-1, 1:-1, 1:].max() == pytest.approx(0.0, abs=1e-3)
    centred = run_op(image, {"crop": 0.75}, crop_scale=1.0, crop_y=0.5, crop_x=0.5)
    np.testing.assert_allclose(centred, image, atol=1e-3)


def test_brightness_contrast_saturation():
    flat = np.full((8, 8, 3), 100, np.uint8)
    out = run_op(flat, {"brightness": 0.5}, brightness=1.5)
    assert out.mean() == pytest.approx(150.0, abs=1e-3)
    halves = np.zeros((8, 8, 3), np.uint8)
    halves[:, 4:] = 200  # mean 100: contrast 0 gives flat 100 everywhere
    out = run_op(halves, {"contrast": 1.0}, contrast=0.0)
    np.testing.assert_allclose(out, 100.0, atol=1e-3)
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[..., 0] = 200
    grey = run_op(colour, {"saturation": 1.0}, saturation=0.0)
    np.testing.assert_allclose(grey[..., 0], grey[..., 2], atol=1e-3)
    np.testing.assert_allclose(grey[..., 0], 0.299 * 200, atol=1e-3)


def test_cutout_zeroes_a_box():
    image = np.full((32, 32, 3), 200, np.uint8)
    out = run_op(image, {"cutout": 0.5}, cutout_size=0.25, cutout_y=0.5, cutout_x=0.5)
    assert (out[12:20, 12:20] == 0).all()
    assert (out == 0).sum() == 8 * 8 * 3
    untouched = run_op(image, {"cutout": 0.5}, cutout_size=0.0, cutout_y=0.5, cutout_x=0.5)
    assert (untouched == 200).all()


def test_noise_has_the_asked_std():
    image = np.full((64, 64, 3), 128, np.uint8)
    out = run_op(image, {"noise": 10.0}, noise=10.0, noise_seed=np.uint32(7))
    assert (out - 128).std() == pytest.approx(10.0, rel=0.05)
    assert abs((out - 128).mean()) < 0.5


def test_padded_images_augment_like_unpadded_ones():
    """Offline buckets pad images; with `sizes` the padding is never read."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (20, 27, 3), dtype=np.uint8)
    canvas = np.full((32, 32, 3), 255, np.uint8)
    canvas[:20, :27] = image
    ops = {
        "flip": 0.5,
        "rotate": 30.0,
        "zoom": 0.3,
        "translate": 0.2,
        "contrast": 0.5,
        "cutout": 0.5,
    }
    params = sample_params(jax.random.split(jax.random.PRNGKey(3), 2), ops)
    run = jax.jit(functools.partial(apply_params, ops=ops, fill="reflect"))
    plain = run(jnp.asarray(np.stack([image, image])), params)
    sizes = jnp.asarray([[20, 27], [20, 27]])
    padded = run(jnp.asarray(np.stack([canvas, canvas])), params, sizes=sizes)
    np.testing.assert_allclose(np.asarray(padded)[:, :20, :27], np.asarray(plain), atol=1e-2)


# ---------------------------------------------------------------- the pipeline


@pytest.fixture(scope="module")
def batch() -> jax.Array:
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def every_op():
    """All ops at their default magnitudes, jitted once for the tests below."""
    ops = {name: augment.DEFAULT_MAGNITUDE[name] for name in OP_NAMES}
    return jax.jit(make_augment(ops, "edge"))


def test_pipeline_output_type_and_range(every_op, batch):
    out = every_op(jax.random.PRNGKey(0), batch)
    assert out.shape == batch.shape and out.dtype == jnp.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 255.0


def test_same_key_same_bits_other_key_differs(every_op, batch):
    a = np.asarray(every_op(jax.random.PRNGKey(5), batch))
    b = np.asarray(every_op(jax.random.PRNGKey(5), batch))
    c = np.asarray(every_op(jax.random.PRNGKey(6), batch))
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_each_sample_draws_its_own_parameters(every_op):
    same = jnp.asarray(
        np.tile(np.arange(16 * 16 * 3, dtype=np.uint8).reshape(1, 16, 16, 3), (8, 1, 1, 1))
    )
    out = np.asarray(every_op(jax.random.PRNGKey(0), same))
    assert len({out[i].tobytes() for i in range(8)}) == 8


def test_empty_pipeline_is_a_cast(batch):
    out = make_augment({})(jax.random.PRNGKey(0), batch)
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(out), np.asarray(batch, np.float32))


def test_probabilities_gate_each_op():
    keys = jax.random.split(jax.random.PRNGKey(0), 64)
    always = sample_params(keys, {"flip": 1.0, "rotate": 30.0})
    assert (np.asarray(always["flip"]) == 1).all()
    assert (np.abs(np.asarray(always["rotate"])) <= 30).all()
    never = sample_params(keys, {"flip": 0.0, "rotate": 30.0}, probabilities={"rotate": 0.0})
    assert (np.asarray(never["flip"]) == 0).all()
    assert (np.asarray(never["rotate"]) == 0).all()
    half = np.asarray(sample_params(keys, {"cutout": 0.3})["cutout_size"])
    assert 10 < (half > 0).sum() < 54  # default p = 0.5


# ---------------------------------------------------------------- pipelines as data


def test_parse_ops():
    assert parse_ops("flip,translate=0.1,zoom=0.2,rotate=15") == {
        "flip": 0.5,
        "translate": 0.1,
        "zoom": 0.2,
        "rotate": 15.0,
    }
    assert parse_ops("none") == {} and parse_ops("") == {}
    assert parse_ops(" Noise = 4 , cutout ") == {"cutout": 0.25, "noise": 4.0}
    text = format_ops(PRESETS["strong"])
    assert parse_ops(text) == PRESETS["strong"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("flip,blur=2", "unknown augmentation op 'blur' (valid: flip, vflip"),
        ("rotate=lots", "needs a number"),
        ("rotate=500", "out of range"),
        ("flip,flip", "given twice"),
        ("translate=-0.1", "out of range"),
    ],
)
def test_parse_ops_errors(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_ops(text)


def test_resolve_ops_merges_a_preset_with_explicit_ops():
    assert resolve_ops("none", {}) == {}
    merged = resolve_ops("default", {"rotate": 30.0, "zoom": 0.0, "noise": 3.0})
    assert merged["rotate"] == 30.0 and merged["noise"] == 3.0
    assert "zoom" not in merged and merged["flip"] == PRESETS["default"]["flip"]
    with pytest.raises(ValueError, match="unknown augmentation preset 'heavy'"):
        resolve_ops("heavy", {})
    with pytest.raises(ValueError, match="unknown augmentation op"):
        make_augment({"warp": 1.0})
    with pytest.raises(ValueError, match="fill mode"):
        make_augment({"flip": 0.5}, fill="wrap")


def test_import_pulls_in_no_training_packages():
    code = (
        "import sys, cnncli.augment.ops; print(sorted({'flax', 'optax', 'PIL'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
