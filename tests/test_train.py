"""Training pieces: class weights, samplers, early stopping, augmentation only in training."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from cnncli.cli import app
from cnncli.config import RunConfig, model_preset
from cnncli.data.loader import epoch_order
from cnncli.model.flax_module import init_weights
from cnncli.training.optimizer import make_optimizer
from cnncli.training.steps import class_weights_for, make_steps, weighted_loss
from tests.conftest import TINY


def test_class_weights_change_the_loss_as_computed_by_hand():
    labels_all = np.array([0, 0, 0, 1])  # class 0 has 3 images, class 1 has 1
    w = class_weights_for(labels_all, 2)
    assert w.tolist() == pytest.approx([4 / (2 * 3), 4 / (2 * 1)])
    logits = jnp.array([[2.0, 0.0], [0.0, 1.0]])
    labels = jnp.array([0, 1])
    mask = jnp.ones(2)
    ce0 = -math.log(math.exp(2) / (math.exp(2) + 1))
    ce1 = -math.log(math.exp(1) / (math.exp(1) + 1))
    plain, _ = weighted_loss(logits, labels, mask)
    assert float(plain) == pytest.approx((ce0 + ce1) / 2, rel=1e-5)
    weighted, _ = weighted_loss(logits, labels, mask, class_weights=w)
    expected = (w[0] * ce0 + w[1] * ce1) / (w[0] + w[1])
    assert float(weighted) == pytest.approx(expected, rel=1e-5)
    assert float(weighted) != pytest.approx(float(plain), rel=1e-3)
    # Padded rows (mask 0) count for nothing.
    padded, _ = weighted_loss(
        jnp.concatenate([logits, logits]),
        jnp.array([0, 1, 1, 1]),
        jnp.array([1.0, 1, 0, 0]),
        class_weights=w,
    )
    assert float(padded) == pytest.approx(expected, rel=1e-5)


def test_balanced_sampler_draws_classes_equally():
    labels = np.array([0] * 90 + [1] * 10)
    drawn = np.concatenate([labels[epoch_order(labels, 0, e, balanced=True)] for e in range(1, 21)])
    share = (drawn == 1).mean()
    assert 0.45 < share < 0.55
    plain = epoch_order(labels, 0, 1)
    assert sorted(plain.tolist()) == list(range(100))
    assert np.array_equal(plain, epoch_order(labels, 0, 1))
    assert not np.array_equal(plain, epoch_order(labels, 0, 2))


def test_augmentation_runs_in_training_only():
    """eval_step on the same images gives the same logits with or without augmentation."""
    cfg = RunConfig()
    cfg.model = model_preset("tiny")
    params, stats = init_weights(cfg.model, image_size=16, channels=3, num_classes=2, seed=0)
    tx = make_optimizer(cfg.train, 1)
    state = {"params": params, "stats": stats, "opt": tx.init(params)}
    calls = []

    def loud_augment(key, images):
        calls.append(1)
        return jnp.zeros(images.shape, jnp.float32)  # would wreck any prediction

    _, eval_plain = make_steps(cfg, tx, None)
    train_aug, eval_aug = make_steps(cfg, tx, loud_augment)
    images = jnp.asarray(np.random.default_rng(0).integers(0, 255, (4, 16, 16, 3), np.uint8))
    assert jnp.array_equal(eval_plain(state, images), eval_aug(state, images))
    assert not calls
    train_aug(
        jax.tree_util.tree_map(jnp.copy, state),
        images,
        jnp.zeros(4, jnp.int32),
        jnp.ones(4),
        jax.random.key(0),
    )
    assert calls


def test_early_stopping_stops_and_resume_says_finished(runner, tree3, tmp_path):
    out = tmp_path / "run"
    # lr ~0 and patience 1: accuracy cannot improve after epoch 1, so it stops at epoch 2.
    args = [
        "train",
        str(tree3),
        "--out",
        str(out),
        "--epochs",
        "8",
        "--patience",
        "1",
        "--lr",
        "1e-12",
        *TINY,
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 2 and "patience" in summary["stopped_early"]
    again = runner.invoke(app, ["train", "--resume", str(out)])
    assert again.exit_code == 0 and "already finished" in again.output


def test_time_limit_stops_at_an_epoch_boundary(runner, tree3, tmp_path):
    out = tmp_path / "run"
    args = [
        "train",
        str(tree3),
        "--out",
        str(out),
        "--epochs",
        "50",
        "--time-limit",
        "0.0001",
        *TINY,
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and "time limit" in summary["stopped_early"]


@pytest.mark.parametrize("preset", ["tiny", "medium", "resnet"])
def test_model_presets_train(runner, tree3, tmp_path, preset):
    out = tmp_path / preset
    result = runner.invoke(
        app,
        [
            "train",
            str(tree3),
            "--out",
            str(out),
            "--model",
            preset,
            "--image-size",
            "16",
            "--epochs",
            "1",
            "--batch-size",
            "8",
        ],
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "model" / "model.json").read_text())
    assert len(meta["model"]["conv"]) == len(model_preset(preset).conv)


def test_run_folder_plots_are_valid_pngs(runner, tree3, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["train", str(tree3), "--out", str(out), "--epochs", "2", "--augment", "light", *TINY]
    )
    assert result.exit_code == 0, result.output
    for name in ("curves.png", "samples.png"):
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.width > 200


def test_find_lr_plots_and_suggests(runner, tree3, tmp_path):
    out = tmp_path / "lr"
    result = runner.invoke(
        app, ["train", str(tree3), "--find-lr", "--out", str(out), *TINY, "--json"]
    )
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert 1e-7 <= found["suggestion"] <= 10
    assert len(found["lrs"]) == len(found["losses"]) >= 10
    assert found["lrs"] == sorted(found["lrs"])
    with Image.open(out / "lr_find.png") as img:
        assert img.format == "PNG"
    assert not (out / "model").exists()


def test_batch_norm_uses_only_the_real_rows_of_a_padded_batch():
    """Training-mode batch norm: statistics over mask-1 rows, as numpy computes them."""
    from cnncli.model import layers

    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (5, 4, 4, 3)).astype(np.float32)
    mask = np.array([1, 1, 1, 0, 0], np.float32)
    x[3:] = 1e3  # padding rows: any value must leave the statistics unchanged
    params = {"bn/scale": jnp.full(3, 2.0), "bn/bias": jnp.full(3, 0.5)}
    stats = {"bn/mean": jnp.zeros(3), "bn/var": jnp.ones(3)}
    y, new = layers.batch_norm(jnp.asarray(x), params, stats, "bn", True, jnp.asarray(mask))
    real = x[:3].reshape(-1, 3).astype(np.float64)
    mean, var = real.mean(0), real.var(0)
    m = layers.BN_MOMENTUM
    np.testing.assert_allclose(new["bn/mean"], (1 - m) * mean, rtol=1e-5)
    np.testing.assert_allclose(new["bn/var"], m + (1 - m) * var, rtol=1e-5)
    expected = (x[:3] - mean) / np.sqrt(var + layers.BN_EPS) * 2.0 + 0.5
    np.testing.assert_allclose(np.asarray(y)[:3], expected, atol=1e-4)
    # Inference uses the running statistics instead.
    y_eval, none = layers.batch_norm(jnp.asarray(x), params, new, "bn", False, None)
    run_mean, run_var = np.asarray(new["bn/mean"]), np.asarray(new["bn/var"])
    expected_eval = (x - run_mean) / np.sqrt(run_var + layers.BN_EPS) * 2.0 + 0.5
    assert none == {}
    np.testing.assert_allclose(np.asarray(y_eval), expected_eval, rtol=1e-4, atol=1e-3)


def test_compile_clock_counts_only_compiling_inside_it():
    """--time-limit's guess of the next epoch leaves out compiling, measured by this clock."""
    import jax
    import jax.numpy as jnp

    from cnncli.training.timing import CompileClock

    f = jax.jit(lambda x: jnp.tanh(x) @ x.T)
    with CompileClock() as clock:
        f(jnp.ones((8, 8))).block_until_ready()
        first = clock.seconds
        f(jnp.ones((8, 8))).block_until_ready()  # compiled already: nothing added
    assert first > 0 and clock.seconds == first
    jax.jit(lambda x: x * 3)(jnp.ones(3)).block_until_ready()  # after the context: not counted
    assert clock.seconds == first
