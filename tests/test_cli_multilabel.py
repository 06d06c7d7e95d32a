"""Multi-label mode end to end through the real CLI, on small images with 1-3 colour labels."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnncli.cli import app
from tests.conftest import TINY
from tests.imagefactory import make_multilabel_images

LABELS = ["blue", "green", "red"]


@pytest.fixture(scope="module")
def multi(tmp_path_factory) -> dict:
    """One trained multi-label run (labels from a CSV, automatic multi-label mode)."""
    base = tmp_path_factory.mktemp("multi")
    data = base / "data"
    rows = make_multilabel_images(data, 90, size=16, seed=1)
    lines = ["path,labels"] + [f"{path},{';'.join(labels)}" for path, labels in rows]
    (base / "labels.csv").write_text("\n".join(lines) + "\n")
    run = base / "run"
    result = CliRunner().invoke(
        app,
        ["train", str(data), "--labels", str(base / "labels.csv"), "--out", str(run)]
        + [*TINY, "--epochs", "4", "--lr", "0.005", "--class-weights", "auto"]
        + ["--label-smoothing", "0.05", "--json"],
    )
    assert result.exit_code == 0, result.output
    return {
        "base": base,
        "data": data,
        "run": run,
        "rows": dict(rows),
        "output": result.output,
        "summary": json.loads(result.stdout.strip().splitlines()[-1]),
    }


def _manifest(run: Path) -> list[list[str]]:
    with (run / "split.csv").open(encoding="utf-8", newline="") as fh:
        return [row for row in csv.reader(fh) if row and not row[0].startswith("#")][1:]


def test_multi_label_mode_is_chosen_printed_and_recorded(multi):
    output = " ".join(multi["output"].split())
    several = sum(len(labels) > 1 for labels in multi["rows"].values())
    assert f"multi-label mode ({several} of 90 images have more than one label)" in output
    run = multi["run"]
    assert "# multi_label: true" in (run / "split.csv").read_text()
    rows = _manifest(run)
    for split in ("train", "val"):
        present = {name for r in rows if r[0] == split for name in r[2].split(";")}
        assert present == set(LABELS), split
    assert {r[3]: tuple(r[2].split(";")) for r in rows} == multi["rows"]
    with (run / "metrics.csv").open() as fh:
        history = list(csv.DictReader(fh))
    assert list(history[0]) == [
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "val_map",
        "lr",
    ]
    maps = [float(r["val_map"]) for r in history]
    summary = multi["summary"]
    assert summary["multi_label"] and summary["best_epoch"] == 1 + maps.index(max(maps))
    assert summary["best_val_map"] == max(maps) and max(maps) > 0.7
    meta = json.loads((run / "model" / "model.json").read_text())
    assert meta["multi_label"] is True and meta["epoch"] == summary["best_epoch"]
    assert len(meta["thresholds"]) == 3 and all(0 < t < 1 for t in meta["thresholds"])


def test_eval_on_the_val_split_repeats_training_val_map(runner, multi, tmp_path):
    result = runner.invoke(app, ["eval", str(multi["run"]), "--json", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["multi_label"] and metrics["classes"] == LABELS
    assert metrics["map"] == pytest.approx(multi["summary"]["best_val_map"], abs=1e-6)
    assert [r["name"] for r in metrics["per_label"]] == LABELS
    meta = json.loads((multi["run"] / "model" / "model.json").read_text())
    assert metrics["thresholds"] == meta["thresholds"]
    for key in ("subset_accuracy", "hamming_loss", "micro", "macro"):
        assert key in metrics
    with (tmp_path / "misclassified.csv").open() as fh:
        wrong = list(csv.DictReader(fh))
    assert all(r["true"] != r["predicted"] for r in wrong)
    assert int(round(metrics["subset_accuracy"] * metrics["n"])) == metrics["n"] - len(wrong)


def test_resume_continues_a_multi_label_run(runner, multi, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(multi["run"], run)
    config = run / "config.toml"
    config.write_text(config.read_text().replace("epochs = 4", "epochs = 5"))
    result = runner.invoke(app, ["train", "--resume", str(run), "--json"])
    assert result.exit_code == 0, result.output
    with (run / "metrics.csv").open() as fh:
        history = list(csv.DictReader(fh))
    with (multi["run"] / "metrics.csv").open() as fh:
        assert history[:4] == list(csv.DictReader(fh))
    assert len(history) == 5 and history[4]["val_map"]
    again = runner.invoke(app, ["train", "--resume", str(run), "--json"])
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert summary["already_finished"] and summary["best_val_map"] == max(
        float(r["val_map"]) for r in history
    )
