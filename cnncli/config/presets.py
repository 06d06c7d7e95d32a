"""Named starting points: the model presets and the large-batch recipe."""

from __future__ import annotations

import dataclasses

from cnncli.config.checks import _check
from cnncli.config.types import ConfigError, ConvBlock, ModelConfig, TrainConfig


def model_preset(name: str) -> ModelConfig:
    """Named architectures: tiny, small (the default), small-bn, compact, medium, resnet."""
    presets = {
        "tiny": lambda: ModelConfig(conv=[ConvBlock(16), ConvBlock(32)], dense=[64], dropout=0.2),
        "small": ModelConfig,
        # The small CNN with batch norm after every conv (the recipe's choice for photos).
        "small-bn": lambda: ModelConfig(
            conv=[ConvBlock(f, batch_norm=True) for f in (32, 64, 128)]
        ),
        # Two BN conv blocks and a wide dense layer: the Fashion-MNIST recipe's network,
        # for inputs of 32 px or less (a third pool would leave 3x3 maps).
        "compact": lambda: ModelConfig(
            conv=[ConvBlock(f, batch_norm=True) for f in (32, 64)], dense=[256]
        ),
        "medium": lambda: ModelConfig(
            conv=[ConvBlock(f, batch_norm=True) for f in (32, 64, 128, 256)],
            dense=[256],
            dropout=0.4,
        ),
        "resnet": lambda: ModelConfig(
            conv=[ConvBlock(32, batch_norm=True)]
            + [ConvBlock(f, batch_norm=True, residual=True) for f in (64, 128, 256)],
            global_pool=True,
            dense=[],
            dropout=0.0,
        ),
    }
    if name not in presets:
        raise ConfigError(f"unknown model preset {name!r} (choose from {', '.join(presets)})")
    return presets[name]()


LARGE_BATCH = 1024  # --large-batch's default: enough images per step to keep a GPU busy
LARGE_BATCH_WARMUP_EPOCHS = 2.0


def large_batch(t: TrainConfig, batch_size: int = LARGE_BATCH) -> TrainConfig:
    """The accelerator preset: t's recipe scaled to `batch_size` images a step.

    The learning rate grows with the batch: by the square root of the batch ratio for adam
    and adamw (the square-root rule for adaptive optimizers, Malladi et al. 2022), linearly
    for sgd (Goyal et al. 2017, "ImageNet in 1 hour"), and the linear warm-up lasts at
    least LARGE_BATCH_WARMUP_EPOCHS so the larger steps start gently. The epochs stay.
    """
    _check(batch_size >= 1, f"--large-batch must be >= 1, got {batch_size}")
    ratio = batch_size / t.batch_size
    scale = ratio if t.optimizer == "sgd" else ratio**0.5
    return dataclasses.replace(
        t,
        batch_size=batch_size,
        lr=t.lr * scale,
        warmup_epochs=max(t.warmup_epochs, LARGE_BATCH_WARMUP_EPOCHS),
    )
