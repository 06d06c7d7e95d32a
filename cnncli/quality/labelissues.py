"""Likely-mislabeled images by confident learning (Northcutt et al., 2021; cleanlab's method).

Each class j gets a threshold t_j: the mean probability of class j over the images labelled
j (the model's average self-confidence on that class). An image is confidently of class j
when p_j >= t_j; its confident class is the likeliest of the classes it clears. The images
whose confident class is not their given label (the off-diagonal of the "confident joint")
estimate how many labels are wrong, n. The suspects are then the n images with the lowest
self-confidence (the probability of their given label), as cleanlab's
filter_by="low_self_confidence" does; the suggested label is the likeliest other class.
(The off-diagonal images themselves, cleanlab's "confident_learning" filter, include many
genuinely ambiguous images the model confuses; a wrong label gets a far lower probability.)
Out-of-fold probabilities (each image scored by a model that never trained on it) find far
more than in-sample ones, which a network that memorised its training labels agrees with.

numpy only; nothing here moves, edits or copies a file.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cnncli.atomic import atomic_write_text

ISSUES_FILE = "label_issues.csv"
ISSUE_COLUMNS = ("rank", "path", "given", "suggested", "p_given", "p_suggested", "margin", "file")


class OofError(ValueError):
    """An out-of-fold predictions file that cannot be used; the message names it."""


@dataclass
class LabelIssue:
    """One suspect: the given label, the suggested one and both probabilities."""

    rank: int
    path: str  # relative to the data folder
    given: str
    suggested: str
    p_given: float
    p_suggested: float
    margin: float  # p_suggested - p_given
    file: str  # absolute path, so the report can show the image


def class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-class mean self-confidence; a class with no images gets 1.0 (never confident)."""
    probs = np.asarray(probs, np.float64)
    out = np.ones(probs.shape[1])
    for j in range(probs.shape[1]):
        mine = labels == j
        if mine.any():
            out[j] = probs[mine, j].mean()
    return out


def confident_labels(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Each image's confident class (likeliest among those at or above threshold), -1 if none."""
    above = probs >= thresholds[None, :] - 1e-12
    masked = np.where(above, probs, -np.inf)
    best = masked.argmax(axis=1)
    return np.where(above.any(axis=1), best, -1)


def find_label_issues(
    probs: np.ndarray, labels: np.ndarray, classes: list[str], paths: list[str], root: Path
) -> tuple[list[LabelIssue], np.ndarray]:
    """Suspects, most likely mislabeled (lowest self-confidence) first, and the thresholds."""
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels, np.int64)
    thresholds = class_thresholds(probs, labels)
    confident = confident_labels(probs, thresholds)
    count = int(((confident >= 0) & (confident != labels)).sum())
    rows = np.arange(len(labels))
    self_confidence = probs[rows, labels]
    others = probs.copy()
    others[rows, labels] = -np.inf
    suggested = others.argmax(axis=1)
    order = np.argsort(self_confidence, kind="stable")[:count]
    issues = [
        LabelIssue(
            rank=n + 1,
            path=paths[i],
            given=classes[labels[i]],
            suggested=classes[suggested[i]],
            p_given=float(self_confidence[i]),
            p_suggested=float(probs[i, suggested[i]]),
            margin=float(probs[i, suggested[i]] - self_confidence[i]),
            file=str(Path(root) / paths[i]),
        )
        for n, i in enumerate(order)
    ]
    return issues, thresholds


def issues_text(issues: list[LabelIssue]) -> str:
    """label_issues.csv: one row per suspect, most likely mislabeled first."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=ISSUE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for issue in issues:
        row = asdict(issue)
        for key in ("p_given", "p_suggested", "margin"):
            row[key] = f"{row[key]:.6f}"
        writer.writerow(row)
    return buf.getvalue()


def write_issues(path: Path, issues: list[LabelIssue]) -> None:
    atomic_write_text(path, issues_text(issues))


def read_issues(path: Path) -> list[LabelIssue]:
    """label_issues.csv back as LabelIssues ([] when missing or damaged)."""
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
        return [
            LabelIssue(
                int(r["rank"]),
                r["path"],
                r["given"],
                r["suggested"],
                float(r["p_given"]),
                float(r["p_suggested"]),
                float(r["margin"]),
                r["file"],
            )
            for r in rows
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def read_oof(path: Path, classes: list[str] | None = None):
    """oof.csv (path, label, fold, p_<class>...) -> (paths, labels, probs, class names).

    The class order is the p_ columns'; labels are indices into it.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise OofError(f"{path}: cannot read out-of-fold predictions ({exc})") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None) or []
    names = [h[2:] for h in header if h.startswith("p_")]
    if header[:2] != ["path", "label"] or len(names) < 2:
        raise OofError(f"{path}: not an oof.csv (need columns path,label,fold,p_<class>...)")
    first = header.index("p_" + names[0])
    paths, labels, probs = [], [], []
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        try:
            labels.append(names.index(row[1]))
            probs.append([float(v) for v in row[first : first + len(names)]])
        except ValueError:
            raise OofError(f"{path} line {line}: unknown label or bad probability") from None
        if len(probs[-1]) != len(names):
            raise OofError(f"{path} line {line}: {len(probs[-1])} probabilities, need {len(names)}")
        paths.append(row[0])
    if not paths:
        raise OofError(f"{path}: no rows")
    return paths, np.array(labels), np.array(probs), names


def report_thumbs(run_dir: Path, bundle, data, limit: int = 24) -> None:
    """The report's sheet of suspects from RUN/label_issues.csv (if `cnn doctor` wrote one)."""
    from cnncli.charts.thumbs import thumb_of

    issues = read_issues(Path(run_dir) / ISSUES_FILE)
    if not (Path(run_dir) / ISSUES_FILE).is_file():
        return
    data.label_issues_note = (
        f"{len(issues)} suspect(s) in {ISSUES_FILE} (cnn doctor, confident learning); "
        f"the {min(limit, len(issues))} most likely shown as: given label, suggested label "
        "and its probability"
    )
    for issue in issues[:limit]:
        thumb = thumb_of(bundle, issue.file, issue.given, issue.suggested, issue.p_suggested)
        if thumb is not None:
            thumb.words = ("given", "suggested")
            data.label_issues.append(thumb)
