"""Classification metrics from logits: confusion matrix, top-k, precision/recall/F1, calibration.

numpy only (no jax), so reports can be recomputed from saved logits anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

ECE_BINS = 15
_EPS = 1e-12  # clip probabilities so log(0) never happens


@dataclass
class ClassReport:
    """Precision, recall and F1 for one class; support = number of true samples."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class EvalMetrics:
    """Everything `cnn evaluate` reports about one labelled set."""

    n: int
    loss: float
    top1: float
    topk: float
    k: int
    per_class: list[ClassReport]
    macro: dict[str, float]  # precision / recall / f1, unweighted mean over classes
    weighted: dict[str, float]  # same, weighted by support
    ece: float  # expected calibration error, 15 equal-width bins on the max probability
    confusion: list[list[int]]  # rows = true class, cols = predicted class
    classes: list[str]

    def to_dict(self) -> dict:
        """JSON-ready dict of plain Python types."""
        return asdict(self)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis (float64)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis (float64)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (num_classes, num_classes) int64; rows = true class, cols = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} holds labels outside 0..{num_classes - 1}")
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def topk_accuracy(probs: np.ndarray, y_true: np.ndarray, k: int) -> float:
    """Fraction of samples whose true class is among the k highest scores (k clipped to C).

    Works on probabilities or logits alike (only the ranking matters).
    """
    probs = np.asarray(probs)
    y_true = np.asarray(y_true, dtype=np.int64)
    if len(y_true) == 0:
        return 0.0
    k = max(1, min(int(k), probs.shape[-1]))
    # argpartition picks the top k without a full sort; order inside the top k does not matter
    top = np.argpartition(-probs, k - 1, axis=-1)[:, :k]
    return float((top == y_true[:, None]).any(axis=1).mean())


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, with 0/0 (and x/0) defined as 0.0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den != 0)
    return out


def precision_recall_f1(
    confusion: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class (precision, recall, f1, support) from a confusion matrix (rows = true).

    0/0 is defined as 0.0: a class never predicted has precision 0, a class with no
    true samples has recall 0, and F1 is 0 when precision + recall is 0.
    """
    cm = np.asarray(confusion, dtype=np.int64)
    tp = np.diag(cm)
    support = cm.sum(axis=1)  # true samples per class
    predicted = cm.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return precision, recall, f1, support


def expected_calibration_error(
    probs: np.ndarray, y_true: np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE: sum over equal-width bins of |accuracy - mean confidence| weighted by bin share.

    Confidence is the max probability; bin i holds confidences in (i/bins, (i+1)/bins]
    (a confidence of exactly 0 falls in the first bin).
    """
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    n = len(y_true)
    if n == 0:
        return 0.0
    conf = probs.max(axis=-1)
    correct = (probs.argmax(axis=-1) == y_true).astype(np.float64)
    idx = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    conf_sum = np.bincount(idx, weights=conf, minlength=bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=bins)
    # |acc_sum - conf_sum| / n equals (count/n) * |mean acc - mean conf| per bin
    return float(np.abs(acc_sum - conf_sum).sum() / n)


def cross_entropy(scores: np.ndarray, y_true: np.ndarray, from_logits: bool = True) -> float:
    """Mean negative log-likelihood of the true class.

    scores are logits (default) or, with from_logits=False, probabilities (clipped
    to [1e-12, 1] so log(0) never happens).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    if len(y_true) == 0:
        return 0.0
    if from_logits:
        logp = log_softmax(scores)
    else:
        logp = np.log(np.clip(np.asarray(scores, dtype=np.float64), _EPS, 1.0))
    return float(-logp[np.arange(len(y_true)), y_true].mean())


def default_k(num_classes: int) -> int:
    """Top-k reported by default: 5 when there are at least 5 classes, else all C classes."""
    return 5 if num_classes >= 5 else num_classes


def row_normalize(confusion: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (share of each true class predicted as each class); empty rows stay 0."""
    cm = np.asarray(confusion, dtype=np.float64)
    return _safe_div(cm, np.broadcast_to(cm.sum(axis=1, keepdims=True), cm.shape))


def _check_inputs(logits: np.ndarray, y_true: np.ndarray, classes: Sequence[str]) -> None:
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, C), got shape {logits.shape}")
    if logits.shape[1] != len(classes):
        raise ValueError(
            f"logits have {logits.shape[1]} columns but there are {len(classes)} classes"
        )
    if len(y_true) != len(logits):
        raise ValueError(f"{len(logits)} rows of logits but {len(y_true)} labels")
    if len(y_true) and (y_true.min() < 0 or y_true.max() >= len(classes)):
        raise ValueError(f"labels must lie in 0..{len(classes) - 1}")


def compute_metrics(
    logits: np.ndarray, y_true: np.ndarray, classes: list[str], k: int | None = None
) -> EvalMetrics:
    """All evaluation metrics for (N, C) logits and integer labels.

    k defaults to default_k(C): 5 when there are at least 5 classes, else C (so top-k is 1.0).
    """
    logits = np.asarray(logits, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    _check_inputs(logits, y_true, classes)
    num_classes = len(classes)
    k = default_k(num_classes) if k is None else max(1, min(int(k), num_classes))

    probs = softmax(logits)
    y_pred = probs.argmax(axis=-1)
    cm = confusion_matrix(y_true, y_pred, num_classes)
    precision, recall, f1, support = precision_recall_f1(cm)
    n = int(len(y_true))
    weights = support / n if n else np.zeros(num_classes)

    per_class = [
        ClassReport(str(name), float(p), float(r), float(f), int(s))
        for name, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
    ]
    macro = {
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1": float(f1.mean()),
    }
    weighted = {
        "precision": float((precision * weights).sum()),
        "recall": float((recall * weights).sum()),
        "f1": float((f1 * weights).sum()),
    }
    return EvalMetrics(
        n=n,
        loss=cross_entropy(logits, y_true),
        top1=float((y_pred == y_true).mean()) if n else 0.0,
        topk=topk_accuracy(probs, y_true, k),
        k=k,
        per_class=per_class,
        macro=macro,
        weighted=weighted,
        ece=expected_calibration_error(probs, y_true),
        confusion=cm.tolist(),
        classes=[str(c) for c in classes],
    )


def misclassified_rows(
    paths: Sequence[str], logits: np.ndarray, y_true: np.ndarray, classes: Sequence[str]
) -> list[dict]:
    """Wrong predictions as dicts (path, true, predicted, confidence), most confident first.

    confidence is the softmax probability of the predicted class; ties keep input order.
    """
    logits = np.asarray(logits, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    _check_inputs(logits, y_true, classes)
    if len(paths) != len(y_true):
        raise ValueError(f"{len(paths)} paths but {len(y_true)} labels")
    probs = softmax(logits)
    y_pred = probs.argmax(axis=-1)
    conf = probs.max(axis=-1)
    wrong = np.flatnonzero(y_pred != y_true)
    order = wrong[np.argsort(-conf[wrong], kind="stable")]
    return [
        {
            "path": str(paths[i]),
            "true": str(classes[y_true[i]]),
            "predicted": str(classes[y_pred[i]]),
            "confidence": float(conf[i]),
        }
        for i in order
    ]
