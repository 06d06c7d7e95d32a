"""Layers as pure functions over NHWC arrays: convolutions (XLA's, and a direct form for
small first layers with its own gradient), max pooling (reshape + max with a hand-written
backward for non-overlapping windows, ~35 % faster to train on XLA:CPU than
reduce_window), batch norm over a flat dict of parameters and statistics, dropout.
Every architecture family builds on these; none imports another family.
"""

from __future__ import annotations

from functools import partial, reduce

import jax
import jax.numpy as jnp

from cnncli.model.conv_arithmetic import conv_out, conv_padding

BN_MOMENTUM = 0.9
BN_EPS = 1e-5


def max_pool(x: jax.Array, size: int, stride: int) -> jax.Array:
    """VALID max pooling over H and W of an NHWC tensor.

    Non-overlapping windows are a reshape + max with a hand-written backward (`_tiled_max`);
    odd edges are cropped exactly as VALID pooling drops them. Overlapping windows use
    reduce_window.
    """
    if stride == size:
        _, h, w, _ = x.shape
        return _tiled_max(x[:, : h // size * size, : w // size * size, :], size)
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, size, size, 1), (1, stride, stride, 1), "VALID"
    )


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def _tiled_max(x: jax.Array, size: int) -> jax.Array:
    """Max over non-overlapping size x size windows of an NHWC tensor whose H, W they tile.

    The gradient is jax's own for a max reduction (split evenly between tied maxima), but
    written without a reduce: XLA:CPU's reduce_window backward is an index search plus a
    scatter, and jax's backward of reshape + max has a reduce that YNNPACK fuses with the
    previous layer's backward convolution, which then runs ~2x slower than on its own
    (32x32 batch 128 train step +20 %, docs/performance.md).

    Without a gradient (inference, validation) the max is taken over the size² strided
    views with elementwise maximum instead: YNNPACK turns a max *reduce* that is the only
    reader of a convolution into one fused graph with that convolution, which ran 0.8x the
    speed of XLA's own convolutions (64x64 forward pass, docs/performance.md). Under a
    gradient the reduce is kept (_tiled_max_fwd): there the slices trained 0.7-0.9x slower.
    Both give the same values: a max is exact.
    """
    windows = _windows(x, size)
    views = [windows[:, :, i, :, j, :] for i in range(size) for j in range(size)]
    return reduce(jnp.maximum, views)


def _windows(x: jax.Array, size: int) -> jax.Array:
    """(B, H, W, C) -> (B, H/size, size, W/size, size, C): the pool windows as axes 2, 4."""
    b, h, w, c = x.shape
    return x.reshape(b, h // size, size, w // size, size, c)


def _tiled_max_fwd(x, size):
    y = _windows(x, size).max(axis=(2, 4))
    return y, (x, y)


def _tiled_max_bwd(size, res, g):
    x, y = res
    hit = (_windows(x, size) == y[:, :, None, :, None, :]).astype(g.dtype)
    count = sum(hit[:, :, i, :, j, :] for i in range(size) for j in range(size))
    dx = hit * (g / count)[:, :, None, :, None, :]
    return (dx.reshape(x.shape),)


_tiled_max.defvjp(_tiled_max_fwd, _tiled_max_bwd)


def conv2d(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None,
    stride: int,
    padding: str | int,
    *,
    train: bool = False,
) -> jax.Array:
    """NHWC x HWIO convolution with explicit (before, after) padding from shapes.conv_padding;
    bias None = no bias (convs followed by batch norm).

    Outside training (train=False), on a CPU, a conv with few input taps (the first layer
    on RGB or grey images) runs as elementwise multiply-adds (_direct_conv); everything
    else is XLA's convolution. Training keeps XLA's: its output feeds the backward pass
    too, and the train step measured no faster with the multiply-adds.
    """
    before, after = conv_padding(padding, kernel.shape[0])
    y = conv2d_pads(x, kernel, stride, ((before, after), (before, after)), train=train)
    return y if bias is None else y + bias


def conv2d_pads(x: jax.Array, kernel: jax.Array, stride: int, pads, *, train: bool = False):
    """conv2d without bias, with explicit ((top, bottom), (left, right)) padding (uneven
    padding such as TF 'SAME''s included)."""
    k, _, c_in, _ = kernel.shape
    if not train and k * k * c_in <= DIRECT_CONV_MAX_TAPS:
        # Chosen where the program runs, so a multi-platform jax.export stays right too.
        y = jax.lax.platform_dependent(
            x,
            kernel,
            cpu=lambda a, b: _direct_conv(a, b, stride, pads),
            default=lambda a, b: _xla_conv(a, b, stride, pads),
        )
    else:
        y = _xla_conv(x, kernel, stride, pads)
    return y


# Kernel taps (k * k * input channels) up to which a CPU convolution is written out as
# multiply-adds: XLA:CPU's convolution (Eigen) is slow with a contraction this short.
DIRECT_CONV_MAX_TAPS = 27


def _xla_conv(x, kernel, stride, pads):
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding=pads,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _direct_conv(x: jax.Array, kernel: jax.Array, stride: int, pads) -> jax.Array:
    """The same convolution as _xla_conv, as a sum over kernel taps of a shifted input
    channel times that tap's row of weights: one XLA loop fusion, vectorised over the output
    channels, that also takes in the bias, ReLU and pool after it. For the first conv of the
    default CNN on RGB input, forward 2x faster than XLA:CPU's convolution
    (docs/performance.md). Should a gradient be taken through it anyway, both its forward
    and its backward are XLA's convolution's (_direct_conv_fwd).
    """
    (top, bottom), (left, right) = pads
    _, h, w, c = x.shape
    k = kernel.shape[0]
    xp = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    oh, ow = conv_out(h, k, stride, top + bottom), conv_out(w, k, stride, left + right)
    y = None
    for i in range(k):
        for j in range(k):
            rows = xp[
                :, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride
            ]
            for ci in range(c):
                term = rows[..., ci : ci + 1] * kernel[i, j, ci]
                y = term if y is None else y + term
    return y


def _direct_conv_fwd(x, kernel, stride, pads):
    # Under a gradient the output comes from XLA's convolution, computed once. The
    # multiply-adds are an elementwise producer that XLA may recompute inside each consumer,
    # and recomputed copies can round differently: the pool's backward, which finds the
    # window's max by comparing values, then found no max and divided by zero (NaN in
    # training with translate augmentation; tests/test_train.py caught it).
    return _xla_conv(x, kernel, stride, pads), (x, kernel)


def _direct_conv_bwd(stride, pads, res, g):
    x, kernel = res
    _, pullback = jax.vjp(lambda a, b: _xla_conv(a, b, stride, pads), x, kernel)
    return pullback(g)


_direct_conv.defvjp(_direct_conv_fwd, _direct_conv_bwd)


def batch_norm(x, params, stats, name, train, mask, eps: float = BN_EPS):
    """Batch norm `name` over NHWC x; returns (y, updated running stats, {} unless train).

    train=True normalises with the batch's statistics over the real (mask 1) samples and
    moves the running statistics towards them (momentum BN_MOMENTUM, PyTorch's 0.1);
    train=False uses the running statistics.
    """
    scale, bias = params[f"{name}/scale"], params[f"{name}/bias"]
    if train:
        # Statistics over real samples only: padded rows of a last partial batch carry mask 0.
        # One pass, E[x^2] - E[x]^2 (as flax's BatchNorm), with the masked sums as
        # contractions: ~20 % faster train steps on XLA:CPU than two masked reductions.
        # Statistics in float32 even when the activations are bfloat16 (--precision bf16).
        m = mask.astype(jnp.float32)
        rows = x.astype(jnp.float32).reshape(x.shape[0], -1, x.shape[-1])
        count = jnp.maximum(m.sum() * x.shape[1] * x.shape[2], 1.0)
        exact = jax.lax.Precision.HIGHEST  # no TF32 for statistics on GPUs
        mean = jnp.einsum("bpc,b->c", rows, m, precision=exact) / count
        var = jnp.maximum(
            jnp.einsum("bpc,b->c", rows * rows, m, precision=exact) / count - mean * mean, 0.0
        )
        new = {
            f"{name}/mean": BN_MOMENTUM * stats[f"{name}/mean"] + (1 - BN_MOMENTUM) * mean,
            f"{name}/var": BN_MOMENTUM * stats[f"{name}/var"] + (1 - BN_MOMENTUM) * var,
        }
    else:
        mean, var = stats[f"{name}/mean"], stats[f"{name}/var"]
        new = {}
    gain = jax.lax.rsqrt(var + eps) * scale
    return (x * gain + (bias - mean * gain)).astype(x.dtype), new


def dropout(x, rate, key):
    """Inverted dropout: zero each value with probability `rate`, scale the rest up."""
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)
