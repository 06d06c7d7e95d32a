"""The learning check: after its first epochs, is a run learning from the images at all?

Pure functions, no I/O. A run whose train accuracy is still near what always answering the
largest class scores, and whose train loss is still near that of answering the class shares,
has learnt nothing from the pixels. Issue 24: the automatic recipe left a clothing-photo
folder at 12-23 % train accuracy (largest class 26 %), loss 2.41 -> 2.26, for 24 epochs;
the check says so after the first epochs, with the likely causes and the flags to try.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cnncli.config import RunConfig

# Look after this many epochs and at least this many optimiser steps (a few hundred
# images at batch 32 take 8 steps an epoch: 3 epochs are too few to judge).
MIN_EPOCHS = 3
MIN_STEPS = 60
# "Near the majority rate": within this share of the gap between it and 100 % (at least 5
# points). "Barely moved": the loss still above this share of the class-share loss.
ACC_MARGIN = 0.1
LOSS_SHARE = 0.9
# Train accuracy and loss are the mean of this many epochs up to the one looked at.
LOOK_BACK = 3


@dataclass(frozen=True)
class LearningCheck:
    """When to look, and what a run that learnt nothing scores."""

    epoch: int  # look after this epoch
    baseline: float  # train accuracy of always answering the largest class
    baseline_class: str  # that class
    prior_loss: float  # train loss of answering the class shares (their entropy)
    stop: bool = False  # stop the run when the check fires (the caller restarts it)
    advice: str = ""  # the likely causes and the flags to try (see `advice`)

    def verdict(self, history: list) -> str:
        """'' while the run learns, else what was seen (one clause). history: the epoch rows
        so far (train_acc, train_loss); judged once, when its last row is self.epoch's, on
        the mean of the last LOOK_BACK epochs (one epoch of a small set is noisy)."""
        if not history or history[-1].epoch != self.epoch:
            return ""
        rows = history[-LOOK_BACK:]
        acc = sum(r.train_acc for r in rows) / len(rows)
        loss = sum(r.train_loss for r in rows) / len(rows)
        if not (math.isfinite(acc) and math.isfinite(loss)):
            return ""
        margin = max(0.05, ACC_MARGIN * (1.0 - self.baseline))
        if acc > self.baseline + margin or loss < LOSS_SHARE * self.prior_loss:
            return ""
        return (
            f"over epochs {rows[0].epoch}-{self.epoch} train accuracy was {100 * acc:.1f}% "
            f"(always answering '{self.baseline_class}' scores {100 * self.baseline:.1f}%) and "
            f"the train loss {loss:.2f} is still near the {self.prior_loss:.2f} of guessing "
            "from the class shares alone"
        )

    def line(self, seen: str) -> str:
        """The one line a run prints when the check fires."""
        return f"not learning: {seen}" + (f"; {self.advice}" if self.advice else "")


def plan_check(
    counts: np.ndarray,
    classes: list[str],
    steps_per_epoch: int,
    balanced: bool,
    stop: bool = False,
    advice: str = "",
) -> LearningCheck:
    """The check of a single-label run: train class counts, steps per epoch, the sampler."""
    counts = np.asarray(counts, np.float64)
    shares = counts / max(counts.sum(), 1.0)
    if balanced:  # the balanced sampler shows every class equally often
        shares = np.where(counts > 0, 1.0, 0.0) / max(int((counts > 0).sum()), 1)
    top = int(np.argmax(shares))
    entropy = float(-sum(p * math.log(p) for p in shares if p > 0))
    epoch = max(MIN_EPOCHS, math.ceil(MIN_STEPS / max(steps_per_epoch, 1)))
    return LearningCheck(epoch, float(shares[top]), classes[top], entropy, stop, advice)


def likely_causes(cfg: RunConfig) -> list[str]:
    """What in the config can keep a network from fitting its own training set."""
    m, t = cfg.model, cfg.train
    causes = []
    if cfg.augment.ops or cfg.augment.preset != "none":
        causes.append(
            "augmentation that changes the images too much (or removes what tells "
            "the classes apart, e.g. flips of left/right classes)"
        )
    if _flatten_dense(cfg):
        causes.append("the dense layer's units switched off (dead ReLUs) by large early steps")
    if m.dropout >= 0.5 and (m.dense or m.backbone):
        causes.append(f"dropout {m.dropout:g}")
    if t.label_smoothing:
        causes.append(f"label smoothing {t.label_smoothing:g}")
    if t.class_weights == "auto":
        causes.append("class weights")
    if t.lr >= 0.002:
        causes.append(f"learning rate {t.lr:g}")
    causes.append("labels that do not match the images")
    return causes


def advice(cfg: RunConfig, restart: bool) -> str:
    """The likely causes and the flags to try (or what the restart changes), one clause."""
    causes = "likely causes: " + ", ".join(likely_causes(cfg))
    if restart:
        return causes + "; restarting once from scratch with less regularisation"
    return causes + "; " + _flags(cfg)


def _flatten_dense(cfg: RunConfig) -> bool:
    """A hidden ReLU dense layer right after a flatten (the head that died in issue 24)."""
    m = cfg.model
    return bool(m.dense) and not m.global_pool and not m.backbone


def _flags(cfg: RunConfig) -> str:
    flags = []
    if _flatten_dense(cfg):
        flags.append("--dense ''")
    if cfg.augment.ops or cfg.augment.preset != "none":
        flags.append("--augment none")
    if cfg.train.lr > 0.0005:
        flags.append(f"--lr {cfg.train.lr / 2:g}")
    if cfg.model.dropout > 0.3 and (cfg.model.dense or cfg.model.backbone):
        flags.append("--dropout 0.3")
    if cfg.train.label_smoothing:
        flags.append("--label-smoothing 0")
    if cfg.train.class_weights == "auto":
        flags.append("--class-weights none")
    return "try " + (" ".join(flags) if flags else "a lower --lr, or check the labels")
