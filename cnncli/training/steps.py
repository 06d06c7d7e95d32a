"""Pure, jitted train/eval steps: the losses, class weights, one step, and K steps per call.

The fit loop (train.py) calls them; benchmarks time them. Nothing here knows of files or
of the loop's order: a step is a pure function of (state, batch, key).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnncli.config import RunConfig
from cnncli.model import network


def class_weights_for(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights N / (C * n_c), so every class carries the same total weight."""
    return class_weights_from_counts(np.bincount(labels, minlength=num_classes))


def class_weights_from_counts(counts: np.ndarray) -> np.ndarray:
    """class_weights_for from per-class image counts (e.g. summed over processes)."""
    counts = np.asarray(counts, np.float64)
    num_classes = len(counts)
    weights = counts.sum() / (num_classes * np.maximum(counts, 1.0))
    return np.where(counts > 0, weights, 0.0).astype(np.float32)


def weighted_loss(logits, labels, mask, *, smoothing: float = 0.0, class_weights=None):
    """Mean softmax cross-entropy over the real (mask 1) samples, optionally class-weighted.

    With class_weights w, the loss is sum(w[y] * ce) / sum(w[y]) over the batch.
    """
    num_classes = logits.shape[-1]
    targets = jax.nn.one_hot(labels, num_classes)
    if smoothing:
        targets = optax.smooth_labels(targets, smoothing)
    per_sample = optax.softmax_cross_entropy(logits, targets)
    weight = mask if class_weights is None else mask * jnp.asarray(class_weights)[labels]
    return (per_sample * weight).sum() / jnp.maximum(weight.sum(), 1e-12), per_sample * mask


def multilabel_class_weights(targets: np.ndarray) -> np.ndarray:
    """(2, C) weights of a negative and a positive of each label: N / (2 n) per label.

    The single-label N / (C n_c) applied to each label's two classes (absent, present), so
    the positives and the negatives of every label carry the same total weight.
    """
    targets = np.asarray(targets, np.float64)
    positives = targets.sum(axis=0)
    counts = np.stack([len(targets) - positives, positives])
    weights = len(targets) / (2.0 * np.maximum(counts, 1.0))
    return np.where(counts > 0, weights, 0.0).astype(np.float32)


def multilabel_loss(logits, targets, mask, *, smoothing: float = 0.0, class_weights=None):
    """Mean sigmoid binary cross-entropy over the real (mask 1) samples and every label.

    targets are multi-hot (batch, C). Label smoothing treats each label as a two-class
    problem (y -> y (1 - s) + s / 2). With class_weights w (2, C), each (sample, label)
    term is weighted w[y, label] and the loss is sum(w * bce) / sum(w). Returns (loss,
    per-sample mean BCE times mask).
    """
    smoothed = targets * (1.0 - smoothing) + 0.5 * smoothing if smoothing else targets
    bce = optax.sigmoid_binary_cross_entropy(logits, smoothed)
    weight = jnp.broadcast_to(mask[:, None], bce.shape)
    if class_weights is not None:
        w = jnp.asarray(class_weights)
        weight = weight * jnp.where(targets > 0.5, w[1], w[0])
    loss = (bce * weight).sum() / jnp.maximum(weight.sum(), 1e-12)
    return loss, bce.mean(axis=-1) * mask


def make_steps(
    cfg: RunConfig,
    tx: optax.GradientTransformation,
    augment_fn: Callable | None,
    class_weights: np.ndarray | None = None,
    multi_label: bool = False,
    head_only: bool = False,
):
    """Build (train_step, eval_step), both jax.jit-compiled pure functions.

    train_step(state, images_u8, labels, mask, key) -> (state, (loss_sum, correct, count))
    eval_step(state, images_u8) -> logits
    Augmentation runs only inside train_step: evaluation always sees the plain images.
    With multi_label, labels are multi-hot (batch, C) floats, the loss is multilabel_loss
    and `correct` counts images with every label right at probability 0.5.
    With cfg.train.precision "bf16" the training forward and backward run in bfloat16;
    weights, optimizer state, batch-norm statistics and the loss stay float32. Evaluation
    is float32 (as the saved model predicts).
    With head_only the "images" are a frozen backbone's pooled features (finetune.py) and
    only the logits layer runs; head_only may instead be a forward (params, stats, cached,
    key, train) -> logits over cached activations (finetune.top_forward, --tune-blocks).
    cfg.train.freeze_bn keeps batch norm on its running stats.
    """
    train_step, eval_step = step_functions(
        cfg, tx, augment_fn, class_weights, multi_label, head_only
    )
    return jax.jit(train_step, donate_argnums=0), jax.jit(eval_step)


def step_functions(
    cfg: RunConfig,
    tx: optax.GradientTransformation,
    augment_fn: Callable | None,
    class_weights: np.ndarray | None = None,
    multi_label: bool = False,
    head_only: bool = False,
):
    """make_steps' (train_step, eval_step) before jax.jit, to build other calls from."""
    model_cfg = cfg.model
    smoothing = cfg.train.label_smoothing
    loss_fn = multilabel_loss if multi_label else weighted_loss
    compute = jnp.bfloat16 if cfg.train.precision == "bf16" else None
    bn_train = not cfg.train.freeze_bn

    def loss_terms(params, stats, images_u8, labels, mask, key):
        aug_key, drop_key = jax.random.split(key)
        if callable(head_only):
            logits, new_stats = head_only(params, stats, images_u8, drop_key, True), {}
        elif head_only:
            logits, new_stats = network.logits_layer(params, images_u8), {}
        else:
            x = augment_fn(aug_key, images_u8) if augment_fn is not None else images_u8
            x = network.normalize(x, model_cfg)
            if compute is not None:  # the cast's gradient brings float32 gradients back
                params = jax.tree_util.tree_map(lambda p: p.astype(compute), params)
                x = x.astype(compute)
            logits, new_stats = network.forward(
                params, stats, model_cfg, x, train=True, key=drop_key, mask=mask, bn_train=bn_train
            )
            logits = logits.astype(jnp.float32)
        loss, per_sample = loss_fn(
            logits, labels, mask, smoothing=smoothing, class_weights=class_weights
        )
        if multi_label:
            right = ((logits > 0) == (labels > 0.5)).all(axis=-1)
        else:
            right = logits.argmax(-1) == labels
        correct = (right * mask).sum()
        return loss, (new_stats, per_sample.sum(), correct)

    def train_step(state, images_u8, labels, mask, key):
        grad_fn = jax.value_and_grad(loss_terms, has_aux=True)
        (_, (new_stats, loss_sum, correct)), grads = grad_fn(
            state["params"], state["stats"], images_u8, labels, mask, key
        )
        updates, opt = tx.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        stats = {**state["stats"], **new_stats}
        return {"params": params, "stats": stats, "opt": opt}, (loss_sum, correct, mask.sum())

    def eval_step(state, images_u8):
        if callable(head_only):
            return head_only(state["params"], state["stats"], images_u8, None, False)
        if head_only:
            return network.logits_layer(state["params"], images_u8)
        logits, _ = network.forward(
            state["params"], state["stats"], model_cfg, network.normalize(images_u8, model_cfg)
        )
        return logits

    return train_step, eval_step


def make_fed_step(train_step: Callable) -> Callable:
    """One compiled call of `count` train steps that gather their batches on the device.

    fed(state, images, labels, rows, mask, first, step, base_key, epoch, count=K) runs
    steps first..first+K-1 of the (steps, batch) tables rows/mask, step i gathering
    images[rows[i]] with key fold_in(fold_in(base_key, epoch), step + i - first), the host
    loop's key. K > 1 is a lax.scan (many steps per dispatch); returns (state, (K, 3) loss
    sum / correct / count per step).
    """

    def fed(state, images, labels, rows, mask, first, step, base_key, epoch, count):
        epoch_key = jax.random.fold_in(base_key, epoch)

        def one(state, i):
            r = jax.lax.dynamic_index_in_dim(rows, first + i, keepdims=False)
            m = jax.lax.dynamic_index_in_dim(mask, first + i, keepdims=False)
            key = jax.random.fold_in(epoch_key, step + i)
            state, metrics = train_step(state, images[r], labels[r], m, key)
            return state, jnp.stack(metrics).astype(jnp.float32)

        if count == 1:  # no loop: XLA:CPU runs convolutions inside loops slowly
            state, metrics = one(state, 0)
            return state, metrics[None]
        return jax.lax.scan(one, state, jnp.arange(count))

    return jax.jit(fed, static_argnames="count", donate_argnums=0)
