"""Reading a labels file (CSV, TSV, JSON lines): rows of image path, labels and split.

Each row is checked on its own: an unusable row (missing file, empty label, duplicate path,
a path that leaves the data folder, an unknown split, a malformed cell) is kept aside with
its line number and the reason, and the rest are returned. Only a file that cannot be read
at all (binary, unknown type, no path or label column) is an error.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cnncli.data.scan import IMAGE_EXTENSIONS, DatasetError

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


def _field_delimiter(text: str, fmt: str) -> str:
    """Tab for TSV; for CSV a comma, or ';' (tab) when the first line has one and no comma,
    as spreadsheets write CSV in locales whose decimal mark is a comma."""
    if fmt == "tsv":
        return "\t"
    first = next((line for line in text.splitlines() if line.strip()), "")
    if "," not in first:
        for other in (";", "\t"):
            if other in first:
                return other
    return ","


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
    if delimiter not in (",", "\t"):
        columns["field_delimiter"] = delimiter
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
        columns, records = _tabular(text, _field_delimiter(text, fmt), path)
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
