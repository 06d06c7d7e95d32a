"""`cnn train DIR` with the automatic recipe: chosen from the data, printed, recorded, and
overridden by whatever the user sets (flags, --config); `--recipe fixed` keeps the old defaults."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from cnncli.cli import app
from cnncli.config import RunConfig, load_toml

FAST = ["--epochs", "1", "--batch-size", "8"]  # explicit, so the recipe's 40 epochs never run


def _gray_tree(root: Path, per_class: int = 8, size: int = 16) -> Path:
    """Two grayscale classes (dark, bright) of size x size 8-bit PNGs."""
    rng = np.random.default_rng(0)
    for name, level in (("dark", 60), ("bright", 190)):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(level + rng.integers(-25, 26, (size, size)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8), "L").save(root / name / f"{i}.png")
    return root


def _train(runner, *args):
    return runner.invoke(app, ["train", *map(str, args)])


def test_no_flags_uses_the_recipe_prints_it_and_records_it(runner, tmp_path):
    data = _gray_tree(tmp_path / "gray")
    out = tmp_path / "run"
    result = _train(runner, data, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "recipe (chosen from the data" in text and "input size" in text and "16x16" in text
    cfg = load_toml(out / "config.toml")
    assert cfg.data.image_size == 16 and cfg.data.channels == 1  # 16x16 gray sources
    assert [b.filters for b in cfg.model.conv] == [32, 64] and cfg.model.conv[0].batch_norm
    assert cfg.augment.ops == {"flip": 0.5}  # 16 px centred objects: flips only
    assert cfg.model.dropout == 0.5 and cfg.train.optimizer == "adamw"
    assert cfg.train.patience > 0
    assert (cfg.train.epochs, cfg.train.batch_size) == (1, 8)  # the flags won
    recipe = json.loads((out / "recipe.json").read_text())
    reasons = {r["choice"]: r["reason"] for r in recipe["rows"]}
    assert "never upscaled" in reasons["input size"] and "grayscale" in reasons["channels"]
    assert recipe["stats"]["grayscale"] is True and recipe["stats"]["per_class"] == 6
    assert {"train.epochs", "train.batch_size"} <= set(recipe["explicit"])
    epochs_row = next(r for r in recipe["rows"] if r["choice"] == "epochs")
    assert epochs_row["value"] == "1" and epochs_row["reason"].startswith("set by you")
    # A resume reads the saved config: nothing is chosen again.
    resumed = _train(runner, "--resume", out)
    assert resumed.exit_code == 0 and "already finished" in resumed.output
    assert load_toml(out / "config.toml") == cfg
    again = _train(runner, "--resume", out, "--recipe", "fixed")
    assert again.exit_code == 2 and "--resume keeps the run's saved config" in again.output


def test_explicit_flags_and_config_keys_win_over_the_recipe(runner, tmp_path):
    data = _gray_tree(tmp_path / "gray")
    partial = tmp_path / "partial.toml"
    partial.write_text('[train]\nlr = 0.0123\nlabel_smoothing = 0.0\n[augment]\npreset = "light"\n')
    out = tmp_path / "run"
    flags = ["--channels", "3", "--image-size", "12", "--dropout", "0.1", "--model", "tiny"]
    result = _train(runner, data, "--out", out, "--config", partial, *flags, *FAST)
    assert result.exit_code == 0, result.output
    cfg = load_toml(out / "config.toml")
    assert (cfg.data.channels, cfg.data.image_size) == (3, 12)
    assert [b.filters for b in cfg.model.conv] == [16, 32] and cfg.model.dropout == 0.1
    assert cfg.train.lr == 0.0123 and cfg.train.label_smoothing == 0.0
    assert cfg.augment.preset == "light" and cfg.augment.ops == {}  # the file's [augment]
    # What the user left alone is still the recipe's.
    assert cfg.train.optimizer == "adamw" and cfg.train.patience > 0
    rows = {r["choice"]: r for r in json.loads((out / "recipe.json").read_text())["rows"]}
    assert rows["channels"]["value"] == "3" and "set by you" in rows["channels"]["reason"]
    assert rows["learning rate"]["value"] == "0.0123"
    assert rows["augmentation"]["value"] == "light"  # the preset, not its empty ops
    assert rows["input size"]["value"] == "12x12"
    assert rows["optimizer"]["reason"].startswith("AdamW")


def test_recipe_fixed_gives_the_old_defaults(runner, tmp_path):
    data = _gray_tree(tmp_path / "gray", per_class=6)
    out = tmp_path / "run"
    result = _train(runner, data, "--out", out, "--recipe", "fixed", *FAST)
    assert result.exit_code == 0, result.output
    assert "recipe (chosen" not in result.output and not (out / "recipe.json").exists()
    expected = RunConfig()
    expected.train.epochs, expected.train.batch_size = 1, 8
    assert load_toml(out / "config.toml") == expected  # 64x64 RGB, small CNN, no augmentation


def test_bad_recipe_name_is_one_line(runner, tmp_path):
    result = _train(runner, tmp_path, "--recipe", "magic")
    assert result.exit_code == 2 and "--recipe must be auto or fixed" in result.output


def test_time_budget_races_candidates_keeps_their_metrics_and_the_winners_model(runner, tmp_path):
    import csv

    data = _gray_tree(tmp_path / "gray")
    out = tmp_path / "run"
    # --model tiny holds for every candidate (flags win, dropout included), so "small-bn"
    # and "lighter" (flips only at 16 px, like auto) become "auto" and are dropped.
    flags = ["--model", "tiny", "--epochs", "2", "--batch-size", "8", "--time-budget", "0.05"]
    result = _train(runner, data, "--out", out, *flags, "--json")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "candidates.csv").open()))
    names = [r["name"] for r in rows]
    assert names == ["auto", "stronger", "fixed"]
    assert [r["status"] for r in rows].count("winner") == 1
    assert sum(r["status"] == "out after rung 1" for r in rows) <= 1  # 3 -> 2 (or 3) -> 1
    # The fixed recipe races to the last rung whatever its rank after the first.
    assert next(r for r in rows if r["name"] == "fixed")["status"] in ("winner", "out after rung 2")
    assert "fixed races to the last rung" in " ".join(result.output.split())
    for r in rows:
        metrics = list(csv.DictReader((out / r["folder"] / "metrics.csv").open()))
        assert len(metrics) == int(r["epochs"]) >= 1
        assert float(r["best_val_acc"]) == max(float(m["val_acc"]) for m in metrics)
        assert load_toml(out / r["folder"] / "config.toml").model.conv[0].filters == 16
    winner = next(r for r in rows if r["status"] == "winner")
    assert load_toml(out / "config.toml") == load_toml(out / winner["folder"] / "config.toml")
    assert (out / "model" / "weights.safetensors").is_file()
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["time_budget"]["winner"] == winner["name"]
    assert summary["epochs"] == 2  # the winner finished its epochs in the run folder
    fixed = load_toml(out / "candidates" / "fixed" / "config.toml")
    assert (fixed.data.image_size, fixed.data.channels) == (64, 3) and not fixed.augment.ops
