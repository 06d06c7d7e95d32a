"""The inference bundle `model/`: weights (safetensors), model config, class names, preprocessing.

Loading needs nothing else and never unpickles: weights are safetensors, the rest JSON,
and every array's name, shape and dtype is checked against the model config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnncli.atomic import atomic_write_bytes, atomic_write_text
from cnncli.config import ConfigError, ModelConfig, RunConfig, from_dict, to_dict
from cnncli.data.decode import Resize, as_resize, resize_from_spec, resize_of
from cnncli.model.shapes import param_shapes

WEIGHTS_FILE = "weights.safetensors"
META_FILE = "model.json"
FORMAT_VERSION = 1


class BundleError(ValueError):
    """A model bundle is missing, malformed or inconsistent; the message names the file."""


@dataclass
class Bundle:
    """Everything inference needs."""

    path: Path
    model: ModelConfig
    classes: list[str]
    # Input size and resize policy (an int: N x N, centre crop).
    resize: Resize
    channels: int
    params: dict[str, np.ndarray]
    stats: dict[str, np.ndarray]
    meta: dict[str, Any]
    # Multi-label models: sigmoid outputs, and each label's decision threshold (tuned on val).
    multi_label: bool = False
    thresholds: list[float] | None = None

    def __post_init__(self) -> None:
        self.resize = as_resize(self.resize)

    @property
    def image_hw(self) -> tuple[int, int]:
        """(height, width) of the model's input."""
        return self.resize.hw


def save_bundle(
    directory: str | Path,
    cfg: RunConfig,
    classes: list[str],
    params: dict[str, Any],
    stats: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write weights.safetensors and model.json into directory (each atomically)."""
    from safetensors.numpy import save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: np.ascontiguousarray(np.asarray(v, dtype=np.float32))
        for k, v in {**params, **stats}.items()
    }
    meta = {
        "format": "cnn-bundle",
        "version": FORMAT_VERSION,
        "classes": list(classes),
        "model": to_dict(cfg.model),
        "preprocess": {
            **resize_of(cfg.data).spec(),
            "channels": cfg.data.channels,
            "decode": resize_of(cfg.data).describe(),
            "normalize": (
                f"(x / 255 - mean) / std, mean {cfg.model.mean}, std {cfg.model.std}"
                if cfg.model.mean
                else "x / 127.5 - 1 (uint8 -> [-1, 1])"
            ),
            "layout": "NHWC",
        },
        **(extra or {}),
    }
    atomic_write_bytes(directory / WEIGHTS_FILE, save(tensors))
    atomic_write_text(directory / META_FILE, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


def resolve_bundle_dir(path: str | Path) -> Path:
    """A run folder or a model/ folder -> the folder holding model.json."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such model or run folder")
    for candidate in (path, path / "model"):
        if (candidate / META_FILE).is_file():
            return candidate
    if (path / "fold1" / "model" / META_FILE).is_file():  # a `cnn train --folds K` folder
        raise BundleError(
            f"{path}: a K-fold run holds one model per fold; pass one of them, e.g. {path / 'fold1'}"
        )
    raise BundleError(
        f"{path}: not a model bundle (no {META_FILE}; pass a run folder or its model/)"
    )


def load_bundle(path: str | Path) -> Bundle:
    """Load and validate a bundle from a run folder or model/ folder."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    directory = resolve_bundle_dir(path)
    meta_path = directory / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{meta_path}: unreadable model metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != "cnn-bundle":
        raise BundleError(f"{meta_path}: not a cnn model bundle")
    try:
        classes = [str(c) for c in meta["classes"]]
        pre = meta["preprocess"]
        # Bundles from before resize policies have a square image_size and crop.
        resize = resize_from_spec(pre, "preprocess")
        image_size, channels = resize.hw, int(pre["channels"])
        model_cfg = from_dict(
            {"model": meta["model"], "data": {"image_size": list(image_size), "channels": channels}}
        ).model
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise BundleError(f"{meta_path}: malformed model metadata ({exc})") from None
    if len(classes) < 2:
        raise BundleError(f"{meta_path}: a model needs at least 2 classes")
    multi_label, thresholds = _label_mode(meta, len(classes), meta_path)
    weights_path = directory / WEIGHTS_FILE
    try:
        tensors = load_file(str(weights_path))
    except FileNotFoundError:
        raise BundleError(f"{weights_path}: missing weights file") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"{weights_path}: corrupt or truncated weights ({exc})") from None
    try:
        expected = param_shapes(model_cfg, image_size, channels, len(classes))
    except ConfigError as exc:
        raise BundleError(f"{meta_path}: {exc}") from None
    if set(tensors) != set(expected):
        legacy = param_shapes(model_cfg, image_size, channels, len(classes), bias_before_bn=True)
        if set(tensors) == set(legacy):  # saved before convs lost their bias before BN
            expected = legacy
    if set(tensors) != set(expected):
        missing = sorted(set(expected) - set(tensors))
        extra = sorted(set(tensors) - set(expected))
        raise BundleError(
            f"{weights_path}: weights do not match the config (missing {missing}, unexpected {extra})"
        )
    params, stats = {}, {}
    for name, (shape, kind) in expected.items():
        array = tensors[name]
        if tuple(array.shape) != shape or array.dtype != np.float32:
            raise BundleError(
                f"{weights_path}: '{name}' is {array.dtype}{list(array.shape)}, expected float32{list(shape)}"
            )
        if not np.isfinite(array).all():
            raise BundleError(f"{weights_path}: '{name}' holds NaN or Inf values")
        (stats if kind == "stat" else params)[name] = array
    return Bundle(
        directory,
        model_cfg,
        classes,
        resize,
        channels,
        params,
        stats,
        meta,
        multi_label,
        thresholds,
    )


def _label_mode(meta: dict, num_classes: int, where: Path) -> tuple[bool, list[float] | None]:
    """(multi_label, thresholds) from model.json; single-label bundles have neither key."""
    multi_label = meta.get("multi_label", False)
    if not isinstance(multi_label, bool):
        raise BundleError(f"{where}: 'multi_label' must be true or false")
    if not multi_label:
        return False, None
    thresholds = meta.get("thresholds", [0.5] * num_classes)
    ok = (
        isinstance(thresholds, list)
        and len(thresholds) == num_classes
        and all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and 0.0 <= t <= 1.0
            for t in thresholds
        )
    )
    if not ok:
        raise BundleError(f"{where}: 'thresholds' must be {num_classes} numbers in [0, 1]")
    return True, [float(t) for t in thresholds]
