"""The network picker: input normalisation, then the trunk of the model config's family
(the configurable CNN in cnn.py, ResNet, EfficientNet-Lite), then the classifier head,
as pure JAX over a flat dict of arrays (no flax, no optax).

The nnx model in flax_module.py holds the parameters and calls `forward`; inference (predict,
eval) calls `forward` directly on weights loaded from the bundle, so there is exactly one
implementation of the network and inference never imports training-only packages.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cnncli.config import ModelConfig
from cnncli.model import cnn, lite, resnet
from cnncli.model.layers import dropout


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
        from cnncli.model.lite_spec import is_lite

        family = lite if is_lite(cfg.backbone) else resnet
        return family.trunk(params, stats, cfg, x, train=train, mask=mask, bn_train=bn_train)
    return cnn.trunk(params, stats, cfg, x, train=train, mask=mask, bn_train=bn_train)


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
            x = dropout(x, cfg.dropout, key)
        return x
    x = x.mean(axis=(1, 2)) if cfg.global_pool else x.reshape(x.shape[0], -1)
    for j in range(1, len(cfg.dense) + 1):
        x = jax.nn.relu(x @ params[f"dense{j}/kernel"] + params[f"dense{j}/bias"])
        if train and cfg.dropout > 0:
            key, sub = jax.random.split(key)
            x = dropout(x, cfg.dropout, sub)
    return x


def logits_layer(params: dict[str, jax.Array], features: jax.Array) -> jax.Array:
    """The last, linear layer: class logits from the pre-logits features."""
    return features @ params["logits/kernel"] + params["logits/bias"]
