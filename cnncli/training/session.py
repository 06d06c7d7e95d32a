"""One `cnn train` from plan to summary, without printing: the run, the learning check's
single restart of the automatic from-scratch recipe, and the summary that summary.json,
`--json` and the Python API report. The CLI draws the same steps live (commands/train.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def stepped_down(plan):
    """(config, changes) of the restart the learning check may ask for: runs of the
    automatic from-scratch recipe only (not a resume, a --time-budget race, --init or
    multi-label data), and only when some regularisation is left to step down."""
    from cnncli.training.recipe_variants import step_down

    recipe = plan.recipe
    if recipe is None or "race" in recipe or plan.resume or plan.dataset.multi_label:
        return None
    if plan.cfg.train.init or plan.info.get("init"):
        return None
    cfg, changes = step_down(plan.cfg, set(recipe.get("explicit", [])))
    return (cfg, changes) if changes else None


def train_with_check(
    plan,
    execute: Callable[[Any], Any],
    on_restart: Callable[[list[dict]], None] | None = None,
    processes: int = 1,
):
    """Run `execute(plan)`; when the learning check fires on a run of the automatic recipe,
    restart once from scratch with regularisation stepped down (attempt 1 kept in
    RUN/attempts/1). Returns (plan, outcome) of the last attempt."""
    from cnncli.training.run import restart_from_scratch

    restart = stepped_down(plan) if processes == 1 else None
    plan.stop_when_not_learning = restart is not None
    outcome = execute(plan)
    if restart is not None and outcome.stopped.startswith("not learning"):
        cfg, changes = restart
        plan = restart_from_scratch(plan, outcome, cfg, changes)
        if on_restart is not None:
            on_restart(changes)
        outcome = execute(plan)
    return plan, outcome


def prediction_warning_of(plan, outcome) -> str:
    """The end-of-run warning for a model whose val predictions fall on one class or whose
    val accuracy is near the largest class's share ('' when there is nothing to say)."""
    from cnncli.data.scan import class_counts
    from cnncli.inference.heldout import prediction_warning

    if outcome.finished_before or plan.dataset.multi_label or not outcome.val_predicted:
        return ""
    counts = class_counts(plan.dataset)
    true = [counts[c].get("val", 0) for c in plan.dataset.classes]
    return prediction_warning(
        outcome.val_predicted, true, plan.dataset.classes, outcome.best_val_acc, "validation"
    )


def run_summary(plan, outcome) -> dict[str, Any]:
    """What a finished run reports (summary.json, `--json`): where it is, epochs, the best
    epoch, the last row, skipped files, how it stopped, the learning check, attempts."""
    from cnncli.training.run import read_attempts

    summary: dict[str, Any] = {
        "run_dir": str(plan.run_dir),
        "model": str(plan.run_dir / "model"),
        "epochs": len(outcome.history),
        "best_epoch": outcome.best_epoch,
        "best_val_acc": outcome.best_val_acc,
        "final": outcome.history[-1] if outcome.history else None,
        "skipped": [{"path": p, "reason": r} for p, r in outcome.skipped],
        "already_finished": outcome.finished_before,
        "stopped_early": outcome.stopped,
    }
    if not outcome.finished_before and not plan.dataset.multi_label:
        summary["learning_check"] = "fired" if outcome.not_learning else "passed"
    if outcome.not_learning:
        summary["not_learning"] = outcome.not_learning
    attempts = read_attempts(plan.run_dir)
    if attempts:
        summary["attempts"] = attempts
    warning = prediction_warning_of(plan, outcome)
    if warning:
        summary["warning"] = warning
    if plan.dataset.multi_label:  # best_val_acc is then the best epoch's subset accuracy
        summary["multi_label"] = True
        summary["best_val_map"] = outcome.best_val_map
    if plan.recipe is not None and "race" in plan.recipe:
        summary["time_budget"] = plan.recipe["race"]
    return summary
