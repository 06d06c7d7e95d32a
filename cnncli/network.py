"""The CNN's forward pass as pure JAX over a flat dict of arrays (no flax, no optax).

The nnx model in model.py holds the parameters and calls `forward`; inference (predict,
eval) calls `forward` directly on weights loaded from the bundle, so there is exactly one
implementation of the network and inference never imports training-only packages.
"""

from __future__ import annotations

from functools import partial, reduce

import jax
import jax.numpy as jnp

from cnncli.config import ModelConfig
from cnncli.shapes import conv_out, conv_padding

BN_MOMENTUM = 0.9
BN_EPS = 1e-5


def normalize(images_u8: jax.Array, cfg: ModelConfig | None = None) -> jax.Array:
    """uint8 [0, 255] -> float32: the one preprocessing step after decode.

    x / 127.5 - 1 (to [-1, 1]), or (x / 255 - mean) / std per channel when the model
    config carries a pretrained backbone's mean and std.
    """
    scale, shift = normalize_affine(cfg)
    return images_u8.astype(jnp.float32) * scale - shift


def normalize_affine(cfg: ModelConfig | None = None):
    """(scale, shift) with normalize(x) = x * scale - shift: floats, or per-channel arrays."""
    if cfg is None or not cfg.mean:
        return 2.0 / 255.0, 1.0
    scale = jnp.asarray([1.0 / (255.0 * s) for s in cfg.std], jnp.float32)
    shift = jnp.asarray([m / s for m, s in zip(cfg.mean, cfg.std, strict=True)], jnp.float32)
    return scale, shift


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


def _dropout(x, rate, key):
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def forward(
    params: dict[str, jax.Array],
    stats: dict[str, jax.Array],
    cfg: ModelConfig,
    x: jax.Array,
    *,
    train: bool = False,
    key: jax.Array | None = None,
    mask: jax.Array | None = None,
    return_features: bool = False,
    bn_train: bool | None = None,
):
    """Logits for a float NHWC batch; returns (logits, updated batch-norm stats).

    With train=True dropout needs `key` and batch norm uses (masked) batch statistics;
    bn_train=False keeps batch norm on its running statistics even then (fine-tuning with
    small batches). With return_features=True also returns the list of post-ReLU conv
    feature maps (a backbone's: its stem and each stage's output).
    """
    x, new_stats, features = trunk(params, stats, cfg, x, train=train, mask=mask, bn_train=bn_train)
    logits = head(params, cfg, x, train=train, key=key)
    if return_features:
        return logits, new_stats, features
    return logits, new_stats


def embed(
    params: dict[str, jax.Array], stats: dict[str, jax.Array], cfg: ModelConfig, x: jax.Array
) -> jax.Array:
    """The features that enter the logits layer, in inference mode: (batch, features).

    What --freeze computes once per image; logits = features @ logits/kernel + logits/bias.
    """
    x, _, _ = trunk(params, stats, cfg, x)
    return pre_logits(params, cfg, x)


def trunk(
    params: dict[str, jax.Array],
    stats: dict[str, jax.Array],
    cfg: ModelConfig,
    x: jax.Array,
    *,
    train: bool = False,
    mask: jax.Array | None = None,
    bn_train: bool | None = None,
):
    """Everything before the classifier: (last feature map, updated BN stats, feature maps)."""
    if mask is None:
        mask = jnp.ones((x.shape[0],), jnp.float32)
    bn_train = train if bn_train is None else bn_train
    if cfg.backbone:
        from cnncli.backbones import lite, resnet
        from cnncli.backbones.lite_spec import is_lite

        family = lite if is_lite(cfg.backbone) else resnet
        return family.trunk(params, stats, cfg, x, train=train, mask=mask, bn_train=bn_train)
    new_stats: dict[str, jax.Array] = {}
    features = []
    for i, block in enumerate(cfg.conv, start=1):
        shortcut = x
        x = conv2d(
            x,
            params[f"conv{i}/kernel"],
            params.get(f"conv{i}/bias"),
            block.stride,
            block.padding,
            train=train,
        )
        if block.batch_norm:
            x, upd = batch_norm(x, params, stats, f"bn{i}", bn_train, mask)
            new_stats.update(upd)
        x = jax.nn.relu(x)
        if block.residual:
            x = conv2d(x, params[f"conv{i}b/kernel"], params.get(f"conv{i}b/bias"), 1, "same")
            if block.batch_norm:
                x, upd = batch_norm(x, params, stats, f"bn{i}b", bn_train, mask)
                new_stats.update(upd)
            if f"proj{i}/kernel" in params:
                shortcut = conv2d(
                    shortcut, params[f"proj{i}/kernel"], params[f"proj{i}/bias"], block.stride, 0
                )
            x = jax.nn.relu(x + shortcut)
        features.append(x)
        if block.pool > 1:
            x = max_pool(x, block.pool, block.pool_stride or block.pool)
    return x, new_stats, features


def head(
    params: dict[str, jax.Array],
    cfg: ModelConfig,
    x: jax.Array,
    *,
    train: bool = False,
    key: jax.Array | None = None,
) -> jax.Array:
    """The classifier after the conv stack: pre_logits, then the logits layer."""
    return logits_layer(params, pre_logits(params, cfg, x, train=train, key=key))


def pre_logits(
    params: dict[str, jax.Array],
    cfg: ModelConfig,
    x: jax.Array,
    *,
    train: bool = False,
    key: jax.Array | None = None,
) -> jax.Array:
    """Flatten (or global average pool), dense + ReLU (+ dropout when training).

    A backbone: global average pool, then dropout when training (timm's drop_rate).
    """
    if cfg.backbone:
        x = x.mean(axis=(1, 2))
        if train and cfg.dropout > 0:
            x = _dropout(x, cfg.dropout, key)
        return x
    x = x.mean(axis=(1, 2)) if cfg.global_pool else x.reshape(x.shape[0], -1)
    for j in range(1, len(cfg.dense) + 1):
        x = jax.nn.relu(x @ params[f"dense{j}/kernel"] + params[f"dense{j}/bias"])
        if train and cfg.dropout > 0:
            key, sub = jax.random.split(key)
            x = _dropout(x, cfg.dropout, sub)
    return x


def logits_layer(params: dict[str, jax.Array], features: jax.Array) -> jax.Array:
    """The last, linear layer: class logits from the pre-logits features."""
    return features @ params["logits/kernel"] + params["logits/bias"]
