"""Labels from a file (CSV, TSV, JSON lines): another way to make the same manifest as class folders.

A labels file names each image by its path relative to the data folder and gives its label,
several labels in one cell (`dog;cat`, the delimiter is configurable) or one 0/1 column per
label (one-hot). An optional split column (train/val/test) replaces the automatic split.
Rows that cannot be used (missing files, empty labels, duplicate paths, paths that leave the
data folder, unknown splits, malformed cells) are skipped and each reported as one line;
the rest becomes a Dataset like scan.scan_dataset's, so everything after it is unchanged.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cnncli.data.scan import (
    IMAGE_EXTENSIONS,
    Dataset,
    DatasetError,
    Label,
    as_multi_label,
    scan_dataset,
    scan_labelled,
    stratified_split,
)

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
# Column names (any letter case) recognised for each role, in order of preference.
PATH_COLUMNS = ("path", "file", "filename", "file_name", "filepath", "image", "image_path", "img")
LABEL_COLUMNS = ("labels", "label", "classes", "class", "tags", "tag", "categories", "category")
SPLIT_COLUMNS = ("split", "subset")
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
_TRUE = frozenset({"1", "1.0", "true", "yes", "y"})
_FALSE = frozenset({"0", "0.0", "-1", "false", "no", "n", ""})
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass(frozen=True)
class LabelOptions:
    """Where labels come from: class folders (file None) or a labels file; and the mode."""

    file: Path | None = None
    delimiter: str = ";"
    multi_label: bool = False  # force multi-label mode (it is also chosen automatically)


@dataclass
class LabelRow:
    """One usable row: the image's path relative to the data folder, its labels, its split."""

    line: int
    path: str
    labels: tuple[str, ...]
    split: str | None = None


@dataclass
class LabelFile:
    """A parsed labels file: usable rows, skipped rows (line, path as written, reason)."""

    path: Path
    format: str
    encoding: str
    columns: dict[str, Any]
    rows: list[LabelRow] = field(default_factory=list)
    skipped: list[tuple[int, str, str]] = field(default_factory=list)
    has_split: bool = False
    total: int = 0  # data rows read (blank lines and the header not counted)


# ---------------------------------------------------------------- text


def _decode(data: bytes, path: Path) -> tuple[str, str]:
    """(text, encoding): a byte-order mark wins, then UTF-8, then Windows-1252, then Latin-1."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding).lstrip("\ufeff"), encoding
            except UnicodeDecodeError:
                raise DatasetError(
                    f"{path}: starts with a {encoding} byte-order mark but is not valid "
                    f"{encoding}; save it as UTF-8"
                ) from None
    for encoding in ("utf-8", "cp1252", "latin-1"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    if "\x00" in text:
        raise DatasetError(
            f"{path}: holds NUL bytes (a binary file, or UTF-16 without a byte-order mark?); "
            "save it as UTF-8 text"
        )
    return text, encoding


def _file_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DatasetError(
            f"{path}: unknown labels file type '{path.suffix}'; use .csv, .tsv or .jsonl"
        )
    return fmt


# ---------------------------------------------------------------- one row


def _relative(root: Path, root_real: str, raw: str, follow_symlinks: bool) -> tuple[str, str]:
    """(normalised relative path, '') for a usable image path, or ('', why it is not)."""
    text = raw.strip().replace("\\", "/")
    if not text:
        return "", "empty path"
    if "\x00" in text:
        return "", "path holds a NUL character"
    if text.startswith("/") or re.match(r"^[A-Za-z]:/", text):
        return "", "absolute path; give it relative to the data folder"
    parts = PurePosixPath(text).parts
    if ".." in parts:
        return "", "path leaves the data folder ('..')"
    rel = PurePosixPath(*parts).as_posix()
    full = root / rel
    if not os.path.lexists(full):
        return "", "file not found"
    real = os.path.realpath(full)
    if os.path.commonpath([real, root_real]) != root_real and not follow_symlinks:
        return "", "symlink to outside the data folder (--follow-symlinks to use)"
    if not os.path.exists(real):
        return "", "broken symlink"
    if os.path.isdir(real):
        return "", "a folder, not an image file"
    if not os.path.isfile(real):
        return "", "not a regular file"
    if PurePosixPath(rel).suffix.lower() not in IMAGE_EXTENSIONS:
        return "", "not an image (file extension)"
    return rel, ""


def _split_cell(text: str, delimiter: str) -> tuple[str, ...]:
    """Label names in one cell: split on the delimiter, stripped, empty ones dropped, sorted."""
    names = text.split(delimiter) if delimiter else [text]
    return tuple(sorted({n.strip() for n in names} - {""}))


def _one_hot(values: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    """(labels whose value is true, '') from {label: cell}, or ((), why a cell is not 0/1)."""
    on = []
    for name, value in values.items():
        if isinstance(value, bool):
            flag = value
        elif isinstance(value, (int, float)) and value in (0, 1, -1):
            flag = value == 1
        else:
            cell = str(value).strip().lower() if value is not None else ""
            if cell not in _TRUE and cell not in _FALSE:
                return (), f"column {name!r}: {str(value)[:40]!r} is not 0 or 1"
            flag = cell in _TRUE
        if flag:
            on.append(name)
    return tuple(sorted(on)), ""


def _split_of(value: Any) -> tuple[str, str]:
    """(train | val | test, '') or ('', why not) for a split cell."""
    text = str(value).strip() if value is not None else ""
    if not text:
        return "", "empty split (use train, val or test)"
    split = SPLIT_NAMES.get(text.lower())
    if split is None:
        return "", f"unknown split {text[:40]!r} (use train, val or test)"
    return split, ""


# ---------------------------------------------------------------- whole files


def _pick(names: list[str], wanted: tuple[str, ...]) -> int | None:
    lowered = [n.strip().lower() for n in names]
    for name in wanted:
        if name in lowered:
            return lowered.index(name)
    return None


def _tabular(text: str, delimiter: str, path: Path) -> tuple[dict, list]:
    """(columns, [(line, path cell, labels or reason, split cell or None)]) of a CSV/TSV text."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records: list[tuple[int, list[str]]] = []
    end = 0
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            if any(cell.strip() for cell in row):
                records.append((start, row))
    except csv.Error as exc:
        raise DatasetError(f"{path}: line {reader.line_num}: not valid CSV ({exc})") from None
    if not records:
        raise DatasetError(f"{path}: empty labels file; expected a header like path,label")
    _, header = records[0]
    path_col = _pick(header, PATH_COLUMNS)
    if path_col is None:
        first = header[0].strip()
        if len(header) == 2 and PurePosixPath(first).suffix.lower() in IMAGE_EXTENSIONS:
            # No header: path,label rows.
            return {"path": 0, "labels": 1, "header": False}, [
                (line, row[0] if row else "", row[1:2], None) for line, row in records
            ]
        raise DatasetError(
            f"{path}: no image path column among {', '.join(repr(h) for h in header)}; "
            f"name it one of {', '.join(PATH_COLUMNS)}"
        )
    split_col = _pick(header, SPLIT_COLUMNS)
    label_col = _pick(header, LABEL_COLUMNS)
    names = [h.strip() for h in header]
    if label_col is not None:
        columns: dict[str, Any] = {"path": names[path_col], "labels": names[label_col]}
        one_hot: list[int] = []
    else:
        one_hot = [i for i in range(len(header)) if i not in (path_col, split_col)]
        if not one_hot:
            raise DatasetError(
                f"{path}: no label column; name it one of {', '.join(LABEL_COLUMNS)} "
                "or give one 0/1 column per label"
            )
        columns = {"path": names[path_col], "one_hot": [names[i] for i in one_hot]}
    if split_col is not None:
        columns["split"] = names[split_col]
    out = []
    for line, row in records[1:]:
        if len(row) > len(header):
            reason = f"{len(row)} fields but the header has {len(header)} (an unquoted comma?)"
            out.append((line, row[path_col], reason, None))
            continue
        row = row + [""] * (len(header) - len(row))
        if one_hot:
            labels: Any = {names[i]: row[i] for i in one_hot}
        else:
            labels = [row[label_col]]
        split = row[split_col] if split_col is not None else None
        out.append((line, row[path_col], labels, split))
    return columns, out


def _json_lines(text: str) -> tuple[dict, list]:
    """(columns, records) of a JSON-lines text: one object per line."""
    records = []
    columns: dict[str, Any] = {}
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError:
            records.append((line, "", "not valid JSON", None))
            continue
        if not isinstance(obj, dict):
            records.append((line, "", "not a JSON object", None))
            continue
        keys = list(obj)
        path_key = _pick(keys, PATH_COLUMNS)
        if path_key is None:
            records.append((line, "", f"no path key (one of {', '.join(PATH_COLUMNS)})", None))
            continue
        path_value = obj[keys[path_key]]
        split_key = _pick(keys, SPLIT_COLUMNS)
        label_key = _pick(keys, LABEL_COLUMNS)
        split = obj[keys[split_key]] if split_key is not None else None
        columns.setdefault("path", keys[path_key])
        if split_key is not None:
            columns.setdefault("split", keys[split_key])
        if label_key is not None:
            columns.setdefault("labels", keys[label_key])
            labels: Any = obj[keys[label_key]]
            if isinstance(labels, str):
                labels = [labels]
            elif not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
                labels = f"labels must be a string or a list of strings, not {labels!r}"[:80]
        else:
            skip = {path_key, split_key}
            labels = {
                k: v
                for i, (k, v) in enumerate(obj.items())
                if i not in skip and (isinstance(v, bool) or v in (0, 1))
            }
            columns["one_hot"] = sorted(set(columns.get("one_hot", [])) | set(labels))
        if not isinstance(path_value, str):
            path_value, labels = "", f"path must be a string, not {path_value!r}"[:80]
        records.append((line, path_value, labels, split))
    return columns, records


def read_label_file(
    file: str | Path,
    root: str | Path,
    *,
    delimiter: str = ";",
    follow_symlinks: bool = False,
) -> LabelFile:
    """Read a labels file whose paths are relative to root; unusable rows land in `skipped`.

    Raises DatasetError only for a file that cannot be used at all (missing, unknown type,
    binary, no path or label column).
    """
    path = Path(file).expanduser()
    fmt = _file_format(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read labels file ({exc.strerror or exc})") from None
    text, encoding = _decode(data, path)
    root = Path(root)
    if fmt == "jsonl":
        columns, records = _json_lines(text)
    else:
        columns, records = _tabular(text, "\t" if fmt == "tsv" else ",", path)
    result = LabelFile(path.resolve(), fmt, encoding, columns, total=len(records))
    result.has_split = "split" in columns
    root_real = os.path.realpath(root)
    first_line: dict[str, int] = {}
    for line, raw_path, labels, split_cell in records:
        shown = str(raw_path).strip()[:200]
        if isinstance(labels, str):  # the record was already found unusable
            result.skipped.append((line, shown, labels))
            continue
        rel, reason = _relative(root, root_real, str(raw_path), follow_symlinks)
        if not reason:
            if isinstance(labels, dict):
                names, reason = _one_hot(labels)
            else:
                names = tuple(sorted({n for cell in labels for n in _split_cell(cell, delimiter)}))
            if not reason and not names:
                reason = "empty label"
        split = None
        if not reason and result.has_split:
            split, reason = _split_of(split_cell)
        if not reason and rel in first_line:
            reason = f"duplicate path (first on line {first_line[rel]})"
        if reason:
            result.skipped.append((line, shown, reason))
            continue
        first_line[rel] = line
        result.rows.append(LabelRow(line, rel, names, split))
    return result


# ---------------------------------------------------------------- datasets


def _check_root(root: str | Path, file: Path) -> Path:
    given = Path(root).expanduser()
    if not given.is_dir():
        raise DatasetError(
            f"{given}: not a folder; pass the folder that the paths in {file.name} are relative to"
        )
    return given.resolve()


def _source(parsed: LabelFile, delimiter: str, data_sha256: str) -> dict[str, Any]:
    """What the manifest records about a labels file."""
    return {
        "file": str(parsed.path),
        "format": parsed.format,
        "encoding": parsed.encoding,
        "sha256": data_sha256,
        "columns": parsed.columns,
        "delimiter": delimiter,
        "split_column": parsed.has_split,
        "rows": parsed.total,
        "used": len(parsed.rows),
        "skipped": [list(s) for s in parsed.skipped],
    }


def _auto_split(
    items: list[tuple[str, Label]],
    classes: list[str],
    multi_label: bool,
    val_fraction: float,
    seed: int,
    file: Path,
) -> tuple[list, list]:
    """train/val from one list: per-class stratified (one label) or iterative (multi-label)."""
    if multi_label:
        from cnncli.data.stratify import iterative_split

        return iterative_split(items, len(classes), val_fraction, seed)
    counts = [0] * len(classes)
    for _, label in items:
        counts[label] += 1
    for name, n in zip(classes, counts, strict=True):
        if n < 2:
            raise DatasetError(
                f"{file}: label '{name}' has {n} image; need at least 2 to split "
                "(or give a split column)"
            )
    return stratified_split(items, val_fraction, seed)


@dataclass
class _Labelled:
    """A labels file's usable rows as (path, label) groups per split cell, with its classes."""

    file: Path
    root: Path
    classes: list[str]
    multi_label: bool
    groups: dict[str | None, list[tuple[str, Label]]]
    source: dict[str, Any]


def _labelled(root: str | Path, options: LabelOptions, follow_symlinks: bool) -> _Labelled:
    file = Path(options.file).expanduser()
    root = _check_root(root, file)
    parsed = read_label_file(
        file, root, delimiter=options.delimiter, follow_symlinks=follow_symlinks
    )
    if not parsed.rows:
        first = parsed.skipped[0] if parsed.skipped else None
        why = f"; line {first[0]}: {first[2]}" if first else ""
        raise DatasetError(f"{file}: no usable rows ({len(parsed.skipped)} skipped{why})")
    classes = sorted({name for row in parsed.rows for name in row.labels})
    if len(classes) < 2:
        raise DatasetError(f"{file}: found 1 label ({classes[0]!r}); need at least 2")
    multi = options.multi_label or any(len(row.labels) > 1 for row in parsed.rows)
    index = {name: i for i, name in enumerate(classes)}
    groups: dict[str | None, list[tuple[str, Label]]] = {}
    for row in parsed.rows:
        indices = tuple(index[n] for n in row.labels)
        groups.setdefault(row.split, []).append((row.path, indices if multi else indices[0]))
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    source = _source(parsed, options.delimiter, digest)
    return _Labelled(file, root, classes, multi, groups, source)


def labels_dataset(
    root: str | Path,
    options: LabelOptions,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    follow_symlinks: bool = False,
) -> Dataset:
    """A labels file over root -> Dataset (layout 'labels'), split as its split column says
    or, without one (or without val rows), split automatically like class folders."""
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    got = _labelled(root, options, follow_symlinks)
    file, classes, multi, groups = got.file, got.classes, got.multi_label, got.groups
    if got.source["split_column"]:
        if not groups.get("train"):
            raise DatasetError(f"{file}: no rows with split 'train'; the split column needs them")
        if groups.get("val"):
            splits = {"train": sorted(groups["train"]), "val": sorted(groups["val"])}
        else:
            train, val = _auto_split(groups["train"], classes, multi, val_fraction, seed, file)
            splits = {"train": train, "val": val}
        if groups.get("test"):
            splits["test"] = sorted(groups["test"])
        _need_train_labels(splits, classes, file)
    else:
        train, val = _auto_split(groups[None], classes, multi, val_fraction, seed, file)
        splits = {"train": train, "val": val}
    return Dataset(got.root, "labels", classes, splits, [], multi, got.source)


def _need_train_labels(splits: dict, classes: list[str], file: Path) -> None:
    """Every label of val/test must have training images (as class folders require)."""
    seen: set[int] = set()
    for _, label in splits["train"]:
        seen.update(label if isinstance(label, tuple) else (label,))
    for split in ("val", "test"):
        for path, label in splits.get(split, []):
            for i in label if isinstance(label, tuple) else (label,):
                if i not in seen:
                    raise DatasetError(
                        f"{file}: label '{classes[i]}' ({split} image {path}) has no training "
                        "images; add some or drop those rows"
                    )


def load_dataset(
    root: str | Path,
    options: LabelOptions | None = None,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    follow_symlinks: bool = False,
) -> Dataset:
    """Class folders (scan.scan_dataset) or a labels file, in single- or multi-label mode."""
    options = options or LabelOptions()
    if options.file is not None:
        return labels_dataset(
            root, options, val_fraction=val_fraction, seed=seed, follow_symlinks=follow_symlinks
        )
    dataset = scan_dataset(
        root, val_fraction=val_fraction, seed=seed, follow_symlinks=follow_symlinks
    )
    return as_multi_label(dataset) if options.multi_label else dataset


def load_labelled(
    root: str | Path, options: LabelOptions | None = None, *, follow_symlinks: bool = False
) -> Dataset:
    """Images to evaluate on, as one 'eval' split: scan.scan_labelled, or a labels file's
    test rows (else its val rows, else every row)."""
    options = options or LabelOptions()
    if options.file is None:
        dataset = scan_labelled(root, follow_symlinks=follow_symlinks)
        return as_multi_label(dataset) if options.multi_label else dataset
    got = _labelled(root, options, follow_symlinks)
    if got.source["split_column"]:
        held = got.groups.get("test") or got.groups.get("val") or []
        if not held:
            raise DatasetError(f"{got.file}: no test or val rows to evaluate on")
    else:
        held = got.groups[None]
    splits = {"eval": sorted(held)}
    return Dataset(got.root, "labels", got.classes, splits, [], got.multi_label, got.source)


def load_as_given(
    root: str | Path, options: LabelOptions, *, follow_symlinks: bool = False
) -> Dataset:
    """A labels file's rows split only as its split column says (no automatic split):
    splits 'train', 'val', 'test', or '' for every row when there is no split column.
    For `cnn augment`, which must keep each row's split as written."""
    got = _labelled(root, options, follow_symlinks)
    splits = {split or "": sorted(items) for split, items in got.groups.items()}
    return Dataset(got.root, "labels", got.classes, splits, [], got.multi_label, got.source)


def skipped_rows(dataset: Dataset) -> list[str]:
    """One line per labels-file row that was skipped: 'labels.csv line 7 (a.jpg): reason'."""
    source = dataset.label_source
    if not source:
        return []
    name = Path(source["file"]).name
    return [
        f"{name} line {line}" + (f" ({path})" if path else "") + f": {reason}"
        for line, path, reason in source["skipped"]
    ]
