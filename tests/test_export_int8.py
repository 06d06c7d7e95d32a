"""`cnn export --format onnx --int8`: quantized, scored against the float model, refused
when it loses too much, and run through `cnn predict --model model.int8.onnx`."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from cnncli.cli import app
from cnncli.inference.exported import ExportedModel, load_model
from tests.conftest import TINY
from tests.imagefactory import make_class_tree

pytestmark = pytest.mark.skipif(
    not (importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx")),
    reason="onnx and onnxruntime not installed (pip install '.[export]')",
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data root, run folder): a tiny batch-norm model that tells three colours apart."""
    from typer.testing import CliRunner

    base = tmp_path_factory.mktemp("int8")
    data = base / "photos"
    make_class_tree(data, {"blue": 10, "green": 10, "red": 10}, size=16)
    run = base / "run"
    args = ["train", str(data), "--out", str(run), *TINY, "--epochs", "6", "--lr", "0.01"]
    # Wider than TINY's dense layer: clear margins, so no image sits on a near-tie that
    # int8 rounding could flip.
    result = CliRunner().invoke(app, [*args, "--dense", "32", "--batch-norm", "--quiet"])
    assert result.exit_code == 0, result.output
    return data, run


@pytest.fixture(scope="module")
def exported(trained):
    """(export folder, --json summary of the int8 export); the float model written too."""
    from typer.testing import CliRunner

    _, run = trained
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(run), "--int8", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert runner.invoke(app, ["export", str(run), "-q"]).exit_code == 0
    return run / "export", summary


def _labels(runner, model, inputs) -> list[str]:
    result = runner.invoke(app, ["predict", *map(str, inputs), "--model", str(model), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return [row["label"] for row in rows]


def test_int8_is_smaller_and_its_figures_are_stored(exported):
    folder, summary = exported
    int8, float_file = folder / "model.int8.onnx", folder / "model.onnx"
    assert summary["model"] == str(int8) and summary["bytes"] == int8.stat().st_size
    assert int8.stat().st_size < float_file.stat().st_size
    stored = json.loads((folder / "model.int8.json").read_text())
    assert stored == summary["int8"]
    assert stored["float_bytes"] == float_file.stat().st_size
    assert stored["int8_bytes"] == int8.stat().st_size
    assert stored["images"] > 0 and stored["calibration_images"] > 0
    assert stored["passed"] and stored["drop_points"] <= stored["max_drop"] == 1.0
    assert 0 <= stored["int8_accuracy"] <= 1 and stored["metric"] == "top-1 accuracy"
    assert stored["quantization"]["format"] == "QDQ"


def test_int8_predictions_match_the_float_model(runner, trained, exported):
    data, _ = trained
    folder, _ = exported
    model = load_model(folder / "model.int8.onnx")
    assert isinstance(model, ExportedModel) and model.classes == ["blue", "green", "red"]
    assert _labels(runner, folder / "model.int8.onnx", [data]) == _labels(
        runner, folder / "model.onnx", [data]
    )


def test_an_export_folder_with_only_the_int8_model_loads_it(exported, tmp_path):
    folder, _ = exported
    only = tmp_path / "only"
    only.mkdir()
    for name in ("model.int8.onnx", "labels.json", "preprocess.json"):
        shutil.copy(folder / name, only / name)
    assert load_model(only).path == only / "model.int8.onnx"


def test_a_drop_over_max_drop_refuses_and_writes_nothing(runner, trained, tmp_path):
    _, run = trained
    out = tmp_path / "out"
    args = ["export", str(run), "--int8", "--max-drop", "-1", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    error = [line for line in result.output.splitlines() if "error" in line]
    assert len(error) == 1 and "int8 export refused, nothing written" in error[0]
    assert "float vs" in error[0] and "--max-drop -1" in error[0]
    assert not out.exists()


def test_int8_needs_onnx_and_the_runs_data(runner, trained, tmp_path):
    _, run = trained
    result = runner.invoke(app, ["export", str(run), "--int8", "-f", "stablehlo"])
    assert result.exit_code == 2 and "--int8 quantizes ONNX models" in result.output
    lone = tmp_path / "lone" / "model"  # a bundle outside its run: no split.csv beside it
    shutil.copytree(run / "model", lone)
    result = runner.invoke(app, ["export", str(lone), "--int8", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "split.csv" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()
