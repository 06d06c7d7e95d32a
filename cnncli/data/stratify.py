"""Iterative stratification (Sechidis, Tsoumakas & Vlahavas, 2011): a seeded multi-label split.

Single-label splits stratify per class (scan.stratified_split). With several labels per
image that is impossible exactly, so the algorithm hands out images label by label, rarest
label first, each to the split that still wants most of that label. A repair pass then
makes sure that every label with at least two images lands in both train and val.
"""

from __future__ import annotations

import numpy as np

from cnncli.data.scan import seeded_rank

MultiItem = tuple[str, tuple[int, ...]]


def _wanted(counts: np.ndarray, val_fraction: float) -> np.ndarray:
    """Images of each label val should get: n * fraction rounded half up, 1..n-1 when n >= 2."""
    want = np.floor(counts * val_fraction + 0.5)
    return np.where(counts >= 2, np.clip(want, 1, counts - 1), 0)


def iterative_split(
    items: list[MultiItem], num_labels: int, val_fraction: float, seed: int
) -> tuple[list[MultiItem], list[MultiItem]]:
    """Split (path, label indices) items into (train, val), both sorted by path.

    Follows Sechidis et al.: while images remain, take the label with the fewest remaining
    images and give each of its images to the split that wants most of that label (ties:
    the split that wants most images in all; then val). The desired counts come from
    val_fraction per label and overall. Ties between images follow a seeded hash of the
    path, so the split depends only on (paths, labels, val_fraction, seed).
    """
    if not items:
        return [], []
    order = sorted(range(len(items)), key=lambda i: (seeded_rank(seed, items[i][0]), items[i][0]))
    paths = [items[i][0] for i in order]
    y = np.zeros((len(items), num_labels), bool)
    for row, i in enumerate(order):
        y[row, list(items[i][1])] = True
    counts = y.sum(axis=0)
    want_val = _wanted(counts, val_fraction).astype(np.float64)
    # desired[s, l]: images of label l that split s (0 = train, 1 = val) still wants.
    desired = np.stack([counts - want_val, want_val])
    total = np.array(
        [len(items) - round(len(items) * val_fraction), round(len(items) * val_fraction)]
    )
    total = total.astype(np.float64)
    split = np.full(len(items), -1)
    remaining = y.copy()
    while (left := remaining.sum(axis=0)).any():
        label = int(np.argmin(np.where(left > 0, left, np.iinfo(np.int64).max)))
        for row in np.flatnonzero(remaining[:, label]):
            wants = desired[:, label]
            if wants[0] != wants[1]:
                chosen = int(np.argmax(wants))
            elif total[0] != total[1]:
                chosen = int(np.argmax(total))
            else:
                chosen = 1
            split[row] = chosen
            desired[chosen, y[row]] -= 1
            total[chosen] -= 1
            remaining[row] = False
    _repair(y, split)
    train = sorted((paths[r], items[order[r]][1]) for r in np.flatnonzero(split == 0))
    val = sorted((paths[r], items[order[r]][1]) for r in np.flatnonzero(split == 1))
    return train, val


def _repair(y: np.ndarray, split: np.ndarray) -> None:
    """Move images so that every label with >= 2 images is in both splits (in place).

    A label missing from one split gets the first image (in seeded order) from the other
    split whose move leaves every one of its labels still present where it came from.
    """
    counts = y.sum(axis=0)
    for _ in range(y.shape[1] * 2):
        per_split = np.stack([y[split == s].sum(axis=0) for s in (0, 1)])
        missing = [
            (lab, s) for s in (0, 1) for lab in np.flatnonzero((per_split[s] == 0) & (counts >= 2))
        ]
        if not missing:
            return
        label, target = missing[0]
        source = 1 - target
        for row in np.flatnonzero(y[:, label] & (split == source)):
            if (per_split[source, y[row]] >= 2).all():
                split[row] = target
                break
        else:
            return  # no image can move without emptying another label; leave it be
