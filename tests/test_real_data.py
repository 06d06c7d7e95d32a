"""Real photos and real digits from ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

import json
import subprocess
import sys

from cnncli.cli import app
from tests.conftest import shared_data


def test_train_and_eval_on_ants_and_bees_photos(runner, tmp_path):
    data = shared_data("hymenoptera_data")
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            str(data),
            "--out",
            str(out),
            "--image-size",
            "32",
            "--model",
            "tiny",
            "--epochs",
            "2",
            "--recipe",
            "fixed",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["skipped"] == []
    manifest = (out / "split.csv").read_text()
    assert "# layout: split" in manifest  # train/ + val/ folders were used as given
    assert manifest.count("\nval,") == 153 and manifest.count("\ntrain,") == 245
    ev = runner.invoke(app, ["eval", str(out), "--json"])
    assert ev.exit_code == 0, ev.output
    metrics = json.loads(ev.stdout.strip().splitlines()[-1])
    assert metrics["n"] == 153 and metrics["classes"] == ["ants", "bees"]


def test_fashion_mnist_subset_learns_well_above_chance(runner, tmp_path):
    source = shared_data("fashion_mnist")
    data = tmp_path / "fm"
    subprocess.run(
        [
            sys.executable,
            str(source.parent / "expand_idx.py"),
            str(source),
            str(data),
            "--split",
            "train",
            "--limit-per-class",
            "40",
        ],
        check=True,
        capture_output=True,
    )
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            str(data),
            "--out",
            str(out),
            "--image-size",
            "28",
            "--channels",
            "1",
            "--model",
            "tiny",
            "--epochs",
            "6",
            "--batch-size",
            "32",
            "--lr",
            "0.003",
            "--recipe",
            "fixed",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["best_val_acc"] > 0.5  # 10 classes: chance is 0.1
