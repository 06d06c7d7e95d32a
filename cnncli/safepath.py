"""Folder names from untrusted class names: never absolute, never '..', never a separator."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')


def safe_dirname(name: str) -> str:
    """A single path component for `name` that stays inside its parent folder."""
    text = unicodedata.normalize("NFC", str(name))
    text = _UNSAFE.sub("_", text).strip().strip(".")
    return text[:120] or "_"


def child_path(root: str | Path, name: str) -> Path:
    """root / safe_dirname(name), checked to resolve inside root."""
    root = Path(root).resolve()
    path = (root / safe_dirname(name)).resolve()
    if path.parent != root:
        raise ValueError(f"class name {name!r} would escape {root}")
    return path


def unique_destination(folder: Path, filename: str) -> Path:
    """folder/filename, or folder/stem_1.ext, stem_2.ext ... if taken (never overwrite)."""
    name = Path(safe_dirname(filename))
    candidate = folder / name
    n = 1
    while candidate.exists() or candidate.is_symlink():
        candidate = folder / f"{name.stem}_{n}{name.suffix}"
        n += 1
    return candidate
