"""Dataset statistics -> a training recipe: every choice with a one-line reason (pure, no I/O).

`choose_recipe` looks only at a DatasetStats (class counts, sizes and colour from file
headers) and returns a Recipe: config values keyed like the TOML ("data.image_size"), plus
the architecture under the key "model" (a preset name of config.model_preset). The rules
follow what this project measured (docs/results.md): the Fashion-MNIST recipe (two BN conv
blocks, AdamW, label smoothing, batch 64, flips, 20 epochs) for large small-image sets,
batch norm, augmentation and 40 epochs at batch 32 for a few hundred photos, where the
fixed defaults overfit. The photo-size networks have no hidden dense layer after their
flatten (see `_head`: its units died in the first steps and training stalled, issue 24).

`apply_recipe` turns a recipe into a RunConfig, with whatever the user set explicitly (a
--config file's keys, flags) applied on top by the caller, so explicit values always win.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from cnncli.config import RunConfig, from_dict, model_preset, size_hw, to_dict
from cnncli.data.stats import DatasetStats

# The fixed defaults that `--recipe fixed` keeps (and every run used before the recipe).
FIXED_SUMMARY = "64x64 RGB, small CNN, 15 epochs, batch 64, Adam 0.001, no augmentation"

# Images per class (median, training split) that separate the data-size tiers.
SMALL_SET = 1000
LARGE_SET = 5000
# Inputs at most this many pixels on a side get the two-block network.
SMALL_INPUT = 32
PHOTO_SIZE = 64


@dataclass(frozen=True)
class Choice:
    """One decision: the config key it sets, its value, and why."""

    key: str  # "model" (a preset name) or a dotted config key such as "train.epochs"
    value: Any
    reason: str

    def shown(self) -> str:
        """The value as the recipe table prints it."""
        if self.key == "augment.ops":
            if not self.value:
                return "none"
            return ", ".join(
                name if name in ("flip", "vflip") else f"{name}={value:g}"
                for name, value in self.value.items()
            )
        if isinstance(self.value, float):
            return f"{self.value:g}"
        if isinstance(self.value, list) and self.key == "model.dense":
            return ", ".join(map(str, self.value)) or "none"
        return str(self.value)


@dataclass
class Recipe:
    """A named list of choices (the automatic recipe, or one of the --time-budget candidates)."""

    name: str
    choices: list[Choice] = field(default_factory=list)
    note: str = ""

    def values(self) -> dict[str, Any]:
        """{key: value} of every choice."""
        return {c.key: c.value for c in self.choices}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values().get(key, default)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "note": self.note,
            "choices": [{"key": c.key, "value": c.value, "reason": c.reason} for c in self.choices],
        }


def fixed_recipe() -> Recipe:
    """Today's fixed defaults: no choices, so RunConfig's defaults stay."""
    return Recipe("fixed", [], note=FIXED_SUMMARY)


def _looks_like_characters(classes: list[str]) -> bool:
    """Class names that are single characters (0-9, a-z): digits or letters, not objects."""
    return all(len(name.strip()) == 1 and name.strip().isalnum() for name in classes)


def _input_size(s: DatasetStats) -> Choice:
    side = s.median_short_side
    if side == 0:
        return Choice("data.image_size", PHOTO_SIZE, "no image header readable: the default")
    if side < PHOTO_SIZE:
        size = max(side, 8)
        return Choice(
            "data.image_size",
            size,
            f"sources are {s.median_width}x{s.median_height} (median): used as they are, "
            "never upscaled (upscaling adds pixels, not detail)",
        )
    if s.median_aspect >= 1.5 and s.wide_share >= 0.8:
        # Consistently wide (or tall) images: a square centre crop would cut a third away.
        long = int(round(PHOTO_SIZE * min(s.median_aspect, 2.0) / 8)) * 8
        size = [PHOTO_SIZE, long] if s.median_width >= s.median_height else [long, PHOTO_SIZE]
        return Choice(
            "data.image_size",
            size,
            f"sources are {s.median_width}x{s.median_height} (median), {s.median_aspect:.2f}:1 "
            f"in {round(100 * s.wide_share)}% of them: {size[0]}x{size[1]} keeps their shape",
        )
    return Choice(
        "data.image_size",
        PHOTO_SIZE,
        f"sources are {s.median_width}x{s.median_height} (median): shorter side scaled to "
        f"{PHOTO_SIZE}, enough for this CNN and fast on a CPU",
    )


def _channels(s: DatasetStats) -> Choice:
    if s.grayscale and s.gray_share == 1.0:
        return Choice(
            "data.channels", 1, f"all {s.sampled} sampled images are grayscale: 1 channel"
        )
    if s.grayscale:
        colour = round(s.sampled * (1 - s.gray_share))
        return Choice(
            "data.channels",
            1,
            f"{colour} of {s.sampled} sampled images are colour files, but the "
            f"{s.colour_checked} checked have gray pixels only: 1 channel",
        )
    if s.sampled == 0:
        return Choice("data.channels", 3, "no image header readable: RGB")
    colour = round(100 * (1 - s.gray_share))
    return Choice("data.channels", 3, f"{colour}% of {s.sampled} sampled images are in colour")


def _model(s: DatasetStats, size: int) -> Choice:
    if size <= SMALL_INPUT:
        return Choice(
            "model",
            "compact",
            f"{size} px inputs: 2 conv blocks with batch norm + dense 256 (the Fashion-MNIST "
            "recipe's net; a 3rd pool would leave 3x3 maps)",
        )
    return Choice(
        "model",
        "small-bn",
        "3 conv blocks (32-64-128) with batch norm: trains faster and steadier than without",
    )


def _head(s: DatasetStats, size: int, tier: str) -> list[Choice]:
    """What follows the conv blocks: for photo-size inputs, nothing but the logits.

    Issue 24: on a clothing-photo folder the 128 ReLU units after small-bn's 8x8x128 flatten
    switched off for good in the first 50 steps (96% dead; AdamW moves every weight of a
    unit by about lr at once, and 8,192 inputs that batch norm keeps positive and near 1 turn
    that into a jump of several standard deviations of the unit's input), leaving train
    accuracy at 12-23% for 24 epochs. A linear layer on the features has no unit to lose.
    The 32 px network keeps its dense 256 and dropout: its 3,136-4,096 inputs lose about
    70% of the units on Fashion-MNIST but it learns, and without it Fashion-MNIST with 50
    images per class lost 2.4 test points (80.7 -> 78.3%).
    """
    if size > SMALL_INPUT:
        return [
            Choice(
                "model.dense",
                [],
                "none: conv features straight to the class scores (a ReLU layer after the "
                "flatten lost 96% of its units in 50 steps on photos, and training stalled)",
            )
        ]
    small = tier == "small"
    return [
        Choice(
            "model.dropout",
            0.5 if small else 0.3,
            "few images per class: more dropout before the logits"
            if small
            else "enough images: the usual dropout",
        )
    ]


def size_tier(s: DatasetStats) -> str:
    n = s.per_class
    if n < SMALL_SET:
        return "small"
    if n < LARGE_SET:
        return "medium"
    return "large"


def augment_ops(s: DatasetStats, size: int, tier: str) -> dict[str, float]:
    """The augmentation ops for a data-size tier (flips only where a mirror keeps the class)."""
    characters = _looks_like_characters(s.classes)
    ops: dict[str, float] = {} if characters else {"flip": 0.5}
    if tier == "strong":
        ops.update(translate=0.125, zoom=0.2, rotate=20.0, brightness=0.3, contrast=0.3)
        if not s.grayscale:
            ops["saturation"] = 0.3
        ops.update(cutout=0.3, noise=6.0)
    elif size <= SMALL_INPUT and not characters:
        # Small centred objects: shifts, zooms and turns cost Fashion-MNIST with 50 images
        # per class 7 test points (74.4 % against 81.4 % without) and made the 60k set underfit.
        pass
    elif tier == "small" and size <= SMALL_INPUT:
        # Handwriting varies in place and slant: MNIST with 50 per class gained 0.9 points.
        ops.update(translate=0.1, zoom=0.1, rotate=10.0)
    elif tier == "small":
        # The "default" preset's ops: the "strong" ones (cutout, noise, 20 degree turns) left
        # sample_data's shapes at 68% train accuracy after 32 epochs (underfitting).
        ops.update(translate=0.1, zoom=0.1, rotate=10.0, brightness=0.2, contrast=0.2)
    elif tier == "medium":
        ops["translate"] = 0.0625
    return ops


def _augment(s: DatasetStats, size: int, tier: str) -> list[Choice]:
    ops = augment_ops(s, size, tier)
    why = {
        "small": f"{s.per_class} images per class is few: shifts, zooms, turns, light and "
        "contrast changes against memorising the training set",
        "medium": f"{s.per_class} images per class: light augmentation (small shifts)",
        "large": f"{s.per_class} images per class is plenty: shifts made the net underfit "
        "(Fashion-MNIST 60k), only flips",
    }[tier]
    if size <= SMALL_INPUT and not _looks_like_characters(s.classes):
        why = (
            f"{size} px centred objects: no shifts, zooms or turns (they cost small "
            "Fashion-MNIST sets 7 test points)"
        )
    elif size <= SMALL_INPUT and tier == "small":
        why = f"{s.per_class} images per class of characters: small shifts, zooms, turns"
    if _looks_like_characters(s.classes):
        flip = "no flips: class names are single characters (a mirrored digit is not a digit)"
    else:
        flip = "left-right flips on (a mirror image shows the same class); never upside down"
    return [
        Choice("augment.preset", "none", "the ops below are chosen one by one"),
        Choice("augment.ops", ops, f"{why}; {flip}"),
    ]


def _schedule(s: DatasetStats, tier: str) -> list[Choice]:
    epochs = {"small": 40, "medium": 30, "large": 20}[tier]
    # Val accuracy on a few hundred images is noisy and keeps improving as the cosine
    # schedule cools: ants/bees stopped at epoch 14 of 40 with patience 10, val loss falling.
    patience = max(10, epochs // 2)
    batch = 32 if s.train_images < 2000 else 64
    lr = 0.001 if batch == 32 else 0.002
    small = tier == "small"
    return [
        Choice(
            "train.epochs",
            epochs,
            f"{s.train_images} training images: {epochs} epochs at most "
            + ("(augmented data needs more passes)" if small else "(cosine schedule)"),
        ),
        Choice(
            "train.patience",
            patience,
            f"stop after {patience} epochs without a val accuracy gain; model/ keeps the best",
        ),
        Choice(
            "train.batch_size",
            batch,
            "few images: more, smaller steps per epoch"
            if batch == 32
            else "batch 64 trains the most images per second on a CPU",
        ),
        Choice("train.optimizer", "adamw", "AdamW: Adam with decoupled weight decay"),
        Choice("train.lr", lr, f"peak lr for batch {batch} (0.001 per 32 images), cosine decay"),
        Choice("train.weight_decay", 0.05, "weight decay 0.05 regularises the weights"),
        Choice("train.label_smoothing", 0.1, "label smoothing 0.1: less overconfident outputs"),
    ]


def _balance(s: DatasetStats) -> list[Choice]:
    ratio = s.imbalance
    if ratio < 1.5:
        return [
            Choice("train.class_weights", "none", f"classes are balanced (ratio {ratio:.1f})"),
            Choice("train.sampler", "shuffle", "every image once per epoch"),
        ]
    if ratio >= 10 and not s.multi_label:
        return [
            Choice("train.class_weights", "none", "the sampler balances the classes instead"),
            Choice(
                "train.sampler",
                "balanced",
                f"largest class {ratio:.0f}x the smallest: classes drawn equally often",
            ),
        ]
    return [
        Choice(
            "train.class_weights",
            "auto",
            f"largest class {ratio:.1f}x the smallest: loss weighted by inverse frequency",
        ),
        Choice("train.sampler", "shuffle", "every image once per epoch (weights balance)"),
    ]


def choose_recipe(s: DatasetStats) -> Recipe:
    """The automatic recipe for a dataset, each choice with its reason."""
    size_choice = _input_size(s)
    size = min(size_hw(size_choice.value))
    tier = size_tier(s)
    choices = [size_choice, _channels(s), _model(s, size), *_head(s, size, tier)]
    choices += _augment(s, size, tier) + _schedule(s, tier) + _balance(s)
    return Recipe("auto", choices, note=f"{tier} data set: {s.per_class} images per class")


def apply_recipe(base: RunConfig, recipe: Recipe) -> RunConfig:
    """base with the recipe's choices applied (a new, validated RunConfig)."""
    values = recipe.values()
    cfg = dataclasses.replace(base)
    if "model" in values:
        cfg.model = model_preset(values.pop("model"))
    data = to_dict(cfg)
    for key, value in values.items():
        section, name = key.split(".")
        data[section][name] = value
    return from_dict(data)
