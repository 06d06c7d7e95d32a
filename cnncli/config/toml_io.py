"""The run configuration as plain dicts and TOML: build, load, save, overlay and override."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from cnncli.config.checks import parse_padding, validate
from cnncli.config.types import (
    AugmentConfig,
    ConfigError,
    ConvBlock,
    DataConfig,
    LogConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass tree -> plain dict (TOML-ready)."""
    return dataclasses.asdict(cfg)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """Build dataclass cls from a dict, rejecting unknown keys with their full name."""
    if not isinstance(data, dict):
        raise ConfigError(f"[{where}] must be a table, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown key(s) in [{where}]: {', '.join(unknown)} (known: {', '.join(known)})"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kwargs[name] = _coerce(cls, name, value, f"{where}.{name}")
    return cls(**kwargs)


_NESTED = {
    (RunConfig, "model"): ModelConfig,
    (RunConfig, "data"): DataConfig,
    (RunConfig, "train"): TrainConfig,
    (RunConfig, "augment"): AugmentConfig,
    (RunConfig, "log"): LogConfig,
}


def _coerce(cls: type, name: str, value: Any, where: str) -> Any:
    nested = _NESTED.get((cls, name))
    if nested is not None:
        return _build(nested, value, where)
    if cls is ModelConfig and name == "conv":
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list of tables ([[model.conv]])")
        return [_build(ConvBlock, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if cls is ModelConfig and name == "dense":
        if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
            raise ConfigError(f"{where} must be a list of integers, got {value!r}")
        return list(value)
    if cls is DataConfig and name in ("image_size", "pad_color"):
        ints = isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
        if name == "image_size" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if not ints:
            kind = "an integer or [height, width]" if name == "image_size" else "[r, g, b]"
            raise ConfigError(f"{where} must be {kind}, got {value!r}")
        return list(value)
    if cls is ModelConfig and name in ("mean", "std"):
        if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"{where} must be a list of numbers, got {value!r}")
        return [float(v) for v in value]
    if cls is AugmentConfig and name == "ops":
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table of op = magnitude")
        return {str(k): float(v) for k, v in value.items()}
    default = next(f for f in dataclasses.fields(cls) if f.name == name).default
    if name == "padding":
        return parse_padding(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(value, bool) and isinstance(value, int):
        return value
    if (
        isinstance(default, float)
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    ):
        return float(value)
    if isinstance(default, str) and isinstance(value, str):
        return value
    raise ConfigError(f"{where} has the wrong type: {value!r} (expected {type(default).__name__})")


def from_dict(data: dict[str, Any]) -> RunConfig:
    """Plain dict -> validated RunConfig; unknown keys are errors."""
    return validate(_build(RunConfig, data, "config"))


def load_toml(path: str | Path) -> RunConfig:
    """Read a config.toml (as written by save_toml) into a validated RunConfig."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        return from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def loads_toml(text: str, source: str = "config") -> RunConfig:
    """TOML text (as dumps_toml writes it) -> validated RunConfig; `source` names it in errors."""
    try:
        return from_dict(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def overlay_toml(base: RunConfig, path: str | Path) -> RunConfig:
    """base with every key a TOML file sets replaced by the file's value (the file wins key
    by key; an [augment] table and a model.conv list replace the whole of base's)."""
    load_toml(path)  # the file alone must be valid; its errors name it
    with Path(path).open("rb") as fh:
        given = tomllib.load(fh)
    data = to_dict(base)
    for section, table in given.items():
        if section == "augment":
            data[section] = table
        else:
            data[section].update(table)
    try:
        return from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def file_keys(path: str | Path) -> set[str]:
    """The dotted keys ("train.lr", "model.conv", ...) a TOML config file sets."""
    with Path(path).open("rb") as fh:
        given = tomllib.load(fh)
    return {f"{s}.{k}" for s, table in given.items() if isinstance(table, dict) for k in table}


def dumps_toml(cfg: RunConfig) -> str:
    """RunConfig -> TOML text."""
    import tomli_w

    return tomli_w.dumps(to_dict(cfg))


def save_toml(cfg: RunConfig, path: str | Path) -> None:
    """Write cfg as TOML, atomically."""
    from cnncli.atomic import atomic_write_text

    atomic_write_text(path, dumps_toml(cfg))


def merge_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Apply dotted-key overrides like {'train.lr': 0.01} (flags win over the file)."""
    data = to_dict(cfg)
    for key, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return from_dict(data)
