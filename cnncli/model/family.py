"""Which family a backbone name belongs to (ResNet or EfficientNet-Lite), and its spec.

No jax here: config checks, `cnn summary` and the shape table go through these, and the
forward pass picks the family's trunk the same way (network.trunk).
"""

from __future__ import annotations

from types import ModuleType

from cnncli.config import ConfigError, RunConfig
from cnncli.model import lite_spec, resnet_spec

KNOWN = (*resnet_spec.ARCHS, *lite_spec.ARCHS)


def spec_of(name: str) -> ModuleType:
    """The spec module (resnet_spec or lite_spec) of a backbone name; ConfigError if unknown."""
    if name in lite_spec.ARCHS:
        return lite_spec
    if name in resnet_spec.ARCHS:
        return resnet_spec
    raise ConfigError(f"unknown backbone {name!r} (choose from {', '.join(KNOWN)})")


def param_shapes(name: str, channels: int, num_classes: int):
    """Name -> (shape, 'param' | 'stat') of a backbone and its linear head."""
    return spec_of(name).param_shapes(name, channels, num_classes)


def layer_table(name: str, height: int, width: int, channels: int, num_classes: int):
    """The backbone's layer table (shapes, parameters, MACs, the conv arithmetic)."""
    return spec_of(name).layer_table(name, height, width, channels, num_classes)


def first_conv(name: str) -> str:
    """The name (without /kernel) of the conv that reads the image."""
    return "conv_stem" if name in lite_spec.ARCHS else "conv1"


def check_config(cfg: RunConfig) -> RunConfig:
    """The checks of a run config that need the architecture tables (config.validate makes
    the others): a known backbone, and --tune-blocks within its blocks. ConfigError if not."""
    m, t = cfg.model, cfg.train
    if m.backbone:
        spec_of(m.backbone)
    if t.tune_blocks and (m.backbone or not t.init):  # with --init: once its network is known
        if not lite_spec.is_lite(m.backbone):
            raise ConfigError(
                "train.tune_blocks (--tune-blocks) needs an EfficientNet-Lite backbone "
                "(--init efficientnet_lite0)"
            )
        count = len(lite_spec.blocks(m.backbone))
        if t.tune_blocks > count:
            raise ConfigError(f"train.tune_blocks must be at most {count} for {m.backbone}")
    return cfg
