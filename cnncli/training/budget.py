"""--time-budget: successive halving over candidate recipes, then the best one finishes.

Every candidate is a run folder of its own (run_dir/candidates/NAME: config.toml, metrics.csv,
checkpoints, model/), trained on the run's training split and judged on its validation
split. Each rung gives every surviving candidate the same slice of wall time (so a cheap
recipe gets more epochs than an expensive one, and both cost the same); the better half by
best validation accuracy (ties: lower validation loss) goes on, from its checkpoint, to the
next rung, and the fixed-recipe candidate (protected) goes on whatever its rank, so the
last rung always weighs the winner against it: the race never picks a recipe whose best
validation accuracy is below the fixed recipe's. Racing takes half the budget. The winner's checkpoints, metrics and model are
then copied into the run folder, whose config.toml becomes the winner's, and its training
goes on there for the rest of the budget: a resume of the run folder continues the winner.
candidates.csv keeps every candidate's outcome.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnncli.atomic import atomic_write_text
from cnncli.config import RunConfig, save_toml
from cnncli.training.execute import execute_run
from cnncli.training.run import CONFIG_FILE, METRICS_FILE, RUN_FILE, RunPlan, plan_new_run
from cnncli.training.timing import read_timing

CANDIDATES_FILE = "candidates.csv"
# Share of the budget spent racing; the winner gets the rest (and keeps its race epochs).
RACE_SHARE = 0.5
# Kept back from the final phase for decoding, compiling and saving around the epochs.
OVERHEAD_S = 15.0


@dataclass
class Entry:
    """One candidate recipe and how far it got."""

    name: str
    note: str
    cfg: RunConfig
    plan: RunPlan | None = None
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    done: bool = False  # finished its epochs or stopped by its patience
    rung: int = 0  # the last rung it ran in (1-based)
    status: str = "racing"
    protected: bool = False  # never dropped before the last rung (the fixed recipe)
    init: Any = None  # the pretrained start (warm_start.InitSource) of a pretrained candidate

    @property
    def score(self) -> tuple[float, float]:
        """(best val accuracy, minus the lowest val loss): higher is better."""
        if not self.history:
            return (-1.0, -math.inf)
        accs = [r["val_acc"] for r in self.history if not math.isnan(r["val_acc"])]
        losses = [r["val_loss"] for r in self.history if not math.isnan(r["val_loss"])]
        return (max(accs, default=-1.0), -min(losses, default=math.inf))

    def row(self) -> dict[str, Any]:
        """This candidate's line of candidates.csv."""
        acc, neg_loss = self.score
        best = max(self.history, key=lambda r: r["val_acc"], default={"epoch": 0})
        return {
            "name": self.name,
            "status": self.status,
            "rungs": self.rung,
            "epochs": len(self.history),
            "of_epochs": self.cfg.train.epochs,
            "best_epoch": int(best["epoch"]),
            "best_val_acc": f"{acc:.6f}" if self.history else "",
            "lowest_val_loss": f"{-neg_loss:.6f}" if self.history else "",
            "seconds": f"{self.seconds:.1f}",
            "folder": f"candidates/{self.name}",
            "note": self.note,
        }


class RaceCallbacks:
    """Progress hooks for the CLI (library code never prints)."""

    def on_slice_start(self, entry: Entry, rung: int, seconds: float) -> None: ...
    def on_slice_end(self, entry: Entry, rung: int) -> None: ...
    def on_rung_end(self, rung: int, kept: list[Entry], dropped: list[Entry]) -> None: ...


def write_candidates(run_dir: Path, entries: list[Entry]) -> None:
    """candidates.csv: one row per candidate (status winner / out after rung k)."""
    rows = [e.row() for e in entries]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(run_dir / CANDIDATES_FILE, buf.getvalue())


def _with_time_limit(cfg: RunConfig, seconds: float) -> RunConfig:
    train = dataclasses.replace(cfg.train, time_limit=max(seconds, 1.0) / 60.0)
    return dataclasses.replace(cfg, train=train)


def _advance(entry: Entry, seconds: float, clock: Callable[[], float], callbacks) -> None:
    """Train entry for about `seconds` of wall time (at least one epoch), from its checkpoint."""
    assert entry.plan is not None
    plan = dataclasses.replace(entry.plan, cfg=_with_time_limit(entry.cfg, seconds))
    started = clock()
    outcome = execute_run(plan, callbacks)
    entry.seconds += clock() - started
    entry.history = outcome.history
    entry.done = (
        outcome.finished_before
        or len(outcome.history) >= entry.cfg.train.epochs
        or outcome.stopped.startswith("no val")
    )


def race(
    plan: RunPlan,
    entries: list[Entry],
    budget_s: float,
    callbacks: RaceCallbacks | None = None,
    train_callbacks=None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[Entry, float]:
    """Successive halving over entries (at least two) in plan's run folder.

    Returns (the winner, seconds of the budget left). The run folder then holds the
    winner's config.toml, checkpoints, metrics.csv and model/, and candidates.csv.
    """
    cb = callbacks or RaceCallbacks()
    start = clock()
    for entry in entries:
        entry.plan = plan_new_run(
            plan.dataset.root,
            entry.cfg,
            plan.run_dir / "candidates" / entry.name,
            dataset=plan.dataset,
            init=entry.init,
        )
    alive = list(entries)
    rungs = max(1, math.ceil(math.log2(len(alive))))
    per_rung = budget_s * RACE_SHARE / rungs
    for rung in range(1, rungs + 1):
        share = per_rung / len(alive)
        for entry in alive:
            entry.rung = rung
            if entry.done:
                continue
            cb.on_slice_start(entry, rung, share)
            _advance(entry, share, clock, train_callbacks)
            cb.on_slice_end(entry, rung)
            write_candidates(plan.run_dir, entries)
        alive, dropped = survivors(alive, rung == rungs)
        for entry in dropped:
            entry.status = f"out after rung {rung}"
        cb.on_rung_end(rung, alive, dropped)
    winner = alive[0]
    winner.status = "winner"
    write_candidates(plan.run_dir, entries)
    _take_over(plan.run_dir, winner)
    return winner, budget_s - (clock() - start)


def survivors(alive: list[Entry], last: bool) -> tuple[list[Entry], list[Entry]]:
    """(kept, dropped) after a rung: the better half by score, or the best one after the
    last rung; a protected entry stays for the next rung even when it ranks lower."""
    ranked = sorted(alive, key=lambda e: e.score, reverse=True)
    keep = 1 if last else math.ceil(len(ranked) / 2)
    kept, dropped = ranked[:keep], ranked[keep:]
    if not last:
        kept += [e for e in dropped if e.protected]
        dropped = [e for e in dropped if not e.protected]
    return kept, dropped


def _take_over(run_dir: Path, winner: Entry) -> None:
    """Make the run folder the winner's: its config, checkpoints, metrics, model, plots."""
    assert winner.plan is not None
    source = winner.plan.run_dir
    save_toml(winner.cfg, run_dir / CONFIG_FILE)
    info = json.loads((run_dir / RUN_FILE).read_text())
    info.pop("init", None)  # the start is the winner's: pretrained or from scratch
    if winner.init is not None:
        info["init"] = winner.init.as_dict()
    atomic_write_text(run_dir / RUN_FILE, json.dumps(info, indent=2) + "\n")
    for name in ("checkpoints", "model"):
        if (run_dir / name).exists():
            shutil.rmtree(run_dir / name)
        if (source / name).exists():
            shutil.copytree(source / name, run_dir / name)
    for name in (METRICS_FILE, "curves.png", "samples.png"):
        if (source / name).exists():
            shutil.copy2(source / name, run_dir / name)


def fitting_epochs(epochs: int, done: int, epoch_seconds: list[float], seconds: float) -> int:
    """The epoch count to finish with: `epochs`, or fewer when the ones still to train, at
    the median epoch time so far, do not fit in `seconds` (at least one more epoch)."""
    if done >= epochs or not epoch_seconds:
        return epochs
    per_epoch = max(statistics.median(epoch_seconds), 1e-6)
    return min(epochs, done + max(int(max(seconds, 0.0) // per_epoch), 1))


def final_plan(plan: RunPlan, winner: Entry, seconds_left: float) -> RunPlan:
    """The run folder's plan for the winner's last phase: its config, the time that is left.

    When the winner's remaining epochs do not fit, its epoch count shrinks to what does
    (and config.toml says so), so the learning-rate schedule ends with the budget instead
    of being cut off mid-way; the time limit stays as the guard.
    """
    from cnncli.model.shapes import layer_table

    assert winner.plan is not None
    cfg, left = winner.cfg, max(seconds_left - OVERHEAD_S, 1.0)
    timed = read_timing(winner.plan.run_dir).get("epochs", {})
    seconds = [float(v) for v in timed.values() if isinstance(v, (int, float))]
    epochs = fitting_epochs(cfg.train.epochs, len(winner.history), seconds, left)
    if epochs < cfg.train.epochs:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs))
        save_toml(cfg, plan.run_dir / CONFIG_FILE)  # a resume ends where the schedule does
    cfg = _with_time_limit(cfg, left)
    d = cfg.data
    layers = layer_table(cfg.model, d.image_size, d.channels, len(plan.dataset.classes))
    info = {k: v for k, v in plan.info.items() if k != "init"}
    if winner.init is not None:
        info["init"] = winner.init.as_dict()
    return dataclasses.replace(plan, cfg=cfg, layers=layers, info=info)
