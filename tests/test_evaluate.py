"""Metrics checked against numbers worked out by hand."""

from __future__ import annotations

import json
import math
import warnings
from fractions import Fraction as F

import numpy as np
import pytest

from cnncli.inference.evaluate import (
    compute_metrics,
    confusion_matrix,
    cross_entropy,
    default_k,
    expected_calibration_error,
    misclassified_rows,
    precision_recall_f1,
    row_normalize,
    softmax,
    topk_accuracy,
)

# 3 classes, 8 samples. By hand:
#            pred a  b  c    support
#   true a      2  1  0      3
#   true b      0  3  0      3
#   true c      1  0  1      2
#   predicted   3  4  1
Y_TRUE = np.array([0, 0, 0, 1, 1, 1, 2, 2])
Y_PRED = np.array([0, 0, 1, 1, 1, 1, 2, 0])
CLASSES = ["a", "b", "c"]
CM = [[2, 1, 0], [0, 3, 0], [1, 0, 1]]
PRECISION = [F(2, 3), F(3, 4), F(1, 1)]
RECALL = [F(2, 3), F(3, 3), F(1, 2)]
F1 = [F(2, 3), F(6, 7), F(2, 3)]  # 2pr/(p+r)
MACRO = {"precision": F(29, 36), "recall": F(13, 18), "f1": F(46, 63)}
# weighted by support 3, 3, 2 over 8
WEIGHTED = {"precision": F(25, 32), "recall": F(3, 4), "f1": F(31, 42)}


def one_hot_logits(y_pred: np.ndarray, num_classes: int, scale: float = 5.0) -> np.ndarray:
    return scale * np.eye(num_classes)[y_pred]


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.dtype == np.int64
    assert cm.tolist() == CM


def test_confusion_matrix_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)


def test_precision_recall_f1_by_hand():
    p, r, f1, support = precision_recall_f1(np.array(CM))
    np.testing.assert_allclose(p, [float(x) for x in PRECISION])
    np.testing.assert_allclose(r, [float(x) for x in RECALL])
    np.testing.assert_allclose(f1, [float(x) for x in F1])
    assert support.tolist() == [3, 3, 2]


def test_compute_metrics_by_hand():
    m = compute_metrics(one_hot_logits(Y_PRED, 3), Y_TRUE, CLASSES)
    assert m.n == 8
    assert m.top1 == pytest.approx(6 / 8)
    assert m.k == 3 and m.topk == 1.0  # k = C when fewer than 5 classes
    assert m.confusion == CM
    assert m.classes == CLASSES
    for row, p, r, f in zip(m.per_class, PRECISION, RECALL, F1, strict=True):
        assert (row.precision, row.recall, row.f1) == pytest.approx((float(p), float(r), float(f)))
    assert [row.support for row in m.per_class] == [3, 3, 2]
    for key in ("precision", "recall", "f1"):
        assert m.macro[key] == pytest.approx(float(MACRO[key]))
        assert m.weighted[key] == pytest.approx(float(WEIGHTED[key]))
    # each row's softmax puts e^5/(e^5+2) on the predicted class
    p_hit = math.exp(5) / (math.exp(5) + 2)
    p_miss = 1 / (math.exp(5) + 2)
    assert m.loss == pytest.approx(-(6 * math.log(p_hit) + 2 * math.log(p_miss)) / 8)
    # all confidences equal p_hit, so one bin: |6/8 - p_hit|
    assert m.ece == pytest.approx(abs(6 / 8 - p_hit))


def test_to_dict_is_json_ready():
    d = compute_metrics(one_hot_logits(Y_PRED, 3), Y_TRUE, CLASSES).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["per_class"][1]["name"] == "b"
    assert type(d["confusion"][0][0]) is int
    assert type(d["top1"]) is float


def test_topk_by_hand():
    logits = np.array([[4.0, 3, 2, 1], [1, 2, 3, 4], [0, 0, 5, 0]])
    y = np.array([1, 0, 2])
    assert topk_accuracy(logits, y, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(logits, y, 2) == pytest.approx(2 / 3)
    assert topk_accuracy(logits, y, 3) == pytest.approx(2 / 3)
    assert topk_accuracy(logits, y, 4) == 1.0
    assert topk_accuracy(logits, y, 99) == 1.0  # k clipped to C


def test_default_k():
    assert default_k(2) == 2
    assert default_k(4) == 4
    assert default_k(5) == 5
    assert default_k(100) == 5
    m = compute_metrics(np.zeros((2, 10)), np.array([0, 1]), [str(i) for i in range(10)])
    assert m.k == 5


def test_ece_by_hand():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.65, 0.35], [0.25, 0.75]])
    y = np.array([0, 1, 0, 1])
    # 15 bins: 0.9 -> bin 13 (2 samples, acc 1/2), 0.65 -> bin 9, 0.75 -> bin 11 (acc 1)
    # ECE = 2/4*|0.5-0.9| + 1/4*|1-0.65| + 1/4*|1-0.75| = 0.2 + 0.0875 + 0.0625
    assert expected_calibration_error(probs, y) == pytest.approx(0.35)
    # one bin: |accuracy - mean confidence| = |0.75 - 0.8|
    assert expected_calibration_error(probs, y, bins=1) == pytest.approx(0.05)
    # perfectly confident and right: zero
    assert expected_calibration_error(np.eye(3), np.arange(3)) == 0.0


def test_zero_over_zero_is_zero_without_warnings():
    # class 1 is never predicted; class 2 has no samples and is never predicted
    cm = np.array([[2, 0, 0], [1, 0, 0], [0, 0, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p, r, f1, support = precision_recall_f1(cm)
        norm = row_normalize(cm)
    np.testing.assert_allclose(p, [2 / 3, 0, 0])
    np.testing.assert_allclose(r, [1, 0, 0])
    np.testing.assert_allclose(f1, [0.8, 0, 0])
    assert support.tolist() == [2, 1, 0]
    np.testing.assert_allclose(norm, [[1, 0, 0], [1, 0, 0], [0, 0, 0]])


def test_row_normalize():
    norm = row_normalize(np.array(CM))
    np.testing.assert_allclose(norm.sum(axis=1), 1.0)
    assert norm[1, 1] == 1.0 and norm[2, 0] == 0.5


def test_softmax_is_stable():
    p = softmax(np.array([[1000.0, 1000.0], [-1000.0, 0.0]]))
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p[0], [0.5, 0.5])
    np.testing.assert_allclose(p.sum(axis=1), 1.0)


def test_cross_entropy():
    assert cross_entropy(np.zeros((4, 5)), np.array([0, 1, 2, 3])) == pytest.approx(math.log(5))
    assert cross_entropy(np.array([[1e4, -1e4]]), np.array([1])) == pytest.approx(2e4)
    probs = np.array([[0.5, 0.5], [1.0, 0.0]])
    loss = cross_entropy(probs, np.array([0, 1]), from_logits=False)
    assert math.isfinite(loss)
    assert loss == pytest.approx((math.log(2) - math.log(1e-12)) / 2)


def test_misclassified_most_confident_first():
    logits = np.array(
        [
            [3.0, 0.0, 0.0],  # true 0, right
            [0.0, 1.0, 0.0],  # true 0, wrong, low confidence
            [0.0, 0.0, 6.0],  # true 1, wrong, high confidence
            [0.0, 4.0, 0.0],  # true 2, wrong, middle
        ]
    )
    rows = misclassified_rows(["a.png", "b.png", "c.png", "d.png"], logits, [0, 0, 1, 2], CLASSES)
    assert [r["path"] for r in rows] == ["c.png", "d.png", "b.png"]
    assert rows[0] == {
        "path": "c.png",
        "true": "b",
        "predicted": "c",
        "confidence": pytest.approx(math.exp(6) / (math.exp(6) + 2)),
    }
    confs = [r["confidence"] for r in rows]
    assert confs == sorted(confs, reverse=True)


def test_compute_metrics_rejects_bad_shapes():
    with pytest.raises(ValueError, match="columns"):
        compute_metrics(np.zeros((2, 4)), np.array([0, 1]), CLASSES)
    with pytest.raises(ValueError, match="labels"):
        compute_metrics(np.zeros((2, 3)), np.array([0, 1, 2]), CLASSES)
    with pytest.raises(ValueError, match="0..2"):
        compute_metrics(np.zeros((2, 3)), np.array([0, 3]), CLASSES)
