"""Dataset health check without training: unreadable files, duplicates, leaks, balance, sizes.

`check_dataset` decodes every file once (in worker processes) through the shared decode
path, compares the pictures by pretrained features (cnncli.quality.near_duplicates) and returns a
DoctorReport; `quick_check` is the part cheap enough to run before every training run
(identical files only, hashing just the files whose byte sizes collide). Nothing here prints.
"""

from __future__ import annotations

import os
import stat
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cnncli.data.cache import default_workers, process_pool, submit_all
from cnncli.data.decode import DecodeError, open_image
from cnncli.data.scan import Dataset, label_name
from cnncli.quality.duplicates import (
    DuplicateGroup,
    Link,
    exact_links,
    file_sha256,
    group_links,
    sort_groups,
)
from cnncli.quality.near_duplicates import (
    NearPair,
    NearRule,
    image_features,
    look_identical,
    similar_pairs,
    star_groups,
)

# Images whose shorter side is below this many pixels are reported as tiny.
MIN_SIDE = 8
_SERIAL_BELOW = 32
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

Progress = Callable[[int, int], None]


@dataclass
class FileCheck:
    """What the doctor learned about one file (path relative to the dataset root)."""

    path: str
    split: str
    label: str
    bytes: int = 0
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    mode: str | None = None  # the stored colour mode, before conversion (e.g. P, CMYK, I;16)
    problem: str | None = None  # unreadable | empty | not-an-image | corrupt | too-large | tiny
    reason: str | None = None

    @property
    def readable(self) -> bool:
        """True when the file decoded (tiny images are readable)."""
        return self.problem in (None, "tiny")


@dataclass
class DoctorReport:
    """Everything `cnn doctor` found; `hurts_training` (certain problems only) decides the
    exit code."""

    root: str
    layout: str
    classes: list[str]
    counts: dict[str, dict[str, int]]  # class -> split -> files found
    usable: dict[str, int]  # class -> files that decode
    files: list[FileCheck] = field(default_factory=list)
    duplicates: list[DuplicateGroup] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    near_rule: NearRule | None = None  # None: near-duplicates were not looked for

    @property
    def unreadable(self) -> list[FileCheck]:
        """Files that will be skipped in training, with the reason."""
        return [f for f in self.files if not f.readable]

    @property
    def tiny(self) -> list[FileCheck]:
        """Files that decode but are smaller than MIN_SIDE pixels on a side."""
        return [f for f in self.files if f.problem == "tiny"]

    @property
    def leaks(self) -> list[DuplicateGroup]:
        """Groups of identical files that span splits."""
        return [g for g in self.duplicates if g.certain and g.leak]

    @property
    def conflicts(self) -> list[DuplicateGroup]:
        """Groups of identical files with more than one label."""
        return [g for g in self.duplicates if g.certain and g.conflict]

    @property
    def near(self) -> list[DuplicateGroup]:
        """Near-duplicate groups: for a person to check, never an error on their own."""
        return [g for g in self.duplicates if not g.certain]

    @property
    def imbalance(self) -> float | None:
        """Largest class / smallest class by usable images (None when a class has none)."""
        values = list(self.usable.values())
        if not values or min(values) == 0:
            return None
        return max(values) / min(values)

    @property
    def hurts_training(self) -> bool:
        """Identical files across splits or classes, or unreadable files: exit code 1."""
        return bool(self.leaks or self.conflicts or self.unreadable)

    def sizes(self) -> dict[str, Any]:
        """Width/height range and median, shorter-side buckets and the commonest sizes."""
        readable = [f for f in self.files if f.readable and f.width]
        if not readable:
            return {}
        widths = [f.width for f in readable]
        heights = [f.height for f in readable]
        edges = (16, 32, 64, 128, 256, 512, 1024)
        buckets: Counter[str] = Counter()
        for f in readable:
            side = min(f.width, f.height)
            upper = next((e for e in edges if side < e), None)
            buckets[f"<{upper}" if upper else f">={edges[-1]}"] += 1
        order = [f"<{e}" for e in edges] + [f">={edges[-1]}"]
        common = Counter(f"{f.width}x{f.height}" for f in readable).most_common(5)
        return {
            "width": {"min": min(widths), "median": statistics.median(widths), "max": max(widths)},
            "height": {
                "min": min(heights),
                "median": statistics.median(heights),
                "max": max(heights),
            },
            "shorter_side": {k: buckets[k] for k in order if buckets[k]},
            "common": dict(common),
        }

    def modes(self) -> dict[str, int]:
        """Stored colour mode -> number of readable files."""
        return dict(Counter(f.mode for f in self.files if f.readable and f.mode).most_common())

    def mixed_modes(self) -> dict[str, dict[str, int]]:
        """Classes holding both greyscale and colour images: {class: {grey, colour}}."""
        mix: dict[str, Counter[str]] = defaultdict(Counter)
        for f in self.files:
            if f.readable and f.mode:
                mix[f.label]["grey" if f.mode in _GREY_MODES else "colour"] += 1
        return {c: dict(n) for c, n in sorted(mix.items()) if len(n) == 2}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (problem files only, not every file)."""
        return {
            "root": self.root,
            "layout": self.layout,
            "classes": self.classes,
            "counts": self.counts,
            "usable": self.usable,
            "imbalance": self.imbalance,
            "files": len(self.files),
            "unreadable": [_problem_dict(f) for f in self.unreadable],
            "tiny": [_problem_dict(f) for f in self.tiny],
            "duplicates": [g.to_dict() for g in self.duplicates],
            "leaks": len(self.leaks),
            "conflicts": len(self.conflicts),
            "near_groups": len(self.near),
            "near_leaks": sum(g.leak for g in self.near),
            "near_conflicts": sum(g.conflict for g in self.near),
            "ignored": [{"path": p, "reason": r} for p, r in self.ignored],
            "sizes": self.sizes(),
            "modes": self.modes(),
            "mixed_modes": self.mixed_modes(),
            "near_rule": self.near_rule.to_dict() if self.near_rule else None,
            "hurts_training": self.hurts_training,
        }


def _problem_dict(f: FileCheck) -> dict[str, Any]:
    keep = ("path", "split", "label", "problem", "reason", "width", "height", "bytes")
    return {k: v for k, v in asdict(f).items() if k in keep}


# ---------------------------------------------------------------- one file


def problem_kind(reason: str) -> str:
    """Sort a DecodeError reason into a short category for the report."""
    text = reason.lower()
    for kind, needles in (
        ("empty", ("empty file",)),
        ("unreadable", ("cannot read", "permission", "is a folder")),
        ("too-large", ("too large",)),
        ("not-an-image", ("not an image",)),
    ):
        if any(n in text for n in needles):
            return kind
    if "unsupported" in text:
        return "unsupported"
    return "corrupt"


def inspect_file(root: str, relpath: str, min_side: int = MIN_SIDE) -> dict[str, Any]:
    """Hash, header and decode one file; the fields of a FileCheck except path/split/label."""
    path = Path(root) / relpath
    out: dict[str, Any] = {}
    try:
        info = path.stat()
        out["bytes"] = info.st_size
        if not stat.S_ISREG(info.st_mode):  # a pipe or device could block forever
            return {**out, "problem": "unreadable", "reason": "not a regular file"}
        if info.st_size:
            out["sha256"] = file_sha256(path)
    except OSError as exc:
        reason = f"cannot read file ({exc.strerror or exc})"
        return {**out, "problem": problem_kind(reason), "reason": reason}
    try:
        img = open_image(path, draft_size=32)
    except DecodeError as exc:
        return {**out, "problem": problem_kind(exc.reason), "reason": exc.reason}
    out.update(_header(path))
    width, height = out.get("width") or img.width, out.get("height") or img.height
    if min(width, height) < min_side:
        out["problem"] = "tiny"
        out["reason"] = f"only {width} x {height} pixels (smaller than {min_side} on a side)"
    return out


def _header(path: Path) -> dict[str, Any]:
    """Stored size and mode (before drafting or conversion); empty if the header is odd."""
    try:
        with Image.open(path) as img:
            return {"width": img.width, "height": img.height, "mode": img.mode}
    except Exception:  # open_image already succeeded; this is only for the statistics
        return {}


def _inspect_chunk(root: str, relpaths: list[str], min_side: int) -> list[dict[str, Any]]:
    return [inspect_file(root, rel, min_side) for rel in relpaths]


# ---------------------------------------------------------------- many files


def inspect_files(
    root: str | Path,
    relpaths: list[str],
    *,
    min_side: int = MIN_SIDE,
    workers: int | None = None,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """inspect_file for every path, in parallel worker processes; results in input order."""
    n, root = len(relpaths), str(root)
    results: list[dict[str, Any] | None] = [None] * n
    workers = workers or default_workers()
    size = 1 if workers == 1 or n < _SERIAL_BELOW else max(4, min(128, -(-n // (workers * 4))))
    pending = set(range(0, n, size))
    done = 0

    def store(start: int, block: list[dict[str, Any]]) -> None:
        nonlocal done
        results[start : start + len(block)] = block
        pending.discard(start)
        done += len(block)
        if progress:
            progress(done, n)

    if size > 1:
        pool = process_pool(min(workers, len(pending)))
        try:
            jobs = {s: (root, relpaths[s : s + size], min_side) for s in sorted(pending)}
            futures = submit_all(pool, _inspect_chunk, jobs)
            for future in as_completed(futures):
                store(futures.pop(future), future.result())
        except BrokenProcessPool:
            pass  # a worker died (out of memory?): finish the rest in this process
        finally:
            # On Ctrl-C, drop the queued chunks instead of checking them all first.
            pool.shutdown(wait=True, cancel_futures=True)
    for start in sorted(pending):
        store(start, _inspect_chunk(root, relpaths[start : start + size], min_side))
    return [r or {} for r in results]


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
    copies = {b for _, b, _ in exact}
    unique = [i for i, f in enumerate(files) if f.readable and i not in copies]
    features = image_features(root, [files[i].path for i in unique], progress=progress)
    same: list[Link] = [
        (unique[a], unique[b], 0)
        for a, b in look_identical(features)
        if _same_pixels(root / files[unique[a]].path, root / files[unique[b]].path)
    ]
    # Files with the same pixels are one picture, as identical bytes are: the first stands in.
    stand_in = {b: a for a, b, _ in same}
    pairs = [
        NearPair(unique[p.i], unique[p.j], p.similarity, p.detail)
        for p in similar_pairs(features, rule)
        if unique[p.i] not in stand_in and unique[p.j] not in stand_in
    ]
    groups = []
    for rep, members in star_groups(pairs):
        groups.append(
            DuplicateGroup(
                "near",
                [items[rep]] + [items[m] for m, _ in members],
                [None] + [(p.similarity, p.detail) for _, p in members],
            )
        )
    return same, groups


def _same_pixels(a: Path, b: Path) -> bool:
    """Both files decode to the same pixels (full size, no drafting)."""
    try:
        first, second = open_image(a), open_image(b)
    except DecodeError:
        return False
    return first.size == second.size and np.array_equal(np.asarray(first), np.asarray(second))


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
