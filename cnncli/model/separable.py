"""The two convolutions of a depthwise-separable block, in the forms XLA:CPU trains fast.

Depthwise (kernel (k, k, 1, C)). On the CPU, XLA's grouped convolution (feature_group_count = C) runs 10-25x slower than
the same sum written as k² shifted, strided views of the padded input times one tap's
weights each (`shifted`), and autodiff of that sum is slow in turn: its kernel gradient
becomes one reduction per tap, each over a shifted copy of the input that XLA writes out
first (k² copies of the activation per layer). `shifted_trainable` keeps the forward and
gives it a hand-written gradient:
- input gradient: the output gradient correlated with the flipped kernel, again shifted
  multiply-adds in loop fusions, one per phase of the stride (no dilated copy of zeros);
- kernel gradient: per kernel row, explicit adds over the output's columns (a loop fusion
  that reads the input and the gradient in place), stacked as (N, OH, k, k, C) and reduced
  over (N, OH) once.
Together 2-4x faster than autodiff per EfficientNet-Lite0 layer on the CPU
(benchmarks/depthwise_grad.py, docs/performance.md).
Other platforms use XLA's grouped convolution (`grouped`) and its own gradient.

Pointwise (1x1, kernel (1, 1, Cin, Cout)): one matrix product over the channels. Its kernel
gradient contracts over every pixel of the batch, and XLA:CPU feeds that product a
transposed copy of one operand; left to itself it transposes the output gradient, fused
with the batch norm's backward that makes it, even when the input is 6x smaller (an
expansion layer). `pointwise` transposes the smaller of the two instead: 1.9x faster on
Lite0's 16 -> 96 expansion at 160 px (docs/performance.md).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

Pads = tuple[tuple[int, int], tuple[int, int]]


def _tap(xp: jax.Array, i: int, j: int, stride: int, oh: int, ow: int) -> jax.Array:
    """The strided view of the padded input that tap (i, j) multiplies: (N, OH, OW, C)."""
    return xp[:, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride]


def shifted(x: jax.Array, kernel: jax.Array, stride: int, pads: Pads) -> jax.Array:
    """Depthwise conv as a sum of k² shifted, strided views of the padded input, each times
    one tap's per-channel weights: elementwise work XLA:CPU fuses into one loop."""
    return _taps_sum(_pad(x, pads), kernel, stride)


def _pad(x: jax.Array, pads: Pads) -> jax.Array:
    return jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


def _taps_sum(xp: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    k = kernel.shape[0]
    oh = (xp.shape[1] - k) // stride + 1
    ow = (xp.shape[2] - k) // stride + 1
    y = None
    for i in range(k):
        for j in range(k):
            term = _tap(xp, i, j, stride, oh, ow) * kernel[i, j, 0]
            y = term if y is None else y + term
    return y


def grouped(x: jax.Array, kernel: jax.Array, stride: int, pads: Pads) -> jax.Array:
    """The same depthwise conv through XLA's grouped convolution (fast on GPUs and TPUs)."""
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding=pads,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1],
    )


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def shifted_trainable(x: jax.Array, kernel: jax.Array, stride: int, pads: Pads) -> jax.Array:
    """`shifted` with the hand-written gradient described in the module docstring."""
    return shifted(x, kernel, stride, pads)


def _forward(x, kernel, stride, pads):
    # The padded input is kept for the kernel gradient rather than padded again there.
    xp = _pad(x, pads)
    return _taps_sum(xp, kernel, stride), (xp, kernel)


def _backward(stride, pads, residuals, g):
    xp, kernel = residuals
    (top, bottom), (left, right) = pads
    n, hp, wp, c = xp.shape
    shape = (n, hp - top - bottom, wp - left - right, c)
    return input_grad(g, kernel, stride, pads, shape), kernel_grad(xp, g, kernel.shape, stride)


shifted_trainable.defvjp(_forward, _backward)


def input_grad(g: jax.Array, kernel: jax.Array, stride: int, pads: Pads, shape) -> jax.Array:
    """d(loss)/d(input), by phases: the padded input's rows (columns) at offset r modulo the
    stride receive only the taps r, r + stride, ..., so each of the stride² phases is a small
    shifted multiply-add over g itself (no dilated copy full of zeros, which would cost
    stride² times the work); the phases are interleaved and cropped to the input."""
    k, s = kernel.shape[0], stride
    _, h, w, _ = shape
    (top, bottom), (left, right) = pads
    qh, qw = -(-(h + top + bottom) // s), -(-(w + left + right) // s)
    oh, ow = g.shape[1], g.shape[2]
    m = (k - 1) // s  # the most taps of one phase, less one
    gp = jnp.pad(g, ((0, 0), (m, qh - oh), (m, qw - ow), (0, 0)))
    rows = []
    for r1 in range(s):
        cols = []
        for r2 in range(s):
            acc = jnp.zeros((g.shape[0], qh, qw, g.shape[3]), g.dtype)
            for m1 in range((k - 1 - r1) // s + 1 if r1 < k else 0):
                for m2 in range((k - 1 - r2) // s + 1 if r2 < k else 0):
                    view = gp[:, m - m1 : m - m1 + qh, m - m2 : m - m2 + qw]
                    acc = acc + view * kernel[r1 + s * m1, r2 + s * m2, 0]
            cols.append(acc)
        rows.append(jnp.stack(cols, axis=3))  # (N, QH, QW, s, C)
    phased = jnp.stack(rows, axis=2)  # (N, QH, s, QW, s, C)
    n, c = g.shape[0], g.shape[3]
    dxp = phased.reshape(n, qh * s, qw * s, c)
    return dxp[:, top : top + h, left : left + w]


def kernel_grad(xp: jax.Array, g: jax.Array, shape, stride: int) -> jax.Array:
    """d(loss)/d(kernel), shape (k, k, 1, C). Per kernel row, one sum over the output's
    columns of (the k input columns that column saw, one slice) x (its gradient): an
    (N, OH, k, C) loop fusion that reads the input and g in place, without a shifted copy.
    The k rows' sums are stacked and reduced over (N, OH) at once."""
    k = shape[0]
    oh, ow = g.shape[1], g.shape[2]
    per_row = []
    for i in range(k):
        acc = None
        for col in range(ow):
            window = xp[:, i : i + stride * (oh - 1) + 1 : stride, stride * col : stride * col + k]
            term = window * g[:, :, col : col + 1, :]
            acc = term if acc is None else acc + term
        per_row.append(acc)  # (N, OH, k, C)
    return jnp.sum(jnp.stack(per_row, axis=2), axis=(0, 1)).reshape(shape)


@jax.custom_vjp
def pointwise(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 1x1 conv (kernel (1, 1, Cin, Cout)) as one matrix product over the channels."""
    return jnp.einsum("bhwc,cd->bhwd", x, kernel[0, 0])


def _pointwise_forward(x, kernel):
    return pointwise(x, kernel), (x, kernel)


def _pointwise_backward(residuals, g):
    x, kernel = residuals
    c_in, c_out = kernel.shape[2], kernel.shape[3]
    x2, g2 = x.reshape(-1, c_in), g.reshape(-1, c_out)
    if c_in <= c_out:
        dk = jnp.dot(x2.T, g2)
    else:
        dk = jnp.dot(g2.T, x2).T
    dx = jnp.einsum("bhwd,cd->bhwc", g, kernel[0, 0])
    return dx, dk.reshape(kernel.shape)


pointwise.defvjp(_pointwise_forward, _pointwise_backward)
