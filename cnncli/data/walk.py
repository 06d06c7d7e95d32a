"""Listing a dataset folder: usable entries, the images under a class folder, and every
file or folder skipped with the reason (hidden, a symlink out of the dataset, a loop)."""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


class Walker:
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
