"""The configurable CNN (the seed's network): conv blocks of the model config, each conv ->
batch norm (optional) -> ReLU, an optional residual second conv, then max pooling."""

from __future__ import annotations

import jax

from cnncli.config import ModelConfig
from cnncli.model.layers import batch_norm, conv2d, max_pool


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
    """The conv blocks: (last feature map, updated BN stats, each block's post-ReLU map)."""
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
