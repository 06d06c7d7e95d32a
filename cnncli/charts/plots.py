"""PNG plots (confusion matrix, curves, image grids, filters, heatmaps) via matplotlib's Agg backend.

matplotlib is imported inside each function so that importing this module stays cheap;
figures are built with the object API (no pyplot global state) and written atomically.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnncli.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100


def _figure(width: float, height: float) -> Figure:
    """A new Agg-backed figure, not registered with pyplot (so nothing leaks)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Figure, path: str | Path) -> None:
    """Render fig to PNG in memory, then write it atomically to path."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # fonts without a glyph for some class name fall back to a box; not worth a warning
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from")
        fig.savefig(buf, format="png", dpi=DPI)
    atomic_write_bytes(path, buf.getvalue())


def plot_confusion_matrix(confusion: np.ndarray, classes: list[str], path: str | Path) -> None:
    """Confusion matrix (rows = true) coloured by row share; counts and % annotated up to 20 classes."""
    cm = np.asarray(confusion, dtype=np.int64)
    c = len(classes)
    if cm.shape != (c, c):
        raise ValueError(f"confusion matrix has shape {cm.shape} but there are {c} classes")
    totals = cm.sum(axis=1, keepdims=True)  # each row's share; an empty row stays 0
    norm = np.divide(cm, totals, out=np.zeros(cm.shape), where=totals > 0)
    side = float(min(max(6.0, 0.5 * c + 3.0), 40.0))
    fig = _figure(side + 1.5, side)
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")

    label_size = float(np.clip(14 - 0.12 * c, 5, 10))
    ax.set_xticks(
        range(c),
        labels=classes,
        rotation=45,
        ha="right",
        rotation_mode="anchor",
        fontsize=label_size,
    )
    ax.set_yticks(range(c), labels=classes, fontsize=label_size)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(f"Confusion matrix ({int(cm.sum())} samples, colour = row share)")

    if c <= 20:
        text_size = float(np.clip(12 - 0.3 * c, 6, 10))
        for i in range(c):
            for j in range(c):
                colour = "white" if norm[i, j] > 0.5 else "black"
                ax.text(
                    j,
                    i,
                    f"{cm[i, j]}\n{norm[i, j]:.0%}",
                    ha="center",
                    va="center",
                    color=colour,
                    fontsize=text_size,
                )
    _save(fig, path)


def _column(history: list[dict], key: str) -> np.ndarray:
    """history[i][key] as floats, with missing/None as NaN."""
    values = [row.get(key) for row in history]
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def plot_curves(history: list[dict], path: str | Path) -> None:
    """Loss and accuracy per epoch, train and val (val rows may be None or NaN)."""
    if not history:
        raise ValueError("no history rows to plot")
    epochs = _column(history, "epoch")
    fig = _figure(11, 4.5)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for ax, metric, title in ((ax_loss, "loss", "Loss"), (ax_acc, "acc", "Accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            y = _column(history, f"{split}_{metric}")
            if np.isfinite(y).any():
                ok = np.isfinite(y)
                ax.plot(epochs[ok], y[ok], style, markersize=3, label=split)
        val_map = _column(history, "val_map")  # multi-label runs
        if metric == "acc" and np.isfinite(val_map).any():
            ok = np.isfinite(val_map)
            ax.plot(epochs[ok], val_map[ok], "-^", markersize=3, label="val mAP")
            title = "Subset accuracy and val mAP"
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend()
    _save(fig, path)


def _grid_shape(n: int, cols: int) -> tuple[int, int]:
    cols = max(1, min(cols, n))
    return math.ceil(n / cols), cols


def _show(ax, image: np.ndarray, **kwargs) -> None:
    """Show an (H, W, C) or (H, W) image; one channel is drawn in gray."""
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        kwargs.setdefault("cmap", "gray")
    ax.imshow(image, **kwargs)
    ax.set_axis_off()


def plot_image_grid(
    images: np.ndarray, labels: Sequence[str], path: str | Path, cols: int = 8
) -> None:
    """(N, H, W, C) uint8 images in a grid with one title each; C == 1 is shown gray."""
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, H, W, C) array, got shape {images.shape}")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    rows, cols = _grid_shape(len(images), cols)
    fig = _figure(1.8 * cols, 1.9 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, image, label in zip(axes, images, labels, strict=False):
        _show(ax, image, vmin=0, vmax=255)
        ax.set_title(str(label), fontsize=8)
    _save(fig, path)


def plot_lr_finder(
    lrs: Sequence[float], losses: Sequence[float], suggestion: float | None, path: str | Path
) -> None:
    """Loss against learning rate on a log x-axis, with the suggested rate marked."""
    lrs = np.asarray(lrs, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    if lrs.shape != losses.shape or lrs.size == 0:
        raise ValueError(f"need equal, non-empty lrs and losses, got {lrs.size} and {losses.size}")
    fig = _figure(7, 4.5)
    ax = fig.add_subplot()
    ax.plot(lrs, losses, "-", label="loss")
    ax.set_xscale("log")
    if suggestion is not None and np.isfinite(suggestion):
        i = int(np.argmin(np.abs(np.log(lrs) - np.log(suggestion))))
        ax.axvline(suggestion, color="tab:red", linestyle="--", alpha=0.6)
        ax.plot([lrs[i]], [losses[i]], "o", color="tab:red", label=f"suggested {suggestion:.2e}")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title("Learning-rate finder")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    _save(fig, path)


def _unit_range(x: np.ndarray) -> np.ndarray:
    """Scale x linearly to 0..1; a constant array becomes all 0.5."""
    lo, hi = float(x.min()), float(x.max())
    if hi - lo < 1e-12:
        return np.full_like(x, 0.5, dtype=np.float64)
    return (x - lo) / (hi - lo)


def plot_filters(kernel: np.ndarray, path: str | Path) -> None:
    """First-layer conv filters (k, k, cin, cout) as a grid, each scaled to 0..1.

    cin == 3 is shown as RGB; any other cin as the gray mean over input channels.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 4:
        raise ValueError(f"kernel must be (k, k, cin, cout), got shape {kernel.shape}")
    cin, cout = kernel.shape[2], kernel.shape[3]
    rows, cols = _grid_shape(cout, math.ceil(math.sqrt(cout)))
    fig = _figure(1.2 * cols + 0.5, 1.2 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for o in range(cout):
        w = kernel[..., o]
        w = w if cin == 3 else w.mean(axis=-1)
        _show(axes[o], _unit_range(w), vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.suptitle(f"First-layer filters ({cout}, {kernel.shape[0]}x{kernel.shape[1]})")
    _save(fig, path)


def plot_feature_maps(
    maps: Sequence[np.ndarray], names: Sequence[str], path: str | Path, max_channels: int = 16
) -> None:
    """One row per layer: its first max_channels (H, W, C) activation channels."""
    if not maps:
        raise ValueError("no feature maps to plot")
    if len(names) != len(maps):
        raise ValueError(f"{len(maps)} feature maps but {len(names)} names")
    cols = max(1, min(max_channels, max(np.asarray(m).shape[-1] for m in maps)))
    rows = len(maps)
    fig = _figure(1.3 * cols + 1.0, 1.4 * rows + 0.5)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, (fmap, name) in enumerate(zip(maps, names, strict=True)):
        fmap = np.asarray(fmap, dtype=np.float64)
        if fmap.ndim != 3:
            raise ValueError(f"feature map {name!r} must be (H, W, C), got shape {fmap.shape}")
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < fmap.shape[-1]:
                ax.imshow(fmap[..., c], cmap="viridis", interpolation="nearest")
            else:
                ax.set_axis_off()
        axes[r, 0].set_ylabel(
            f"{name}\n{fmap.shape[0]}x{fmap.shape[1]}x{fmap.shape[2]}", fontsize=8
        )
    fig.suptitle("Feature maps")
    _save(fig, path)


def _resize(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a 2-D float map to (height, width)."""
    from PIL import Image

    img = Image.fromarray(np.asarray(heatmap, dtype=np.float32), mode="F")
    return np.asarray(img.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float64)


def plot_heatmap_overlay(
    image: np.ndarray, heatmap: np.ndarray, path: str | Path, title: str = ""
) -> None:
    """The image beside itself with a jet-coloured heatmap (resized to the image) laid over it."""
    image = np.asarray(image)
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or heatmap.ndim != 2:
        raise ValueError(
            f"need (H, W, C) image and (h, w) heatmap, got {image.shape}, {heatmap.shape}"
        )
    h, w = image.shape[:2]
    heat = _unit_range(_resize(np.nan_to_num(heatmap), h, w))
    fig = _figure(8, 4.4)
    ax_img, ax_heat = fig.subplots(1, 2)
    _show(ax_img, image, vmin=0, vmax=255)
    ax_img.set_title("image")
    _show(ax_heat, image, vmin=0, vmax=255)
    ax_heat.imshow(heat, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
    ax_heat.set_title("heatmap")
    if title:
        fig.suptitle(title)
    _save(fig, path)
