"""The optimiser of a run: optax's adam, adamw or sgd with the warm-up + cosine (or constant)
learning-rate schedule, from the train config."""

from __future__ import annotations

import optax

from cnncli.config import TrainConfig


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


def make_optimizer(
    t: TrainConfig, steps_per_epoch: int, schedule: optax.Schedule | None = None
) -> optax.GradientTransformation:
    """adam | adamw (decoupled weight decay) | sgd with momentum (+ L2), with the schedule.

    With train.backbone_lr (fine-tuning from --init), everything but the logits layer
    follows the same schedule scaled by backbone_lr / lr.
    """
    schedule = schedule or make_schedule(t, steps_per_epoch)
    if t.backbone_lr and t.backbone_lr != t.lr:
        ratio = t.backbone_lr / t.lr

        def labels(params):
            return {k: "head" if k.startswith("logits/") else "backbone" for k in params}

        return optax.multi_transform(
            {
                "head": _optimizer(t, schedule),
                "backbone": _optimizer(t, lambda step: schedule(step) * ratio),
            },
            labels,
        )
    return _optimizer(t, schedule)


def _optimizer(t: TrainConfig, schedule) -> optax.GradientTransformation:
    if t.optimizer == "adamw":
        return optax.adamw(schedule, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return optax.chain(
            optax.add_decayed_weights(t.weight_decay), optax.sgd(schedule, momentum=t.momentum)
        )
    return optax.adam(schedule)
