"""`cnn summary`: the layer table without training agrees with the real network."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnncli.cli import app
from cnncli.config import ConvBlock, ModelConfig, RunConfig, save_toml
from cnncli.model.shapes import param_shapes


def _summary(runner, *args) -> dict:
    result = runner.invoke(app, ["summary", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# (summary flags, the model they describe); "TOML" stands for a config file written by the test
CASES = {
    "stride2-same-nopool": (
        ["--image-size", "17", "--filters", "4,6", "--stride", "2", "--pool", "0", "--dense", "8"],
        ModelConfig(
            conv=[ConvBlock(4, stride=2, pool=0), ConvBlock(6, stride=2, pool=0)], dense=[8]
        ),
    ),
    "valid-k5": (
        ["--image-size", "20", "--filters", "4,4", "--kernel", "5", "--padding", "valid"],
        ModelConfig(conv=[ConvBlock(4, kernel=5, padding="valid")] * 2),
    ),
    "pad2-s3-gap": (
        [
            "--image-size",
            "19",
            "--filters",
            "4",
            "--stride",
            "3",
            "--padding",
            "2",
            "--global-pool",
            "--dense",
            "",
        ],
        ModelConfig(conv=[ConvBlock(4, stride=3, padding=2)], global_pool=True, dense=[]),
    ),
    "resnet": (
        ["--image-size", "16", "--model", "resnet", "--filters", "4,8"],
        ModelConfig(
            conv=[ConvBlock(4, batch_norm=True), ConvBlock(8, batch_norm=True, residual=True)],
            global_pool=True,
            dense=[],
            dropout=0.0,
        ),
    ),
    "toml-poolstride": (
        ["TOML", "--image-size", "23"],
        ModelConfig(
            conv=[ConvBlock(4, kernel=5, padding=1, pool=3, pool_stride=2), ConvBlock(6, stride=2)],
            dense=[8],
        ),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_summary_shapes_equal_the_network(runner, tmp_path, case):
    import jax
    import jax.numpy as jnp

    from cnncli.model import network
    from cnncli.model.layers import max_pool

    args, model = CASES[case]
    if args[0] == "TOML":
        cfg = RunConfig()
        cfg.model = model
        save_toml(cfg, tmp_path / "c.toml")
        args = [tmp_path / "c.toml", *args[1:]]
    table = _summary(runner, *args, "--num-classes", "5")
    size, _, channels = table["input"]
    rows = {r["name"]: r for r in table["layers"]}
    # Shapes only: jax.eval_shape traces the real forward pass without compiling or running it.
    arrays = {
        name: jax.ShapeDtypeStruct(shape, jnp.float32)
        for name, (shape, _) in param_shapes(model, size, channels, 5).items()
    }
    params = {k: v for k, v in arrays.items() if not k.endswith(("/mean", "/var"))}
    stats = {k: v for k, v in arrays.items() if k.endswith(("/mean", "/var"))}
    x = jax.ShapeDtypeStruct((2, size, size, channels), jnp.float32)

    def run(params, stats, x):
        logits, _, features = network.forward(params, stats, model, x, return_features=True)
        pooled = [
            max_pool(f, b.pool, b.pool_stride or b.pool) if b.pool > 1 else f
            for f, b in zip(features, model.conv, strict=True)
        ]
        return logits, features, pooled

    logits, features, pooled = jax.eval_shape(run, params, stats, x)
    assert logits.shape == (2, 5) and table["layers"][-1]["output"] == [5]
    first_convs = [
        r for r in table["layers"] if r["name"].startswith("conv") and r["name"][4:].isdigit()
    ]
    assert len(features) == len(model.conv) == len(first_convs)
    for i, (block, feature) in enumerate(zip(model.conv, features, strict=True), start=1):
        assert tuple(rows[f"conv{i}"]["output"]) == feature.shape[1:]
        assert tuple(rows.get(f"relu{i}b", rows[f"relu{i}"])["output"]) == feature.shape[1:]
        if block.pool > 1:
            assert tuple(rows[f"pool{i}"]["output"]) == pooled[i - 1].shape[1:]
    # batch-norm running statistics count as parameters in the table
    assert table["total_params"] == sum(int(np.prod(v.shape)) for v in arrays.values())
    # the input column: the image first, then each layer reads the previous one's output
    layers = table["layers"]
    assert layers[0]["input"] == table["input"]
    for before, row in zip(layers, layers[1:], strict=False):
        if not row["name"].startswith("proj"):
            assert row["input"] == before["output"]


def test_formula_is_filled_in_and_table_has_input_column(runner):
    args = [
        "summary",
        "--image-size",
        "32",
        "--filters",
        "8",
        "--kernel",
        "5",
        "--padding",
        "valid",
    ]
    result = runner.invoke(app, args, env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    conv1 = next(line for line in result.output.splitlines() if "conv1" in line)
    cells = [c.strip() for c in conv1.split("│") if c.strip()]
    assert cells == ["conv1", "32x32x3", "28x28x8", "608", "470,400", "(32 - 5 + 2*0) / 1 + 1 = 28"]
    assert "input" in result.output and "total" in result.output and "10 classes" in result.output


def test_default_config_needs_no_argument(runner):
    table = _summary(runner)
    assert table["input"] == [64, 64, 3] and table["num_classes"] == 10
    assert [r["name"] for r in table["layers"] if r["kind"] == "conv"] == [
        "conv1",
        "conv2",
        "conv3",
    ]
    assert table["total_params"] == sum(r["params"] for r in table["layers"])


def test_too_small_image_exits_2_naming_the_layer(runner):
    result = runner.invoke(app, ["summary", "--image-size", "4"])
    assert result.exit_code == 2
    line = result.output.strip()
    assert len(line.splitlines()) == 1 and "layer pool3" in line and "--image-size" in line
    result = runner.invoke(
        app, ["summary", "--image-size", "8", "--kernel", "7", "--padding", "valid"]
    )
    assert result.exit_code == 2 and "layer conv2" in result.output


def _fake_run(root: Path, classes: list[str]) -> Path:
    """A run folder with config.toml and a model/ bundle of zero weights (no training)."""
    from cnncli.inference.bundle import save_bundle

    cfg = RunConfig()
    cfg.data.image_size, cfg.data.channels = 24, 1
    cfg.model = ModelConfig(conv=[ConvBlock(4), ConvBlock(8, stride=2)], dense=[6])
    root.mkdir(parents=True)
    save_toml(cfg, root / "config.toml")
    arrays = {
        name: np.zeros(shape, np.float32)
        for name, (shape, _) in param_shapes(cfg.model, 24, 1, len(classes)).items()
    }
    save_bundle(root / "model", cfg, classes, arrays, {})
    return root


def test_run_and_model_folders_give_their_config_and_classes(runner, tmp_path):
    run = _fake_run(tmp_path / "run", ["a", "b", "c"])
    for source in (run, run / "model"):
        table = _summary(runner, source)
        assert table["input"] == [24, 24, 1] and table["num_classes"] == 3
        assert table["layers"][-1]["output"] == [3]
        assert [r["output"][-1] for r in table["layers"] if r["kind"] == "conv"] == [4, 8]
    tried = _summary(runner, run, "--image-size", "48", "--num-classes", "7")
    assert tried["input"] == [48, 48, 1] and tried["layers"][-1]["output"] == [7]


def test_bad_inputs_are_one_line_exit_2(runner, tmp_path):
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[model\n")
    cases = [
        ([str(tmp_path / "nope")], "no such"),
        ([str(tmp_path)], "not a config"),
        ([str(bad_toml)], "not valid TOML"),
        (["--filters", "8,x"], "--filters"),
        (["--num-classes", "1"], "--num-classes"),
        (["--padding", "wide"], "padding"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["summary", *args])
        assert result.exit_code == 2, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1 and message in result.output, args
        assert "Traceback" not in result.output


def test_summary_never_imports_jax(tmp_path):
    run = _fake_run(tmp_path / "run", ["a", "b"])
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom cnncli.cli import app\n"
        f"for args in (['summary'], ['summary', {str(run)!r}, '--json'], ['summary', {str(run / 'model')!r}]):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "print(sorted(m for m in ('jax', 'flax', 'optax', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
