"""The recipe as table rows: each setting, the value the run uses (flags win) and why."""

from __future__ import annotations

from typing import Any

from cnncli.config import RunConfig, size_hw
from cnncli.training.recipe import Choice, Recipe

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
