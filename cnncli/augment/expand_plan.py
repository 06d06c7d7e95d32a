"""Planning `cnn augment`'s outputs: the arguments checked, the sources listed and probed,
and the augmentation jobs (K per image, or a class topped up to N) with their output names."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cnncli.augment import ops as augment
from cnncli.augment.expand_paths import ExpandError, safe_rel
from cnncli.data.decode import DecodeError, open_image
from cnncli.data.scan import Dataset, label_name

ProgressFn = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass
class ClassCount:
    """Readable originals and new augmented images of one (split, class)."""

    originals: int = 0
    new: int = 0


@dataclass(frozen=True)
class Source:
    """An image of SRC: its path, split, class name(s) and whether it is augmented."""

    rel: str
    split: str
    class_name: str  # multi-label: the names joined by ';'
    augment: bool
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Job:
    """One augmented image to make: its source, its index k and its path in OUT."""

    source: Source
    k: int
    output: str


def check_args(
    per_image: int | None, target_per_class: int | None, ops: Mapping[str, float], fill: str
) -> dict[str, float]:
    """The checked ops; ExpandError names the flag that is missing or out of range."""
    if (per_image is None) == (target_per_class is None):
        raise ExpandError("give exactly one of --per-image K or --target-per-class N")
    if per_image is not None and per_image < 1:
        raise ExpandError(f"--per-image must be >= 1, got {per_image}")
    if target_per_class is not None and target_per_class < 1:
        raise ExpandError(f"--target-per-class must be >= 1, got {target_per_class}")
    if fill not in augment.FILL_MODES:
        raise ExpandError(f"unknown fill mode {fill!r} (valid: {', '.join(augment.FILL_MODES)})")
    checked = augment.validate_ops(ops)
    if not checked:
        raise ExpandError("no augmentation ops to apply; pass --ops or a --preset other than none")
    return checked


def _aug_name(rel: str, k: int) -> str:
    path = safe_rel(rel)
    return str(path.with_name(f"{path.stem}__aug{k}{path.suffix}"))


def list_sources(dataset: Dataset, all_splits: bool) -> list[Source]:
    """Every image, marked with whether it is augmented (flat: all; split: train/ unless all).

    The split is the image's top folder, not the scan's split: a split layout without val/
    is split by the scan, but all of train/ is still training data. A labels file's rows
    keep the split its split column gives (load_as_given); without one all are augmented.
    """
    found: list[Source] = []
    for split_name, items in dataset.splits.items():
        for rel, label in items:
            indices = label if isinstance(label, tuple) else (label,)
            names = tuple(dataset.classes[i] for i in indices)
            if dataset.layout == "labels":
                split = split_name
                augment_it = split in ("", "train") or all_splits
            else:
                split = rel.split("/", 1)[0] if dataset.layout == "split" else ""
                augment_it = dataset.layout == "flat" or all_splits or split.lower() == "train"
            class_name = label_name(dataset.classes, label)
            found.append(Source(rel, split, class_name, augment_it, names))
    return sorted(found, key=lambda s: s.rel)


def probe_shapes(
    src_root: Path, sources: list[Source], progress: ProgressFn | None
) -> tuple[dict[str, tuple[int, int, int]], list[tuple[str, str]]]:
    """Decode every image to be augmented once: its (height, width, channels), or why not."""
    shapes: dict[str, tuple[int, int, int]] = {}
    skipped: list[tuple[str, str]] = []
    todo = [s for s in sources if s.augment]
    for i, source in enumerate(todo):
        try:
            img = open_image(src_root / source.rel)
            shapes[source.rel] = (img.height, img.width, 1 if img.mode == "L" else 3)
        except DecodeError as exc:
            skipped.append((source.rel, exc.reason))
        if progress is not None:
            progress("reading", i + 1, len(todo))
    return shapes, skipped


def plan_jobs(
    sources: list[Source],
    readable: Mapping[str, object],
    per_image: int | None,
    target_per_class: int | None,
) -> tuple[list[Job], dict[tuple[str, str], ClassCount]]:
    """Augmentation jobs: K per image, or round-robin over a class until it holds N."""
    groups: dict[tuple[str, str], list[Source]] = defaultdict(list)
    for source in sources:
        if source.augment and source.rel in readable:
            groups[(source.split, source.class_name)].append(source)
    jobs: list[Job] = []
    counts: dict[tuple[str, str], ClassCount] = {}
    for key in sorted(groups):
        members = groups[key]
        if per_image is not None:
            picks = [(s, k) for s in members for k in range(per_image)]
        else:
            need = max(0, (target_per_class or 0) - len(members))
            picks = [(members[j % len(members)], j // len(members)) for j in range(need)]
        jobs += [Job(s, k, _aug_name(s.rel, k)) for s, k in picks]
        counts[key] = ClassCount(originals=len(members), new=len(picks))
    return jobs, counts
