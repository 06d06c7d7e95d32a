"""Dataset health check without training: unreadable files, duplicates, leaks, balance, sizes.

`check_dataset` decodes every file once (in worker processes) through the shared decode
path, compares the pictures by pretrained features (cnncli.quality.near_duplicates) and returns a
DoctorReport; `quick_check` is the part cheap enough to run before every training run
(identical files only, hashing just the files whose byte sizes collide). Nothing here prints.
Each file is inspected in file_inspection; what was found is a doctor_report.DoctorReport.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from pathlib import Path

from cnncli.data.scan import Dataset, label_name
from cnncli.quality.doctor_report import DoctorReport, FileCheck
from cnncli.quality.duplicates import (
    DuplicateGroup,
    Link,
    exact_links,
    file_sha256,
    group_links,
    sort_groups,
)
from cnncli.quality.file_inspection import MIN_SIDE, Progress, inspect_files
from cnncli.quality.near_duplicates import (
    NearRule,
    find_near,
)


def _items(dataset: Dataset) -> list[tuple[str, str, str]]:
    """(path, split, class) for every file of the dataset, sorted by path."""
    found = [
        (path, split, label_name(dataset.classes, label))
        for split, items in dataset.splits.items()
        for path, label in items
    ]
    return sorted(found)


def check_dataset(
    dataset: Dataset,
    *,
    near: NearRule | None = NearRule(),
    min_side: int = MIN_SIDE,
    workers: int | None = None,
    progress: Progress | None = None,
    near_progress: Progress | None = None,
) -> DoctorReport:
    """Decode and hash every file of a scanned dataset, then (unless near is None) compare
    the pictures by pretrained features; near_progress follows that second pass."""
    items = _items(dataset)
    found = inspect_files(
        dataset.root,
        [p for p, _, _ in items],
        min_side=min_side,
        workers=workers,
        progress=progress,
    )
    files = [
        FileCheck(path, split, label, **result)
        for (path, split, label), result in zip(items, found, strict=True)
    ]
    keys = [f.sha256 if f.readable else None for f in files]
    links = exact_links(keys)
    near_groups: list[DuplicateGroup] = []
    if near is not None:
        pixel_links, near_groups = _near_duplicates(
            dataset.root, items, files, links, near, near_progress
        )
        links += pixel_links
    counts: dict[str, dict[str, int]] = {
        c: dict.fromkeys(dataset.splits, 0) for c in dataset.classes
    }
    usable = dict.fromkeys(dataset.classes, 0)
    for f in files:
        # Multi-label: f.label is the names joined by ';', and a file counts for each.
        for name in f.label.split(";") if dataset.multi_label else (f.label,):
            counts[name][f.split] += 1
            usable[name] += f.readable
    return DoctorReport(
        root=str(dataset.root),
        layout=dataset.layout,
        classes=list(dataset.classes),
        counts=counts,
        usable=usable,
        files=files,
        duplicates=sort_groups(group_links(items, links, keys) + near_groups),
        ignored=list(dataset.ignored),
        near_rule=near,
    )


def _near_duplicates(
    root: Path,
    items: list[tuple[str, str, str]],
    files: list[FileCheck],
    exact: list[Link],
    rule: NearRule,
    progress: Progress | None,
) -> tuple[list[Link], list[DuplicateGroup]]:
    """(links between files with identical pixels, near-duplicate groups).

    One file of each group of identical files is compared (the others are the same bytes).
    """
    skip = {b for _, b, _ in exact} | {i for i, f in enumerate(files) if not f.readable}
    same, stars = find_near(root, [f.path for f in files], skip, rule, progress)
    groups = [
        DuplicateGroup(
            "near",
            [items[rep]] + [items[m] for m, _ in members],
            [None] + [(p.similarity, p.detail) for _, p in members],
        )
        for rep, members in stars
    ]
    return [(a, b, 0) for a, b in same], groups


def quick_check(dataset: Dataset) -> list[DuplicateGroup]:
    """Identical files that leak across splits or carry two labels, without decoding anything.

    Only files whose byte sizes collide are read and hashed, so this stays cheap enough to
    run before every training run.
    """
    items = _items(dataset)
    sizes: list[int | None] = []
    for path, _, _ in items:
        try:
            info = os.stat(dataset.root / path)
            sizes.append(info.st_size if stat.S_ISREG(info.st_mode) and info.st_size else None)
        except OSError:
            sizes.append(None)
    same_size = Counter(s for s in sizes if s is not None)
    keys: list[str | None] = []
    for (path, _, _), size in zip(items, sizes, strict=True):
        key = None
        if size is not None and same_size[size] > 1:
            try:
                key = file_sha256(dataset.root / path)
            except OSError:
                pass
        keys.append(key)
    groups = group_links(items, exact_links(keys), keys)
    return [g for g in groups if g.leak or g.conflict]
