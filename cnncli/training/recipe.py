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


def _tier(s: DatasetStats) -> str:
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
    tier = _tier(s)
    choices = [size_choice, _channels(s), _model(s, size), *_head(s, size, tier)]
    choices += _augment(s, size, tier) + _schedule(s, tier) + _balance(s)
    return Recipe("auto", choices, note=f"{tier} data set: {s.per_class} images per class")


def _replace(recipe: Recipe, name: str, note: str, **changes: tuple[Any, str]) -> Recipe:
    """A copy of recipe with some choices replaced: key=(value, reason); dots as '__'."""
    changed = {key.replace("__", "."): value for key, value in changes.items()}
    choices = [
        Choice(c.key, *changed.pop(c.key)) if c.key in changed else c for c in recipe.choices
    ]
    choices += [Choice(key, *value) for key, value in changed.items()]
    return Recipe(name, choices, note)


def candidate_recipes(s: DatasetStats) -> list[Recipe]:
    """3-5 recipes for --time-budget to race: the automatic one first, then its neighbours."""
    auto = choose_recipe(s)
    size = min(size_hw(auto.get("data.image_size")))
    tier = _tier(s)
    lighter = {"small": "medium", "medium": "large", "large": "large"}[tier]
    out = [auto]
    if lighter != tier or tier == "large":
        ops = augment_ops(s, size, lighter) if lighter != tier else {}
        out.append(
            _replace(
                auto,
                "lighter",
                "less regularisation: lighter augmentation"
                + (", dropout 0.3" if size <= SMALL_INPUT else ""),
                augment__ops=(ops, "lighter augmentation than the automatic recipe"),
                **({"model__dropout": (0.3, "the usual dropout")} if size <= SMALL_INPUT else {}),
            )
        )
    if tier == "small":
        out.append(
            _replace(
                auto,
                "stronger",
                "more augmentation: cutout, noise, 20 degree turns",
                augment__ops=(augment_ops(s, size, "strong"), "the strong preset's ops"),
            )
        )
    if size > SMALL_INPUT:
        out.append(
            _replace(
                auto,
                "medium",
                "a bigger network: 4 BN conv blocks, dense 256",
                model=("medium", "4 conv blocks with batch norm (32-64-128-256)"),
            )
        )
        if s.median_short_side >= 96:
            out.append(
                _replace(
                    auto,
                    "96px",
                    "more detail: 96 px inputs",
                    data__image_size=(96, "96 px: more detail, 2.25x the compute"),
                )
            )
    else:
        out.append(
            _replace(
                auto,
                "small-bn",
                "a deeper network: 3 BN conv blocks",
                model=("small-bn", "3 conv blocks with batch norm"),
            )
        )
    # At most 5: each extra candidate takes time from the ones that deserve it.
    return out[:4] + [_replace(fixed_recipe(), "fixed", FIXED_SUMMARY)]


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


# What the recipe table calls each key (augment.preset is bookkeeping and not shown).
LABELS = {
    "data.image_size": "input size",
    "data.channels": "channels",
    "model": "model",
    "model.dense": "dense layers",
    "augment.ops": "augmentation",
    "model.dropout": "dropout",
    "train.epochs": "epochs",
    "train.patience": "early stopping",
    "train.batch_size": "batch size",
    "train.optimizer": "optimizer",
    "train.lr": "learning rate",
    "train.weight_decay": "weight decay",
    "train.label_smoothing": "label smoothing",
    "train.class_weights": "class weights",
    "train.sampler": "sampler",
    "train.init": "start from",
    "train.freeze": "backbone frozen",
    "train.tune_blocks": "blocks fine-tuned",
    "train.backbone_lr": "backbone lr",
}


def _final(cfg: RunConfig, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def recipe_rows(recipe: Recipe, cfg: RunConfig, explicit: set[str]) -> list[dict[str, str]]:
    """The recipe table's rows: what is used, and why (the recipe's reason, or that the
    user set it: a flag or --config value wins over the automatic choice)."""
    rows = []
    for c in recipe.choices:
        if c.key not in LABELS:
            continue
        if c.key in explicit:
            value = "yours" if c.key == "model" else _final(cfg, c.key)
            shown = Choice(c.key, value, "").shown()
            if c.key == "augment.ops" and cfg.augment.preset != "none":
                # --augment PRESET leaves ops empty; the preset is what the user chose.
                shown = f"{cfg.augment.preset}" + (f" + {shown}" if value else "")
            elif c.key == "data.image_size":
                shown = "{}x{}".format(*size_hw(value))
            rows.append(
                {
                    "choice": LABELS[c.key],
                    "value": shown,
                    "reason": f"set by you (auto: {c.shown()})",
                }
            )
            continue
        shown = c.shown()
        if c.key == "data.image_size":
            shown = "{}x{}".format(*size_hw(c.value))
        elif c.key == "train.patience":
            shown = f"patience {c.value}"
        rows.append({"choice": LABELS[c.key], "value": shown, "reason": c.reason})
    return rows


# What a restart after the learning check changes (key -> (value, reason)), where the
# value is less regularisation than the first attempt had.
_STEP_DOWN_REASONS = {
    "augment.ops": "augmentation off: the network first has to fit the plain images",
    "model.dropout": "dropout 0.3, the fixed recipe's",
    "model.dense": "no hidden dense layer: its ReLU units can switch off for good",
    "train.label_smoothing": "no label smoothing",
    "train.class_weights": "no class weights",
    "train.weight_decay": "weight decay 1e-4, the fixed recipe's",
    "train.lr": "learning rate 0.001, the fixed recipe's",
}


def step_down(cfg: RunConfig, explicit: set[str]) -> tuple[RunConfig, list[dict[str, Any]]]:
    """The config of a restart after the learning check fired, and what changed.

    The regularisation the user did not set steps down to the fixed recipe's (augmentation
    off, dropout 0.3, no label smoothing or class weights, weight decay 1e-4, lr at most
    0.001) and a hidden dense layer after a flatten goes (its units may have died); the
    conv layers, input and epochs stay.
    Returns (cfg, [{"key", "from", "to", "reason"}]); no changes: nothing left to step down.
    """
    m, t = cfg.model, cfg.train
    wanted: dict[str, tuple[Any, Any]] = {}
    if cfg.augment.ops or cfg.augment.preset != "none":
        shown = cfg.augment.preset if not cfg.augment.ops else dict(cfg.augment.ops)
        wanted["augment.ops"] = (shown, {})
    flatten_head = bool(m.dense) and not m.global_pool and not m.backbone
    drop_dense = flatten_head and not explicit & {"model", "model.dense"}
    if drop_dense:
        wanted["model.dense"] = (list(m.dense), [])
    if m.dropout > 0.3 and (m.backbone or (m.dense and not drop_dense)):
        wanted["model.dropout"] = (m.dropout, 0.3)
    if t.label_smoothing:
        wanted["train.label_smoothing"] = (t.label_smoothing, 0.0)
    if t.class_weights != "none":
        wanted["train.class_weights"] = (t.class_weights, "none")
    if t.optimizer != "adam" and t.weight_decay > 1e-4:
        wanted["train.weight_decay"] = (t.weight_decay, 1e-4)
    if t.lr > 0.001:
        wanted["train.lr"] = (t.lr, 0.001)
    changes = [
        {"key": key, "from": old, "to": new, "reason": _STEP_DOWN_REASONS[key]}
        for key, (old, new) in wanted.items()
        if key not in explicit
    ]
    data = to_dict(cfg)
    for change in changes:
        section, name = change["key"].split(".")
        data[section][name] = change["to"]
        if change["key"] == "augment.ops":
            data["augment"]["preset"] = "none"
    return from_dict(data), changes
