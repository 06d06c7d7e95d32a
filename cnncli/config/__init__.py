"""Typed run configuration (model, data, train, augment): defaults, validation, TOML in/out.

types: the dataclasses, their allowed values and ConfigError; checks: validate and the flag
parsers; presets: named models and the large-batch recipe; toml_io: dicts and TOML files.
Import from here: `from cnncli.config import RunConfig, load_toml`.
"""

from cnncli.config.checks import parse_color, parse_image_size, parse_padding, validate
from cnncli.config.presets import (
    LARGE_BATCH,
    LARGE_BATCH_WARMUP_EPOCHS,
    large_batch,
    model_preset,
)
from cnncli.config.toml_io import (
    dumps_toml,
    file_keys,
    from_dict,
    load_toml,
    loads_toml,
    merge_overrides,
    overlay_toml,
    save_toml,
    to_dict,
)
from cnncli.config.types import (
    CLASS_WEIGHTS,
    DATA_PLACEMENTS,
    INTERPOLATIONS,
    OPTIMIZERS,
    PAD_COLOR,
    PRECISIONS,
    RESIZE_POLICIES,
    SAMPLERS,
    SCHEDULES,
    SPLIT_GUARDS,
    AugmentConfig,
    ConfigError,
    ConvBlock,
    DataConfig,
    LogConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    size_hw,
)

__all__ = [
    "CLASS_WEIGHTS",
    "DATA_PLACEMENTS",
    "INTERPOLATIONS",
    "LARGE_BATCH",
    "LARGE_BATCH_WARMUP_EPOCHS",
    "OPTIMIZERS",
    "PAD_COLOR",
    "PRECISIONS",
    "RESIZE_POLICIES",
    "SAMPLERS",
    "SCHEDULES",
    "SPLIT_GUARDS",
    "AugmentConfig",
    "ConfigError",
    "ConvBlock",
    "DataConfig",
    "LogConfig",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "dumps_toml",
    "file_keys",
    "from_dict",
    "large_batch",
    "load_toml",
    "loads_toml",
    "merge_overrides",
    "model_preset",
    "overlay_toml",
    "parse_color",
    "parse_image_size",
    "parse_padding",
    "save_toml",
    "size_hw",
    "to_dict",
    "validate",
]
