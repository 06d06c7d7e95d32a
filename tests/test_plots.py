"""Each plot writes a real PNG atomically; importing cnncli.charts.plots leaves matplotlib unloaded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnncli.charts import plots


def check_png(path: Path, min_side: int = 200) -> None:
    """path is a readable PNG of a sensible size and nothing else was left in its folder."""
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert min(img.size) >= min_side
        img.verify()
    leftovers = [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_import_does_not_load_matplotlib():
    code = "import sys, cnncli.charts.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("num_classes", [3, 25])
def test_confusion_matrix(tmp_path, num_classes):
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 20, size=(num_classes, num_classes))
    cm[0] = 0  # a class with no samples must not break the row normalisation
    classes = [f"class_{i}" for i in range(num_classes)]
    path = tmp_path / "cm.png"
    plots.plot_confusion_matrix(cm, classes, path)
    check_png(path)
    if num_classes == 25:  # figure grows with the class count
        small = tmp_path / "small.png"
        plots.plot_confusion_matrix(cm[:3, :3], classes[:3], small)
        assert Image.open(path).size[0] > Image.open(small).size[0]


def test_confusion_matrix_unicode_names(tmp_path):
    classes = ["café", "naïve Ωmega", "猫", "😀 smile"]
    path = tmp_path / "ünïcode cm.png"
    plots.plot_confusion_matrix(np.eye(4, dtype=int) * 3, classes, path)
    check_png(path)


def test_confusion_matrix_shape_mismatch(tmp_path):
    with pytest.raises(ValueError, match="3 classes"):
        plots.plot_confusion_matrix(np.eye(2), ["a", "b", "c"], tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_curves_with_missing_val(tmp_path):
    history = [
        {"epoch": 1, "train_loss": 2.0, "train_acc": 0.3, "val_loss": None, "val_acc": None},
        {"epoch": 2, "train_loss": 1.5, "train_acc": 0.5, "val_loss": 1.7, "val_acc": 0.45},
        {
            "epoch": 3,
            "train_loss": 1.1,
            "train_acc": 0.6,
            "val_loss": float("nan"),
            "val_acc": float("nan"),
        },
    ]
    path = tmp_path / "curves.png"
    plots.plot_curves(history, path)
    check_png(path)
    no_val = [{k: v for k, v in row.items() if not k.startswith("val")} for row in history]
    plots.plot_curves(no_val, path)  # overwrite in place
    check_png(path)


@pytest.mark.parametrize("channels", [1, 3])
def test_image_grid(tmp_path, channels):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(10, 16, 16, channels), dtype=np.uint8)
    labels = [f"é{i}" for i in range(10)]
    path = tmp_path / "grid.png"
    plots.plot_image_grid(images, labels, path, cols=4)
    check_png(path)


def test_lr_finder(tmp_path):
    lrs = np.logspace(-6, 0, 50)
    losses = 2.0 - np.exp(-((np.log10(lrs) + 3) ** 2))
    path = tmp_path / "lr.png"
    plots.plot_lr_finder(lrs, losses, 1e-3, path)
    check_png(path)
    plots.plot_lr_finder(lrs, losses, None, path)
    check_png(path)


@pytest.mark.parametrize("cin", [1, 3, 8])
def test_filters(tmp_path, cin):
    kernel = np.random.default_rng(2).normal(size=(3, 3, cin, 12))
    kernel[..., 0] = 0.0  # a constant filter must not divide by zero
    path = tmp_path / "filters.png"
    plots.plot_filters(kernel, path)
    check_png(path, min_side=150)


def test_feature_maps(tmp_path):
    rng = np.random.default_rng(3)
    maps = [rng.normal(size=(16, 16, 8)), rng.normal(size=(8, 8, 32))]
    path = tmp_path / "maps.png"
    plots.plot_feature_maps(maps, ["conv1", "conv2"], path, max_channels=16)
    check_png(path)


@pytest.mark.parametrize("channels", [1, 3])
def test_heatmap_overlay(tmp_path, channels):
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, size=(64, 48, channels), dtype=np.uint8)
    heatmap = rng.random((7, 5))
    path = tmp_path / "heat.png"
    plots.plot_heatmap_overlay(image, heatmap, path, "Grad-CAM: 猫 (0.93)")
    check_png(path)


def test_resize_matches_image_size():
    out = plots._resize(np.arange(6, dtype=float).reshape(2, 3), 20, 30)
    assert out.shape == (20, 30)
