"""The cause of issue 24: the recipe's photo network lost its dense units in the first steps.

small-bn flattened its batch-normed 8x8x128 features into a 128-unit ReLU layer. Batch norm
and ReLU keep those thousands of inputs positive and near 1, so an AdamW step, which moves
every weight of a unit by about the learning rate at once, moves the unit's input by several
standard deviations; a unit pushed below zero for every image never gets a gradient again.
On the clothing photos 96 % of the units were dead after 48 steps and training stalled at
12-23 % train accuracy. The recipe now sends the features straight to the logits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from cnncli.config import RunConfig
from cnncli.data.stats import DatasetStats, add_header_stats
from cnncli.model import network
from cnncli.training.execute import fresh_state
from cnncli.training.optimizer import make_optimizer
from cnncli.training.recipe import apply_recipe, choose_recipe
from cnncli.training.steps import make_steps

SIZE, BATCH, STEPS = 32, 16, 12


def _garments_on_light_backgrounds(n: int, classes: int, seed: int = 0):
    """Dark rectangles of a class's own shape on light, slightly noisy backgrounds."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n).astype(np.int32)
    images = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for i, c in enumerate(labels):
        pixels = rng.integers(200, 250) + rng.integers(-8, 9, (SIZE, SIZE, 3))
        h, w = 10 + c, 20 - c
        y, x = rng.integers(2, SIZE - h - 1), rng.integers(2, SIZE - w - 1)
        pixels[y : y + h, x : x + w] = rng.integers(20, 160, 3)
        images[i] = np.clip(pixels, 0, 255)
    return images, labels


def _photo_recipe_config() -> RunConfig:
    """The automatic recipe for a clothing-like folder: 10 classes of 400x533 colour JPEGs."""
    classes = [f"class{i}" for i in range(10)]
    stats = DatasetStats(classes=classes, train_counts=[300] * 10, val_images=100)
    stats = add_header_stats(stats, [(400, 533, "RGB", "JPEG")] * 50)
    cfg = apply_recipe(RunConfig(), choose_recipe(stats))
    cfg.data.image_size, cfg.train.batch_size = SIZE, BATCH  # small, for speed
    return cfg


def _live_share_after_training(cfg: RunConfig, images, labels) -> tuple[float, float]:
    """Share of the features entering the logits that are non-zero for some image, before
    and after STEPS train steps with the config's optimiser (warm-up of 4 steps)."""
    tx = make_optimizer(cfg.train, 4)
    train_step, _ = make_steps(cfg, tx, None)
    state = jax.tree_util.tree_map(jnp.asarray, fresh_state(cfg, 10, 4))
    probe = network.normalize(jnp.asarray(images[:64]), cfg.model)

    @jax.jit
    def live_share(params, stats):
        features, _, _ = network.trunk(params, stats, cfg.model, probe)
        return (network.pre_logits(params, cfg.model, features) > 0).any(axis=0).mean()

    def live(state) -> float:
        return float(live_share(state["params"], state["stats"]))

    before = live(state)
    mask = jnp.ones(BATCH)
    for step in range(STEPS):
        rows = np.arange(step * BATCH, (step + 1) * BATCH) % len(images)
        batch = jnp.asarray(images[rows]), jnp.asarray(labels[rows])
        state, _ = train_step(state, *batch, mask, jax.random.key(step))
    return before, live(state)


def test_the_photo_recipe_keeps_the_features_that_reach_the_logits_alive():
    images, labels = _garments_on_light_backgrounds(192, 10)
    cfg = _photo_recipe_config()
    assert cfg.model.dense == [] and all(b.batch_norm for b in cfg.model.conv)
    assert cfg.train.optimizer == "adamw" and cfg.train.lr == 0.002
    before, after = _live_share_after_training(cfg, images, labels)
    assert after >= 0.9, (before, after)
    # The head the recipe had before issue 24: the same steps switch most of it off.
    cfg.model.dense, cfg.model.dropout = [128], 0.5
    before, after = _live_share_after_training(cfg, images, labels)
    assert before >= 0.8 and after < 0.5, (before, after)
