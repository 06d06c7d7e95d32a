"""budget.fitting_epochs: the winner's schedule ends with the time budget, not after it."""

from __future__ import annotations

from cnncli.budget import fitting_epochs


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
