"""`cnn augment --preview`: a PNG grid of originals beside their augmented images."""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

from PIL import Image

from cnncli.atomic import atomic_write_bytes
from cnncli.augment.expand import ExpandResult
from cnncli.augment.expand_paths import ExpandError, is_inside
from cnncli.data.decode import open_image


def preview_target(src: str | Path, path: str | Path) -> Path:
    """The resolved preview path; refused inside SRC (the dataset stays untouched)."""
    src_root = Path(src).expanduser().resolve()
    target = Path(path).expanduser().resolve()
    if is_inside(target, src_root):
        raise ExpandError(f"{target}: the preview would be written inside SRC; pick another path")
    return target


def _thumbnail(path: Path, cell: int) -> Image.Image:
    img = open_image(path).convert("RGB")
    scale = cell / max(img.width, img.height)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    # Small images are enlarged with NEAREST so their pixels stay visible.
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR
    img = img.resize(size, resample)
    tile = Image.new("RGB", (cell, cell), (255, 255, 255))
    tile.paste(img, ((cell - img.width) // 2, (cell - img.height) // 2))
    return tile


def write_preview(
    result: ExpandResult, path: str | Path, *, sources: int = 6, per_source: int = 4, cell: int = 96
) -> Path:
    """Write a PNG grid: each row one original, then up to per_source of its augmented images."""
    target = preview_target(result.src, path)
    by_source: dict[str, list[tuple[int, str]]] = defaultdict(list)
    class_of: dict[str, str] = {}
    for row in result.rows:
        if row.kind == "augmented":
            by_source[row.source].append((row.k or 0, row.output))
            class_of[row.source] = row.class_name
    # Round-robin over classes so the preview shows several of them.
    per_class: dict[str, list[str]] = defaultdict(list)
    for source in sorted(by_source):
        per_class[class_of[source]].append(source)
    picked: list[str] = []
    for depth in range(max((len(v) for v in per_class.values()), default=0)):
        for name in sorted(per_class):
            if depth < len(per_class[name]) and len(picked) < sources:
                picked.append(per_class[name][depth])
    if not picked:
        raise ExpandError("nothing to preview: no augmented images were written")
    gap = max(2, cell // 16)
    columns = 1 + min(per_source, max(len(by_source[s]) for s in picked))
    width = columns * cell + (columns + 1) * gap + gap  # extra gap after the original
    height = len(picked) * cell + (len(picked) + 1) * gap
    grid = Image.new("RGB", (width, height), (200, 200, 200))
    for r, source in enumerate(picked):
        y = gap + r * (cell + gap)
        grid.paste(_thumbnail(result.src / source, cell), (gap, y))
        for c, (_, output) in enumerate(sorted(by_source[source])[:per_source]):
            x = 2 * gap + (c + 1) * (cell + gap)
            grid.paste(_thumbnail(result.out / output, cell), (x, y))
    buffer = io.BytesIO()
    grid.save(buffer, "PNG")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, buffer.getvalue())
    return target
