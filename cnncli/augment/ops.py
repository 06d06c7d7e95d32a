"""Image augmentation as pure, batched JAX ops keyed by PRNG keys; used online and by `cnn augment`.

A pipeline is data: a dict of op name -> magnitude. Every sample draws its own parameters
from its own key (`sample_params`), and `apply_params` turns parameters into pixels, so the
train step and the offline writer run exactly the same code.

    op          magnitude m                              parameter drawn per sample      p
    flip        probability of a left-right mirror       flip in {0, 1}                  m
    vflip       probability of an up-down mirror         vflip in {0, 1}                 m
    translate   max shift, fraction of height/width      translate_y/_x in [-m, m]       1.0
    zoom        max relative scale change, in and out    zoom in [1-m, 1+m] (>1 = in)    1.0
    crop        max fraction of the area cut away,       crop_scale (side kept) in       0.5
                  the kept window resized back           [sqrt(1-m), 1], crop_y/_x centre
    rotate      max angle in degrees (+ = anticlockwise) rotate in [-m, m]               1.0
    brightness  max relative change (x * f)              brightness in [1-m, 1+m]        1.0
    contrast    max relative change around image mean    contrast in [1-m, 1+m]          1.0
    saturation  max relative change around pixel gray    saturation in [1-m, 1+m]        1.0
    cutout      max side of the erased box, fraction     cutout_size in [m/2, m],        0.5
                  of height/width (box set to 0)         cutout_y/_x centre in [0, 1]
    noise       Gaussian std in 0..255 units             noise (std) = m, noise_seed     0.5

An op that is not applied to a sample gets identity parameters (scale 1, angle 0, ...).
Order: geometry, brightness, contrast, saturation, cutout, noise; values are clipped to
[0, 255] after each colour op and at the end. The geometric ops (flip, vflip, translate, zoom, crop, rotate) compose into one affine map
and one bilinear resample; `fill` says what lies outside the image: "constant" (0),
"edge" (nearest border pixel) or "reflect" (mirror without repeating the border pixel).

This module holds the op table, parsing and sampling, and apply_params, which runs the ops
in that order; the geometric ops live in geometry.py, the colour ones in colour.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from cnncli.augment.colour import add_noise, adjust_contrast, erase_box, per_sample, to_gray
from cnncli.augment.geometry import Params, affine_map, warp

OP_NAMES: tuple[str, ...] = (
    "flip",
    "vflip",
    "translate",
    "zoom",
    "crop",
    "rotate",
    "brightness",
    "contrast",
    "saturation",
    "cutout",
    "noise",
)
GEOMETRIC_OPS = frozenset({"flip", "vflip", "translate", "zoom", "crop", "rotate"})
FILL_MODES = ("constant", "edge", "reflect")

# Magnitude used when an op is named without a value ("flip,rotate").
DEFAULT_MAGNITUDE: dict[str, float] = {
    "flip": 0.5,
    "vflip": 0.5,
    "translate": 0.1,
    "zoom": 0.1,
    "crop": 0.25,
    "rotate": 15.0,
    "brightness": 0.2,
    "contrast": 0.2,
    "saturation": 0.2,
    "cutout": 0.25,
    "noise": 8.0,
}
# Chance that an op touches a sample; flip and vflip use their magnitude instead.
DEFAULT_PROBABILITY: dict[str, float] = {
    "translate": 1.0,
    "zoom": 1.0,
    "crop": 0.5,
    "rotate": 1.0,
    "brightness": 1.0,
    "contrast": 1.0,
    "saturation": 1.0,
    "cutout": 0.5,
    "noise": 0.5,
}
# Inclusive magnitude limits, checked once when a pipeline is built.
_LIMITS: dict[str, tuple[float, float]] = {
    "flip": (0.0, 1.0),
    "vflip": (0.0, 1.0),
    "translate": (0.0, 1.0),
    "zoom": (0.0, 0.9),
    "crop": (0.0, 0.9),
    "rotate": (0.0, 180.0),
    "brightness": (0.0, 1.0),
    "contrast": (0.0, 1.0),
    "saturation": (0.0, 1.0),
    "cutout": (0.0, 1.0),
    "noise": (0.0, 255.0),
}

PRESETS: dict[str, dict[str, float]] = {
    "none": {},
    "light": {"flip": 0.5, "translate": 0.0625},
    "default": {
        "flip": 0.5,
        "translate": 0.1,
        "zoom": 0.1,
        "rotate": 10.0,
        "brightness": 0.2,
        "contrast": 0.2,
    },
    "strong": {
        "flip": 0.5,
        "translate": 0.125,
        "zoom": 0.2,
        "rotate": 20.0,
        "brightness": 0.3,
        "contrast": 0.3,
        "saturation": 0.3,
        "cutout": 0.3,
        "noise": 6.0,
    },
}


# ---------------------------------------------------------------- pipelines as data


def validate_ops(ops: Mapping[str, float]) -> dict[str, float]:
    """Check names and magnitude ranges; returns a plain dict in OP_NAMES order."""
    for name in ops:
        if name not in _LIMITS:
            raise ValueError(f"unknown augmentation op {name!r} (valid: {', '.join(OP_NAMES)})")
    checked: dict[str, float] = {}
    for name in OP_NAMES:
        if name not in ops:
            continue
        value = float(ops[name])
        low, high = _LIMITS[name]
        if not (low <= value <= high) or math.isnan(value):
            raise ValueError(
                f"augmentation op {name}={value:g} is out of range (allowed {low:g}..{high:g})"
            )
        checked[name] = value
    return checked


def parse_ops(text: str) -> dict[str, float]:
    """Parse "flip,translate=0.1,rotate=15" into {op: magnitude}; "none" or "" gives {}."""
    ops: dict[str, float] = {}
    items = [item.strip() for item in text.split(",") if item.strip()]
    if items == ["none"]:
        return {}
    for item in items:
        name, sep, value = (part.strip() for part in item.partition("="))
        name = name.lower()
        if name not in _LIMITS:
            raise ValueError(f"unknown augmentation op {name!r} (valid: {', '.join(OP_NAMES)})")
        if name in ops:
            raise ValueError(f"augmentation op {name!r} is given twice in {text!r}")
        if not sep:
            ops[name] = DEFAULT_MAGNITUDE[name]
            continue
        try:
            ops[name] = float(value)
        except ValueError:
            raise ValueError(
                f"augmentation op {name!r} needs a number after '=', got {value!r}"
            ) from None
    return validate_ops(ops)


def format_ops(ops: Mapping[str, float]) -> str:
    """The inverse of parse_ops: {"flip": 0.5, "rotate": 15} -> "flip=0.5,rotate=15"."""
    return ",".join(f"{name}={ops[name]:g}" for name in OP_NAMES if name in ops) or "none"


def resolve_ops(preset: str, ops: Mapping[str, float]) -> dict[str, float]:
    """Merge a preset with explicit ops (explicit wins; magnitude 0 switches an op off)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown augmentation preset {preset!r} (valid: {', '.join(PRESETS)})")
    merged = validate_ops({**PRESETS[preset], **ops})
    return {name: value for name, value in merged.items() if value != 0.0}


# ---------------------------------------------------------------- sampling


def _sample_one(key: jax.Array, ops: Mapping[str, float], probs: Mapping[str, float]) -> Params:
    """Parameters for one sample.

    One random draw per sample (a row of 4 words per op in OP_NAMES) keeps the compiled
    graph small, and an op's values never depend on which other ops are enabled.
    """
    bits = jax.random.bits(key, (len(OP_NAMES), 4), jnp.uint32)
    unit = (bits >> 8).astype(jnp.float32) * (1.0 / (1 << 24))  # uniform in [0, 1)
    out: Params = {}
    for name, m in ops.items():
        row = OP_NAMES.index(name)
        u_apply, u_a, u_b, u_c = (unit[row, i] for i in range(4))

        def between(u: jax.Array, low: float, high: float) -> jax.Array:
            return low + (high - low) * u

        if name in ("flip", "vflip"):
            out[name] = (u_apply < m).astype(jnp.float32)
            continue
        on = u_apply < probs[name]

        def gate(value: jax.Array, identity: float, on: jax.Array = on) -> jax.Array:
            return jnp.where(on, value, jnp.float32(identity))

        if name == "translate":
            out["translate_y"] = gate(between(u_a, -m, m), 0.0)
            out["translate_x"] = gate(between(u_b, -m, m), 0.0)
        elif name == "zoom":
            out["zoom"] = gate(between(u_a, 1.0 - m, 1.0 + m), 1.0)
        elif name == "crop":
            side = jnp.sqrt(between(u_a, 1.0 - m, 1.0))
            out["crop_scale"] = gate(side, 1.0)
            # The kept window's centre, so that the window stays inside the image.
            out["crop_y"] = gate(0.5 * side + (1.0 - side) * u_b, 0.5)
            out["crop_x"] = gate(0.5 * side + (1.0 - side) * u_c, 0.5)
        elif name == "rotate":
            out["rotate"] = gate(between(u_a, -m, m), 0.0)
        elif name in ("brightness", "contrast", "saturation"):
            out[name] = gate(between(u_a, 1.0 - m, 1.0 + m), 1.0)
        elif name == "cutout":
            out["cutout_size"] = gate(between(u_a, 0.5 * m, m), 0.0)
            out["cutout_y"] = u_b
            out["cutout_x"] = u_c
        elif name == "noise":
            out["noise"] = gate(jnp.float32(m), 0.0)
            out["noise_seed"] = bits[row, 1]
    return out


def sample_params(
    keys: jax.Array,
    ops: Mapping[str, float],
    probabilities: Mapping[str, float] | None = None,
) -> Params:
    """Per-sample parameters, one row per key: keys (B,) -> {name: (B,) array}.

    Size-free (fractions, scales, degrees), so the same row fits any image size.
    """
    ops = validate_ops(ops)
    probs = {**DEFAULT_PROBABILITY, **(probabilities or {})}
    return jax.vmap(lambda k: _sample_one(k, ops, probs))(keys)


def apply_params(
    images: jax.Array,
    params: Params,
    ops: Mapping[str, float],
    fill: str = "reflect",
    sizes: jax.Array | None = None,
) -> jax.Array:
    """Apply sampled parameters to images (B, H, W, C) -> float32 in [0, 255].

    sizes: optional (B, 2) valid (height, width) per sample when images are padded at the
    bottom/right to a common shape; pixels outside the valid area are never read.
    """
    if fill not in FILL_MODES:
        raise ValueError(f"unknown fill mode {fill!r} (valid: {', '.join(FILL_MODES)})")
    x = images.astype(jnp.float32)
    b, h, w, _ = x.shape
    if sizes is None:
        hw = jnp.broadcast_to(jnp.array([h, w], jnp.float32), (b, 2))
        valid = None
    else:
        hw = sizes.astype(jnp.float32)
        rows = jnp.arange(h)[None, :, None] < sizes[:, 0][:, None, None]
        cols = jnp.arange(w)[None, None, :] < sizes[:, 1][:, None, None]
        valid = (rows & cols)[..., None].astype(jnp.float32)
    if GEOMETRIC_OPS & set(ops):
        x = warp(x, affine_map(params, hw), hw, fill)
    if "brightness" in ops:
        x = jnp.clip(x * per_sample(params["brightness"]), 0.0, 255.0)
    if "contrast" in ops:
        x = jnp.clip(adjust_contrast(x, params["contrast"], valid), 0.0, 255.0)
    if "saturation" in ops and x.shape[-1] == 3:
        gray = to_gray(x)
        x = jnp.clip(gray + (x - gray) * per_sample(params["saturation"]), 0.0, 255.0)
    if "cutout" in ops:
        x = erase_box(x, params, hw)
    if "noise" in ops:
        x = add_noise(x, params)
    return jnp.clip(x, 0.0, 255.0)


def make_augment(
    ops: Mapping[str, float],
    fill: str = "reflect",
    probabilities: Mapping[str, float] | None = None,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Build f(key, images_u8 (B, H, W, C)) -> float32 [0, 255], each sample with its own draw.

    Pure and jit-compatible; the ops are fixed here. An empty pipeline is a cast to float32.
    """
    ops = validate_ops(ops)
    if fill not in FILL_MODES:
        raise ValueError(f"unknown fill mode {fill!r} (valid: {', '.join(FILL_MODES)})")
    if not ops:
        return lambda key, images: images.astype(jnp.float32)

    def augment(key: jax.Array, images: jax.Array) -> jax.Array:
        keys = jax.random.split(key, images.shape[0])
        return apply_params(images, sample_params(keys, ops, probabilities), ops, fill)

    return augment
