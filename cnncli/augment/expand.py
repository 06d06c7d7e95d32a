"""`cnn augment`: expand an image folder offline with augment.py's ops; writes files + a manifest.

Images keep their own resolution. To avoid one compile per image size, each image is
padded at the bottom/right into a square size bucket and augment.apply_params is told the valid
size, so padding is never read. Every output's parameters come from a key folded from
(seed, source path, k), so they do not depend on batching, and a re-run with the same seed
writes byte-identical files.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from cnncli.atomic import atomic_write_bytes, atomic_write_text
from cnncli.augment import ops as augment
from cnncli.data.decode import DecodeError, open_image
from cnncli.data.labels import LabelOptions, load_as_given, skipped_rows
from cnncli.data.scan import Dataset, label_name, scan_dataset

MANIFEST_NAME = "augment_manifest.csv"
LABELS_NAME = "labels.csv"  # written when the labels came from a file (--labels)
MANIFEST_HEADER = ("output", "source", "split", "class", "kind", "k", "seed", "ops", "params")
JPEG_QUALITY = 95
# Pixels per device batch (padded); bounds memory for large photos.
PIXEL_BUDGET = 1 << 22
MAX_BATCH = 32

ProgressFn = Callable[[str, int, int], None]  # (phase, done, total)


class ExpandError(ValueError):
    """A user-facing problem with `cnn augment`'s arguments or folders; one line, names the path."""


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


@dataclass
class ClassCount:
    """Readable originals and new augmented images of one (split, class)."""

    originals: int = 0
    new: int = 0


@dataclass
class ExpandResult:
    """What expand_dataset did; rows mirror augment_manifest.csv."""

    src: Path
    out: Path
    manifest: Path
    rows: list[ManifestRow]
    counts: dict[tuple[str, str], ClassCount]  # (split, class) -> counts, augmented splits only
    copied_other_splits: int = 0  # originals copied from splits that were not augmented
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped_rows: list[str] = field(default_factory=list)  # unusable rows of --labels FILE


@dataclass(frozen=True)
class _Source:
    rel: str
    split: str
    class_name: str  # multi-label: the names joined by ';'
    augment: bool
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Job:
    source: _Source
    k: int
    output: str


# ---------------------------------------------------------------- checks and planning


def _check_args(
    per_image: int | None, target_per_class: int | None, ops: Mapping[str, float], fill: str
) -> dict[str, float]:
    if (per_image is None) == (target_per_class is None):
        raise ExpandError("give exactly one of --per-image K or --target-per-class N")
    if per_image is not None and per_image < 1:
        raise ExpandError(f"--per-image must be >= 1, got {per_image}")
    if target_per_class is not None and target_per_class < 1:
        raise ExpandError(f"--target-per-class must be >= 1, got {target_per_class}")
    if fill not in augment.FILL_MODES:
        raise ExpandError(f"unknown fill mode {fill!r} (valid: {', '.join(augment.FILL_MODES)})")
    checked = augment.validate_ops(ops)
    if not checked:
        raise ExpandError("no augmentation ops to apply; pass --ops or a --preset other than none")
    return checked


def _is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_roots(src: str | Path, out: str | Path) -> tuple[Path, Path]:
    src_root = Path(src).expanduser()
    if not src_root.is_dir():
        raise ExpandError(f"{src_root}: SRC is not a folder")
    src_root = src_root.resolve()
    out_root = Path(out).expanduser().resolve()
    if out_root == src_root:
        raise ExpandError(f"{out_root}: OUT is the same folder as SRC; pick a new folder")
    if _is_inside(out_root, src_root):
        raise ExpandError(
            f"{out_root}: OUT is inside SRC ({src_root}); pick a folder outside the dataset"
        )
    if out_root.exists() and not out_root.is_dir():
        raise ExpandError(f"{out_root}: OUT exists and is not a folder")
    return src_root, out_root


def _safe_rel(rel: str) -> PurePosixPath:
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


def _aug_name(rel: str, k: int) -> str:
    path = _safe_rel(rel)
    return str(path.with_name(f"{path.stem}__aug{k}{path.suffix}"))


def _sources(dataset: Dataset, all_splits: bool) -> list[_Source]:
    """Every image, marked with whether it is augmented (flat: all; split: train/ unless all).

    The split is the image's top folder, not the scan's split: a split layout without val/
    is split by the scan, but all of train/ is still training data. A labels file's rows
    keep the split its split column gives (load_as_given); without one all are augmented.
    """
    found: list[_Source] = []
    for split_name, items in dataset.splits.items():
        for rel, label in items:
            indices = label if isinstance(label, tuple) else (label,)
            names = tuple(dataset.classes[i] for i in indices)
            if dataset.layout == "labels":
                split = split_name
                augment_it = split in ("", "train") or all_splits
            else:
                split = rel.split("/", 1)[0] if dataset.layout == "split" else ""
                augment_it = dataset.layout == "flat" or all_splits or split.lower() == "train"
            class_name = label_name(dataset.classes, label)
            found.append(_Source(rel, split, class_name, augment_it, names))
    return sorted(found, key=lambda s: s.rel)


def _probe(
    src_root: Path, sources: list[_Source], progress: ProgressFn | None
) -> tuple[dict[str, tuple[int, int, int]], list[tuple[str, str]]]:
    """Decode every image to be augmented once: its (height, width, channels), or why not."""
    shapes: dict[str, tuple[int, int, int]] = {}
    skipped: list[tuple[str, str]] = []
    todo = [s for s in sources if s.augment]
    for i, source in enumerate(todo):
        try:
            img = open_image(src_root / source.rel)
            shapes[source.rel] = (img.height, img.width, 1 if img.mode == "L" else 3)
        except DecodeError as exc:
            skipped.append((source.rel, exc.reason))
        if progress is not None:
            progress("reading", i + 1, len(todo))
    return shapes, skipped


def _plan(
    sources: list[_Source],
    readable: Mapping[str, object],
    per_image: int | None,
    target_per_class: int | None,
) -> tuple[list[_Job], dict[tuple[str, str], ClassCount]]:
    """Augmentation jobs: K per image, or round-robin over a class until it holds N."""
    groups: dict[tuple[str, str], list[_Source]] = defaultdict(list)
    for source in sources:
        if source.augment and source.rel in readable:
            groups[(source.split, source.class_name)].append(source)
    jobs: list[_Job] = []
    counts: dict[tuple[str, str], ClassCount] = {}
    for key in sorted(groups):
        members = groups[key]
        if per_image is not None:
            picks = [(s, k) for s in members for k in range(per_image)]
        else:
            need = max(0, (target_per_class or 0) - len(members))
            picks = [(members[j % len(members)], j // len(members)) for j in range(need)]
        jobs += [_Job(s, k, _aug_name(s.rel, k)) for s, k in picks]
        counts[key] = ClassCount(originals=len(members), new=len(picks))
    return jobs, counts


def _check_targets(out_root: Path, src_root: Path, outputs: list[str], previous: set[str]) -> None:
    """Refuse duplicate targets, targets that escape OUT or land in SRC, and foreign files."""
    seen: set[str] = set()
    for rel in outputs:
        if rel in seen:
            raise ExpandError(
                f"{out_root / rel}: two outputs would share this name (a source is already "
                f"named like an augmented image?); use --no-originals or rename it"
            )
        seen.add(rel)
        target = (out_root / _safe_rel(rel)).resolve()
        if not _is_inside(target, out_root):
            raise ExpandError(f"{out_root / rel}: output would leave OUT (symlink?); refusing")
        if _is_inside(target, src_root):
            raise ExpandError(f"{target}: output would be written inside SRC {src_root}; refusing")
        if target.exists() and rel not in previous:
            raise ExpandError(
                f"{target}: already exists and is not listed in {out_root / MANIFEST_NAME}; "
                f"pick an empty OUT or remove it"
            )


# ---------------------------------------------------------------- manifest


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


def _write_manifest(path: Path, rows: list[ManifestRow]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_HEADER)
    writer.writerows(row.as_csv() for row in sorted(rows, key=lambda r: r.output))
    atomic_write_text(path, buffer.getvalue())


def _format_params(params: Mapping[str, np.ndarray]) -> str:
    parts = []
    for name in sorted(params):
        value = params[name]
        if name in ("flip", "vflip", "noise_seed"):
            parts.append(f"{name}={int(value)}")
        else:
            parts.append(f"{name}={float(value):.6g}")
    return ";".join(parts)


# ---------------------------------------------------------------- device work


def _bucket_side(n: int) -> int:
    """The square bucket's side for an image whose longer side is n: 32, 48, 64, 96, 128, ...

    Compiles cost seconds and padded pixels only milliseconds, so buckets are few and coarse.
    """
    side = 32
    while side < n:
        side = side * 3 // 2 if side & (side - 1) == 0 else side * 4 // 3
    return side


def _path_id(rel: str) -> int:
    return int.from_bytes(hashlib.blake2b(rel.encode("utf-8"), digest_size=4).digest(), "little")


@functools.lru_cache(maxsize=8)
def _augment_step(ops_items: tuple[tuple[str, float], ...], fill: str) -> Callable:
    ops = dict(ops_items)

    @jax.jit
    def step(base_key, images, path_ids, ks, sizes):
        fold = jax.random.fold_in
        keys = jax.vmap(lambda p, k: fold(fold(base_key, p), k))(path_ids, ks)
        params = augment.sample_params(keys, ops)
        pixels = augment.apply_params(images, params, ops, fill, sizes)
        return jnp.round(pixels).astype(jnp.uint8), params

    return step


def _batches(
    jobs: list[_Job], shapes: Mapping[str, tuple[int, int, int]]
) -> Iterator[tuple[tuple[int, int, int], int, list[_Job]]]:
    """(bucket shape, batch size, jobs) with jobs grouped by bucket, in a fixed order."""
    buckets: dict[tuple[int, int, int], list[_Job]] = defaultdict(list)
    for job in jobs:
        h, w, c = shapes[job.source.rel]
        side = _bucket_side(max(h, w))
        buckets[(side, side, c)].append(job)
    for shape in sorted(buckets):
        members = sorted(buckets[shape], key=lambda j: (j.source.rel, j.k))
        # A fixed batch per bucket: one compile per bucket, whatever the job count.
        size = max(1, min(MAX_BATCH, PIXEL_BUDGET // (shape[0] * shape[1])))
        for start in range(0, len(members), size):
            yield shape, size, members[start : start + size]


def _augment_jobs(
    src_root: Path,
    jobs: list[_Job],
    shapes: Mapping[str, tuple[int, int, int]],
    ops: dict[str, float],
    seed: int,
    fill: str,
) -> Iterator[tuple[_Job, np.ndarray, dict[str, np.ndarray]]]:
    """Yield (job, uint8 image at its own size, its sampled parameters)."""
    step = _augment_step(tuple(ops.items()), fill)
    base_key = jax.random.PRNGKey(seed)
    for (bh, bw, c), size, chunk in _batches(jobs, shapes):
        images = np.zeros((size, bh, bw, c), np.uint8)
        sizes = np.tile(np.array([bh, bw], np.int32), (size, 1))
        path_ids = np.zeros(size, np.uint32)
        ks = np.zeros(size, np.uint32)
        decoded: dict[str, np.ndarray] = {}
        for i, job in enumerate(chunk):
            rel = job.source.rel
            if rel not in decoded:
                try:
                    img = np.asarray(open_image(src_root / rel), np.uint8)
                except DecodeError as exc:
                    raise ExpandError(f"{exc} (the file changed while augmenting)") from None
                decoded[rel] = img.reshape(img.shape[0], img.shape[1], c)
            h, w, _ = shapes[rel]
            images[i, :h, :w] = decoded[rel]
            sizes[i] = (h, w)
            path_ids[i] = _path_id(rel)
            ks[i] = job.k
        pixels, params = step(base_key, images, path_ids, ks, sizes)
        pixels = np.asarray(pixels)
        params = {name: np.asarray(v) for name, v in params.items()}
        for i, job in enumerate(chunk):
            h, w, _ = shapes[job.source.rel]
            yield job, pixels[i, :h, :w], {name: v[i] for name, v in params.items()}


# ---------------------------------------------------------------- files


def _encode(pixels: np.ndarray, suffix: str) -> bytes:
    """Same format as the source's extension; fixed settings so bytes repeat exactly."""
    fmt = Image.registered_extensions().get(suffix.lower(), "PNG")
    if fmt not in Image.SAVE:
        raise ExpandError(f"this Pillow cannot write {suffix} files ({fmt}); convert the sources")
    img = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    options = {"quality": JPEG_QUALITY} if fmt in ("JPEG", "WEBP") else {}
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


class _Writer:
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


def _remove_stale(out_root: Path, stale: set[str], sources: set[Path]) -> int:
    """Delete outputs of a previous run that this run does not produce again."""
    removed = 0
    for rel in sorted(stale):
        try:
            path = out_root / _safe_rel(rel)
        except ExpandError:
            continue
        resolved = path.resolve()
        if _is_inside(resolved, out_root) and resolved not in sources and path.is_file():
            path.unlink()
            removed += 1
    return removed


# ---------------------------------------------------------------- entry points


def expand_dataset(
    src: str | Path,
    out: str | Path,
    *,
    ops: Mapping[str, float],
    per_image: int | None = None,
    target_per_class: int | None = None,
    seed: int = 0,
    copy_originals: bool = True,
    all_splits: bool = False,
    fill: str = "reflect",
    progress: ProgressFn | None = None,
    labels: LabelOptions | None = None,
) -> ExpandResult:
    """Write augmented copies of SRC's images into OUT, plus OUT/augment_manifest.csv.

    Exactly one of per_image (K new images per original) or target_per_class (top every
    class up to N images) is given. With `labels` (a labels file over SRC) every output
    keeps its source's labels, listed in OUT/labels.csv (path, labels[, split]) for
    `cnn train OUT --labels OUT/labels.csv`. Raises ExpandError (or DatasetError).
    """
    ops = _check_args(per_image, target_per_class, ops, fill)
    if not 0 <= seed < 1 << 32:
        raise ExpandError(f"--seed must be in 0..{(1 << 32) - 1}, got {seed}")
    src_root, out_root = _check_roots(src, out)
    if labels is not None and labels.file is not None:
        dataset = load_as_given(src_root, labels)
        if dataset.multi_label and target_per_class is not None:
            raise ExpandError(
                "--target-per-class tops up single-label classes; with several labels per "
                "image use --per-image K"
            )
        _check_labels_target(out_root)
    else:
        dataset = scan_dataset(src_root)
    sources = _sources(dataset, all_splits)
    shapes, skipped = _probe(src_root, sources, progress)
    jobs, counts = _plan(sources, shapes, per_image, target_per_class)
    copies = [s for s in sources if copy_originals and (not s.augment or s.rel in shapes)]
    outputs = [str(_safe_rel(s.rel)) for s in copies] + [job.output for job in jobs]
    previous = read_manifest_outputs(out_root)
    _check_targets(out_root, src_root, outputs, previous)
    result = ExpandResult(
        src=src_root,
        out=out_root,
        manifest=out_root / MANIFEST_NAME,
        rows=[],
        counts=counts,
        copied_other_splits=sum(1 for s in copies if not s.augment),
        skipped=skipped,
        skipped_rows=skipped_rows(dataset),
    )
    try:
        _write_all(result, sources, copies, jobs, shapes, previous, ops, seed, fill, progress)
        if dataset.label_source is not None:
            _write_labels(out_root, result.rows, sources, dataset, labels.delimiter)
    except OSError as exc:
        where = exc.filename or out_root
        raise ExpandError(f"{where}: cannot write ({exc.strerror or exc})") from None
    return result


def _write_all(
    result: ExpandResult,
    sources: list[_Source],
    copies: list[_Source],
    jobs: list[_Job],
    shapes: Mapping[str, tuple[int, int, int]],
    previous: set[str],
    ops: dict[str, float],
    seed: int,
    fill: str,
    progress: ProgressFn | None,
) -> None:
    """Claim the outputs in the manifest, drop stale ones, copy, augment, write the manifest."""
    src_root, out_root = result.src, result.out
    outputs = {str(_safe_rel(s.rel)) for s in copies} | {job.output for job in jobs}
    # Claim every planned and old output first, so an interrupted run can be re-run.
    out_root.mkdir(parents=True, exist_ok=True)
    claimed = [ManifestRow(rel, "", "", "", "pending") for rel in sorted(previous | outputs)]
    _write_manifest(result.manifest, claimed)
    source_paths = {(src_root / s.rel).resolve() for s in sources}
    result.removed = _remove_stale(out_root, previous - outputs, source_paths)

    writer = _Writer(out_root)
    rows = result.rows
    for source in copies:
        rel = str(_safe_rel(source.rel))
        writer.write(rel, (src_root / source.rel).read_bytes())
        rows.append(ManifestRow(rel, source.rel, source.split, source.class_name, "original"))
        if progress is not None:
            progress("writing", len(rows), len(outputs))
    ops_text = augment.format_ops(ops)
    for job, pixels, params in _augment_jobs(src_root, jobs, shapes, ops, seed, fill):
        writer.write(job.output, _encode(pixels, PurePosixPath(job.output).suffix))
        s = job.source
        params_text = _format_params(params)
        rows.append(
            ManifestRow(
                job.output,
                s.rel,
                s.split,
                s.class_name,
                "augmented",
                job.k,
                seed,
                ops=ops_text,
                params=params_text,
            )
        )
        if progress is not None:
            progress("writing", len(rows), len(outputs))
    rows.sort(key=lambda r: r.output)
    _write_manifest(result.manifest, rows)
    result.written, result.unchanged = writer.written, writer.unchanged


def _check_labels_target(out_root: Path) -> None:
    """OUT/labels.csv may only be replaced when it is a previous augment run's."""
    if (out_root / LABELS_NAME).exists() and not (out_root / MANIFEST_NAME).exists():
        raise ExpandError(
            f"{out_root / LABELS_NAME}: already exists and OUT holds no {MANIFEST_NAME}; "
            "pick an empty OUT"
        )


def _write_labels(
    out_root: Path, rows: list[ManifestRow], sources: list[_Source], dataset, delimiter: str
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


def preview_target(src: str | Path, path: str | Path) -> Path:
    """The resolved preview path; refused inside SRC (the dataset stays untouched)."""
    src_root = Path(src).expanduser().resolve()
    target = Path(path).expanduser().resolve()
    if _is_inside(target, src_root):
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
