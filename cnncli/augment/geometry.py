"""The geometric augmentations (flip, vflip, translate, zoom, crop, rotate) as one affine map
per sample and one bilinear resample with a fill mode; pure, batched JAX."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Params = dict[str, jax.Array]  # name -> (B,) array, as ops.sample_params draws them


def affine_map(params: Params, hw: jax.Array) -> jax.Array:
    """(B, 3, 3) maps from output pixel (y, x, 1) to input pixel coordinates.

    Built as the inverse of the forward chain flip -> crop -> zoom -> rotate -> translate,
    all about the image centre.
    """
    b = hw.shape[0]
    h, w = hw[:, 0], hw[:, 1]
    cy, cx = (h - 1.0) / 2.0, (w - 1.0) / 2.0
    one, zero = jnp.ones(b), jnp.zeros(b)

    def mat(a, bb, c, d, e, f):
        rows = [jnp.stack([a, bb, c], -1), jnp.stack([d, e, f], -1)]
        return jnp.stack([*rows, jnp.stack([zero, zero, one], -1)], -2)

    def about_centre(lin: jax.Array, to_y: jax.Array, to_x: jax.Array) -> jax.Array:
        # p -> to + lin @ (p - centre)
        a, bb, d, e = lin
        return mat(a, bb, to_y - a * cy - bb * cx, d, e, to_x - d * cy - e * cx)

    def then(step: jax.Array, m: jax.Array) -> jax.Array:
        return jnp.matmul(step, m, precision=jax.lax.Precision.HIGHEST)

    get = params.get
    m = jnp.broadcast_to(jnp.eye(3), (b, 3, 3))
    ty = get("translate_y", zero) * h
    tx = get("translate_x", zero) * w
    m = then(mat(one, zero, -ty, zero, one, -tx), m)
    theta = jnp.deg2rad(get("rotate", zero))
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    m = then(about_centre((cos, sin, -sin, cos), cy, cx), m)
    inv_zoom = 1.0 / get("zoom", one)
    m = then(about_centre((inv_zoom, zero, zero, inv_zoom), cy, cx), m)
    k = get("crop_scale", one)
    crop_cy = get("crop_y", 0.5 * one) * h - 0.5
    crop_cx = get("crop_x", 0.5 * one) * w - 0.5
    m = then(about_centre((k, zero, zero, k), crop_cy, crop_cx), m)
    fy = 1.0 - 2.0 * get("vflip", zero)
    fx = 1.0 - 2.0 * get("flip", zero)
    m = then(about_centre((fy, zero, zero, fx), cy, cx), m)
    return m


def _fold_index(i: jax.Array, n: jax.Array, fill: str) -> tuple[jax.Array, jax.Array]:
    """Integer index -> (index inside [0, n), weight multiplier) for the fill mode."""
    if fill == "edge":
        return jnp.clip(i, 0, n - 1), jnp.ones(i.shape, jnp.float32)
    if fill == "constant":
        inside = (i >= 0) & (i < n)
        return jnp.clip(i, 0, n - 1), inside.astype(jnp.float32)
    period = jnp.maximum(2 * (n - 1), 1)
    j = jnp.mod(i, period)
    j = jnp.where(j >= n, period - j, j)
    return jnp.clip(j, 0, n - 1), jnp.ones(i.shape, jnp.float32)


def warp(x: jax.Array, m: jax.Array, hw: jax.Array, fill: str) -> jax.Array:
    """Bilinear resample of x (B, H, W, C) at m @ (y, x, 1) for every output pixel."""
    b, h, w, c = x.shape
    ys, xs = jnp.meshgrid(
        jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij"
    )
    # Elementwise rather than a matmul: accelerators may run f32 matmuls at reduced precision.
    coef = m[:, :2, :, None, None]  # (B, 2, 3, 1, 1)
    sy = coef[:, 0, 0] * ys + coef[:, 0, 1] * xs + coef[:, 0, 2]
    sx = coef[:, 1, 0] * ys + coef[:, 1, 1] * xs + coef[:, 1, 2]
    y0, x0 = jnp.floor(sy), jnp.floor(sx)
    wy, wx = sy - y0, sx - x0
    y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
    n_y = hw[:, 0].astype(jnp.int32)[:, None, None]
    n_x = hw[:, 1].astype(jnp.int32)[:, None, None]
    flat = x.reshape(b, h * w, c)
    out = jnp.zeros((b, h, w, c), jnp.float32)
    for dy, weight_y in ((0, 1.0 - wy), (1, wy)):
        iy, my = _fold_index(y0 + dy, n_y, fill)
        for dx, weight_x in ((0, 1.0 - wx), (1, wx)):
            ix, mx = _fold_index(x0 + dx, n_x, fill)
            idx = (iy * w + ix).reshape(b, h * w)
            pixels = jax.vmap(lambda img, i: img[i])(flat, idx).reshape(b, h, w, c)
            out = out + pixels * (weight_y * weight_x * my * mx)[..., None]
    return out
