"""The recipe as a pure function of dataset statistics, and the statistics from real files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnncli.config import RunConfig, model_preset
from cnncli.data.scan import scan_dataset
from cnncli.data.stats import DatasetStats, add_header_stats, dataset_stats
from cnncli.training.recipe import apply_recipe, choose_recipe
from cnncli.training.recipe_table import recipe_rows
from cnncli.training.recipe_variants import candidate_recipes

FASHION = ["Ankle_boot", "Bag", "Coat", "Dress", "Pullover", "Sandal", "Shirt", "Sneaker"]


def _stats(classes, counts, size=(500, 375), mode="RGB", n=50) -> DatasetStats:
    stats = DatasetStats(classes=list(classes), train_counts=list(counts), val_images=10)
    return add_header_stats(stats, [(*size, mode, "PNG")] * n)


def test_small_photo_set_gets_regularised_and_more_epochs():
    r = choose_recipe(_stats(["ants", "bees"], [124, 121])).values()
    assert r["data.image_size"] == 64 and r["data.channels"] == 3
    assert r["model"] == "small-bn"
    ops = r["augment.ops"]
    assert ops["flip"] == 0.5 and "vflip" not in ops  # photos mirror left-right, never flip up
    assert {"translate", "zoom", "rotate", "brightness", "contrast"} <= set(ops)
    assert r["model.dense"] == []  # no hidden dense layer whose units can die (issue 24)
    assert r["train.epochs"] == 40 and 5 <= r["train.patience"] < 40  # early stopping on val
    assert r["train.batch_size"] == 32 and r["train.lr"] == pytest.approx(0.001)
    assert r["train.class_weights"] == "none" and r["train.sampler"] == "shuffle"


def test_large_28px_grayscale_set_is_not_upscaled_and_gets_one_channel():
    r = choose_recipe(_stats(FASHION, [6000] * 8, size=(28, 28), mode="L")).values()
    assert r["data.image_size"] == 28  # never 64: upscaling adds pixels, not detail
    assert r["data.channels"] == 1
    assert r["model"] == "compact"
    assert r["augment.ops"] == {"flip": 0.5}  # plenty of data: flips only
    assert "model.dense" not in r and r["model.dropout"] == 0.3 and r["train.epochs"] == 20
    assert r["train.batch_size"] == 64 and r["train.lr"] == pytest.approx(0.002)


def test_medium_set_gets_light_augmentation_and_odd_sizes_stay_as_they_are():
    r = choose_recipe(_stats(FASHION, [2000] * 8, size=(40, 30))).values()
    assert r["data.image_size"] == 30 and r["model"] == "compact"
    assert r["augment.ops"] == {"flip": 0.5}  # small centred objects: no shifts
    assert r["train.epochs"] == 30


def test_wide_photos_keep_their_shape_and_mixed_ones_are_square():
    wide = _stats(["a", "b"], [100, 100], size=(640, 360))
    assert choose_recipe(wide).get("data.image_size") == [64, 112]  # H, W
    tall = _stats(["a", "b"], [100, 100], size=(300, 600))
    assert choose_recipe(tall).get("data.image_size") == [128, 64]
    mixed = _stats(["a", "b"], [100, 100], size=(640, 360))
    mixed.wide_share = 0.5  # half wide, half not: a square input
    assert choose_recipe(mixed).get("data.image_size") == 64
    cfg = apply_recipe(RunConfig(), choose_recipe(wide))
    assert cfg.data.image_size == [64, 112] and cfg.model.conv == model_preset("small-bn").conv


def test_digit_classes_are_never_mirrored():
    digits = [str(i) for i in range(10)]
    recipe = choose_recipe(_stats(digits, [50] * 10, size=(28, 28), mode="L"))
    ops = recipe.get("augment.ops")
    assert "flip" not in ops and "vflip" not in ops
    assert set(ops) == {"translate", "zoom", "rotate"}  # handwriting: shifts, zooms, turns
    medium = choose_recipe(_stats(digits, [2000] * 10, size=(28, 28), mode="L"))
    assert medium.get("augment.ops") == {"translate": 0.0625}
    reason = next(c.reason for c in recipe.choices if c.key == "augment.ops")
    assert "no flips" in reason


def test_imbalance_picks_class_weights_or_the_balanced_sampler():
    mild = choose_recipe(_stats(["a", "b"], [300, 100])).values()
    assert mild["train.class_weights"] == "auto" and mild["train.sampler"] == "shuffle"
    severe = choose_recipe(_stats(["a", "b"], [500, 40])).values()
    assert severe["train.sampler"] == "balanced" and severe["train.class_weights"] == "none"


def test_every_choice_has_a_reason_and_applies_to_a_valid_config():
    recipe = choose_recipe(_stats(FASHION, [50] * 8, size=(28, 28), mode="L"))
    assert all(c.reason for c in recipe.choices)
    cfg = apply_recipe(RunConfig(), recipe)
    assert cfg.data.image_size == 28 and cfg.data.channels == 1
    assert [b.filters for b in cfg.model.conv] == [32, 64]
    assert all(b.batch_norm for b in cfg.model.conv) and cfg.model.dense == [256]
    assert cfg.model.dropout == 0.5  # the recipe's dropout, not the preset's
    assert cfg.augment.preset == "none" and cfg.augment.ops == {"flip": 0.5}
    assert cfg.train.optimizer == "adamw" and cfg.train.label_smoothing == pytest.approx(0.1)
    rows = recipe_rows(recipe, cfg, explicit={"train.epochs"})
    epochs = next(r for r in rows if r["choice"] == "epochs")
    assert epochs["reason"].startswith("set by you")


def test_candidates_start_with_the_recipe_and_include_the_fixed_defaults():
    stats = _stats(["ants", "bees"], [124, 121])
    candidates = candidate_recipes(stats)
    names = [c.name for c in candidates]
    assert 3 <= len(candidates) <= 6 and len(set(names)) == len(names)
    assert names[0] == "auto" and "fixed" in names
    fixed = apply_recipe(RunConfig(), candidates[names.index("fixed")])
    assert fixed == RunConfig()
    configs = [apply_recipe(RunConfig(), c) for c in candidates]
    assert len({repr(c) for c in configs}) == len(configs)  # all different
    assert candidate_recipes(_stats(FASHION, [50] * 8, size=(28, 28), mode="L"))[0].name == "auto"


def test_the_fixed_defaults_are_still_the_old_ones():
    cfg = RunConfig()
    assert (cfg.data.image_size, cfg.data.channels, cfg.train.epochs) == (64, 3, 15)
    assert cfg.augment.preset == "none" and not cfg.augment.ops
    assert cfg.model == model_preset("small")


def _save(path, mode, size=(20, 14)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    if mode == "RGB":
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8)).save(path)
    elif mode == "I;16":
        Image.fromarray(rng.integers(0, 65535, (size[1], size[0]), np.uint16)).save(path)
    else:
        Image.fromarray(rng.integers(0, 255, (size[1], size[0]), np.uint8), mode).save(path)


def test_grayscale_is_detected_from_file_headers(tmp_path):
    gray = tmp_path / "gray"
    for i in range(4):
        _save(gray / "a" / f"{i}.png", "L")
        _save(gray / "b" / f"{i}.jpg", "L")
    _save(gray / "b" / "deep.png", "I;16")  # 16-bit grayscale counts as grayscale
    stats = dataset_stats(scan_dataset(gray, val_fraction=0.25))
    assert stats.grayscale and stats.gray_share == 1.0
    assert (stats.median_width, stats.median_height, stats.median_short_side) == (20, 14, 14)
    assert stats.median_aspect == pytest.approx(20 / 14, abs=1e-3)
    assert choose_recipe(stats).get("data.channels") == 1

    mixed = tmp_path / "mixed"
    for i in range(4):
        _save(mixed / "a" / f"{i}.png", "L")
        _save(mixed / "b" / f"{i}.png", "RGB")
    stats = dataset_stats(scan_dataset(mixed, val_fraction=0.25))
    assert not stats.grayscale and 0 < stats.gray_share < 1
    assert choose_recipe(stats).get("data.channels") == 3
    assert stats.train_counts == [3, 3] and stats.per_class == 3


def test_gray_pictures_saved_as_colour_files_get_one_channel(tmp_path):
    """X-rays and scans often come as RGB JPEGs/PNGs: their pixels, not their mode, decide."""
    rng = np.random.default_rng(0)
    gray_rgb = tmp_path / "gray_rgb"
    for i in range(6):
        for cls, ext in (("a", "jpg"), ("b", "png")):
            plane = rng.integers(0, 255, (30, 40), np.uint8)
            (gray_rgb / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.stack([plane] * 3, axis=2)).save(gray_rgb / cls / f"{i}.{ext}")
    stats = dataset_stats(scan_dataset(gray_rgb, val_fraction=0.25))
    assert stats.gray_share == 0.0 and stats.colour_checked == stats.sampled == 8
    assert stats.colour_gray == 8 and stats.grayscale
    channels = choose_recipe(stats).choices
    reason = next(c.reason for c in channels if c.key == "data.channels")
    assert choose_recipe(stats).get("data.channels") == 1 and "gray pixels only" in reason

    # A few tinted pictures among them: colour is real, 3 channels.
    for i in range(3):
        plane = rng.integers(0, 255, (30, 40), np.uint8)
        tinted = np.stack([plane, plane, (plane // 2).astype(np.uint8)], axis=2)
        Image.fromarray(tinted).save(gray_rgb / "a" / f"tinted{i}.png")
    stats = dataset_stats(scan_dataset(gray_rgb, val_fraction=0.25))
    assert stats.colour_checked > stats.colour_gray and not stats.grayscale
    assert choose_recipe(stats).get("data.channels") == 3


def test_unreadable_headers_are_skipped_not_fatal(tmp_path):
    for i in range(3):
        _save(tmp_path / "a" / f"{i}.png", "RGB")
        _save(tmp_path / "b" / f"{i}.png", "RGB")
    (tmp_path / "b" / "9.png").write_bytes(b"not an image")
    dataset = scan_dataset(tmp_path, val_fraction=0.25)
    readable = [p for p, _ in dataset.splits["train"] if not p.endswith("9.png")]
    stats = dataset_stats(dataset)
    assert stats.sampled == len(readable) and stats.train_images == len(dataset.splits["train"])
    assert not stats.grayscale
