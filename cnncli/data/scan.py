"""Scan a dataset folder: find the classes and images, split them (split.py), write the manifest."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnncli.atomic import atomic_write_text
from cnncli.data.split import (
    GroupFinder,
    Groups,
    SplitGroups,
    guard_record,
    guarded_split,
    stratified_split,
)
from cnncli.data.walk import IMAGE_EXTENSIONS, Walker

VAL_DIR_NAMES = ("val", "valid", "validation")
SPLITS = ("train", "val", "test")
MANIFEST_HEADER = ("split", "label", "class", "path")
_MANIFEST_MAGIC = "# cnn dataset manifest v1"


class DatasetError(Exception):
    """User-facing dataset problem; message is one line naming the path and the fix."""


# One image's label: a class index, or (multi-label mode) the sorted tuple of its class indices.
Label = int | tuple[int, ...]


@dataclass
class Dataset:
    """A scanned dataset: class names and (relative path, label) lists per split.

    A label is a class index; in multi-label mode it is the sorted tuple of the image's
    class indices. label_source describes a labels file (CSV, TSV, JSON lines) when the
    labels came from one instead of class folders (cnncli/data/labels.py).
    """

    root: Path
    # "flat" (DIR/<class>/*), "split" (DIR/train/<class>/*, DIR/val/<class>/*) or "labels"
    layout: str
    classes: list[str]
    splits: dict[str, list[tuple[str, Label]]]
    ignored: list[tuple[str, str]] = field(default_factory=list)
    multi_label: bool = False
    label_source: dict | None = None
    # What the split guard did (split.guard_record; run.json's "split_guard"); None: no guard.
    split_guard: dict[str, Any] | None = None


def label_name(classes: list[str], label: Label) -> str:
    """A label as text: the class name, or the class names joined by ';' (multi-label)."""
    if isinstance(label, tuple):
        return ";".join(classes[i] for i in label)
    return classes[label]


def as_multi_label(dataset: Dataset) -> Dataset:
    """The same dataset in multi-label mode: every class index becomes a one-element set."""
    if dataset.multi_label:
        return dataset
    splits = {
        split: [(path, (label,)) for path, label in items]
        for split, items in dataset.splits.items()
    }
    return dataclasses.replace(dataset, splits=splits, multi_label=True)


def _check_root(root: str | Path) -> Path:
    given = Path(root).expanduser()
    if not given.exists():
        raise DatasetError(f"{given}: folder does not exist; pass a folder of class subfolders")
    if not given.is_dir():
        raise DatasetError(
            f"{given}: not a folder; pass a folder holding one subfolder of images per class"
        )
    return given.resolve()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _class_images(walker: Walker, parent: Path, dirs: list[str]) -> dict[str, list[str]]:
    """{class folder name: image paths} for the non-empty class folders under parent."""
    out = {}
    for name in dirs:
        images = walker.images_under(parent / name)
        if images:
            out[name] = images
        else:
            walker.skip(parent / name, "class folder has no images")
    return out


def _need_two_classes(where: Path, found: dict[str, list[str]]) -> None:
    if not found:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise DatasetError(
            f"{where}: no images found; expected {where}/<class>/<image> files ({exts})"
        )
    if len(found) < 2:
        (name,) = found
        raise DatasetError(
            f"{where}: found 1 class folder with images ('{name}'); need at least 2, "
            f"one subfolder per class"
        )


def _need_two_each(where: Path, found: dict[str, list[str]]) -> None:
    for name, images in found.items():
        if len(images) < 2:
            raise DatasetError(
                f"class '{name}' ({where / name}) has {_plural(len(images), 'image')}; "
                f"need at least 2 to split"
            )


def _one_named(root: Path, dirs: list[str], names: tuple[str, ...]) -> str | None:
    matches = [d for d in dirs if d.lower() in names]
    if len(matches) > 1:
        listed = " and ".join(str(root / m) for m in matches)
        raise DatasetError(f"{root}: found both {listed}; keep only one of them")
    return matches[0] if matches else None


def _is_split_layout(walker: Walker, root: Path, dirs: list[str]) -> str | None:
    """The train folder's name when root looks like DIR/train/<class>/..., else None."""
    train = _one_named(root, dirs, ("train",))
    if train is None:
        return None
    entries = walker.children(root / train)
    has_subdirs = any(kind == "dir" for _, kind in entries)
    has_images = any(
        kind == "file" and Path(name).suffix.lower() in IMAGE_EXTENSIONS for name, kind in entries
    )
    return train if has_subdirs and not has_images else None


def _labelled(found: dict[str, list[str]], classes: list[str]) -> list[tuple[str, int]]:
    index = {name: i for i, name in enumerate(classes)}
    return sorted((path, index[name]) for name, paths in found.items() for path in paths)


# A scan's result before the split: the dataset with the splits it was given (val/, test/
# folders) and the images still to split into train and val (None when val/ was given).
Scanned = tuple[Dataset, list[tuple[str, int]] | None]


def _scan_flat(walker: Walker, root: Path, top: list[tuple[str, str]]) -> Scanned:
    for name, kind in top:
        if kind == "file":
            is_image = Path(name).suffix.lower() in IMAGE_EXTENSIONS
            walker.skip(
                root / name,
                "image outside any class folder" if is_image else "not an image (file extension)",
            )
    found = _class_images(walker, root, [name for name, kind in top if kind == "dir"])
    _need_two_classes(root, found)
    _need_two_each(root, found)
    classes = sorted(found)
    return Dataset(root, "flat", classes, {}, walker.ignored), _labelled(found, classes)


def _held_out(
    walker: Walker, root: Path, folder: str, classes: list[str], train_dir: Path
) -> list[tuple[str, int]]:
    """Images of a val/test folder whose class folders must all exist in train."""
    entries = walker.children(root / folder)
    for name, kind in entries:
        if kind == "file":
            walker.skip(root / folder / name, "file outside any class folder")
    found = _class_images(walker, root / folder, [n for n, kind in entries if kind == "dir"])
    for name in found:
        if name not in classes:
            raise DatasetError(
                f"{root / folder / name}: class '{name}' has no training images in "
                f"{train_dir}; add {train_dir / name} or remove this folder"
            )
    return _labelled(found, classes)


def _scan_split(walker: Walker, root: Path, train: str, dirs: list[str]) -> Scanned:
    val_name = _one_named(root, dirs, VAL_DIR_NAMES)
    test_name = _one_named(root, dirs, ("test",))
    for name, _ in walker.children(root):
        if name not in (train, val_name, test_name):
            walker.skip(root / name, "not part of the split layout (train/val/test)")
    train_dir = root / train
    entries = walker.children(train_dir)
    for name, kind in entries:
        if kind == "file":
            walker.skip(train_dir / name, "file outside any class folder")
    found = _class_images(walker, train_dir, [n for n, kind in entries if kind == "dir"])
    _need_two_classes(train_dir, found)
    classes = sorted(found)
    pool, splits = None, {}
    if val_name is None:
        _need_two_each(train_dir, found)
        pool = _labelled(found, classes)
    else:
        splits["train"] = _labelled(found, classes)
        splits["val"] = _held_out(walker, root, val_name, classes, train_dir)
        if not splits["val"]:
            raise DatasetError(
                f"{root / val_name}: validation folder has no images; add "
                f"{root / val_name}/<class>/ images or remove it to split from {train_dir}"
            )
    if test_name is not None:
        test_items = _held_out(walker, root, test_name, classes, train_dir)
        if test_items:
            splits["test"] = test_items
    return Dataset(root, "split", classes, splits, walker.ignored), pool


def split_pool(
    dataset: Dataset,
    pool: list | None,
    split: Callable[[Groups], tuple[list, list]],
    find_groups: GroupFinder | None = None,
) -> Dataset:
    """The dataset with train and val made from pool by split(groups) (pool None: its own
    splits stand). With find_groups (called once over every image), the duplicate groups
    are kept on one side of a split made here, or counted where they cross a given one,
    and the record of what the guard did is the Dataset's split_guard."""
    found: SplitGroups | None = None
    if find_groups is not None:
        paths = [p for items in dataset.splits.values() for p, _ in items]
        found = find_groups(dataset.root, sorted(paths + [p for p, _ in pool or []]))
    splits, moved = dict(dataset.splits), None
    if pool is not None:
        train, val, moved = guarded_split(split, found)
        splits = {"train": train, "val": val, **splits}
    record = guard_record(found, splits, moved) if found is not None else None
    return dataclasses.replace(dataset, splits=splits, split_guard=record)


def scan_dataset(
    root: str | Path,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    follow_symlinks: bool = False,
    find_groups: GroupFinder | None = None,
) -> Dataset:
    """Scan DIR/<class>/* (flat) or DIR/train|val[|test]/<class>/* (split) into a Dataset.

    Without a val/ folder, val_fraction of each class is split off (split.stratified_split);
    find_groups, when given, supplies the duplicate groups the split keeps together.
    Raises DatasetError (one line naming the path and the fix) for unusable datasets.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    root = _check_root(root)
    walker = Walker(root, follow_symlinks)
    # The first listing only decides the layout; its skips are recorded by the real scan.
    probe = Walker(root, follow_symlinks)
    top = probe.children(root)
    dirs = [name for name, kind in top if kind == "dir"]
    train = _is_split_layout(probe, root, dirs)
    if train is not None:
        dataset, pool = _scan_split(walker, root, train, dirs)
    else:
        dataset, pool = _scan_flat(walker, root, walker.children(root))

    def split(groups: Groups) -> tuple[list, list]:
        return stratified_split(pool or [], val_fraction, seed, groups)

    return split_pool(dataset, pool, split, find_groups)


def class_counts(dataset: Dataset) -> dict[str, dict[str, int]]:
    """{class name: {split: number of images}} with every split present for every class."""
    counts = {name: dict.fromkeys(dataset.splits, 0) for name in dataset.classes}
    for split, items in dataset.splits.items():
        for _, label in items:
            # Multi-label: an image counts once for each of its labels.
            for index in label if isinstance(label, tuple) else (label,):
                counts[dataset.classes[index]][split] += 1
    return counts


def write_manifest(dataset: Dataset, path: str | Path) -> None:
    """Write the split as CSV (split,label,class,path) after '#' lines for classes and layout."""
    atomic_write_text(path, manifest_text(dataset))


def manifest_text(dataset: Dataset) -> str:
    """The manifest file's text (see write_manifest)."""
    buffer = io.StringIO()
    buffer.write(f"{_MANIFEST_MAGIC}\n")
    buffer.write(f"# layout: {dataset.layout}\n")
    buffer.write(f"# classes: {json.dumps(dataset.classes, ensure_ascii=False)}\n")
    if dataset.multi_label:
        buffer.write("# multi_label: true\n")
    if dataset.label_source is not None:
        source = json.dumps(dataset.label_source, ensure_ascii=False, sort_keys=True)
        buffer.write(f"# labels: {source}\n")
    for relpath, reason in dataset.ignored:
        buffer.write(f"# ignored: {json.dumps([relpath, reason], ensure_ascii=False)}\n")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_HEADER)
    for split in SPLITS:
        for relpath, label in dataset.splits.get(split, []):
            if isinstance(label, tuple):
                index = ";".join(str(i) for i in label)
            else:
                index = label
            writer.writerow((split, index, label_name(dataset.classes, label), relpath))
    return buffer.getvalue()


def read_manifest(path: str | Path, root: str | Path) -> Dataset:
    """Read a manifest written by write_manifest; paths in it are relative to root."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            text = fh.read()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read manifest ({exc.strerror or exc})") from None
    return parse_manifest(text, root, path)


def parse_manifest(text: str, root: str | Path, path: str | Path = "split.csv") -> Dataset:
    """A manifest's text -> Dataset; `path` only names the source in error messages."""
    lines = text.split("\n")  # not splitlines(): CSV fields may hold other line breaks
    if lines[0] != _MANIFEST_MAGIC:
        raise DatasetError(f"{path}: not a cnn manifest (first line must be '{_MANIFEST_MAGIC}')")
    meta: dict[str, str] = {}
    ignored: list[tuple[str, str]] = []
    body = 0
    while body < len(lines) and lines[body].startswith("#"):
        key, _, value = lines[body][1:].strip().partition(": ")
        if key == "ignored":
            relpath, reason = json.loads(value)
            ignored.append((relpath, reason))
        else:
            meta[key] = value
        body += 1
    if "classes" not in meta or "layout" not in meta:
        raise DatasetError(f"{path}: manifest lacks its '# classes:' or '# layout:' line")
    classes = json.loads(meta["classes"])
    multi_label = meta.get("multi_label") == "true"
    splits: dict[str, list[tuple[str, Label]]] = {"train": [], "val": []}
    reader = csv.reader(io.StringIO("\n".join(lines[body:]), newline=""))
    if tuple(next(reader, ())) != MANIFEST_HEADER:
        raise DatasetError(f"{path}: expected the CSV header {','.join(MANIFEST_HEADER)}")
    for row in reader:
        where = f"{path}:{body + reader.line_num}"
        if len(row) != 4:
            raise DatasetError(f"{where}: expected 4 columns, got {len(row)}")
        split, text, name, relpath = row
        indices = text.split(";") if multi_label else [text]
        if split not in SPLITS or not all(i.isdigit() and int(i) < len(classes) for i in indices):
            raise DatasetError(f"{where}: bad split or label ({split!r}, {text!r})")
        label: Label = tuple(int(i) for i in indices) if multi_label else int(text)
        if label_name(classes, label) != name:
            raise DatasetError(
                f"{where}: label {text} is class {label_name(classes, label)!r}, not {name!r}"
            )
        splits.setdefault(split, []).append((relpath, label))
    splits = {split: sorted(items) for split, items in splits.items()}
    source = json.loads(meta["labels"]) if "labels" in meta else None
    root = Path(root).expanduser().resolve()
    return Dataset(root, meta["layout"], classes, splits, ignored, multi_label, source)


def scan_labelled(root: str | Path, *, follow_symlinks: bool = False) -> Dataset:
    """Every image of DIR/<class>/* as one 'eval' split, for evaluation (no split, no size rules).

    For a DIR/train + DIR/val[/test] tree the test/ part is used, else val/. Class indices
    follow the sorted folder names; callers map them onto a model's classes by name.
    """
    root = _check_root(root)
    walker = Walker(root, follow_symlinks)
    top = walker.children(root)
    dirs = [name for name, kind in top if kind == "dir"]
    parent = root
    if _is_split_layout(Walker(root, follow_symlinks), root, dirs) is not None:
        held = _one_named(root, dirs, ("test",)) or _one_named(root, dirs, VAL_DIR_NAMES)
        if held is None:
            raise DatasetError(f"{root}: has train/ but no val/ or test/ folder to evaluate on")
        parent = root / held
        top = walker.children(parent)
    found = _class_images(walker, parent, [name for name, kind in top if kind == "dir"])
    if not found:
        raise DatasetError(f"{parent}: no images found; expected {parent}/<class>/<image> files")
    classes = sorted(found)
    return Dataset(root, "flat", classes, {"eval": _labelled(found, classes)}, walker.ignored)
