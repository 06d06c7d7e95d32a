"""Walk a dataset folder: find the classes and images, make a seeded stratified split manifest."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from cnncli.atomic import atomic_write_text

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
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


class _Walker:
    """Lists folders under one root, recording everything skipped and why."""

    def __init__(self, root: Path, follow_symlinks: bool) -> None:
        self.root = root
        self.root_real = os.path.realpath(root)
        self.follow_symlinks = follow_symlinks
        self.ignored: list[tuple[str, str]] = []

    def rel(self, path: str | Path) -> str:
        return Path(os.path.relpath(path, self.root)).as_posix()

    def skip(self, path: str | Path, reason: str) -> None:
        self.ignored.append((self.rel(path), reason))

    def children(self, folder: Path) -> list[tuple[str, str]]:
        """(name, "dir" | "file") for usable entries of folder, sorted by name."""
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.skip(folder, f"cannot read folder ({exc.strerror or exc})")
            return []
        out = []
        for entry in entries:
            kind = self._kind(entry)
            if kind is not None:
                out.append((entry.name, kind))
        return out

    def _kind(self, entry: os.DirEntry) -> str | None:
        if entry.name.startswith("."):
            self.skip(entry.path, "hidden")
            return None
        try:
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                if not os.path.exists(target):
                    self.skip(entry.path, "broken symlink")
                    return None
                inside = os.path.commonpath([target, self.root_real]) == self.root_real
                if not inside and not self.follow_symlinks:
                    self.skip(entry.path, "symlink to outside the dataset (follow_symlinks to use)")
                    return None
            if entry.is_dir():
                return "dir"
            if entry.is_file():
                return "file"
        except OSError as exc:
            self.skip(entry.path, f"cannot read ({exc.strerror or exc})")
            return None
        self.skip(entry.path, "not a regular file")
        return None

    def images_under(self, folder: Path) -> list[str]:
        """Relative paths of all image files below folder (recursive), sorted."""
        found: list[str] = []
        # A link to the class folder or above it would pull the whole tree in again.
        ancestors = [os.path.realpath(folder)]
        ancestors += [str(p) for p in Path(ancestors[0]).parents]
        visited: set[str] = set()
        stack = [folder]
        while stack:
            current = stack.pop()
            real = os.path.realpath(current)
            if real in visited or (current != folder and real in ancestors):
                self.skip(current, "symlink loop (folder already scanned)")
                continue
            visited.add(real)
            for name, kind in self.children(current):
                path = current / name
                if kind == "dir":
                    stack.append(path)
                elif Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                    found.append(self.rel(path))
                else:
                    self.skip(path, "not an image (file extension)")
        return sorted(found)


def seeded_rank(seed: int, path: str) -> bytes:
    """Seeded pseudo-random sort key for one file; stable across machines and Python runs."""
    return hashlib.blake2b(f"{seed}\0{path}".encode(), digest_size=8).digest()


def stratified_split(
    items: list[tuple[str, int]], val_fraction: float, seed: int
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Split (path, label) items per class into (train, val), both sorted by path.

    Each class with n >= 2 items gives n * val_fraction (rounded half up) to val, clamped to
    1..n-1; a class with a single item stays in train. The order depends only on the
    paths and the seed (never on filesystem order).
    """
    by_label: dict[int, list[str]] = defaultdict(list)
    for path, label in items:
        by_label[label].append(path)
    train: list[tuple[str, int]] = []
    val: list[tuple[str, int]] = []
    for label, paths in by_label.items():
        n = len(paths)
        n_val = min(max(int(n * val_fraction + 0.5), 1), n - 1) if n >= 2 else 0
        order = sorted(paths, key=lambda p: (seeded_rank(seed, p), p))
        val += [(p, label) for p in order[:n_val]]
        train += [(p, label) for p in order[n_val:]]
    return sorted(train), sorted(val)


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


def _class_images(walker: _Walker, parent: Path, dirs: list[str]) -> dict[str, list[str]]:
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


def _is_split_layout(walker: _Walker, root: Path, dirs: list[str]) -> str | None:
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


def _scan_flat(
    walker: _Walker, root: Path, top: list[tuple[str, str]], val_fraction: float, seed: int
) -> Dataset:
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
    train, val = stratified_split(_labelled(found, classes), val_fraction, seed)
    return Dataset(root, "flat", classes, {"train": train, "val": val}, walker.ignored)


def _held_out(
    walker: _Walker, root: Path, folder: str, classes: list[str], train_dir: Path
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


def _scan_split(
    walker: _Walker, root: Path, train: str, dirs: list[str], val_fraction: float, seed: int
) -> Dataset:
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
    if val_name is None:
        _need_two_each(train_dir, found)
        train_items, val_items = stratified_split(_labelled(found, classes), val_fraction, seed)
    else:
        train_items = _labelled(found, classes)
        val_items = _held_out(walker, root, val_name, classes, train_dir)
        if not val_items:
            raise DatasetError(
                f"{root / val_name}: validation folder has no images; add "
                f"{root / val_name}/<class>/ images or remove it to split from {train_dir}"
            )
    splits = {"train": train_items, "val": val_items}
    if test_name is not None:
        test_items = _held_out(walker, root, test_name, classes, train_dir)
        if test_items:
            splits["test"] = test_items
    return Dataset(root, "split", classes, splits, walker.ignored)


def scan_dataset(
    root: str | Path,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    follow_symlinks: bool = False,
) -> Dataset:
    """Scan DIR/<class>/* (flat) or DIR/train|val[|test]/<class>/* (split) into a Dataset.

    Raises DatasetError (one line naming the path and the fix) for unusable datasets.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    root = _check_root(root)
    walker = _Walker(root, follow_symlinks)
    # The first listing only decides the layout; its skips are recorded by the real scan.
    probe = _Walker(root, follow_symlinks)
    top = probe.children(root)
    dirs = [name for name, kind in top if kind == "dir"]
    train = _is_split_layout(probe, root, dirs)
    if train is not None:
        return _scan_split(walker, root, train, dirs, val_fraction, seed)
    return _scan_flat(walker, root, walker.children(root), val_fraction, seed)


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
    walker = _Walker(root, follow_symlinks)
    top = walker.children(root)
    dirs = [name for name, kind in top if kind == "dir"]
    parent = root
    if _is_split_layout(_Walker(root, follow_symlinks), root, dirs) is not None:
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
