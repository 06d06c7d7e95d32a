"""`cnn augment`: expand an image folder offline with augment.py's ops; writes files + a manifest.

Images keep their own resolution. To avoid one compile per image size, each image is
padded at the bottom/right into a square size bucket and augment.apply_params is told the valid
size, so padding is never read. Every output's parameters come from a key folded from
(seed, source path, k), so they do not depend on batching, and a re-run with the same seed
writes byte-identical files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cnncli.augment import ops as augment
from cnncli.augment.expand_device import augment_jobs
from cnncli.augment.expand_output import (
    ManifestRow,
    OutputWriter,
    encode_image,
    format_params,
    read_manifest_outputs,
    remove_stale,
    write_labels,
    write_manifest,
)
from cnncli.augment.expand_paths import (
    MANIFEST_NAME,
    ExpandError,
    check_labels_target,
    check_roots,
    check_targets,
    safe_rel,
)
from cnncli.augment.expand_plan import (
    ClassCount,
    Job,
    ProgressFn,
    Source,
    check_args,
    list_sources,
    plan_jobs,
    probe_shapes,
)
from cnncli.data.labels import LabelOptions, load_as_given, skipped_rows
from cnncli.data.scan import scan_dataset


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
    ops = check_args(per_image, target_per_class, ops, fill)
    if not 0 <= seed < 1 << 32:
        raise ExpandError(f"--seed must be in 0..{(1 << 32) - 1}, got {seed}")
    src_root, out_root = check_roots(src, out)
    if labels is not None and labels.file is not None:
        dataset = load_as_given(src_root, labels)
        if dataset.multi_label and target_per_class is not None:
            raise ExpandError(
                "--target-per-class tops up single-label classes; with several labels per "
                "image use --per-image K"
            )
        check_labels_target(out_root)
    else:
        dataset = scan_dataset(src_root)
    sources = list_sources(dataset, all_splits)
    shapes, skipped = probe_shapes(src_root, sources, progress)
    jobs, counts = plan_jobs(sources, shapes, per_image, target_per_class)
    copies = [s for s in sources if copy_originals and (not s.augment or s.rel in shapes)]
    outputs = [str(safe_rel(s.rel)) for s in copies] + [job.output for job in jobs]
    previous = read_manifest_outputs(out_root)
    check_targets(out_root, src_root, outputs, previous)
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
            write_labels(out_root, result.rows, sources, dataset, labels.delimiter)
    except OSError as exc:
        where = exc.filename or out_root
        raise ExpandError(f"{where}: cannot write ({exc.strerror or exc})") from None
    return result


def _write_all(
    result: ExpandResult,
    sources: list[Source],
    copies: list[Source],
    jobs: list[Job],
    shapes: Mapping[str, tuple[int, int, int]],
    previous: set[str],
    ops: dict[str, float],
    seed: int,
    fill: str,
    progress: ProgressFn | None,
) -> None:
    """Claim the outputs in the manifest, drop stale ones, copy, augment, write the manifest."""
    src_root, out_root = result.src, result.out
    outputs = {str(safe_rel(s.rel)) for s in copies} | {job.output for job in jobs}
    # Claim every planned and old output first, so an interrupted run can be re-run.
    out_root.mkdir(parents=True, exist_ok=True)
    claimed = [ManifestRow(rel, "", "", "", "pending") for rel in sorted(previous | outputs)]
    write_manifest(result.manifest, claimed)
    source_paths = {(src_root / s.rel).resolve() for s in sources}
    result.removed = remove_stale(out_root, previous - outputs, source_paths)

    writer = OutputWriter(out_root)
    rows = result.rows
    for source in copies:
        rel = str(safe_rel(source.rel))
        writer.write(rel, (src_root / source.rel).read_bytes())
        rows.append(ManifestRow(rel, source.rel, source.split, source.class_name, "original"))
        if progress is not None:
            progress("writing", len(rows), len(outputs))
    ops_text = augment.format_ops(ops)
    for job, pixels, params in augment_jobs(src_root, jobs, shapes, ops, seed, fill):
        writer.write(job.output, encode_image(pixels, PurePosixPath(job.output).suffix))
        s = job.source
        params_text = format_params(params)
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
    write_manifest(result.manifest, rows)
    result.written, result.unchanged = writer.written, writer.unchanged
