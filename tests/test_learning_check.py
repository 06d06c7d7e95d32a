"""The learning check (issue 24): a run that learns nothing from its images says so after its
first epochs; under the automatic recipe it restarts once with less regularisation, and the
end-of-run line and report flag a model whose predictions fall on one class."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from cnncli.cli import app
from cnncli.inference.heldout import prediction_warning
from cnncli.training.epochs import EpochRow
from cnncli.training.learning_check import LearningCheck, plan_check

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"
TINY = ["--image-size", "16", "--filters", "8,16", "--dense", "16", "--batch-size", "4"]

# The clothing folder of issue 24: train images per class, and what its collapsed run showed.
CLOTHING = {
    "dress": 241,
    "hat": 123,
    "longsleeve": 455,
    "outwear": 184,
    "pants": 468,
    "shirt": 290,
    "shoes": 198,
    "shorts": 202,
    "skirt": 112,
    "t-shirt": 795,
}


def _clothing_check() -> LearningCheck:
    return plan_check(np.array(list(CLOTHING.values())), list(CLOTHING), 48, balanced=False)


def _history(*rows: tuple[float, float]) -> list[EpochRow]:
    """Epoch rows from (train accuracy, train loss) pairs."""
    return [EpochRow(i, loss, acc, 0.0, 0.0, 0.001) for i, (acc, loss) in enumerate(rows, 1)]


def test_check_fires_on_the_collapsed_clothing_run_and_not_on_the_fixed_one():
    check = _clothing_check()
    assert check.epoch == 3 and check.baseline_class == "t-shirt"
    assert math.isclose(check.baseline, 795 / 3068)
    # Epochs 1-3 of the automatic recipe of issue 24 (train acc, loss), then --recipe fixed's.
    collapsed = _history((0.117, 2.411), (0.111, 2.300), (0.153, 2.294))
    seen = check.verdict(collapsed)
    assert "over epochs 1-3 train accuracy was 12.7%" in seen
    assert "'t-shirt' scores 25.9%" in seen and "loss 2.34 is still near the 2.12" in seen
    assert check.verdict(_history((0.36, 1.97), (0.54, 1.40), (0.63, 1.10))) == ""
    # Near the majority rate, but the loss fell: learning (e.g. the class weights' doing).
    assert check.verdict(_history((0.2, 2.2), (0.25, 1.8), (0.3, 1.5))) == ""
    assert check.verdict(collapsed[:2]) == ""  # looked at once, after its epoch
    assert check.verdict([*collapsed, *_history((0.1, 2.3))]) == ""


def test_check_waits_for_enough_steps_and_the_balanced_sampler_lowers_the_baseline():
    counts = np.array([100, 100, 40])
    few = plan_check(counts, ["a", "b", "c"], steps_per_epoch=8, balanced=False)
    assert few.epoch == 8  # 60 steps at 8 an epoch
    balanced = plan_check(counts, ["a", "b", "c"], steps_per_epoch=8, balanced=True)
    assert math.isclose(balanced.baseline, 1 / 3) and math.isclose(balanced.prior_loss, math.log(3))


def test_one_class_predictions_and_majority_level_accuracy_are_flagged_in_plain_words():
    classes = list(CLOTHING)
    # The collapsed model of issue 24 on the test split: 368 of 372 answers 't-shirt'.
    test_true = [15, 12, 72, 38, 42, 26, 73, 30, 12, 52]
    text = prediction_warning([0, 0, 0, 0, 0, 0, 0, 0, 4, 368], test_true, classes, 0.15, "test")
    assert "answers 't-shirt' for 368 of 372 test images" in text
    assert "largest class 'shoes'" in text and "--recipe fixed" in text
    # A model that learnt: nothing to say, even with more answers on one class.
    assert prediction_warning([38, 10, 12], [20, 20, 20], ["a", "b", "c"], 0.68, "val") == ""
    # Accuracy near the largest class's share, answers spread: the softer warning.
    near = prediction_warning([80, 20], [90, 10], ["a", "b"], 0.91, "validation")
    assert "barely above the 90.0%" in near and "little beyond how common" in near


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)


def _one_image_under_every_label(root: Path, classes=("a", "b", "c"), count=20) -> Path:
    """Random labels at their purest: one noise image, copied into every class folder."""
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3))
    for name in classes:
        for i in range(count):
            _save(root / name / f"{i:02d}.png", pixels)
    return root


def _mirrored_classes(root: Path, count: int = 20) -> Path:
    """'left' and 'right': a bright bar in the left or right half, mirror images of each
    other, so a left-right flip turns one class into the other."""
    rng = np.random.default_rng(1)
    for name, cols in (("left", slice(2, 6)), ("right", slice(10, 14))):
        for i in range(count):
            pixels = 60 + rng.integers(-6, 7, (16, 16, 3))
            pixels[:, cols] += 150
            _save(root / name / f"{i:02d}.png", pixels)
    return root


def test_unlearnable_run_says_so_and_flags_its_one_class_model(runner, tmp_path):
    data = _one_image_under_every_label(tmp_path / "data")
    out = tmp_path / "run"
    # 48 train images at batch 4: 12 steps an epoch, the check looks after epoch 5. The
    # split guard would keep the 60 identical files together (no val images at all).
    args = ["train", str(data), "--out", str(out), *TINY, "--recipe", "fixed", "--epochs", "6"]
    args += ["--split-guard", "off"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "not learning: over epochs 3-5 train accuracy was" in text
    assert "likely causes:" in text and "restarting" not in text  # --recipe fixed: no restart
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 6 and summary["not_learning"].startswith("not learning")
    assert summary["learning_check"] == "fired"
    assert not (out / "attempts.json").exists()
    # Every val image is predicted as one class: the end-of-run line and the report say so.
    assert "warning: the model answers" in text and "instead of telling the classes apart" in text
    page = (out / "report.html").read_text()
    assert "<b>Warning:</b> the model answers" in page and "not learning: over epochs" in page


def test_auto_recipe_restarts_once_with_less_regularisation_and_the_restart_learns(
    runner, tmp_path
):
    # The recipe flips 16 px pictures left-right: here that makes the classes one another,
    # so the first attempt cannot learn; the restart turns augmentation off and learns.
    data = _mirrored_classes(tmp_path / "data")
    out = tmp_path / "run"
    args = ["train", str(data), "--out", str(out), "--init", "none", "--batch-size", "4"]
    result = runner.invoke(app, [*args, "--epochs", "9"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "not learning: over epochs 6-8" in text and "restarting once from scratch" in text
    assert "restarting from scratch (attempt 2" in text and "augmentation off" in text
    attempts = json.loads((out / "attempts.json").read_text())["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2]
    first = attempts[0]
    assert first["epochs"] == 8 and first["not_learning"].startswith("not learning")
    assert {c["key"] for c in attempts[1]["changes"]} >= {"augment.ops", "train.label_smoothing"}
    kept = out / "attempts" / "1"
    assert (kept / "metrics.csv").is_file() and (kept / "model" / "model.json").is_file()
    assert "flip" in (kept / "config.toml").read_text()
    config = (out / "config.toml").read_text()
    assert "[augment.ops]\n\n" in config or "flip" not in config
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 9 and summary["best_val_acc"] >= 0.9  # the restart learnt
    assert "not_learning" not in summary and len(summary["attempts"]) == 2
    page = (out / "report.html").read_text()
    assert "attempt 1 was not learning" in page and "augment.ops" in page


def test_check_does_not_fire_on_sample_data(runner, tmp_path):
    # The from-scratch recipe on the bundled shapes (32 px to keep the test fast): the
    # check looks after epoch 8 (8 steps an epoch) and stays quiet.
    out = tmp_path / "run"
    args = ["train", str(SAMPLE_DATA), "--out", str(out), "--init", "none"]
    result = runner.invoke(app, [*args, "--image-size", "32", "--epochs", "8"])
    assert result.exit_code == 0, result.output
    assert "not learning" not in result.output and "warning:" not in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert "not_learning" not in summary and not (out / "attempts.json").exists()
    assert summary["learning_check"] == "passed"
    assert "passed: after its first epochs" in (out / "report.html").read_text()
