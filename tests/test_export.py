"""`cnn export` (ONNX, StableHLO) and prediction through the exported files."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnncli.cli import app
from cnncli.config import ConvBlock, ModelConfig
from cnncli.inference.bundle import Bundle, load_bundle
from cnncli.inference.exported import ExportError, load_model
from cnncli.model.shapes import param_shapes
from tests.conftest import TINY
from tests.imagefactory import make_class_tree

HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None
HAVE_ONNX = importlib.util.find_spec("onnx") is not None
needs_onnx = pytest.mark.skipif(
    not (HAVE_ORT and HAVE_ONNX),
    reason="onnx and onnxruntime not installed (pip install '.[export]')",
)
README = Path(__file__).resolve().parents[1] / "README.md"
# StableHLO needs nothing beyond jax; ONNX parts run where the export extra is installed.
FORMATS_HERE = ["stablehlo"] + (["onnx"] if HAVE_ORT and HAVE_ONNX else [])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data root, run folder): a tiny model with batch norm and dropout, one epoch."""
    from typer.testing import CliRunner

    base = tmp_path_factory.mktemp("export")
    data = base / "photos"
    make_class_tree(data, {"blue": 8, "green": 8, "red": 8}, size=16)
    run = base / "run"
    args = ["train", str(data), "--out", str(run), *TINY, "--epochs", "1", "--batch-norm"]
    result = CliRunner().invoke(app, [*args, "--dropout", "0.5", "--quiet"])
    assert result.exit_code == 0, result.output
    return data, run


@pytest.fixture(scope="module")
def exported(trained):
    """The run's export folder holding both formats, written through the CLI."""
    from typer.testing import CliRunner

    _, run = trained
    summaries = {}
    for fmt in FORMATS_HERE:
        result = CliRunner().invoke(app, ["export", str(run), "--format", fmt, "--json"])
        assert result.exit_code == 0, result.output
        summaries[fmt] = json.loads(result.stdout.strip().splitlines()[-1])
    return run / "export", summaries


def _rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _predict(runner, model: Path, inputs: list[Path], *extra: str) -> list[dict]:
    result = runner.invoke(
        app, ["predict", *map(str, inputs), "--model", str(model), "--json", *extra]
    )
    assert result.exit_code == 0, result.output
    return _rows(result.stdout)


def test_stablehlo_round_trip(runner, trained, exported):
    data, run = trained
    folder, summaries = exported
    s = summaries["stablehlo"]
    assert s["passed"] and s["max_abs_logit_diff"] < 1e-4 and s["check_real_images"] > 0
    assert json.loads((folder / "labels.json").read_text()) == ["blue", "green", "red"]
    spec = json.loads((folder / "preprocess.json").read_text())
    assert spec["image_size"] == 16 and spec["input"]["dtype"] == "uint8"
    flax = _predict(runner, run, [data])
    for model in (folder / "model.stablehlo", folder):  # the file, or the folder holding it
        if model == folder and HAVE_ORT:
            continue  # the folder would pick model.onnx; covered by the ONNX test
        shlo = _predict(runner, model, [data])
        assert [r["label"] for r in shlo] == [r["label"] for r in flax]
        assert np.allclose(
            [r["confidence"] for r in shlo], [r["confidence"] for r in flax], atol=1e-5
        )


@needs_onnx
def test_onnx_round_trip(runner, trained, exported):
    data, run = trained
    folder, summaries = exported
    s = summaries["onnx"]
    assert s["passed"] and s["max_abs_logit_diff"] < 1e-4 and s["argmax_agree"] == s["check_images"]
    flax = _predict(runner, run, [data], "--top-k", "3", "--tta")
    for model in (folder / "model.onnx", folder):
        onnx_rows = _predict(runner, model, [data], "--top-k", "3", "--tta")
        assert [r["label"] for r in onnx_rows] == [r["label"] for r in flax]
        for a, b in zip(onnx_rows, flax, strict=True):
            assert np.allclose(
                [t["p"] for t in a["top_k"]], [t["p"] for t in b["top_k"]], atol=1e-5
            )


def test_onnx_stablehlo_and_flax_predictions_agree(trained, exported):
    from cnncli.inference.predict import collect_inputs, predict_paths

    data, run = trained
    folder, _ = exported
    paths, _ = collect_inputs([str(data)])
    probs = {}
    models = {"flax": load_bundle(run)}
    models.update({fmt: load_model(folder / f"model.{fmt}") for fmt in FORMATS_HERE})
    for name, model in models.items():
        preds = predict_paths(model, paths, batch_size=5)  # 24 images: a padded last batch
        probs[name] = np.stack([p.probs for p in preds])
    for name in FORMATS_HERE:
        assert np.abs(probs[name] - probs["flax"]).max() < 1e-5, name
        assert (probs[name].argmax(1) == probs["flax"].argmax(1)).all(), name


def test_batch_norm_and_dropout_export_in_inference_mode(trained, exported):
    from cnncli.inference.export_verify import flax_logits

    _, run = trained
    folder, _ = exported
    bundle = load_bundle(run)
    assert bundle.model.dropout == 0.5 and all(b.batch_norm for b in bundle.model.conv)
    if "onnx" in FORMATS_HERE:
        import onnx

        graph = onnx.load(str(folder / "model.onnx")).graph
        ops = [n.op_type for n in graph.node]
        assert "Dropout" not in ops and ops.count("BatchNormalization") == 2
        for node in graph.node:
            assert all(a.name != "training_mode" or a.i == 0 for a in node.attribute)
    images = np.random.default_rng(1).integers(0, 256, (7, 16, 16, 3), dtype=np.uint8)
    reference = flax_logits(bundle, images)
    for fmt in FORMATS_HERE:
        model = load_model(folder / f"model.{fmt}")
        for n in (1, 3, 7):  # any batch size; the same answer every time (no dropout)
            logits = model.run(images[:n])[0]
            assert np.abs(logits - reference[:n]).max() < 1e-4
            assert np.array_equal(logits, model.run(images[:n])[0])


def _random_bundle(cfg: ModelConfig, size: int, channels: int, classes: int = 4) -> Bundle:
    rng = np.random.default_rng(0)
    params, stats = {}, {}
    for name, (shape, kind) in param_shapes(cfg, size, channels, classes).items():
        value = rng.normal(0, 0.3, shape).astype(np.float32)
        if name.endswith("/var"):
            value = np.abs(value) + 0.5
        (stats if kind == "stat" else params)[name] = value
    names = [f"c{i}" for i in range(classes)]
    return Bundle(Path("."), cfg, names, size, channels, params, stats, {})


VARIANTS = {
    "residual+gap": (
        ModelConfig(
            conv=[
                ConvBlock(6, batch_norm=True),
                ConvBlock(8, stride=2, residual=True, batch_norm=True, pool=0),
            ],
            global_pool=True,
            dense=[],
        ),
        12,
        3,
    ),
    "gray+odd-pool+padding": (
        ModelConfig(
            conv=[
                ConvBlock(5, kernel=5, padding=1, pool=3, pool_stride=2),
                ConvBlock(7, padding="valid", stride=2, pool=0),
            ],
            dense=[9, 6],
            dropout=0.2,
        ),
        15,
        1,
    ),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_network_variants_match(variant):
    from cnncli.inference.export_onnx import onnx_bytes
    from cnncli.inference.export_stablehlo import stablehlo_bytes
    from cnncli.inference.export_verify import flax_logits
    from cnncli.inference.exported import open_onnx, open_stablehlo

    cfg, size, channels = VARIANTS[variant]
    bundle = _random_bundle(cfg, size, channels)
    images = np.random.default_rng(2).integers(0, 256, (5, size, size, channels), dtype=np.uint8)
    reference = flax_logits(bundle, images)
    shape = (size, size, channels)
    runs = [open_stablehlo(stablehlo_bytes(bundle), "m", shape, 4)]
    if "onnx" in FORMATS_HERE:
        runs.append(open_onnx(onnx_bytes(bundle), "m", shape, 4))
    for run in runs:
        logits, probs = run(images)
        assert np.abs(logits - reference).max() < 1e-4
        assert np.allclose(probs.sum(1), 1.0, atol=1e-5)


def test_failed_check_writes_nothing(runner, trained, tmp_path, monkeypatch):
    import cnncli.inference.export_verify

    _, run = trained
    real = cnncli.inference.export_verify.flax_logits
    monkeypatch.setattr(
        cnncli.inference.export_verify, "flax_logits", lambda b, x: real(b, x) + 1e-3
    )
    out = tmp_path / "out"
    result = runner.invoke(app, ["export", str(run), "--out", str(out), "-f", "stablehlo"])
    assert result.exit_code == 1
    assert "failed verification" in result.output and "nothing written" in result.output
    assert not out.exists() or not any(out.iterdir())


def _fake_export(folder: Path, name: str) -> Path:
    folder.mkdir()
    (folder / "labels.json").write_text('["a", "b"]')
    (folder / "preprocess.json").write_text('{"image_size": 16, "channels": 3}')
    (folder / name).write_bytes(b"not a model")
    return folder / name


def test_onnx_without_onnxruntime_is_one_line(runner, tmp_path, monkeypatch):
    model = _fake_export(tmp_path / "exp", "model.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ExportError, match=re.escape("pip install 'cnn[export]'")):
        load_model(model)
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    result = runner.invoke(app, ["predict", str(tmp_path / "x.png"), "--model", str(model)])
    assert result.exit_code == 2
    assert "onnxruntime" in result.output and "Traceback" not in result.output


def test_export_onnx_without_onnx_is_one_line(runner, trained, tmp_path, monkeypatch):
    _, run = trained
    monkeypatch.setitem(sys.modules, "onnx", None)
    result = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "cnn[export]" in result.output and not (tmp_path / "o" / "model.onnx").exists()


def test_bad_exported_files_are_one_line_errors(runner, tmp_path):
    bad = _fake_export(tmp_path / "shlo", "model.stablehlo")
    with pytest.raises(ExportError, match="not a jax.export artefact"):
        load_model(bad)
    (tmp_path / "shlo" / "labels.json").unlink()
    with pytest.raises(ExportError, match="labels.json: missing"):
        load_model(tmp_path / "shlo")
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    result = runner.invoke(app, ["predict", str(tmp_path / "x.png"), "--model", str(bad)])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    result = runner.invoke(app, ["export", str(tmp_path), "--format", "tflite"])
    assert result.exit_code == 2 and "--format must be onnx or stablehlo" in result.output


@needs_onnx
def test_onnx_prediction_imports_no_jax(trained, exported):
    data, _ = trained
    folder, _ = exported
    code = (
        "import sys\nfrom cnncli.cli import main\nsys.argv = ['cnn', 'predict', sys.argv[1], "
        "'--model', sys.argv[2], '-q']\ntry:\n    main()\nexcept SystemExit as e:\n    assert not e.code\n"
        "print(sorted(m for m in ('jax', 'flax', 'optax', 'orbax') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(data / "red"), str(folder / "model.onnx")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


@needs_onnx
def test_readme_snippet_matches_cnn_predict(runner, trained, exported, tmp_path):
    """The README's pure-onnxruntime snippet gives cnn predict's label and probability."""
    _, run = trained
    folder, _ = exported
    text = README.read_text(encoding="utf-8")
    snippet = re.search(r"<!-- onnx-snippet -->\s*```python\n(.*?)```", text, re.S).group(1)
    assert len(snippet.strip().splitlines()) <= 12
    (tmp_path / "runs" / "train").mkdir(parents=True)
    (tmp_path / "runs" / "train" / "export").symlink_to(folder.resolve())
    rng = np.random.default_rng(3)
    photo = np.clip(np.array([200, 40, 30]) + rng.integers(-30, 30, (48, 64, 3)), 0, 255)
    for name in ("photo.jpg", "photo.png"):  # a JPEG (draft mode) and a PNG, both cropped
        Image.fromarray(photo.astype(np.uint8)).save(tmp_path / name)
        code = snippet.replace('"photo.jpg"', f'"{name}"')
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
        )
        label, p = out.stdout.split()
        (row,) = _predict(runner, run, [tmp_path / name])
        assert label == row["label"] and abs(float(p) - row["confidence"]) < 1e-5


def test_export_refuses_a_folder_holding_another_models_file(runner, trained, tmp_path):
    _, run = trained
    other = _fake_export(tmp_path / "out", "model.onnx")  # labels a, b: another model's
    result = runner.invoke(app, ["export", str(run), "--out", str(other.parent), "-f", "stablehlo"])
    assert result.exit_code == 2 and "labels.json differs" in result.output
    assert not (other.parent / "model.stablehlo").exists()
    assert json.loads((other.parent / "labels.json").read_text()) == ["a", "b"]
