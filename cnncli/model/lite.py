"""The EfficientNet-Lite trunk as pure JAX over a flat dict of arrays.

network.forward calls `trunk` when the model config names a Lite backbone, so training,
evaluation, prediction, Grad-CAM and export all run this one function. It matches timm's
`tf_efficientnet_lite*` in inference mode (tests/test_lite.py checks the logits):
- TensorFlow 'SAME' padding, computed per side from the input (uneven on stride 2);
- batch norm with eps 1e-3, ReLU6 after every conv but a block's projection;
- depthwise convolutions as k x k shifted multiply-adds on the CPU, with a hand-written
  gradient when training (cnncli.model.separable says why); other platforms keep XLA's
  grouped convolution.
`start` lets training run the top blocks alone on cached activations of the lower ones
(finetune.py), and `activations` computes those caches.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cnncli.config import ModelConfig
from cnncli.model import separable as dw
from cnncli.model.layers import batch_norm, conv2d_pads
from cnncli.model.lite_spec import BN_EPS, blocks, same_padding


def _pads(x: jax.Array, kernel: int, stride: int):
    return same_padding(x.shape[1], kernel, stride), same_padding(x.shape[2], kernel, stride)


def depthwise(x: jax.Array, kernel: jax.Array, stride: int, *, train: bool) -> jax.Array:
    """TF-'SAME' depthwise conv: shifted multiply-adds on the CPU, grouped conv elsewhere.

    Inference picks where the program runs (a multi-platform jax.export stays right);
    training picks at trace time, so a gradient is taken through one form only.
    """
    pads = _pads(x, kernel.shape[0], stride)
    if train:
        if jax.default_backend() == "cpu":
            return dw.shifted_trainable(x, kernel, stride, pads)
        return dw.grouped(x, kernel, stride, pads)
    return jax.lax.platform_dependent(
        x,
        kernel,
        cpu=lambda a, b: dw.shifted(a, b, stride, pads),
        default=lambda a, b: dw.grouped(a, b, stride, pads),
    )


def _block(params, stats, new_stats, block, x, *, train, mask, bn_train):
    def norm(y, bn, act):
        y, upd = batch_norm(y, params, stats, bn, bn_train, mask, eps=BN_EPS)
        new_stats.update(upd)
        return jax.nn.relu6(y) if act else y

    shortcut = x
    convs = block.convs()
    for i, (conv, bn, _k, s, c_in, _c_out) in enumerate(convs):
        kernel = params[f"{conv}/kernel"]
        x = depthwise(x, kernel, s, train=train) if c_in == 1 else dw.pointwise(x, kernel)
        x = norm(x, bn, act=i < len(convs) - 1)
    return x + shortcut if block.skip else x


def trunk(
    params: dict[str, jax.Array],
    stats: dict[str, jax.Array],
    cfg: ModelConfig,
    x: jax.Array,
    *,
    train: bool,
    mask: jax.Array,
    bn_train: bool,
    start: int = 0,
    stop: int | None = None,
):
    """Stem, the blocks, the 1x1 head conv: (head's map, updated BN stats, feature maps).

    The maps are the stem's output, each stage's last block's output and the head conv's
    (post-ReLU6, what Grad-CAM explains). start > 0: x is the output of block start - 1
    (activations()), and only the blocks from `start` on run. stop: run blocks up to
    stop - 1 only and return their output as the map (no head conv).
    """
    new_stats: dict[str, jax.Array] = {}

    def conv_bn(x, conv, bn, stride):
        kernel = params[f"{conv}/kernel"]
        if kernel.shape[0] == 1:
            y = dw.pointwise(x, kernel)
        else:
            y = conv2d_pads(x, kernel, stride, _pads(x, kernel.shape[0], stride), train=train)
        y, upd = batch_norm(y, params, stats, bn, bn_train, mask, eps=BN_EPS)
        new_stats.update(upd)
        return jax.nn.relu6(y)

    features = []
    if start == 0:
        x = conv_bn(x, "conv_stem", "bn1", 2)
        features.append(x)
    every = blocks(cfg.backbone)
    for n, block in enumerate(every[start:stop], start=start):
        x = _block(params, stats, new_stats, block, x, train=train, mask=mask, bn_train=bn_train)
        if n + 1 == len(every) or every[n + 1].prefix.split("/")[1] != block.prefix.split("/")[1]:
            features.append(x)
    if stop is not None:
        return x, new_stats, features
    x = conv_bn(x, "conv_head", "bn2", 1)
    features.append(x)
    return x, new_stats, features


def activations(
    params: dict[str, jax.Array],
    stats: dict[str, jax.Array],
    cfg: ModelConfig,
    x: jax.Array,
    upto: int,
) -> jax.Array:
    """Inference: the output of block upto - 1 (the input of `trunk(..., start=upto)`)."""
    mask = jnp.ones((x.shape[0],), jnp.float32)
    return trunk(params, stats, cfg, x, train=False, mask=mask, bn_train=False, stop=upto)[0]


def feature_names(name: str) -> list[str]:
    """Names of trunk's feature maps: stem, stage1..stage7, head."""
    stages = sorted({int(b.prefix.split("/")[1]) for b in blocks(name)})
    return ["stem"] + [f"stage{s + 1}" for s in stages] + ["head"]
