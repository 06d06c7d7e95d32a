"""A new run's configuration and plan: what the user set (flags, --config, --model), the recipe
chosen from the data, and --init's network and fine-tuning recipe. The CLI and the Python
API (cnncli.api) both plan runs here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnncli.config import ConfigError


@dataclass
class Given:
    """What the user set for a new run: --config, --model, --augment, the other flags
    (dotted config keys, None when absent), the conv flags, and --recipe."""

    config: Path | None
    model: str | None
    augment: str | None
    overrides: dict | None
    conv: tuple | None
    processes: int
    recipe: str

    def explicit(self) -> set[str]:
        """The config keys the user set (they win over the recipe's choices)."""
        from cnncli.config import file_keys

        keys = {k for k, v in (self.overrides or {}).items() if v is not None}
        if self.config is not None:
            keys |= file_keys(self.config)
        if any(k.startswith("augment.") for k in keys) or self.augment is not None:
            keys.add("augment.ops")
        if "model.conv" in keys or "model.backbone" in keys or self.model is not None:
            keys.add("model")
        if self.conv is not None and any(v is not None for v in self.conv):
            keys.add("model")
        return keys


def configure(data_dir, given: Given, labels, seed_recipe=None):
    """Scan the data, choose the recipe from it, and build the new run's RunConfig.

    Returns (cfg, dataset, recipe info for the table and recipe.json, or None).
    """
    from cnncli.training.run import load_run_dataset

    # The scan's settings (split, seed, symlinks) are never the recipe's to choose.
    cfg = new_config(given)
    dataset = load_run_dataset(data_dir, labels, cfg)
    if given.recipe == "fixed":
        return cfg, dataset, None
    from cnncli.data.stats import dataset_stats
    from cnncli.training.recipe import choose_recipe
    from cnncli.training.recipe_table import recipe_rows

    stats = dataset_stats(dataset, seed=cfg.train.seed)
    explicit = given.explicit()
    recipe = seed_recipe or pretrained_for(stats, explicit) or choose_recipe(stats)
    cfg = new_config(given, recipe)
    info = {
        "recipe": recipe.as_dict(),
        "rows": recipe_rows(recipe, cfg, explicit),
        "explicit": sorted(explicit),
        "stats": stats.as_dict(),
    }
    return cfg, dataset, info


def pretrained_for(stats, explicit: set[str]):
    """The pretrained recipe when the data is photo-like and the user chose no network,
    start or training mode of their own (recipe_pretrained.py); else None."""
    from cnncli.training.recipe_pretrained import pretrained_recipe
    from cnncli.training.warm_start import accelerator_present

    mine = {"model", "train.init", "train.freeze", "train.tune_blocks"}
    if explicit & mine:
        return None
    return pretrained_recipe(stats, accelerator_present())


def new_config(given: Given, recipe=None):
    """The RunConfig of a new run: defaults, the recipe's choices, the --config file's
    keys, the --model preset, then the flags (each step wins over the one before), then
    --large-batch's scaling of the resulting batch size and learning rate."""
    from cnncli.config import (
        RunConfig,
        load_toml,
        merge_overrides,
        model_preset,
        overlay_toml,
        validate,
    )
    from cnncli.config import large_batch as large_batch_preset

    config, model, augment, overrides, conv, processes = (
        given.config,
        given.model,
        given.augment,
        given.overrides,
        given.conv,
        given.processes,
    )
    if recipe is None:
        cfg = load_toml(config) if config else RunConfig()
    else:
        from cnncli.training.recipe import apply_recipe

        cfg = apply_recipe(RunConfig(), recipe)
        if config:
            cfg = overlay_toml(cfg, config)
    if model is not None:
        cfg.model = model_preset(model)
    if augment is not None:
        cfg = _with_augment(cfg, augment)
    overrides = dict(overrides)
    large_batch = overrides.pop("large_batch", None)
    filters, kernel, stride, padding, pool, batch_norm = conv
    if any(v is not None for v in (filters, kernel, stride, padding, pool, batch_norm)):
        overrides["model.conv"] = model_overrides(
            cfg, int_list(filters, "--filters"), kernel, stride, padding, pool, batch_norm
        )
    if processes > 1 and overrides.get("train.shards") is None and cfg.train.shards == 0:
        overrides["train.shards"] = processes  # recorded, so a resume keeps the data order
    cfg = merge_overrides(cfg, overrides)
    if large_batch:
        cfg.train = large_batch_preset(cfg.train, large_batch)
        validate(cfg)
    from cnncli.model.family import check_config

    return check_config(cfg)


def _with_augment(cfg, text: str):
    from cnncli.augment.ops import PRESETS, parse_ops
    from cnncli.config import AugmentConfig, ConfigError

    name = text.strip().lower()
    try:
        if name in PRESETS:
            cfg.augment = AugmentConfig(preset=name, ops={})
        else:
            cfg.augment = AugmentConfig(preset="none", ops=parse_ops(text))
    except ValueError as exc:
        raise ConfigError(f"--augment: {exc}") from None
    return cfg


def with_init(data_dir, given: Given, labels):
    """(cfg shaped for --init SOURCE and its fine-tuning recipe, the scanned dataset, the
    resolved source).

    A start from weights brings its own network, preprocessing and recipe
    (warm_start.configure, which sizes the head-only phase by the training images), so the
    recipe chosen from the data does not apply; keys the user set (flags, --config) win.
    """
    from cnncli.training import warm_start
    from cnncli.training.run import load_run_dataset

    cfg = new_config(given)
    src = warm_start.resolve(cfg.train.init)
    dataset = load_run_dataset(data_dir, labels, cfg)
    images = len(dataset.splits.get("train", []))
    return warm_start.configure(cfg, src, given.explicit(), images), dataset, src


def plan_run(data_dir, given: Given, out, resume, labels):
    """Plan a new run or a resume (on process 0 only, in a multi-process run)."""
    from cnncli.training.run import plan_new_run, plan_resume, write_recipe
    from cnncli.training.tblog import tensorboard_missing

    if resume is not None:
        plan = plan_resume(resume)
        if plan.cfg.log.tensorboard and tensorboard_missing():
            raise ConfigError(tensorboard_missing())
        return plan
    init = str((given.overrides or {}).get("train.init") or "")
    if init.strip().lower() == "none":  # no pretrained start: the from-scratch recipe
        given.overrides = {**given.overrides, "train.init": ""}
    elif init:
        cfg, dataset, src = with_init(data_dir, given, labels)
        return plan_new_run(data_dir, cfg, out, labels=labels, dataset=dataset, init=src)
    cfg, dataset, recipe = configure(data_dir, given, labels)
    if cfg.log.tensorboard and tensorboard_missing():  # before the run folder is made
        raise ConfigError(tensorboard_missing())
    src = None
    if cfg.train.init:  # the recipe chose the pretrained start
        from cnncli.training import warm_start

        src = warm_start.resolve(cfg.train.init)
        chosen = {c["key"] for c in recipe["recipe"]["choices"]}
        images = len(dataset.splits.get("train", []))
        cfg = warm_start.configure(cfg, src, given.explicit() | chosen, images)
    plan = plan_new_run(data_dir, cfg, out, labels=labels, dataset=dataset, init=src)
    if recipe is not None:
        plan.recipe = recipe
        write_recipe(plan.run_dir, recipe)
    return plan


def int_list(text: str | None, flag: str) -> list[int] | None:
    """Parse a comma-separated list of integers from a flag (None when the flag is absent)."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ConfigError(
            f"{flag} takes comma-separated integers, e.g. 32,64,128; got {text!r}"
        ) from None
    return values


def model_overrides(cfg, filters, kernel, stride, padding, pool, batch_norm) -> list[dict]:
    """Per-block conv settings from flags: a list applies to all blocks, count from --filters."""
    from cnncli.config import to_dict

    blocks = to_dict(cfg.model)["conv"]
    if filters is not None:
        template = blocks[-1] if blocks else {}
        blocks = [
            dict(blocks[i] if i < len(blocks) else template, filters=f)
            for i, f in enumerate(filters)
        ]
    for key, value in (
        ("kernel", kernel),
        ("stride", stride),
        ("padding", padding),
        ("pool", pool),
        ("batch_norm", batch_norm),
    ):
        if value is not None:
            for b in blocks:
                b[key] = value
                if key == "pool":
                    b["pool_stride"] = 0
    return blocks
