"""What every weights reader shares: the error type, the loaded arrays, PyTorch's parameter
names (TORCH_LEAF) and the strict mapping of a PyTorch-layout state dict onto cnn's
names and layouts. Imports no other reader, so none of them import each other in a loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HEAD = ("logits/kernel", "logits/bias")


class WeightsError(ValueError):
    """A weights file cannot be used; the message names the file (and the array) and the fix."""


@dataclass
class LoadedWeights:
    """A ResNet's arrays in cnn's names, ready to replace a fresh network's."""

    path: Path
    arch: str
    params: dict[str, np.ndarray]  # float32, without the classifier (see `head`)
    stats: dict[str, np.ndarray]
    head: dict[str, np.ndarray]  # the file's classifier in our names: logits/kernel, bias
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)
    license: str = ""


# cnn's array kind -> PyTorch's parameter or buffer name (BN scale is PyTorch's weight).
TORCH_LEAF = {
    "kernel": "weight",
    "scale": "weight",
    "bias": "bias",
    "mean": "running_mean",
    "var": "running_var",
}


def _to_ours(name: str, array: np.ndarray) -> np.ndarray:
    """A timm array in our layout: OIHW conv kernels -> HWIO, Linear (out, in) -> (in, out)."""
    if name.endswith("/kernel"):
        return array.transpose(2, 3, 1, 0) if array.ndim == 4 else array.T
    return array


def strict_map(arrays, expected, naming, path: Path, arch: str):
    """(params, stats, head) in our names from a state dict whose names `naming(ours)` gives,
    strictly: every array used (BN counters aside), every expected one present, shapes equal
    (PyTorch's OIHW / (out, in) transposed to HWIO / (in, out)), all finite."""
    theirs = {naming(ours): ours for ours in expected}
    if naming(HEAD[0]) not in arrays and naming(HEAD[1]) not in arrays:  # a headless backbone
        theirs = {t: ours for t, ours in theirs.items() if ours not in HEAD}
    counters = {t.replace(".running_mean", ".num_batches_tracked") for t in theirs}
    unused = [n for n in arrays if n not in theirs and n not in counters]
    if unused:
        more = f" and {len(unused) - 1} more" if len(unused) > 1 else ""
        raise WeightsError(f"{path}: unexpected array '{unused[0]}' (not part of {arch}){more}")
    missing = [t for t in theirs if t not in arrays]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise WeightsError(f"{path}: missing array '{missing[0]}' of {arch}{more}")
    params: dict[str, np.ndarray] = {}
    stats: dict[str, np.ndarray] = {}
    head: dict[str, np.ndarray] = {}
    for their, ours in theirs.items():
        shape, kind = expected[ours]
        array = _to_ours(ours, np.asarray(arrays[their], np.float32))
        if tuple(array.shape) != shape:
            raise WeightsError(
                f"{path}: '{their}' has shape {list(arrays[their].shape)}, {arch} needs "
                f"{list(_torch_shape(ours, shape))}"
            )
        if not np.isfinite(array).all():
            raise WeightsError(f"{path}: '{their}' holds NaN or Inf values")
        target = head if ours in HEAD else stats if kind == "stat" else params
        target[ours] = np.ascontiguousarray(array)
    return params, stats, head


def _torch_shape(ours: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    if ours.endswith("/kernel"):
        return (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape[::-1]
    return shape
