"""Finding duplicate images: content hashes, a perceptual hash (dHash) and linked groups.

Exact duplicates share their bytes (SHA-256); near-duplicates are decoded pictures whose
64-bit difference hashes differ in at most a few bits. Linked files form groups, and a group
that spans classes (conflicting labels) or splits (a leak) is what hurts training.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# Perceptual hashes at most this many bits apart (of 64) count as near-duplicates.
NEAR_DISTANCE = 4
# A dHash thumbnail with less contrast than this (grey levels) is flat: every flat image
# hashes alike, so flat images take part in exact matching only.
_FLAT_RANGE = 3

# A link (i, j, bits): files i and j are the same picture, their hashes `bits` apart.
Link = tuple[int, int, int]


@dataclass
class DuplicateGroup:
    """Files with the same bytes (exact) or nearly the same picture (near)."""

    kind: str  # "exact" or "near"
    files: list[tuple[str, str, str]]  # (path, split, class)
    distance: int = 0  # largest perceptual-hash distance between linked files

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

    def describe(self) -> str:
        """One line: what is wrong and which files."""
        what = {"exact": "identical files", "near": "near-duplicate images"}[self.kind]
        issues = [w for w, on in (("conflicting labels", self.conflict), ("leak", self.leak)) if on]
        head = " and ".join(issues) if issues else "duplicates"
        members = ", ".join(f"{p} ({s}, {c})" for p, s, c in self.files)
        return f"{head}: {what}: {members}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "kind": self.kind,
            "conflict": self.conflict,
            "leak": self.leak,
            "distance": self.distance,
            "files": [{"path": p, "split": s, "class": c} for p, s, c in self.files],
        }


def dhash(img: Image.Image) -> int | None:
    """64-bit difference hash of a decoded image; None when it is flat (no gradients)."""
    small = np.asarray(img.convert("L").resize((9, 8), Image.Resampling.BOX), np.int16)
    if int(small.max()) - int(small.min()) < _FLAT_RANGE:
        return None
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _popcount(values: np.ndarray) -> np.ndarray:
    as_bytes = values.astype(">u8").view(np.uint8).reshape(-1, 8)
    return np.unpackbits(as_bytes, axis=1).sum(axis=1)


def near_pairs(hashes: list[tuple[int, int]], distance: int) -> list[Link]:
    """Links between (index, hash) pairs at most `distance` bits apart (multi-index hashing).

    Two 64-bit hashes within d bits agree exactly on at least one of d + 1 bit bands, so only
    files sharing a band are compared.
    """
    if distance < 0 or len(hashes) < 2:
        return []
    bands = min(distance + 1, 64)
    edges = [round(64 * b / bands) for b in range(bands + 1)]
    candidates: set[tuple[int, int]] = set()
    for lo, hi in zip(edges, edges[1:], strict=False):
        buckets: dict[int, list[int]] = defaultdict(list)
        mask = (1 << (hi - lo)) - 1
        for index, value in hashes:
            buckets[(value >> lo) & mask].append(index)
        for members in buckets.values():
            candidates.update((a, b) for k, a in enumerate(members) for b in members[k + 1 :])
    value_of = dict(hashes)
    pairs = sorted(candidates)
    if not pairs:
        return []
    left = np.array([value_of[a] for a, _ in pairs], np.uint64)
    right = np.array([value_of[b] for _, b in pairs], np.uint64)
    bits = _popcount(left ^ right)
    return [(a, b, int(d)) for (a, b), d in zip(pairs, bits, strict=True) if d <= distance]


def group_links(
    items: list[tuple[str, str, str]],
    links: list[Link],
    exact_keys: list[str | None],
) -> list[DuplicateGroup]:
    """Connected groups of linked files; 'exact' when every member has the same bytes."""
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b, _ in links:
        parent[find(b)] = find(a)
    widest: dict[int, int] = defaultdict(int)
    for a, _, bits in links:
        widest[find(a)] = max(widest[find(a)], bits)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(items)):
        members[find(i)].append(i)
    groups = []
    for root, indices in members.items():
        if len(indices) < 2:
            continue
        exact = len({exact_keys[i] for i in indices}) == 1
        groups.append(
            DuplicateGroup(
                "exact" if exact else "near",
                [items[i] for i in indices],
                0 if exact else widest[root],
            )
        )
    # Harmful groups first, then by first path, so reports are stable.
    return sorted(groups, key=lambda g: (not (g.conflict or g.leak), g.files[0][0]))


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
