"""--time-budget: the winner's schedule ends with the time budget, not after it, and the
fixed recipe races to the last rung, so the winner is never worse than it on val."""

from __future__ import annotations

from cnncli.config import RunConfig
from cnncli.training.budget import Entry, fitting_epochs, survivors


def test_epochs_that_do_not_fit_shrink_to_what_the_time_left_holds():
    # 8 of 30 epochs done at ~13 s each (the first with compiling); 219 s left -> 16 more.
    seconds = [14.4, 12.6, 14.8, 16.8, 13.3, 12.3, 12.5, 13.0]
    assert fitting_epochs(30, 8, seconds, 219.0) == 8 + int(219.0 // 13.15)


def test_epochs_that_fit_or_are_done_stay():
    assert fitting_epochs(30, 8, [10.0] * 8, 1_000.0) == 30  # 22 more fit
    assert fitting_epochs(12, 12, [10.0] * 12, 5.0) == 12  # finished in the race
    assert fitting_epochs(30, 0, [], 5.0) == 30  # no timing to go by


def test_at_least_one_more_epoch_when_time_is_short():
    assert fitting_epochs(30, 8, [10.0] * 8, 3.0) == 9
    assert fitting_epochs(30, 8, [10.0] * 8, -20.0) == 9


def _entry(name: str, val_accs: list[float], protected: bool = False) -> Entry:
    history = [{"epoch": i, "val_acc": a, "val_loss": 1.0} for i, a in enumerate(val_accs, 1)]
    return Entry(name, "", RunConfig(), history=history, protected=protected)


def test_the_fixed_candidate_survives_every_rung_but_the_last_and_is_weighed_there():
    # Issue 24: the automatic recipe collapsed (24.6 % val) where the fixed one reached
    # 73.6 %; a fixed candidate that starts slowly must not be dropped after the first rung.
    auto, lighter = _entry("auto", [0.30, 0.31]), _entry("lighter", [0.35, 0.40])
    medium, fixed = _entry("medium", [0.33]), _entry("fixed", [0.20, 0.28], protected=True)
    kept, dropped = survivors([auto, lighter, medium, fixed], last=False)
    assert [e.name for e in kept] == ["lighter", "medium", "fixed"]
    assert [e.name for e in dropped] == ["auto"]
    # Last rung: the best on val wins, the fixed candidate included.
    fixed.history.append({"epoch": 3, "val_acc": 0.736, "val_loss": 0.8})
    kept, dropped = survivors([lighter, medium, fixed], last=True)
    assert [e.name for e in kept] == ["fixed"]
    assert {e.name for e in dropped} == {"lighter", "medium"}
    lighter.history.append({"epoch": 3, "val_acc": 0.75, "val_loss": 0.7})
    kept, _ = survivors([lighter, fixed], last=True)
    assert kept[0].name == "lighter" and kept[0].score >= fixed.score
