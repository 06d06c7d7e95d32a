"""Labels from a file (CSV, TSV, JSON lines): another way to make the same manifest as class folders.

A labels file names each image by its path relative to the data folder and gives its label,
several labels in one cell (`dog;cat`, the delimiter is configurable) or one 0/1 column per
label (one-hot). An optional split column (train/val/test) replaces the automatic split.
labelfile.py reads the rows (skipping and reporting unusable ones); here they become a
Dataset like scan.scan_dataset's, so everything after it is unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnncli.data.labelfile import LabelFile, read_label_file
from cnncli.data.scan import (
    Dataset,
    DatasetError,
    Label,
    as_multi_label,
    scan_dataset,
    scan_labelled,
    split_pool,
)
from cnncli.data.split import GroupFinder, Groups, stratified_split


@dataclass(frozen=True)
class LabelOptions:
    """Where labels come from: class folders (file None) or a labels file; and the mode."""

    file: Path | None = None
    delimiter: str = ";"
    multi_label: bool = False  # force multi-label mode (it is also chosen automatically)


# ---------------------------------------------------------------- datasets


def _check_root(root: str | Path, file: Path) -> Path:
    given = Path(root).expanduser()
    if not given.is_dir():
        raise DatasetError(
            f"{given}: not a folder; pass the folder that the paths in {file.name} are relative to"
        )
    return given.resolve()


def _source(parsed: LabelFile, delimiter: str, data_sha256: str) -> dict[str, Any]:
    """What the manifest records about a labels file."""
    return {
        "file": str(parsed.path),
        "format": parsed.format,
        "encoding": parsed.encoding,
        "sha256": data_sha256,
        "columns": parsed.columns,
        "delimiter": delimiter,
        "split_column": parsed.has_split,
        "rows": parsed.total,
        "used": len(parsed.rows),
        "skipped": [list(s) for s in parsed.skipped],
    }


def _auto_split(
    items: list[tuple[str, Label]],
    classes: list[str],
    multi_label: bool,
    val_fraction: float,
    seed: int,
    file: Path,
    groups: Groups = None,
) -> tuple[list, list]:
    """train/val from one list: per-class stratified (one label) or iterative (multi-label),
    each group of duplicates on one side."""
    if multi_label:
        from cnncli.data.stratify import iterative_split

        return iterative_split(items, len(classes), val_fraction, seed, groups)
    counts = [0] * len(classes)
    for _, label in items:
        counts[label] += 1
    for name, n in zip(classes, counts, strict=True):
        if n < 2:
            raise DatasetError(
                f"{file}: label '{name}' has {n} image; need at least 2 to split "
                "(or give a split column)"
            )
    return stratified_split(items, val_fraction, seed, groups)


@dataclass
class _Labelled:
    """A labels file's usable rows as (path, label) groups per split cell, with its classes."""

    file: Path
    root: Path
    classes: list[str]
    multi_label: bool
    groups: dict[str | None, list[tuple[str, Label]]]
    source: dict[str, Any]


def _labelled(root: str | Path, options: LabelOptions, follow_symlinks: bool) -> _Labelled:
    file = Path(options.file).expanduser()
    root = _check_root(root, file)
    parsed = read_label_file(
        file, root, delimiter=options.delimiter, follow_symlinks=follow_symlinks
    )
    if not parsed.rows:
        first = parsed.skipped[0] if parsed.skipped else None
        why = f"; line {first[0]}: {first[2]}" if first else ""
        raise DatasetError(f"{file}: no usable rows ({len(parsed.skipped)} skipped{why})")
    classes = sorted({name for row in parsed.rows for name in row.labels})
    if len(classes) < 2:
        raise DatasetError(f"{file}: found 1 label ({classes[0]!r}); need at least 2")
    multi = options.multi_label or any(len(row.labels) > 1 for row in parsed.rows)
    index = {name: i for i, name in enumerate(classes)}
    groups: dict[str | None, list[tuple[str, Label]]] = {}
    for row in parsed.rows:
        indices = tuple(index[n] for n in row.labels)
        groups.setdefault(row.split, []).append((row.path, indices if multi else indices[0]))
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    source = _source(parsed, options.delimiter, digest)
    return _Labelled(file, root, classes, multi, groups, source)


def labels_dataset(
    root: str | Path,
    options: LabelOptions,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    follow_symlinks: bool = False,
    find_groups: GroupFinder | None = None,
) -> Dataset:
    """A labels file over root -> Dataset (layout 'labels'), split as its split column says
    or, without one (or without val rows), split automatically like class folders (with
    find_groups' duplicate groups kept on one side, as scan.split_pool does)."""
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    got = _labelled(root, options, follow_symlinks)
    file, classes, multi, groups = got.file, got.classes, got.multi_label, got.groups
    given: dict[str, list] = {}
    pool = groups.get(None)
    if got.source["split_column"]:
        if not groups.get("train"):
            raise DatasetError(f"{file}: no rows with split 'train'; the split column needs them")
        pool = None if groups.get("val") else groups["train"]
        if pool is None:
            given = {"train": sorted(groups["train"]), "val": sorted(groups["val"])}
        if groups.get("test"):
            given["test"] = sorted(groups["test"])

    def split(duplicates: Groups) -> tuple[list, list]:
        return _auto_split(pool or [], classes, multi, val_fraction, seed, file, duplicates)

    dataset = Dataset(got.root, "labels", classes, given, [], multi, got.source)
    dataset = split_pool(dataset, pool, split, find_groups)
    if got.source["split_column"]:
        _need_train_labels(dataset.splits, classes, file)
    return dataset


def _need_train_labels(splits: dict, classes: list[str], file: Path) -> None:
    """Every label of val/test must have training images (as class folders require)."""
    seen: set[int] = set()
    for _, label in splits["train"]:
        seen.update(label if isinstance(label, tuple) else (label,))
    for split in ("val", "test"):
        for path, label in splits.get(split, []):
            for i in label if isinstance(label, tuple) else (label,):
                if i not in seen:
                    raise DatasetError(
                        f"{file}: label '{classes[i]}' ({split} image {path}) has no training "
                        "images; add some or drop those rows"
                    )


def load_dataset(
    root: str | Path,
    options: LabelOptions | None = None,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    follow_symlinks: bool = False,
    find_groups: GroupFinder | None = None,
) -> Dataset:
    """Class folders (scan.scan_dataset) or a labels file, in single- or multi-label mode;
    find_groups: the split guard's duplicate groups (split.GroupFinder), None for no guard."""
    options = options or LabelOptions()
    where = {"val_fraction": val_fraction, "seed": seed, "follow_symlinks": follow_symlinks}
    if options.file is not None:
        return labels_dataset(root, options, **where, find_groups=find_groups)
    dataset = scan_dataset(root, **where, find_groups=find_groups)
    return as_multi_label(dataset) if options.multi_label else dataset


def load_labelled(
    root: str | Path, options: LabelOptions | None = None, *, follow_symlinks: bool = False
) -> Dataset:
    """Images to evaluate on, as one 'eval' split: scan.scan_labelled, or a labels file's
    test rows (else its val rows, else every row)."""
    options = options or LabelOptions()
    if options.file is None:
        dataset = scan_labelled(root, follow_symlinks=follow_symlinks)
        return as_multi_label(dataset) if options.multi_label else dataset
    got = _labelled(root, options, follow_symlinks)
    if got.source["split_column"]:
        held = got.groups.get("test") or got.groups.get("val") or []
        if not held:
            raise DatasetError(f"{got.file}: no test or val rows to evaluate on")
    else:
        held = got.groups[None]
    splits = {"eval": sorted(held)}
    return Dataset(got.root, "labels", got.classes, splits, [], got.multi_label, got.source)


def load_as_given(
    root: str | Path, options: LabelOptions, *, follow_symlinks: bool = False
) -> Dataset:
    """A labels file's rows split only as its split column says (no automatic split):
    splits 'train', 'val', 'test', or '' for every row when there is no split column.
    For `cnn augment`, which must keep each row's split as written."""
    got = _labelled(root, options, follow_symlinks)
    splits = {split or "": sorted(items) for split, items in got.groups.items()}
    return Dataset(got.root, "labels", got.classes, splits, [], got.multi_label, got.source)


def skipped_rows(dataset: Dataset) -> list[str]:
    """One line per labels-file row that was skipped: 'labels.csv line 7 (a.jpg): reason'."""
    source = dataset.label_source
    if not source:
        return []
    name = Path(source["file"]).name
    return [
        f"{name} line {line}" + (f" ({path})" if path else "") + f": {reason}"
        for line, path, reason in source["skipped"]
    ]
