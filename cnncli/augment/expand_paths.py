"""`cnn augment`'s paths: SRC and OUT checked, names that cannot leave their root, targets
that never overwrite a foreign file or land in SRC."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

MANIFEST_NAME = "augment_manifest.csv"
LABELS_NAME = "labels.csv"  # written when the labels came from a file (--labels)


class ExpandError(ValueError):
    """A user-facing problem with `cnn augment`'s arguments or folders; one line, names the path."""


def is_inside(path: Path, folder: Path) -> bool:
    """path is folder itself or lies somewhere under it."""
    return path == folder or folder in path.parents


def check_roots(src: str | Path, out: str | Path) -> tuple[Path, Path]:
    """SRC and OUT resolved; OUT may not be SRC, lie inside it, or be a file."""
    src_root = Path(src).expanduser()
    if not src_root.is_dir():
        raise ExpandError(f"{src_root}: SRC is not a folder")
    src_root = src_root.resolve()
    out_root = Path(out).expanduser().resolve()
    if out_root == src_root:
        raise ExpandError(f"{out_root}: OUT is the same folder as SRC; pick a new folder")
    if is_inside(out_root, src_root):
        raise ExpandError(
            f"{out_root}: OUT is inside SRC ({src_root}); pick a folder outside the dataset"
        )
    if out_root.exists() and not out_root.is_dir():
        raise ExpandError(f"{out_root}: OUT exists and is not a folder")
    return src_root, out_root


def safe_rel(rel: str) -> PurePosixPath:
    """A relative path that cannot leave its root: no absolute, '..', '.', or odd separators."""
    path = PurePosixPath(rel)
    bad = (
        path.is_absolute()
        or not path.parts
        or any(part in ("", ".", "..") or "\\" in part or "\0" in part for part in path.parts)
    )
    if bad:
        raise ExpandError(f"{rel}: unsafe path in the dataset; rename it")
    return path


def check_targets(out_root: Path, src_root: Path, outputs: list[str], previous: set[str]) -> None:
    """Refuse duplicate targets, targets that escape OUT or land in SRC, and foreign files."""
    seen: set[str] = set()
    for rel in outputs:
        if rel in seen:
            raise ExpandError(
                f"{out_root / rel}: two outputs would share this name (a source is already "
                f"named like an augmented image?); use --no-originals or rename it"
            )
        seen.add(rel)
        target = (out_root / safe_rel(rel)).resolve()
        if not is_inside(target, out_root):
            raise ExpandError(f"{out_root / rel}: output would leave OUT (symlink?); refusing")
        if is_inside(target, src_root):
            raise ExpandError(f"{target}: output would be written inside SRC {src_root}; refusing")
        if target.exists() and rel not in previous:
            raise ExpandError(
                f"{target}: already exists and is not listed in {out_root / MANIFEST_NAME}; "
                f"pick an empty OUT or remove it"
            )


def check_labels_target(out_root: Path) -> None:
    """OUT/labels.csv may only be replaced when it is a previous augment run's."""
    if (out_root / LABELS_NAME).exists() and not (out_root / MANIFEST_NAME).exists():
        raise ExpandError(
            f"{out_root / LABELS_NAME}: already exists and OUT holds no {MANIFEST_NAME}; "
            "pick an empty OUT"
        )
