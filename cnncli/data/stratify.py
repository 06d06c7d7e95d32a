"""Iterative stratification (Sechidis, Tsoumakas & Vlahavas, 2011): a seeded multi-label split.

Single-label splits stratify per class (split.stratified_split; stratified_folds for K-fold).
With several labels per image that is impossible exactly, so the algorithm hands out images
label by label, rarest label first, each to the split that still wants most of that label. A
repair pass then makes sure that every label with at least two images lands in both train
and val. The split guard's groups of duplicates are handed out as one unit each (their
label counts added up), so a group never straddles train and val.
"""

from __future__ import annotations

import numpy as np

from cnncli.data.split import Groups, seeded_rank, split_units

MultiItem = tuple[str, tuple[int, ...]]


def _wanted(counts: np.ndarray, val_fraction: float) -> np.ndarray:
    """Images of each label val should get: n * fraction rounded half up, 1..n-1 when n >= 2."""
    want = np.floor(counts * val_fraction + 0.5)
    return np.where(counts >= 2, np.clip(want, 1, counts - 1), 0)


def iterative_split(
    items: list[MultiItem], num_labels: int, val_fraction: float, seed: int, groups: Groups = None
) -> tuple[list[MultiItem], list[MultiItem]]:
    """Split (path, label indices) items into (train, val), both sorted by path.

    Follows Sechidis et al.: while images remain, take the label with the fewest remaining
    images and give each of its images to the split that wants most of that label (ties:
    the split that wants most images in all; then val). Val wants n * val_fraction images
    of a label with n images (rounded half up, at least 1 and at most n - 1), and
    n_images * val_fraction in all. Ties between images follow a seeded hash of the path,
    so the split depends only on (paths, labels, val_fraction, seed, groups). A group of
    duplicates (split.split_units) is one unit whose label counts are its images' summed.
    """
    if not items:
        return [], []
    units, y = _units(items, groups, num_labels, seed)
    counts = y.sum(axis=0)
    want_val = _wanted(counts, val_fraction).astype(np.float64)
    n_val = round(len(items) * val_fraction)
    subset = _assign(y, np.stack([counts - want_val, want_val]), [len(items) - n_val, n_val], units)
    train = sorted(items[i] for r in np.flatnonzero(subset == 0) for i in units[r])
    val = sorted(items[i] for r in np.flatnonzero(subset == 1) for i in units[r])
    return train, val


def iterative_folds(items: list[MultiItem], num_labels: int, k: int, seed: int) -> list[int]:
    """The fold (0..k-1) of each item, in the items' order: k-way iterative stratification.

    Every fold wants 1/k of each label's images and of all images (Sechidis et al.); a
    label with at least k images ends up in every fold.
    """
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2, got {k}")
    if not items:
        return []
    units, y = _units(items, None, num_labels, seed)
    counts = y.sum(axis=0).astype(np.float64)
    subset = _assign(y, np.tile(counts / k, (k, 1)), [len(items) / k] * k, units)
    folds = [0] * len(items)
    for r, (i,) in enumerate(units):
        folds[i] = int(subset[r])
    return folds


def stratified_folds(items: list[tuple[str, int]], k: int, seed: int) -> list[int]:
    """The fold (0..k-1) of each single-label (path, class) item, in the items' order.

    Each class's images, in seeded order, are dealt to the folds in turn, the deal
    continuing from one class to the next: every class's count differs by at most one
    between folds, and so does every fold's size. Depends only on (paths, labels, k, seed).
    """
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2, got {k}")
    by_label: dict[int, list[int]] = {}
    for i, (_, label) in enumerate(items):
        by_label.setdefault(label, []).append(i)
    folds = [0] * len(items)
    dealt = 0
    for label in sorted(by_label):
        members = sorted(
            by_label[label], key=lambda i: (seeded_rank(seed, items[i][0]), items[i][0])
        )
        for i in members:
            folds[i] = dealt % k
            dealt += 1
    return folds


def _units(
    items: list[MultiItem], groups: Groups, num_labels: int, seed: int
) -> tuple[list[list[int]], np.ndarray]:
    """(units as item indices in seeded order, label counts per unit in that order): a unit
    is a group of duplicates or one image; for single images the counts are multi-hot."""
    index = {path: i for i, (path, _) in enumerate(items)}
    units = [[index[p] for p in unit] for unit in split_units(list(index), groups, seed)]
    y = np.zeros((len(units), num_labels), np.int64)
    for row, members in enumerate(units):
        for i in members:
            y[row, list(items[i][1])] += 1
    return units, y


def _assign(
    y: np.ndarray, desired: np.ndarray, total: list[float], units: list[list[int]]
) -> np.ndarray:
    """Subset of each row (unit) of y: Sechidis et al.'s loop, then the repair pass.

    y[u, l]: images of label l in unit u; desired[s, l]: images of label l that subset s
    wants; total[s]: images it wants in all. Ties go to the subset that wants most images
    in all, then to the last subset.
    """
    desired = desired.astype(np.float64).copy()
    total = np.asarray(total, np.float64).copy()
    sizes = np.array([len(u) for u in units], np.float64)
    subset = np.full(len(y), -1)
    remaining = np.ones(len(y), bool)
    while (left := y[remaining].sum(axis=0)).any():
        label = int(np.argmin(np.where(left > 0, left, np.iinfo(np.int64).max)))
        for row in np.flatnonzero(remaining & (y[:, label] > 0)):
            wants = desired[:, label]
            best = np.flatnonzero(wants == wants.max())
            if len(best) > 1:
                best = best[total[best] == total[best].max()]
            chosen = int(best[-1])
            subset[row] = chosen
            desired[chosen] -= y[row]
            total[chosen] -= sizes[row]
            remaining[row] = False
    _repair(y, subset, len(desired))
    return subset


def _repair(y: np.ndarray, subset: np.ndarray, parts: int) -> None:
    """Move units so that every label with >= `parts` images is in every subset (in place).

    A label missing from a subset gets the first unit (in seeded order) with that label from
    the subset holding most of it, whose move leaves every one of its labels still present
    where it came from.
    """
    counts = y.sum(axis=0)
    for _ in range(y.shape[1] * parts):
        per = np.stack([y[subset == s].sum(axis=0) for s in range(parts)])
        missing = [
            (label, s)
            for s in range(parts)
            for label in np.flatnonzero((per[s] == 0) & (counts >= parts))
        ]
        if not missing:
            return
        label, target = missing[0]
        source = int(np.argmax(per[:, label]))
        for row in np.flatnonzero((y[:, label] > 0) & (subset == source)):
            labels = y[row] > 0
            if (per[source, labels] - y[row, labels] >= 1).all():
                subset[row] = target
                break
        else:
            return  # no unit can move without emptying another label; leave it be
