"""Duplicate images and how sure we are: identical files (certain) and near-duplicates (check).

Identical files share their bytes (SHA-256) or their decoded pixels; that is certain, and a
group of them that spans classes (conflicting labels) or splits (a leak) must be fixed.
Near-duplicates (cnncli.quality.near_duplicates: the same picture re-encoded, resized, cropped,
rotated, brightened or framed) are a judgement from pretrained features: a person should
look at them, so they never make a check fail on their own.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A link (i, j, 0): files i and j are the same picture (the last field is kept for callers).
Link = tuple[int, int, int]

CERTAIN_KINDS = ("exact", "pixels")
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
