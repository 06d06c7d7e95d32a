"""cnncli.api, the Python API under the CLI: train -> load -> predict / evaluate / export,
augment and doctor on small real images; and the README's notebook example, run as written
on a small folder."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnncli import api
from cnncli.config import ConfigError
from tests.imagefactory import make_class_tree

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"image_size": 16, "batch_size": 8, "overrides": {"model.dense": [16]}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One API run (fixed recipe, tiny network) and the epochs its callback saw."""
    root = tmp_path_factory.mktemp("api") / "photos"
    make_class_tree(root, {"blue": 12, "green": 12, "red": 12}, size=16)
    seen: list[dict] = []
    run = api.train(
        root,
        out=root.parent / "run",
        recipe="fixed",
        model="tiny",
        epochs=3,
        on_epoch=seen.append,
        **SMALL,
    )
    return root, run, seen


def test_train_returns_the_run_and_reports_each_epoch(trained):
    root, run, seen = trained
    assert run.run_dir == root.parent / "run" and (run.model_dir / "model.json").is_file()
    assert run.epochs == 3 and [row["epoch"] for row in seen] == [1, 2, 3]
    assert all(0.0 <= row["val_acc"] <= 1.0 and row["seconds"] > 0 for row in seen)
    assert run.best_val_acc == max(row["val_acc"] for row in seen) > 0.5
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["best_val_acc"] == run.best_val_acc and summary["epochs"] == 3
    config = (run.run_dir / "config.toml").read_text()
    assert "epochs = 3" in config and "batch_size = 8" in config


def test_predict_files_and_arrays_alike_and_evaluate(trained):
    root, run, _ = trained
    model = run.load()
    assert model.classes == ["blue", "green", "red"]
    file = root / "red" / "000.png"
    by_file, by_array = model.predict([file, np.asarray(Image.open(file))], top_k=2)
    assert by_file.source == str(file) and by_array.source == "array[1]"
    assert by_file.label == by_array.label == "red"
    assert by_file.probability == pytest.approx(by_array.probability, abs=1e-6)
    assert [name for name, _ in by_file.top][0] == "red" and len(by_file.top) == 2
    broken = root.parent / "broken.jpg"
    broken.write_bytes(b"not an image")
    assert model.predict(broken)[0].error
    result = model.evaluate(root)
    assert result.images == 36 and result.accuracy > 0.9
    assert set(result.per_class) == {"blue", "green", "red"}
    assert sum(map(sum, result.confusion)) == 36
    held_out = model.evaluate()  # the run's own val split
    assert 0 < held_out.images < 36


def test_export_augment_and_doctor(trained, tmp_path):
    root, run, _ = trained
    exported = run.load().export("onnx", tmp_path / "onnx")
    assert exported.verification.passed and (tmp_path / "onnx" / "model.onnx").is_file()
    onnx_model = api.load(tmp_path / "onnx" / "model.onnx")
    assert onnx_model.predict(root / "blue" / "001.png")[0].label == "blue"
    before = sorted(p.read_bytes() for p in root.rglob("*.*"))
    result = api.augment(root, tmp_path / "more", "flip,rotate=10", per_image=2, seed=1)
    assert sum(1 for row in result.rows if row.kind == "augmented") == 72
    assert sorted(p.read_bytes() for p in root.rglob("*.*")) == before  # never modified
    report = api.doctor(root, near=False)
    assert not report.duplicates


def test_options_map_to_config_keys_and_unknown_ones_are_errors(tmp_path):
    assert api.config_key("epochs") == "train.epochs"
    assert api.config_key("image_size") == "data.image_size"
    assert api.config_key("augment.preset") == "augment.preset"
    with pytest.raises(ConfigError, match="unknown option 'epoch'"):
        api.train(tmp_path, epoch=3)
    with pytest.raises(ConfigError, match="recipe must be"):
        api.train(tmp_path, recipe="best")


def test_readme_notebook_example_runs_as_written(tmp_path):
    """The README's "Python API" block, run in a fresh interpreter on a small folder of
    photos in place of sample_data/ (no edits besides that path)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Python API") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 8, code
    root = tmp_path / "sample_data"
    # 40 px: under the photo size, so the from-scratch recipe runs (the pretrained path of
    # api.train is the CLI's, tested in tests/test_cli_lite.py) and the test stays short.
    make_class_tree(root, {"circle": 10, "square": 10}, size=40)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip(), "the example prints its results"
