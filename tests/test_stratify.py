"""Iterative stratification (cnncli.data.stratify): every label in train and val, seeded."""

from __future__ import annotations

import numpy as np

from cnncli.data.split import stratified_split
from cnncli.data.stratify import iterative_folds, iterative_split


def _random_items(seed: int, n: int = 400, labels: int = 12) -> list[tuple[str, tuple[int, ...]]]:
    """Skewed label frequencies (label k appears with probability ~0.5 / (k + 1)), plus two
    labels with exactly two and three images, and one label with a single image."""
    rng = np.random.default_rng(seed)
    p = 0.5 / np.arange(1, labels + 1)
    items = []
    for i in range(n):
        on = np.flatnonzero(rng.random(labels) < p)
        if not len(on):
            on = np.array([0])
        items.append((f"img/{i:04d}.png", tuple(int(k) for k in on)))
    extra = {labels: 2, labels + 1: 3, labels + 2: 1}
    for label, count in extra.items():
        for j in range(count):
            path, old = items[7 * label + j]
            items[7 * label + j] = (path, (*old, label))
    return items


def _label_counts(items, labels: int) -> np.ndarray:
    counts = np.zeros(labels, int)
    for _, label in items:
        counts[list(label)] += 1
    return counts


def test_every_label_lands_in_train_and_val():
    for seed in range(3):
        items = _random_items(seed)
        labels = 15
        train, val = iterative_split(items, labels, 0.2, seed)
        assert sorted(train + val) == sorted(items)
        assert train == sorted(train) and val == sorted(val)
        total, in_train, in_val = (_label_counts(x, labels) for x in (items, train, val))
        both = total >= 2
        assert (in_train[both] >= 1).all() and (in_val[both] >= 1).all(), (in_train, in_val)
        assert in_train[total == 1].sum() + in_val[total == 1].sum() == 1
        # The shares follow val_fraction per label (within rounding of a few images) ...
        common = total >= 20
        share = in_val[common] / total[common]
        assert np.all(np.abs(share - 0.2) < 0.06), share
        # ... and overall.
        assert abs(len(val) / len(items) - 0.2) < 0.03


def test_split_is_a_pure_function_of_items_and_seed():
    items = _random_items(0)
    first = iterative_split(items, 15, 0.2, 5)
    assert iterative_split(list(reversed(items)), 15, 0.2, 5) == first
    assert iterative_split(items, 15, 0.2, 6) != first


def test_one_label_per_image_matches_per_class_stratification_counts():
    items = [(f"{c}/{i}.png", c) for c, n in enumerate((10, 7, 3, 2)) for i in range(n)]
    train, val = iterative_split([(p, (c,)) for p, c in items], 4, 0.25, 0)
    ref_train, ref_val = stratified_split(items, 0.25, 0)

    def count(split):
        return np.bincount([c if isinstance(c, int) else c[0] for _, c in split], minlength=4)

    assert (count(val) == count(ref_val)).all() and (count(train) == count(ref_train)).all()


def test_two_images_of_a_label_are_never_both_in_train():
    # One label with exactly two images, both also carrying the common label.
    items = [(f"{i:02d}.png", (0,)) for i in range(20)] + [("a.png", (0, 1)), ("b.png", (0, 1))]
    train, val = iterative_split(items, 2, 0.2, 0)
    assert [label for _, label in val].count((0, 1)) == 1
    assert [label for _, label in train].count((0, 1)) == 1


def test_k_folds_hold_every_label_and_a_kth_of_the_images():
    items = _random_items(1, n=300)
    folds = iterative_folds(items, 15, 5, 0)
    assert folds == iterative_folds(items, 15, 5, 0) and set(folds) == set(range(5))
    assert np.all(np.abs(np.bincount(folds) - 60) <= 6)
    total = _label_counts(items, 15)
    for k in range(5):
        in_fold = _label_counts([it for it, f in zip(items, folds, strict=True) if f == k], 15)
        assert (in_fold[total >= 5] >= 1).all(), (k, in_fold)
