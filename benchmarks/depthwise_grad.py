"""Depthwise convolution gradients on the CPU: the shifted multiply-adds cnn trains with
(autodiff) against a hand-written VJP, per EfficientNet-Lite0 layer shape, batch 32.

Prints ms per forward + both gradients for each shape and the relative error between the
two. MODE picks the hand-written kernel gradient: sep (one reduction per tap), stack (the
taps stacked into one reduction), einsum. docs/performance.md ("EfficientNet-Lite0")
records the result: no variant beat autodiff, so none is in cnncli.
    MODE=sep python benchmarks/depthwise_grad.py
"""

import os
import sys
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cnncli.model.lite import _pads, shifted_depthwise  # noqa: E402

MODE = os.environ.get("MODE", "sep")


def taps(xp, k, stride, oh, ow):
    for i in range(k):
        for j in range(k):
            yield (
                i,
                j,
                xp[
                    :,
                    i : i + stride * (oh - 1) + 1 : stride,
                    j : j + stride * (ow - 1) + 1 : stride,
                ],
            )


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def dw(x, kernel, stride, pads):
    return shifted_depthwise(x, kernel, stride, pads)


def dw_fwd(x, kernel, stride, pads):
    return shifted_depthwise(x, kernel, stride, pads), (x, kernel)


def dw_bwd(stride, pads, res, g):
    x, kernel = res
    (top, bottom), (left, right) = pads
    k = kernel.shape[0]
    n, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    oh, ow = g.shape[1], g.shape[2]
    # dkernel: per tap, sum over batch and space of the view times g
    if MODE == "stack":
        views = jnp.stack([v for (_, _, v) in taps(xp, k, stride, oh, ow)])
        dk = jnp.sum(views * g[None], axis=(1, 2, 3)).reshape(k, k, 1, c)
    elif MODE == "einsum":
        views = jnp.stack([v for (_, _, v) in taps(xp, k, stride, oh, ow)], axis=-1)
        dk = jnp.einsum("nhwct,nhwc->tc", views, g).reshape(k, k, 1, c)
    else:
        dk = jnp.stack(
            [
                jnp.stack([jnp.sum(v * g, axis=(0, 1, 2)) for (i2, j2, v) in row])
                for row in [[t for t in taps(xp, k, stride, oh, ow) if t[0] == i] for i in range(k)]
            ]
        )
        dk = dk[:, :, None, :]
    # dx: g dilated by stride, padded by k-1-pad, times the flipped kernel (a 'full' correlation)
    hp, wp = h + top + bottom, w + left + right
    gd = jax.lax.pad(
        g,
        jnp.zeros((), g.dtype),
        (
            (0, 0, 0),
            (k - 1, hp - (stride * (oh - 1) + 1), stride - 1),
            (k - 1, wp - (stride * (ow - 1) + 1), stride - 1),
            (0, 0, 0),
        ),
    )
    # gd has size hp + k - 1; correlation with flipped kernel gives dxp of size hp
    dxp = None
    for i in range(k):
        for j in range(k):
            term = gd[:, i : i + hp, j : j + wp] * kernel[k - 1 - i, k - 1 - j, 0]
            dxp = term if dxp is None else dxp + term
    dx = dxp[:, top : top + h, left : left + w]
    return dx, dk


dw.defvjp(dw_fwd, dw_bwd)


def bench(fn, *a, n=5):
    jax.block_until_ready(fn(*a))  # compile
    t = time.perf_counter()
    for _ in range(n):
        jax.block_until_ready(fn(*a))
    return (time.perf_counter() - t) / n * 1000


for hw, c, k, s in [
    (56, 144, 3, 2),
    (28, 240, 5, 1),
    (14, 672, 5, 1),
    (112, 96, 3, 2),
    (14, 480, 3, 1),
]:
    x = jnp.asarray(np.random.default_rng(0).normal(size=(32, hw, hw, c)), jnp.float32)
    kern = jnp.asarray(np.random.default_rng(1).normal(size=(k, k, 1, c)), jnp.float32)
    pads = _pads(x, k, s)
    W = jnp.asarray(
        np.random.default_rng(2).normal(size=shifted_depthwise(x, kern, s, pads).shape), jnp.float32
    )
    f0 = jax.jit(
        jax.grad(
            lambda x, kk, W=W, s=s, pads=pads: jnp.vdot(W, shifted_depthwise(x, kk, s, pads)),
            argnums=(0, 1),
        )
    )
    f1 = jax.jit(
        jax.grad(lambda x, kk, W=W, s=s, pads=pads: jnp.vdot(W, dw(x, kk, s, pads)), argnums=(0, 1))
    )
    a, b = f0(x, kern), f1(x, kern)
    err = max(
        float(jnp.abs(a[0] - b[0]).max() / jnp.abs(a[0]).max()),
        float(jnp.abs(a[1] - b[1]).max() / jnp.abs(a[1]).max()),
    )
    print(
        hw,
        c,
        k,
        s,
        f"auto {bench(f0, x, kern):.1f} ms  custom {bench(f1, x, kern):.1f} ms  relerr {err:.1e}",
    )
