"""`cnn augment`'s files in OUT: encoded images written only when their bytes change, stale
outputs removed, the manifest (read and written) and labels.csv."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cnncli.atomic import atomic_write_bytes, atomic_write_text
from cnncli.augment.expand_paths import (
    LABELS_NAME,
    MANIFEST_NAME,
    ExpandError,
    is_inside,
    safe_rel,
)
from cnncli.augment.expand_plan import Source

MANIFEST_HEADER = ("output", "source", "split", "class", "kind", "k", "seed", "ops", "params")
JPEG_QUALITY = 95


@dataclass
class ManifestRow:
    """One file written to OUT: an augmented image or a copied original."""

    output: str  # relative to OUT, posix
    source: str  # relative to SRC, posix
    split: str  # "" for a flat dataset
    class_name: str
    kind: str  # "augmented" | "original"
    k: int | None = None
    seed: int | None = None
    ops: str = ""
    params: str = ""

    def as_csv(self) -> tuple[str, ...]:
        k = "" if self.k is None else str(self.k)
        seed = "" if self.seed is None else str(self.seed)
        return (
            self.output,
            self.source,
            self.split,
            self.class_name,
            self.kind,
            k,
            seed,
            self.ops,
            self.params,
        )


def read_manifest_outputs(out_root: Path) -> set[str]:
    """Outputs listed by a previous run's manifest in OUT (empty when there is none)."""
    path = out_root / MANIFEST_NAME
    if not path.exists():
        return set()
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        if tuple(next(reader, ())) != MANIFEST_HEADER:
            raise ExpandError(f"{path}: exists but is not a cnn augment manifest; pick another OUT")
        return {row[0] for row in reader if row}


def write_manifest(path: Path, rows: list[ManifestRow]) -> None:
    """The manifest CSV, rows sorted by output, written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_HEADER)
    writer.writerows(row.as_csv() for row in sorted(rows, key=lambda r: r.output))
    atomic_write_text(path, buffer.getvalue())


def format_params(params: Mapping[str, np.ndarray]) -> str:
    """One output's sampled parameters as the manifest's 'name=value;...' text."""
    parts = []
    for name in sorted(params):
        value = params[name]
        if name in ("flip", "vflip", "noise_seed"):
            parts.append(f"{name}={int(value)}")
        else:
            parts.append(f"{name}={float(value):.6g}")
    return ";".join(parts)


def encode_image(pixels: np.ndarray, suffix: str) -> bytes:
    """Same format as the source's extension; fixed settings so bytes repeat exactly."""
    fmt = Image.registered_extensions().get(suffix.lower(), "PNG")
    if fmt not in Image.SAVE:
        raise ExpandError(f"this Pillow cannot write {suffix} files ({fmt}); convert the sources")
    img = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    options = {"quality": JPEG_QUALITY} if fmt in ("JPEG", "WEBP") else {}
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


class OutputWriter:
    """Writes outputs atomically, leaving files that already hold the same bytes untouched."""

    def __init__(self, out_root: Path) -> None:
        self.out_root = out_root
        self.written = 0
        self.unchanged = 0

    def write(self, rel: str, data: bytes) -> None:
        path = self.out_root / rel
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            self.unchanged += 1
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
        self.written += 1


def remove_stale(out_root: Path, stale: set[str], sources: set[Path]) -> int:
    """Delete outputs of a previous run that this run does not produce again."""
    removed = 0
    for rel in sorted(stale):
        try:
            path = out_root / safe_rel(rel)
        except ExpandError:
            continue
        resolved = path.resolve()
        if is_inside(resolved, out_root) and resolved not in sources and path.is_file():
            path.unlink()
            removed += 1
    return removed


def write_labels(
    out_root: Path, rows: list[ManifestRow], sources: list[Source], dataset, delimiter: str
) -> None:
    """OUT/labels.csv: every output's path (relative to OUT), its source's labels and,
    when the labels file had one, its split."""
    by_rel = {s.rel: s for s in sources}
    with_split = bool(dataset.label_source.get("split_column"))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "labels", *(["split"] if with_split else [])])
    for row in sorted(rows, key=lambda r: r.output):
        source = by_rel[row.source]
        cells = [row.output, delimiter.join(source.labels)]
        writer.writerow(cells + ([source.split] if with_split else []))
    atomic_write_text(out_root / LABELS_NAME, buffer.getvalue())
