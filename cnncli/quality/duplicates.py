"""Duplicate images and how sure we are: identical files (certain) and near-duplicates (check).

Identical files share their bytes (SHA-256) or their decoded pixels; that is certain, and a
group of them that spans classes (conflicting labels) or splits (a leak) must be fixed.
Near-duplicates (cnncli.quality.near_duplicates: the same picture re-encoded, resized, cropped,
rotated, brightened or framed) are a judgement from pretrained features: a person should
look at them, so they never make a check fail on their own. `cnn train`'s split guard keeps
the same groups on one side of its train/val split (split_groups).
"""

from __future__ import annotations

import hashlib
import os
import stat
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnncli.data.split import SplitGroups

# A link (i, j, 0): files i and j are the same picture (the last field is kept for callers).
Link = tuple[int, int, int]

CERTAIN_KINDS = ("exact", "pixels")
# The split guard compares pictures by features only up to this many images: at the 14-20
# ms an image measured on two busy CPU cores (docs/results.md) that is 2.5-3.5 minutes
# before training starts; above it, identical files only (cnn doctor still looks).
NEAR_LIMIT = 10000
# ... and only when the median image is at least this big on its shorter side: below it
# (digits, icons) the features of upscaled pixels do not tell copies apart.
NEAR_MIN_SIDE = 48
_HEADER_SAMPLE = 200
_WHAT = {"exact": "identical files", "pixels": "identical pixels", "near": "near-duplicates"}


@dataclass
class DuplicateGroup:
    """Files with the same bytes (exact), the same decoded pixels (pixels) or nearly the same
    picture (near: the representative first, each other file compared with it)."""

    kind: str  # "exact", "pixels" or "near"
    files: list[tuple[str, str, str]]  # (path, split, class)
    # near: (similarity, detail) of each file with the representative; None for the rep.
    scores: list[tuple[float, float] | None] = field(default_factory=list)

    @property
    def certain(self) -> bool:
        """Identical bytes or pixels: no judgement needed."""
        return self.kind in CERTAIN_KINDS

    @property
    def classes(self) -> list[str]:
        """The distinct class names in the group."""
        return sorted({label for _, _, label in self.files})

    @property
    def splits(self) -> list[str]:
        """The distinct splits in the group."""
        return sorted({split for _, split, _ in self.files})

    @property
    def conflict(self) -> bool:
        """The same picture carries different labels."""
        return len(self.classes) > 1

    @property
    def leak(self) -> bool:
        """The same picture sits in more than one split (train and val/test)."""
        return len(self.splits) > 1

    @property
    def similarity(self) -> float | None:
        """The lowest similarity of a member with the representative (near groups)."""
        values = [s[0] for s in self.scores if s is not None]
        return min(values) if values else None

    def describe(self) -> str:
        """One line: what is wrong, how sure, and which files."""
        issues = [w for w, on in (("conflicting labels", self.conflict), ("leak", self.leak)) if on]
        head = " and ".join(issues) if issues else "duplicates"
        if self.certain:
            members = ", ".join(f"{p} ({s}, {c})" for p, s, c in self.files)
            return f"{head}: {_WHAT[self.kind]}: {members}"
        (rep, split, label), rest = self.files[0], self.files[1:]
        others = ", ".join(
            f"{p} ({s}, {c}) {score[0]:.2f}"
            for (p, s, c), score in zip(rest, self.scores[1:], strict=True)
            if score is not None
        )
        why = f"check ({' and '.join(issues)})" if issues else "check"
        return f"{why}: near-duplicates of {rep} ({split}, {label}): {others}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; near groups give each file's similarity with the first."""
        files = []
        scores = self.scores or [None] * len(self.files)
        for (path, split, label), score in zip(self.files, scores, strict=True):
            entry: dict[str, Any] = {"path": path, "split": split, "class": label}
            if score is not None:
                entry["similarity"], entry["detail"] = round(score[0], 4), round(score[1], 4)
            files.append(entry)
        out = {
            "kind": self.kind,
            "certain": self.certain,
            "conflict": self.conflict,
            "leak": self.leak,
            "files": files,
        }
        if not self.certain:
            rep = self.files[0][0]
            out["pairs"] = [
                {"a": rep, "b": f["path"], "similarity": f["similarity"], "detail": f["detail"]}
                for f in files[1:]
            ]
        return out


def sort_groups(groups: list[DuplicateGroup]) -> list[DuplicateGroup]:
    """Certain before near; harmful (conflict, leak) first within each; then by first path."""
    return sorted(groups, key=lambda g: (not g.certain, not (g.conflict or g.leak), g.files[0][0]))


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def group_links(
    items: list[tuple[str, str, str]],
    links: list[Link],
    exact_keys: list[str | None],
) -> list[DuplicateGroup]:
    """Groups of identical files ('exact' when all bytes match, else 'pixels').

    Being identical is transitive, so linked files form one group (union-find).
    """
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b, _ in links:
        parent[find(b)] = find(a)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(items)):
        members[find(i)].append(i)
    groups = [
        DuplicateGroup(
            "exact" if len({exact_keys[i] for i in indices}) == 1 else "pixels",
            [items[i] for i in indices],
        )
        for indices in members.values()
        if len(indices) > 1
    ]
    return sort_groups(groups)


def exact_links(keys: list[str | None]) -> list[Link]:
    """A link from each file to the first earlier file with the same key (None: no key)."""
    first: dict[str, int] = {}
    links = []
    for i, key in enumerate(keys):
        if key is None:
            continue
        if key in first:
            links.append((first[key], i, 0))
        else:
            first[key] = i
    return links


def collision_keys(root: str | Path, relpaths: list[str]) -> list[str | None]:
    """SHA-256 of each file whose byte size another file shares (None for the rest, and for
    empty or unreadable files): identical files cost one stat each to rule out."""
    sizes: list[int | None] = []
    for path in relpaths:
        try:
            info = os.stat(Path(root) / path)
            sizes.append(info.st_size if stat.S_ISREG(info.st_mode) and info.st_size else None)
        except OSError:
            sizes.append(None)
    same_size = Counter(s for s in sizes if s is not None)
    keys: list[str | None] = []
    for path, size in zip(relpaths, sizes, strict=True):
        key = None
        if size is not None and same_size[size] > 1:
            try:
                key = file_sha256(Path(root) / path)
            except OSError:
                pass
        keys.append(key)
    return keys


def split_groups(
    root: str | Path,
    relpaths: list[str],
    mode: str,
    progress: Callable[[int, int], None] | None = None,
) -> SplitGroups:
    """The groups `cnn train`'s split guard keeps on one side: identical files, and for mode
    "near" identical pixels and the near-duplicate stars of `cnn doctor` (find_near), each
    star together with its members' identical copies. Paths in each group: the star's
    representative (else the first path) first.

    "near" falls back to "exact" (with a notice) above NEAR_LIMIT images, for small images
    and when the packaged weights are missing. With the mode bound this is a
    split.GroupFinder.
    """
    start = time.perf_counter()
    keys = collision_keys(root, relpaths)
    links = exact_links(keys)
    stars: list = []
    notice = _near_unusable(root, relpaths) if mode == "near" else None
    if mode == "near" and notice is None:
        from cnncli.model.pretrained.state_dict import WeightsError
        from cnncli.quality.near_duplicates import find_near

        try:
            same, stars = find_near(root, relpaths, {b for _, b, _ in links}, progress=progress)
            links += [(a, b, 0) for a, b in same]
        except WeightsError as exc:
            notice = (
                f"near-duplicates need the packaged Lite0 weights ({exc}); identical files only"
            )
    groups = _guard_groups(relpaths, links, stars)
    used = "exact" if notice else mode
    seconds = time.perf_counter() - start
    return SplitGroups(used, groups, asked=mode, notice=notice, seconds=seconds)


def _near_unusable(root: str | Path, relpaths: list[str]) -> str | None:
    """Why the features cannot compare these images (too many, too small), or None."""
    if len(relpaths) > NEAR_LIMIT:
        return (
            f"{len(relpaths):,} images: near-duplicates are looked for up to {NEAR_LIMIT:,} "
            "(cnn doctor finds them in any folder); identical files only"
        )
    from cnncli.data.stats import header_info

    step = max(1, len(relpaths) // _HEADER_SAMPLE)
    headers = [header_info(Path(root) / p) for p in relpaths[::step]]
    sides = [min(h[0], h[1]) for h in headers if h is not None]
    if sides and (side := statistics.median(sides)) < NEAR_MIN_SIDE:
        return (
            f"small images ({side:g} px median shorter side): pretrained features do not "
            f"tell copies apart below {NEAR_MIN_SIDE} px; identical files only"
        )
    return None


def _guard_groups(relpaths: list[str], links: list[Link], stars: list) -> list[list[str]]:
    """Files joined by identical links or a star, as path lists (representative first)."""
    parent = list(range(len(relpaths)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pairs = [(a, b) for a, b, _ in links] + [(rep, m) for rep, ms in stars for m, _ in ms]
    for a, b in pairs:
        parent[find(b)] = find(a)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(relpaths)):
        members[find(i)].append(i)
    first = {find(rep): rep for rep, _ in stars}
    groups = []
    for top, indices in members.items():
        if len(indices) > 1:
            rep = first.get(top, indices[0])
            groups.append([relpaths[rep]] + [relpaths[i] for i in indices if i != rep])
    return sorted(groups)
