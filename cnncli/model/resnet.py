"""The ResNet trunk (BasicBlock and Bottleneck) as pure JAX over a flat dict of arrays.

network.forward calls `trunk` when the model config names a backbone, so training,
evaluation, prediction, Grad-CAM and export all run this one function. It matches PyTorch's
(torchvision's and timm's) ResNet exactly in inference mode:
- every conv pads explicitly and symmetrically (P on both sides). XLA's 'SAME' pads a
  stride-2 conv (0, 1) where PyTorch pads (1, 1): the output grid shifts by one pixel;
- the stem's 3x3 stride-2 max pool pads 1 pixel with -inf, so padding never wins a max;
- batch norm with eps 1e-5 (layers.BN_EPS) and running averages with momentum 0.9 here,
  which is PyTorch's momentum 0.1 (PyTorch weights the new batch by its momentum);
- NHWC activations and HWIO kernels (PyTorch's OIHW are transposed by weights.py).
tests/test_resnet.py checks the logits against timm's on the same weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cnncli.config import ModelConfig
from cnncli.model.layers import batch_norm, conv2d
from cnncli.model.resnet_spec import (
    POOL_KERNEL,
    POOL_PADDING,
    POOL_STRIDE,
    Conv,
    arch_of,
    blocks,
    bn_name,
    stem,
)


def stem_pool(x: jax.Array) -> jax.Array:
    """3x3 stride-2 max pool with 1 pixel of -inf padding (PyTorch's MaxPool2d(3, 2, 1))."""
    pad = (POOL_PADDING, POOL_PADDING)
    return jax.lax.reduce_window(
        x,
        -jnp.inf,
        jax.lax.max,
        (1, POOL_KERNEL, POOL_KERNEL, 1),
        (1, POOL_STRIDE, POOL_STRIDE, 1),
        ((0, 0), pad, pad, (0, 0)),
    )


def trunk(
    params: dict[str, jax.Array],
    stats: dict[str, jax.Array],
    cfg: ModelConfig,
    x: jax.Array,
    *,
    train: bool,
    mask: jax.Array,
    bn_train: bool,
):
    """Stem, four stages of residual blocks: (last stage's map, updated BN stats, maps).

    The maps are the stem's post-ReLU output and each stage's output (post-ReLU), the last
    of which Grad-CAM explains. bn_train picks batch statistics (training) or the running
    ones; `train` only chooses the convolution's implementation (layers.conv2d).
    """
    new_stats: dict[str, jax.Array] = {}

    def conv_bn(x: jax.Array, conv: Conv) -> jax.Array:
        y = conv2d(x, params[f"{conv.name}/kernel"], None, conv.stride, conv.padding, train=train)
        y, upd = batch_norm(y, params, stats, bn_name(conv), bn_train, mask)
        new_stats.update(upd)
        return y

    x = jax.nn.relu(conv_bn(x, stem(x.shape[-1])))
    features = [x]
    x = stem_pool(x)
    stage = "layer1"
    for block in blocks(arch_of(cfg.backbone)):
        if not block.prefix.startswith(stage + "/"):
            features.append(x)
            stage = block.prefix.split("/")[0]
        shortcut = x if block.downsample is None else conv_bn(x, block.downsample)
        for i, conv in enumerate(block.convs):
            x = conv_bn(x, conv)
            if i < len(block.convs) - 1:
                x = jax.nn.relu(x)
        x = jax.nn.relu(x + shortcut)
    features.append(x)
    return x, new_stats, features
