"""`cnn train DIR --folds K` end to end: K runs, their spread, and oof.csv."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np

from cnncli.cli import app
from cnncli.data.decode import decode_image
from tests.conftest import TINY
from tests.imagefactory import make_class_tree


def test_folds_train_k_models_and_write_each_image_once_to_oof(runner, tmp_path, monkeypatch):
    from cnncli.data import cache

    decoded = []

    def counting_decode(path, size, channels):
        decoded.append(path)
        return decode_image(path, size, channels)

    # Under 64 images the decode runs in this process, so the count sees every file.
    monkeypatch.setattr(cache, "decode_image", counting_decode)
    data = tmp_path / "photos"
    written = make_class_tree(data, {"blue": 6, "green": 6, "red": 5}, size=16)
    out = tmp_path / "cv"
    args = ["train", str(data), "--folds", "3", "--out", str(out), *TINY, "--epochs", "1"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    # Three folds, one decode of each image (the folds' caches are cut from it).
    assert len(decoded) == len(set(decoded)) == 17
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert "3-fold cross-validation (17 images)" in result.output
    # One complete run per fold, without its decode cache.
    for fold in (1, 2, 3):
        assert (out / f"fold{fold}" / "model" / "model.json").is_file()
        assert not (out / f"fold{fold}" / "cache").exists()
    rows = list(csv.DictReader((out / "oof.csv").open()))
    assert list(rows[0]) == ["path", "label", "fold", "p_blue", "p_green", "p_red"]
    expected = sorted(p.relative_to(data).as_posix() for ps in written.values() for p in ps)
    assert sorted(r["path"] for r in rows) == expected  # every image exactly once
    for r in rows:
        assert r["label"] == r["path"].split("/")[0]
        probs = [float(r[f"p_{c}"]) for c in ("blue", "green", "red")]
        assert abs(sum(probs) - 1) < 1e-5 and min(probs) >= 0
    # The fold column is the fold that validated the image.
    for fold in (1, 2, 3):
        split = (out / f"fold{fold}" / "split.csv").read_text().splitlines()
        val = {line.split(",")[3] for line in split if line.startswith("val,")}
        assert {r["path"] for r in rows if r["fold"] == str(fold)} == val
    # Per-fold accuracy, and its mean, std, min and max, in folds.csv and cv.json.
    folds = list(csv.DictReader((out / "folds.csv").open()))
    accs = [float(f["val_acc"]) for f in folds]
    assert [int(f["fold"]) for f in folds] == [1, 2, 3]
    assert sum(int(f["val_images"]) for f in folds) == 17
    cv = json.loads((out / "cv.json").read_text())
    assert cv == summary and cv["k"] == 3
    assert cv["val_acc"]["mean"] == np.mean(accs) and cv["val_acc"]["max"] == max(accs)
    assert abs(cv["val_acc"]["std"] - np.std(accs, ddof=1)) < 1e-12
    # Out-of-fold accuracy from oof.csv equals the folds' val accuracies pooled.
    hits = sum(
        max(("blue", "green", "red"), key=lambda c: float(r[f"p_{c}"])) == r["label"] for r in rows
    )
    assert abs(cv["oof_accuracy"] - hits / 17) < 1e-12
    pooled = sum(a * int(f["val_images"]) for a, f in zip(accs, folds, strict=True)) / 17
    assert abs(cv["oof_accuracy"] - pooled) < 1e-9

    # The K-fold folder is not one model: predict names a fold to use instead.
    image = str(written["red"][0])
    result = runner.invoke(app, ["predict", image, "--model", str(out)])
    assert result.exit_code == 2 and "pass one of them, e.g." in result.output
    assert len(result.output.strip().splitlines()) == 1

    # Interrupted before fold 3 trained: --resume RUN trains it and rewrites the results.
    for name in ("checkpoints", "model"):
        shutil.rmtree(out / "fold3" / name)
    for name in ("metrics.csv", "cv.json", "oof.csv", "folds.csv"):
        (out / "fold3" / name if name == "metrics.csv" else out / name).unlink()
    decoded.clear()
    result = runner.invoke(app, ["train", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    assert len(decoded) == 17
    assert "fold 1 had finished (1 epochs)" in result.output
    again = list(csv.DictReader((out / "oof.csv").open()))
    assert [r for r in again if r["fold"] != "3"] == [r for r in rows if r["fold"] != "3"]
    assert sorted(r["path"] for r in again) == expected
    assert (out / "fold3" / "model" / "model.json").is_file()

    # --init: every fold starts from the given run's weights (recorded in its run.json).
    warm = tmp_path / "warm"
    args = ["train", str(data), "--folds", "2", "--init", str(out / "fold1"), "--out", str(warm)]
    result = runner.invoke(app, [*args, "--epochs", "1", "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    for fold in (1, 2):
        info = json.loads((warm / f"fold{fold}" / "run.json").read_text())
        assert info["init"]["kind"] == "run" and info["init"]["given"] == str(out / "fold1")
    assert len(list(csv.DictReader((warm / "oof.csv").open()))) == 17


def test_folds_refuse_resume_and_too_few_images(runner, tree3, tmp_path):
    result = runner.invoke(app, ["train", "--resume", str(tmp_path), "--folds", "3"])
    assert result.exit_code == 2 and "--folds runs K new trainings" in result.output
    result = runner.invoke(
        app, ["train", str(tree3), "--folds", "13", "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "needs at least 13 images of every class" in result.output
