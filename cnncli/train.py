"""Pure, jitted train/eval steps and the fit loop (checkpoints each epoch, callbacks for output)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnncli import network
from cnncli.config import RunConfig, TrainConfig


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the message says where and what to try."""


@dataclass
class SplitArrays:
    """Images (uint8 NHWC, in memory or memory-mapped) and integer labels of one split."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class EpochRow:
    """One line of metrics.csv (time is kept out so the file is reproducible)."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float

    def as_dict(self) -> dict[str, float]:
        return dict(vars(self))


@dataclass
class FitResult:
    """What fit() leaves behind."""

    history: list[EpochRow] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = 0.0
    params: dict[str, np.ndarray] = field(default_factory=dict)
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    stopped_early: bool = False


class Callbacks:
    """Progress hooks; the CLI overrides them to draw Rich output. Library code never prints."""

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None: ...
    def on_step(self, step: int, steps: int, loss: float, images_per_s: float) -> None: ...
    def on_epoch_end(self, row: EpochRow, seconds: float, improved: bool) -> None: ...


# ---------------------------------------------------------------------------- optimiser


def make_schedule(t: TrainConfig, steps_per_epoch: int) -> optax.Schedule:
    """Linear warm-up to lr, then cosine decay to 1% of lr (or constant after warm-up)."""
    total = max(1, t.epochs * steps_per_epoch)
    warmup = min(int(round(t.warmup_epochs * steps_per_epoch)), total - 1)
    if t.schedule == "constant":
        if warmup == 0:
            return optax.constant_schedule(t.lr)
        return optax.join_schedules(
            [optax.linear_schedule(0.0, t.lr, warmup), optax.constant_schedule(t.lr)], [warmup]
        )
    return optax.warmup_cosine_decay_schedule(0.0, t.lr, warmup, total, end_value=t.lr * 0.01)


def make_optimizer(t: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """adam | adamw (decoupled weight decay) | sgd with momentum (+ L2), with the schedule."""
    schedule = make_schedule(t, steps_per_epoch)
    if t.optimizer == "adamw":
        return optax.adamw(schedule, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return optax.chain(
            optax.add_decayed_weights(t.weight_decay), optax.sgd(schedule, momentum=t.momentum)
        )
    return optax.adam(schedule)


# ---------------------------------------------------------------------------- steps


def make_steps(cfg: RunConfig, tx: optax.GradientTransformation, augment_fn: Callable | None):
    """Build (train_step, eval_step), both jax.jit-compiled pure functions.

    train_step(state, images_u8, labels, mask, key) -> (state, (loss_sum, correct, count))
    eval_step(state, images_u8) -> logits
    """
    model_cfg = cfg.model
    smoothing = cfg.train.label_smoothing

    def loss_terms(params, stats, images_u8, labels, mask, key):
        aug_key, drop_key = jax.random.split(key)
        x = augment_fn(aug_key, images_u8) if augment_fn is not None else images_u8
        x = network.normalize(x)
        logits, new_stats = network.forward(
            params, stats, model_cfg, x, train=True, key=drop_key, mask=mask
        )
        num_classes = logits.shape[-1]
        targets = (
            optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing)
            if smoothing
            else jax.nn.one_hot(labels, num_classes)
        )
        per_sample = optax.softmax_cross_entropy(logits, targets) * mask
        loss = per_sample.sum() / jnp.maximum(mask.sum(), 1.0)
        correct = ((logits.argmax(-1) == labels) * mask).sum()
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
        logits, _ = network.forward(
            state["params"], state["stats"], model_cfg, network.normalize(images_u8)
        )
        return logits

    return jax.jit(train_step, donate_argnums=0), jax.jit(eval_step)


# ---------------------------------------------------------------------------- batching


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled sample order of an epoch: a pure function of (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def padded_batches(order: np.ndarray, batch_size: int):
    """Yield (indices, mask) with a fixed batch shape; the last batch is padded and masked."""
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        mask = np.ones(batch_size, np.float32)
        if len(idx) < batch_size:
            mask[len(idx) :] = 0.0
            idx = np.concatenate([idx, np.full(batch_size - len(idx), idx[0])])
        yield idx, mask


def gather(split: SplitArrays, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a (possibly memory-mapped) split, read in sorted order for locality."""
    order = np.argsort(idx, kind="stable")
    images = np.empty((len(idx), *split.images.shape[1:]), np.uint8)
    images[order] = split.images[idx[order]]
    return images, split.labels[idx].astype(np.int32)


def predict_logits(eval_step, state, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Logits for every image, in fixed-shape padded batches (one compile)."""
    out = []
    order = np.arange(len(images))
    split = SplitArrays(images, np.zeros(len(images), np.int32))
    for idx, mask in padded_batches(order, batch_size):
        batch, _ = gather(split, idx)
        logits = np.asarray(eval_step(state, jnp.asarray(batch)))
        out.append(logits[mask > 0])
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def evaluate_split(eval_step, state, split: SplitArrays, batch_size: int) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on a split."""
    if len(split) == 0:
        return float("nan"), float("nan")
    logits = predict_logits(eval_step, state, split.images, batch_size)
    log_probs = logits - jax.scipy.special.logsumexp(logits, axis=-1, keepdims=True)
    labels = split.labels.astype(np.int64)
    loss = float(-np.mean(np.asarray(log_probs)[np.arange(len(labels)), labels]))
    acc = float(np.mean(logits.argmax(-1) == labels))
    return loss, acc


# ---------------------------------------------------------------------------- fit


def to_numpy(tree: Any) -> Any:
    """Device arrays -> numpy (for saving)."""
    return jax.tree_util.tree_map(np.asarray, tree)


def fit(
    cfg: RunConfig,
    train: SplitArrays,
    val: SplitArrays,
    init_state: dict[str, Any],
    checkpoints,
    *,
    start_epoch: int = 0,
    history: list[EpochRow] | None = None,
    on_improved: Callable[[dict[str, Any], EpochRow], None] | None = None,
    augment_fn: Callable | None = None,
    callbacks: Callbacks | None = None,
) -> FitResult:
    """Train from `start_epoch` to cfg.train.epochs, checkpointing after every epoch.

    init_state = {"params", "stats", "opt"} (fresh or restored). The data order, dropout and
    augmentation keys are pure functions of (seed, epoch, step), so a resumed run repeats an
    uninterrupted one exactly.
    """
    t = cfg.train
    cb = callbacks or Callbacks()
    steps = math.ceil(len(train) / t.batch_size)
    tx = make_optimizer(t, steps)
    schedule = make_schedule(t, steps)
    train_step, eval_step = make_steps(cfg, tx, augment_fn)
    state = jax.tree_util.tree_map(jnp.asarray, init_state)
    result = FitResult(history=list(history or []))
    for row in result.history:
        if row.val_acc > result.best_val_acc or result.best_epoch == 0:
            result.best_epoch, result.best_val_acc = row.epoch, row.val_acc
    base_key = jax.random.key(t.seed)
    for epoch in range(start_epoch + 1, t.epochs + 1):
        cb.on_epoch_start(epoch, t.epochs, steps)
        epoch_key = jax.random.fold_in(base_key, epoch)
        loss_sum = correct = count = 0.0
        started = time.perf_counter()
        pending = None
        for step, (idx, mask) in enumerate(
            padded_batches(epoch_order(len(train), t.seed, epoch), t.batch_size)
        ):
            images, labels = gather(train, idx)
            key = jax.random.fold_in(epoch_key, step)
            state, metrics = train_step(
                state, jnp.asarray(images), jnp.asarray(labels), jnp.asarray(mask), key
            )
            # Read the previous step's numbers while this one runs, so the host never stalls XLA.
            if pending is not None:
                loss_sum, correct, count = _accumulate(
                    pending, loss_sum, correct, count, epoch, step, cb, steps, started
                )
            pending = metrics
        loss_sum, correct, count = _accumulate(
            pending, loss_sum, correct, count, epoch, steps, cb, steps, started
        )
        val_loss, val_acc = evaluate_split(eval_step, state, val, t.batch_size)
        row = EpochRow(
            epoch,
            loss_sum / max(count, 1.0),
            correct / max(count, 1.0),
            val_loss,
            val_acc,
            float(schedule(epoch * steps - 1)),
        )
        result.history.append(row)
        improved = result.best_epoch == 0 or val_acc > result.best_val_acc
        if improved:
            result.best_epoch, result.best_val_acc = epoch, val_acc
        host_state = to_numpy(state)
        checkpoints.save(
            epoch,
            host_state,
            {"history": [r.as_dict() for r in result.history], "best_epoch": result.best_epoch},
            val_acc if not math.isnan(val_acc) else 0.0,
        )
        if improved and on_improved is not None:
            on_improved(host_state, row)
        cb.on_epoch_end(row, time.perf_counter() - started, improved)
    final = to_numpy(state)
    result.params, result.stats = final["params"], final["stats"]
    return result


def _accumulate(metrics, loss_sum, correct, count, epoch, step, cb, steps, started):
    batch_loss, batch_correct, batch_count = (float(v) for v in metrics)
    if not math.isfinite(batch_loss):
        raise TrainingDiverged(
            f"loss became {batch_loss} at epoch {epoch}, step {step}; "
            "try a lower learning rate (--lr) or a smaller batch; the last good checkpoint is kept"
        )
    loss_sum += batch_loss
    correct += batch_correct
    count += batch_count
    elapsed = max(time.perf_counter() - started, 1e-9)
    cb.on_step(step, steps, batch_loss / max(batch_count, 1.0), count / elapsed)
    return loss_sum, correct, count
