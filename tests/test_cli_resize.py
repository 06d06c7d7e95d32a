"""H x W inputs and resize policies end to end: train, eval, predict, explain, export."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cnncli.cli import app
from cnncli.data.decode import Resize
from cnncli.inference.bundle import load_bundle
from tests.imagefactory import make_class_tree

# A 16 x 24 (H x W) input through a small net with batch norm; pad leaves grey bars.
NON_SQUARE = ["--image-size", "16,24", "--resize", "pad", "--pad-color", "0,0,0"]
SMALL = ["--filters", "8,16", "--dense", "16", "--batch-size", "8", "--batch-norm"]


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory):
    from typer.testing import CliRunner

    base = tmp_path_factory.mktemp("wide")
    data = base / "photos"
    make_class_tree(data, {"blue": 8, "green": 8, "red": 8}, size=20)
    run = base / "run"
    args = ["train", str(data), "--out", str(run), *NON_SQUARE, *SMALL, "--epochs", "1"]
    result = CliRunner().invoke(app, [*args, "--augment", "flip,translate=0.1,rotate=10"])
    assert result.exit_code == 0, result.output
    assert "16x24x3 (pad)" in result.output
    return data, run


def test_non_square_run_records_its_input(wide_run):
    _, run = wide_run
    bundle = load_bundle(run)
    assert bundle.image_hw == (16, 24)
    assert bundle.resize == Resize(16, 24, "pad", (0, 0, 0))
    pre = json.loads((run / "model" / "model.json").read_text())["preprocess"]
    assert pre["image_size"] == [16, 24] and pre["resize"] == "pad"
    assert pre["pad_color"] == [0, 0, 0] and "fit inside 16 x 24" in pre["decode"]
    config = (run / "config.toml").read_text()
    assert "image_size = [\n    16,\n    24,\n]" in config or "image_size = [16, 24]" in config
    assert 'resize = "pad"' in config


def test_non_square_predict_eval_explain(runner, wide_run, tmp_path):
    data, run = wide_run
    result = runner.invoke(app, ["predict", str(data), "--model", str(run), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 24
    result = runner.invoke(app, ["eval", str(run), "--json", "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    image = next((data / "red").iterdir())
    out = tmp_path / "explain"
    result = runner.invoke(app, ["explain", str(run), str(image), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert (out / "gradcam.png").is_file()


def test_explain_cam_has_the_input_shape(wide_run):
    import jax.numpy as jnp

    from cnncli.data.decode import decode_image
    from cnncli.inference.explain import explain_image

    data, run = wide_run
    bundle = load_bundle(run)
    pixels = decode_image(next((data / "blue").iterdir()), bundle.resize, bundle.channels)
    params = {k: jnp.asarray(v) for k, v in bundle.params.items()}
    stats = {k: jnp.asarray(v) for k, v in bundle.stats.items()}
    explanation = explain_image(params, stats, bundle.model, pixels)
    assert pixels.shape == (16, 24, 3) and explanation.cam.shape == (16, 24)


def test_non_square_export_matches_flax(runner, wide_run, tmp_path):
    from cnncli.inference.exported import load_model
    from cnncli.inference.predict import collect_inputs, predict_paths

    data, run = wide_run
    formats = ["stablehlo"]
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401

        formats.append("onnx")
    except ImportError:
        pass
    paths, _ = collect_inputs([str(data)])
    flax = np.stack([p.probs for p in predict_paths(load_bundle(run), paths, batch_size=8)])
    for fmt in formats:
        out = tmp_path / fmt
        result = runner.invoke(app, ["export", str(run), "-f", fmt, "--out", str(out), "--json"])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["passed"] and summary["max_abs_logit_diff"] < 1e-4, fmt
        spec = json.loads((out / "preprocess.json").read_text())
        assert spec["input"]["shape"] == ["batch", 16, 24, 3] and spec["resize"] == "pad"
        model = load_model(out / f"model.{fmt}")
        assert model.resize == Resize(16, 24, "pad", (0, 0, 0))
        probs = np.stack([p.probs for p in predict_paths(model, paths, batch_size=8)])
        assert np.abs(probs - flax).max() < 1e-5, fmt


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--image-size", "0"], "--image-size takes N or H,W"),
        (["--image-size", "3,x"], "--image-size takes N or H,W"),
        (["--resize", "fit"], "data.resize must be one of"),
        (["--pad-color", "300"], "--pad-color takes"),
        (["--folds", "1"], "--folds must be at least 2"),
    ],
)
def test_bad_resize_flags_are_one_line_errors(runner, tree3, args, message):
    result = runner.invoke(app, ["train", str(tree3), *args])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and message in result.output


def test_bad_size_and_folds_flags_do_not_import_jax(tree3):
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom cnncli.cli import app\n"
        f"for flag in (['--image-size', '0'], ['--image-size', '3,x'], ['--folds', '1']):\n"
        f"    r = CliRunner().invoke(app, ['train', {str(tree3)!r}, *flag])\n"
        "    assert r.exit_code == 2, (flag, r.output)\n"
        "print(sorted(m for m in ('jax', 'flax', 'optax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def test_summary_takes_h_w(runner):
    result = runner.invoke(app, ["summary", "--image-size", "32,48", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    layers = summary["layers"]
    assert summary["input"] == [32, 48, 3] and layers[0]["output"] == [32, 48, 32]
    flatten = next(r for r in layers if r["kind"] == "flatten")
    assert flatten["output"] == [4 * 6 * 128]
