"""`cnn explain` and cnncli.inference.explain: Grad-CAM finds the corner that decides the class; PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnncli.cli import app
from cnncli.config import ConvBlock, ModelConfig

SIZE = 16
SQUARE = SIZE // 4
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def corner_image(rng: np.random.Generator, square: bool) -> np.ndarray:
    """Dark noise; with square=True a bright square sits in the top-left corner (+-1 px)."""
    pixels = rng.integers(0, 70, size=(SIZE, SIZE, 3), dtype=np.uint8)
    if square:
        y, x = rng.integers(0, 2, 2)
        pixels[y : y + SQUARE, x : x + SQUARE] = 255
    return pixels


def write_corner_tree(root: Path, per_class: int, seed: int) -> None:
    """root/corner/*.png (square top-left) and root/plain/*.png (no square)."""
    rng = np.random.default_rng(seed)
    for name in ("corner", "plain"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(corner_image(rng, name == "corner")).save(root / name / f"{i:03d}.png")


@pytest.fixture(scope="module")
def corner_run(tmp_path_factory) -> Path:
    """A tiny model trained through the CLI to tell 'square in the top-left corner' from 'none'.

    Global average pooling and no dense layer keep Grad-CAM faithful (it reduces to CAM),
    so the test checks our gradients and weighting, not a flatten head's quirks.
    """
    from typer.testing import CliRunner

    base = tmp_path_factory.mktemp("corner")
    write_corner_tree(base / "data", per_class=24, seed=0)
    run = base / "run"
    args = ["--image-size", str(SIZE), "--filters", "8,16", "--global-pool", "--dense", ""]
    args += ["--dropout", "0", "--epochs", "6", "--lr", "0.01", "--batch-size", "8", "--seed", "0"]
    args += ["--recipe", "fixed"]
    result = CliRunner().invoke(app, ["train", str(base / "data"), "--out", str(run), *args, "-q"])
    assert result.exit_code == 0, result.output
    return run


def test_gradcam_peak_sits_in_the_deciding_corner(corner_run):
    from cnncli.inference.bundle import load_bundle
    from cnncli.inference.explain import explain_image

    bundle = load_bundle(corner_run)
    rng = np.random.default_rng(123)  # images the model has not seen
    for _ in range(6):
        result = explain_image(bundle.params, bundle.stats, bundle.model, corner_image(rng, True))
        assert bundle.classes[result.predicted] == "corner"
        assert result.class_index == result.predicted
        assert result.cam.shape == (SIZE, SIZE) and result.cam_lowres.shape == (8, 8)
        assert result.cam.min() >= 0 and result.cam.max() == pytest.approx(1.0)
        row, col = np.unravel_index(np.argmax(result.cam), result.cam.shape)
        assert row < SIZE // 2 and col < SIZE // 2, (row, col)
    assert result.probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert [f.shape for f in result.feature_maps] == [(16, 16, 8), (8, 8, 16)]
    assert result.layer_names == ["conv1", "conv2"] and result.filters.shape == (3, 3, 3, 8)


@pytest.mark.parametrize(
    "model",
    [
        ModelConfig(conv=[ConvBlock(4), ConvBlock(6, pool=3, pool_stride=2)], dense=[5]),
        ModelConfig(
            conv=[ConvBlock(4, batch_norm=True), ConvBlock(6, batch_norm=True, residual=True)],
            global_pool=True,
            dense=[],
        ),
    ],
    ids=["flatten-dense", "bn-residual-gap"],
)
def test_head_from_last_conv_reproduces_forward(model):
    import jax
    import jax.numpy as jnp

    from cnncli.inference.explain import head_from_last_conv
    from cnncli.model import network
    from cnncli.model.flax_module import init_weights

    params, stats = init_weights(model, image_size=12, channels=3, num_classes=3, seed=0)
    x = jax.random.normal(jax.random.key(0), (2, 12, 12, 3))

    @jax.jit
    def both(params, stats, x):
        logits, _, features = network.forward(params, stats, model, x, return_features=True)
        return logits, head_from_last_conv(params, model, features[-1])

    logits, head = both(params, stats, x)
    assert jnp.allclose(logits, head, atol=1e-5)


def _is_png(path: Path) -> bool:
    with Image.open(path) as img:
        img.verify()
        return path.read_bytes()[:8] == PNG_MAGIC and img.format == "PNG"


def test_explain_cli_writes_valid_pngs(runner, corner_run, tmp_path):
    image = tmp_path / "probe.png"
    Image.fromarray(corner_image(np.random.default_rng(7), True)).save(image)
    result = runner.invoke(app, ["explain", str(corner_run), str(image)])
    assert result.exit_code == 0, result.output
    out = corner_run / "explain" / "probe"
    text = result.output.replace("\n", "")
    assert "predicted: corner" in result.output
    for name in ("filters.png", "feature_maps.png", "gradcam.png"):
        assert _is_png(out / name) and str(out / name) in text

    custom = tmp_path / "custom"
    result = runner.invoke(
        app,
        [
            "explain",
            str(corner_run / "model"),
            str(image),
            "--class",
            "plain",
            "--out",
            str(custom),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["predicted"] == "corner" and summary["explained_class"] == "plain"
    assert set(summary["probabilities"]) == {"corner", "plain"}
    assert sorted(Path(p).name for p in summary["files"].values()) == [
        "feature_maps.png",
        "filters.png",
        "gradcam.png",
    ]
    assert all(_is_png(Path(p)) and Path(p).parent == custom for p in summary["files"].values())


def test_explain_user_errors_are_one_line_exit_2(runner, corner_run, tmp_path):
    image = tmp_path / "probe.png"
    Image.fromarray(corner_image(np.random.default_rng(7), False)).save(image)
    text_file = tmp_path / "notes.jpg"
    text_file.write_text("not a picture")
    cases = [
        ([str(corner_run), str(image), "--class", "dog"], "corner, plain"),
        ([str(corner_run), str(text_file)], "not an image"),
        ([str(corner_run), str(tmp_path / "missing.png")], "missing.png"),
        ([str(tmp_path / "norun"), str(image)], "norun"),
        ([str(corner_run), str(image), "--max-channels", "0"], "--max-channels"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["explain", *args])
        assert result.exit_code == 2, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1 and message in result.output, args
        assert "Traceback" not in result.output
