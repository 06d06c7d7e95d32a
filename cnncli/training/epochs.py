"""What the fit loop reports: one row per epoch (single- or multi-label), the result, the
progress hooks a caller overrides (the CLI draws them; the Python API passes rows on), and
the error a diverged run raises."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the message says where and what to try."""


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

    @property
    def score(self) -> float:
        """What picks the best epoch: val accuracy."""
        return self.val_acc


@dataclass
class MultiLabelRow(EpochRow):
    """An epoch in multi-label mode: accuracies are subset accuracy (every label right at
    0.5), and val_map (val mean average precision) picks the best epoch, because it needs no
    threshold (thresholds are tuned on val after each epoch) and moves smoothly while
    subset accuracy stays near 0 on many-label data."""

    val_map: float = float("nan")

    def as_dict(self) -> dict[str, float]:
        row = dict(vars(self))
        lr = row.pop("lr")
        return {**row, "lr": lr}  # metrics.csv order: ..., val_acc, val_map, lr

    @property
    def score(self) -> float:
        return self.val_map


def epoch_row(values: dict[str, float]) -> EpochRow:
    """An EpochRow (or MultiLabelRow, when it has val_map) from its as_dict()."""
    return MultiLabelRow(**values) if "val_map" in values else EpochRow(**values)


@dataclass
class FitResult:
    """What fit() leaves behind."""

    history: list[EpochRow] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = 0.0
    params: dict[str, np.ndarray] = field(default_factory=dict)
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    stopped_early: str = ""  # why training stopped before the last epoch, if it did
    not_learning: str = ""  # the learning check's line, when it fired
    # How many val images the best epoch's model put in each class (single-label runs).
    best_val_predicted: list[int] = field(default_factory=list)


class Callbacks:
    """Progress hooks; the CLI overrides them to draw Rich output. Library code never prints."""

    def on_setup(self, text: str) -> None: ...  # device, precision, where the data lives
    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None: ...
    def on_step(self, step: int, steps: int, loss: float, images_per_s: float) -> None: ...
    def on_epoch_end(self, row: EpochRow, seconds: float, improved: bool) -> None: ...
    def on_not_learning(self, line: str) -> None: ...  # the learning check fired
