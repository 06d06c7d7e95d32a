"""What `cnn doctor` found: a FileCheck per file and the DoctorReport over them (problems,
duplicate groups, leaks, balance, sizes and colour modes), with its JSON form."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from cnncli.quality.duplicates import DuplicateGroup
from cnncli.quality.near_duplicates import NearRule

_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


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
