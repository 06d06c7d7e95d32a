"""Multi-label metrics from sigmoid probabilities: per-label P/R/F1/AP, mAP, subset accuracy,
Hamming loss, and the per-label decision thresholds tuned for F1 on the validation split.

numpy only (no jax), like evaluate.py, so reports can be recomputed from saved outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_THRESHOLD = 0.5
_EPS = 1e-12


@dataclass
class LabelReport:
    """One label: precision, recall and F1 at its threshold, average precision, positives."""

    name: str
    precision: float
    recall: float
    f1: float
    ap: float  # NaN when the label has no positive image
    support: int
    threshold: float


@dataclass
class MultiLabelMetrics:
    """Everything `cnn eval` reports for a multi-label model on one labelled set."""

    n: int
    loss: float  # mean binary cross-entropy over images and labels
    map: float  # mean of the per-label APs over labels with at least one positive
    subset_accuracy: float  # images whose predicted label set is exactly the true one
    hamming_loss: float  # share of wrong (image, label) decisions
    micro: dict[str, float]  # precision / recall / f1 over all (image, label) decisions
    macro: dict[str, float]  # precision / recall / f1, unweighted mean over labels
    per_label: list[LabelReport]
    classes: list[str]
    thresholds: list[float]
    multi_label: bool = True

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN APs become None)."""
        out = asdict(self)
        for row in out["per_label"]:
            row["ap"] = None if np.isnan(row["ap"]) else row["ap"]
        out["map"] = None if np.isnan(out["map"]) else out["map"]
        return out


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (float64)."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def binary_cross_entropy(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean of -[y log p + (1 - y) log(1 - p)] over all entries (p clipped away from 0 and 1)."""
    p = np.clip(np.asarray(probs, np.float64), _EPS, 1.0 - _EPS)
    y = np.asarray(targets, np.float64)
    if y.size == 0:
        return 0.0
    return float(-(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)).mean())


def _ranked(scores: np.ndarray, targets: np.ndarray):
    """(scores descending, true positives after each distinct score, images after it, positives)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], targets[order].astype(np.float64)
    # Cut only where the score changes: tied images are taken together.
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    return s, np.cumsum(y)[last], last + 1.0, y.sum(), last


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """AP = sum over distinct thresholds of (R_k - R_{k-1}) * P_k (scikit-learn's definition).

    NaN when there is no positive image.
    """
    scores = np.asarray(scores, np.float64)
    targets = np.asarray(targets) > 0.5
    if not targets.any():
        return float("nan")
    _, tp, predicted, positives, _ = _ranked(scores, targets)
    recall = tp / positives
    precision = tp / predicted
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean AP over the labels that have a positive image (NaN when none has)."""
    aps = [average_precision(probs[:, j], targets[:, j]) for j in range(probs.shape[1])]
    aps = [a for a in aps if not np.isnan(a)]
    return float(np.mean(aps)) if aps else float("nan")


def tune_thresholds(probs: np.ndarray, targets: np.ndarray) -> list[float]:
    """Per label, the decision threshold with the highest F1 on (probs, targets).

    Images are ranked by probability; calling the top k positive has F1 = 2 TP_k / (k + P).
    The best k (the smallest on ties, cutting only between distinct scores) gives the
    threshold halfway between the k-th score and the next lower one, so `p >= threshold`
    selects exactly those k images (the lowest score itself when k is every image).
    A label with no positive image keeps DEFAULT_THRESHOLD.
    """
    probs = np.asarray(probs, np.float64)
    targets = np.asarray(targets) > 0.5
    out = []
    for j in range(probs.shape[1]):
        if not targets[:, j].any():
            out.append(DEFAULT_THRESHOLD)
            continue
        s, tp, predicted, positives, last = _ranked(probs[:, j], targets[:, j])
        f1 = 2 * tp / (predicted + positives)
        best = int(np.argmax(f1))
        cut = last[best]
        out.append(float(s[cut] if cut == len(s) - 1 else (s[cut] + s[cut + 1]) / 2))
    return out


def _safe_div(num, den) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def predict_sets(probs: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Boolean (N, C): label j is predicted when its probability is >= thresholds[j]."""
    return np.asarray(probs) >= np.asarray(thresholds, np.float64)[None, :]


def compute_multilabel_metrics(
    probs: np.ndarray,
    targets: np.ndarray,
    classes: list[str],
    thresholds: Sequence[float] | None = None,
) -> MultiLabelMetrics:
    """All multi-label metrics for (N, C) probabilities and multi-hot targets.

    thresholds default to DEFAULT_THRESHOLD for every label.
    """
    probs = np.asarray(probs, np.float64)
    y = np.asarray(targets) > 0.5
    if probs.shape != y.shape or probs.ndim != 2 or probs.shape[1] != len(classes):
        raise ValueError(f"probs {probs.shape} and targets {y.shape} must be (N, {len(classes)})")
    thr = list(thresholds) if thresholds is not None else [DEFAULT_THRESHOLD] * len(classes)
    pred = predict_sets(probs, thr)
    tp = (pred & y).sum(axis=0)
    predicted = pred.sum(axis=0)
    support = y.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    ap = [average_precision(probs[:, j], y[:, j]) for j in range(len(classes))]
    micro_p = float(_safe_div(tp.sum(), predicted.sum()))
    micro_r = float(_safe_div(tp.sum(), support.sum()))
    n = len(y)
    valid_ap = [a for a in ap if not np.isnan(a)]
    return MultiLabelMetrics(
        n=n,
        loss=binary_cross_entropy(probs, y),
        map=float(np.mean(valid_ap)) if valid_ap else float("nan"),
        subset_accuracy=float((pred == y).all(axis=1).mean()) if n else 0.0,
        hamming_loss=float((pred != y).mean()) if n else 0.0,
        micro={
            "precision": micro_p,
            "recall": micro_r,
            "f1": float(_safe_div(2 * micro_p * micro_r, micro_p + micro_r)),
        },
        macro={
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "f1": float(f1.mean()),
        },
        per_label=[
            LabelReport(str(c), float(p), float(r), float(f), float(a), int(s), float(t))
            for c, p, r, f, a, s, t in zip(
                classes, precision, recall, f1, ap, support, thr, strict=True
            )
        ],
        classes=[str(c) for c in classes],
        thresholds=[float(t) for t in thr],
    )


def mistaken_rows(
    paths: Sequence[str],
    probs: np.ndarray,
    targets: np.ndarray,
    classes: Sequence[str],
    thresholds: Sequence[float],
) -> list[dict]:
    """Images whose predicted label set differs from the true one, most wrong labels first.

    Each row: path, true and predicted sets (names joined by ';'), missed and extra labels,
    and `wrong` = how many labels are wrong; ties keep input order.
    """
    y = np.asarray(targets) > 0.5
    pred = predict_sets(probs, thresholds)
    wrong = (pred != y).sum(axis=1)
    rows = []
    for i in np.argsort(-wrong, kind="stable"):
        if wrong[i] == 0:
            break
        rows.append(
            {
                "path": str(paths[i]),
                "true": ";".join(c for c, on in zip(classes, y[i], strict=True) if on),
                "predicted": ";".join(c for c, on in zip(classes, pred[i], strict=True) if on),
                "missed": ";".join(
                    c for c, a, b in zip(classes, y[i], pred[i], strict=True) if a and not b
                ),
                "extra": ";".join(
                    c for c, a, b in zip(classes, y[i], pred[i], strict=True) if b and not a
                ),
                "wrong": int(wrong[i]),
            }
        )
    return rows


def multi_hot(labels: Sequence[tuple[int, ...]], num_classes: int) -> np.ndarray:
    """(N, C) float32 multi-hot targets from per-image label index tuples."""
    out = np.zeros((len(labels), num_classes), np.float32)
    for i, label in enumerate(labels):
        out[i, list(label)] = 1.0
    return out
