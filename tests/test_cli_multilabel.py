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


def _thresholds(run: Path) -> list[float]:
    return json.loads((run / "model" / "model.json").read_text())["thresholds"]


def _json_rows(output: str) -> list[dict]:
    return [json.loads(line) for line in output.strip().splitlines()]


def test_predict_prints_label_sets_in_table_csv_and_json(runner, multi, tmp_path):
    images = [str(multi["data"] / path) for path in sorted(multi["rows"])[:12]]
    model = ["--model", str(multi["run"])]
    as_json = runner.invoke(app, ["predict", *images, *model, "--json"])
    assert as_json.exit_code == 0, as_json.output
    rows = _json_rows(as_json.stdout)
    thresholds = dict(zip(LABELS, _thresholds(multi["run"]), strict=True))
    for row in rows:
        expected = [c for c in LABELS if row["probs"][c] >= thresholds[c]]
        assert sorted(row["labels"]) == expected
        assert row["labels"] == sorted(row["labels"], key=lambda c: -row["probs"][c])
    table = runner.invoke(app, ["predict", *images, *model, "--csv", str(tmp_path / "p.csv")])
    assert table.exit_code == 0
    with (tmp_path / "p.csv").open() as fh:
        from_csv = list(csv.DictReader(fh))
    assert list(from_csv[0]) == ["path", "labels", "p_blue", "p_green", "p_red", "error"]
    for row, line in zip(rows, from_csv, strict=True):
        assert line["labels"] == ";".join(row["labels"])
        assert float(line["p_red"]) == pytest.approx(row["probs"]["red"], abs=1e-6)
        first = row["labels"][0] if row["labels"] else "(none)"
        assert f"{first} {100 * row['probs'][first]:.1f}%" in table.output or first == "(none)"
    every = _json_rows(
        runner.invoke(app, ["predict", *images, *model, "--json", "--threshold", "0"]).stdout
    )
    assert all(sorted(r["labels"]) == LABELS for r in every)
    none = runner.invoke(app, ["predict", *images[:2], *model, "--threshold", "1"])
    assert none.output.count("(none)") == 2


def test_sort_into_copies_into_every_predicted_label(runner, multi, tmp_path):
    images = [str(multi["data"] / path) for path in sorted(multi["rows"])[:8]]
    model = ["--model", str(multi["run"])]
    rows = _json_rows(runner.invoke(app, ["predict", *images, *model, "--json"]).stdout)
    sort = tmp_path / "sorted"
    result = runner.invoke(app, ["predict", *images, *model, "--sort-into", str(sort)])
    assert result.exit_code == 0
    for row in rows:
        name = Path(row["path"]).name
        folders = sorted(p.parent.name for p in sort.rglob(name))
        assert folders == (sorted(row["labels"]) or ["unknown"])


@pytest.mark.parametrize("fmt", ["onnx", "stablehlo"])
def test_export_gives_sigmoid_probs_and_the_same_label_sets(runner, multi, tmp_path, fmt):
    out = tmp_path / "export"
    result = runner.invoke(app, ["export", str(multi["run"]), "--format", fmt, "--out", str(out)])
    assert result.exit_code == 0, result.output
    labels = json.loads((out / "labels.json").read_text())
    assert labels == {
        "classes": LABELS,
        "multi_label": True,
        "thresholds": _thresholds(multi["run"]),
    }
    spec = json.loads((out / "preprocess.json").read_text())
    assert spec["outputs"]["probs"].startswith("sigmoid")
    images = [str(multi["data"] / path) for path in sorted(multi["rows"])[:10]]
    exported_file = out / ("model.onnx" if fmt == "onnx" else "model.stablehlo")
    by_bundle = _json_rows(
        runner.invoke(app, ["predict", *images, "-m", str(multi["run"]), "--json"]).stdout
    )
    by_export = _json_rows(
        runner.invoke(app, ["predict", *images, "-m", str(exported_file), "--json"]).stdout
    )
    assert [r["labels"] for r in by_export] == [r["labels"] for r in by_bundle]
    for a, b in zip(by_bundle, by_export, strict=True):
        assert a["probs"] == pytest.approx(b["probs"], abs=1e-5)
    if fmt == "onnx":  # probs are sigmoid(logits), not a softmax over labels
        import numpy as np
        import onnxruntime as ort

        from cnncli.data.decode import decode_image

        x = np.stack([decode_image(p, 16, 3) for p in images])
        logits, probs = ort.InferenceSession(str(exported_file)).run(None, {"images": x})
        assert np.allclose(probs, 1 / (1 + np.exp(-logits)), atol=1e-6)
        assert not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)


def test_explain_draws_one_grad_cam_per_predicted_label(runner, multi, tmp_path):
    image = multi["data"] / sorted(multi["rows"])[0]
    result = runner.invoke(
        app, ["explain", str(multi["run"]), str(image), "--out", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    predicted = summary["predicted"] or [max(LABELS, key=summary["probabilities"].get)]
    assert sorted(summary["files"]["gradcam"]) == sorted(predicted)
    for name in predicted:
        assert (tmp_path / f"gradcam_{name}.png").is_file()
    one = runner.invoke(
        app,
        [
            "explain",
            str(multi["run"]),
            str(image),
            "--out",
            str(tmp_path / "one"),
            "--class",
            "green",
        ],
    )
    assert one.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "one").glob("gradcam*")) == ["gradcam_green.png"]


def test_augment_keeps_labels_in_a_labels_csv(runner, multi, tmp_path):
    out = tmp_path / "aug"
    result = runner.invoke(
        app,
        ["augment", str(multi["data"]), str(out), "--labels", str(multi["base"] / "labels.csv")]
        + ["--per-image", "1", "--ops", "flip", "-q"],
    )
    assert result.exit_code == 0, result.output
    with (out / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * len(multi["rows"])
    for row in rows:
        source = row["path"].replace("__aug0", "")
        assert tuple(row["labels"].split(";")) == multi["rows"][source]
        assert (out / row["path"]).is_file()
    with (out / "augment_manifest.csv").open() as fh:
        manifest = {r["output"]: r for r in csv.DictReader(fh)}
    assert all(manifest[r["path"]]["class"] == r["labels"] for r in rows)
    refused = runner.invoke(
        app,
        [
            "augment",
            str(multi["data"]),
            str(tmp_path / "t"),
            "--labels",
            str(multi["base"] / "labels.csv"),
        ]
        + ["--target-per-class", "50"],
    )
    assert refused.exit_code == 2 and "--per-image" in refused.output
