"""Recipes made from a chosen one: the time budget's candidates (the recipe, a stronger and
a lighter variant) and the learning check's restart with regularisation stepped down."""

from __future__ import annotations

from typing import Any

from cnncli.config import RunConfig, from_dict, size_hw, to_dict
from cnncli.data.stats import DatasetStats
from cnncli.training.recipe import (
    FIXED_SUMMARY,
    SMALL_INPUT,
    Choice,
    Recipe,
    augment_ops,
    choose_recipe,
    fixed_recipe,
    size_tier,
)


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
    tier = size_tier(s)
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
