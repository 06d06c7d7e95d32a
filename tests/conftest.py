"""Shared fixtures: small real image trees written at test time, and a CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.imagefactory import make_class_tree

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Small, fast network flags for CLI tests (the default model is exercised on sample_data).
# `--recipe fixed`: these tests pin the fixed defaults under their flags; the automatic
# recipe has its own tests (tests/test_recipe.py, tests/test_cli_recipe.py).
TINY = ["--image-size", "16", "--filters", "8,16", "--dense", "16", "--batch-size", "8"]
TINY += ["--recipe", "fixed"]


def pytest_configure(config):
    """Keep cnn's caches (XLA flag check, jax compilation cache) out of the user's home."""
    import tempfile

    config._cnn_cache = tempfile.TemporaryDirectory(prefix="cnn-test-cache-")
    os.environ["XDG_CACHE_HOME"] = config._cnn_cache.name


def pytest_unconfigure(config):
    cache = getattr(config, "_cnn_cache", None)
    if cache is not None:
        cache.cleanup()


def shared_data(name: str) -> Path:
    """Path to a dataset under ../shared/data, or skip the test with the reason."""
    path = Path(os.environ.get("CNN_SHARED_DATA", SHARED_DATA)) / name
    if not path.exists():
        pytest.skip(f"real dataset {path} not present (see ../shared/data/README.md)")
    return path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def tree3(tmp_path: Path) -> Path:
    """Three colour classes, 12 images each, 16x16 (mixed PNG/JPEG)."""
    root = tmp_path / "photos"
    make_class_tree(root, {"blue": 12, "green": 12, "red": 12}, size=16)
    return root
