"""The seeded train/val split, and the split guard: duplicate groups kept on one side of it.

A split is a pure function of (paths, labels, val_fraction, seed, groups). The groups are
plain data (lists of paths) found elsewhere: cnncli.quality finds them as `cnn doctor` does,
the training room asks for them and hands the finder in (GroupFinder), so nothing here
decodes a picture. A group is placed as one unit where its representative's seeded hash
puts it; single images are units of one, so a folder without duplicates splits exactly as
it would without the guard.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class SplitGroups:
    """Duplicate groups found for the split guard over every file of a dataset."""

    mode: str  # the guard that ran: "near", "exact" or "off"
    groups: list[list[str]]  # paths relative to the root, representative first; 2+ each
    asked: str = ""  # the guard the config asked for, when a lesser one ran
    notice: str | None = None  # why a lesser guard ran (one line)
    seconds: float = 0.0


# (dataset root, every image's relative path) -> the groups; the caller binds the mode.
GroupFinder = Callable[[Path, list[str]], SplitGroups]
Groups = list[list[str]] | None


def seeded_rank(seed: int, path: str) -> bytes:
    """Seeded pseudo-random sort key for one file; stable across machines and Python runs."""
    return hashlib.blake2b(f"{seed}\0{path}".encode(), digest_size=8).digest()


def val_share(n: int, val_fraction: float) -> int:
    """Images of a class with n images that val gets: rounded half up, 1..n-1 when n >= 2."""
    return min(max(int(n * val_fraction + 0.5), 1), n - 1) if n >= 2 else 0


def split_units(paths: list[str], groups: Groups, seed: int) -> list[list[str]]:
    """The paths as units in seeded order: each group (its members among paths, the
    representative first) is one unit, every other path a unit of one. A unit's place in
    the order is its first path's seeded hash."""
    present = set(paths)
    units: list[list[str]] = []
    claimed: set[str] = set()
    for group in groups or []:
        members = [p for p in group if p in present and p not in claimed]
        if len(members) > 1:
            units.append(members)
            claimed.update(members)
    units += [[p] for p in paths if p not in claimed]
    return sorted(units, key=lambda unit: (seeded_rank(seed, unit[0]), unit[0]))


def stratified_split(
    items: list[tuple[str, int]], val_fraction: float, seed: int, groups: Groups = None
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Split (path, label) items per class into (train, val), both sorted by path.

    Each class with n >= 2 items gives n * val_fraction (rounded half up) to val, clamped to
    1..n-1; a class with a single item stays in train. Units (split_units: a group of
    duplicates, or one image) are taken in seeded order and go to val while val still wants
    all of their images' classes, so a group never straddles the split (a class may then get
    a little less val than asked). The order depends only on the paths and the seed (never
    on filesystem order); without groups this is each class's first n_val in seeded order.
    """
    label_of = dict(items)
    want = {c: val_share(n, val_fraction) for c, n in Counter(label_of.values()).items()}
    taken: Counter[int] = Counter()
    train: list[tuple[str, int]] = []
    val: list[tuple[str, int]] = []
    for unit in split_units(list(label_of), groups, seed):
        need = Counter(label_of[p] for p in unit)
        side = train
        if all(taken[c] + k <= want[c] for c, k in need.items()):
            side = val
            taken.update(need)
        side += [(p, label_of[p]) for p in unit]
    return sorted(train), sorted(val)


def guarded_split(
    split: Callable[[Groups], tuple[list, list]], found: SplitGroups | None
) -> tuple[list, list, int]:
    """(train, val, images moved): split(found's groups), and how many images sit on the
    other side than split(None), the same split without the guard, puts them."""
    if found is None or not found.groups:
        train, val = split(None)
        return train, val, 0
    train, val = split(found.groups)
    _, plain_val = split(None)
    moved = len({p for p, _ in val} ^ {p for p, _ in plain_val})
    return train, val, moved


def guard_record(found: SplitGroups, splits: dict[str, list], moved: int | None) -> dict[str, Any]:
    """What the guard did, for run.json and the train command's line.

    moved None: the split was given (a val/ folder, a split column), so nothing moved and
    `crossing` counts the groups that straddle it; else `crossing` counts only groups that
    reach into a given test/ part.
    """
    side = {p: split for split, items in splits.items() for p, _ in items}
    groups = [[p for p in g if p in side] for g in found.groups]
    groups = [g for g in groups if len(g) > 1]
    record: dict[str, Any] = {"mode": found.mode}
    if found.asked and found.asked != found.mode:
        record["asked"] = found.asked
    record.update(
        split="given" if moved is None else "fraction",
        groups=len(groups),
        images=sum(len(g) for g in groups),
        images_moved=moved or 0,
        crossing=sum(len({side[p] for p in g}) > 1 for g in groups),
        seconds=round(found.seconds, 2),
    )
    if found.notice:
        record["notice"] = found.notice
    return record
