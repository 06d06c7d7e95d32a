#!/usr/bin/env python3
"""Write a labels CSV for a class-folder tree: the same data, labelled by a file.

Usage:
    python scripts/labels_csv_from_folders.py DIR OUT.csv

DIR/<class>/* gives rows path,label; DIR/train|val|test/<class>/* gives split,path,label
with the split taken from the top folder (so `cnn train DIR --labels OUT.csv` uses the
folders' own split). Paths are relative to DIR. This is how the ants/bees photos were given
a CSV version (docs/results.md): training on it gives exactly what the folders give.
Standard library only.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def rows_for(root: Path) -> list[tuple[str, ...]]:
    """(split, path, label) for a split layout, else (path, label), sorted by path."""
    tops = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    split_layout = any(p.name.lower() == "train" for p in tops)
    rows = []
    for top in tops:
        split = SPLITS.get(top.name.lower()) if split_layout else None
        if split_layout and split is None:
            continue
        classes = [p for p in sorted(top.iterdir()) if p.is_dir()] if split_layout else [top]
        for folder in classes:
            for path in sorted(folder.rglob("*")):
                rel = path.relative_to(root).as_posix()
                hidden = any(part.startswith(".") for part in rel.split("/"))
                if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file() and not hidden:
                    rows.append((split, rel, folder.name) if split else (rel, folder.name))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root, out = Path(args[0]), Path(args[1])
    rows = rows_for(root)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        header = ("split", "path", "label") if rows and len(rows[0]) == 3 else ("path", "label")
        writer.writerow(header)
        writer.writerows(rows)
    print(f"{len(rows)} rows -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
