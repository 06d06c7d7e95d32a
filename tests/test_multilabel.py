"""Multi-label loss, class weights, thresholds and metrics, against hand computation."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from cnncli.inference.multilabel import (
    average_precision,
    compute_multilabel_metrics,
    mistaken_rows,
    tune_thresholds,
)
from cnncli.training.steps import multilabel_class_weights, multilabel_loss


def _bce(x: float, t: float) -> float:
    """-(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))), written out."""
    return t * math.log1p(math.exp(-x)) + (1 - t) * math.log1p(math.exp(x))


LOGITS = [[2.0, -1.0], [0.5, 0.0], [3.0, 3.0]]
TARGETS = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
MASK = [1.0, 1.0, 0.0]  # the third row is padding


def test_bce_by_hand_with_padding():
    loss, per_sample = multilabel_loss(jnp.array(LOGITS), jnp.array(TARGETS), jnp.array(MASK))
    # ln(1 + e^-2), ln(1 + e^-1), ln(1 + e^0.5), ln(1 + e^0) = ln 2
    terms = [0.126928, 0.313262, 0.974077, 0.693147]
    assert float(loss) == pytest.approx(sum(terms) / 4, abs=1e-5)
    assert np.allclose(
        per_sample, [(terms[0] + terms[1]) / 2, (terms[2] + terms[3]) / 2, 0], atol=1e-5
    )


def test_bce_label_smoothing_treats_each_label_as_two_classes():
    s = 0.2
    loss, _ = multilabel_loss(jnp.array(LOGITS), jnp.array(TARGETS), jnp.array(MASK), smoothing=s)
    smooth = lambda y: y * (1 - s) + s / 2  # noqa: E731  1 -> 0.9, 0 -> 0.1
    expected = np.mean(
        [_bce(LOGITS[i][j], smooth(TARGETS[i][j])) for i in range(2) for j in range(2)]
    )
    assert float(loss) == pytest.approx(expected, abs=1e-5)


def test_class_weights_balance_positives_and_negatives_of_each_label():
    targets = np.array([[1, 1], [0, 1], [0, 0], [0, 0]], np.float32)
    w = multilabel_class_weights(targets)
    # label 0: 1 positive, 3 negatives of 4 -> 4 / (2 * 1) = 2 and 4 / (2 * 3) = 2/3
    # label 1: 2 and 2 -> 1 and 1
    assert np.allclose(w, [[2 / 3, 1.0], [2.0, 1.0]])
    loss, _ = multilabel_loss(
        jnp.array(LOGITS), jnp.array(TARGETS), jnp.array(MASK), class_weights=w
    )
    weights = [[w[int(TARGETS[i][j]), j] for j in range(2)] for i in range(2)]
    expected = sum(
        weights[i][j] * _bce(LOGITS[i][j], TARGETS[i][j]) for i in range(2) for j in range(2)
    ) / sum(sum(row) for row in weights)
    assert float(loss) == pytest.approx(expected, abs=1e-5)


def test_thresholds_maximise_f1_by_hand():
    probs = np.array(
        [
            [0.9, 0.6, 0.7],
            [0.8, 0.6, 0.1],
            [0.7, 0.2, 0.2],
            [0.4, 0.1, 0.3],
            [0.3, 0.05, 0.9],
        ]
    )
    targets = np.array([[1, 1, 0], [0, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]])
    # label 0, top-k F1 = 2 TP / (k + 3): k=1 .5, k=2 .4, k=3 .667, k=4 .857, k=5 .75 -> k = 4,
    #   threshold halfway between 0.4 and 0.3.
    # label 1: the two tied 0.6 go together (F1 .5), then 0.2 gives TP 2 of 3 -> F1 0.8;
    #   the best cut is after 0.2, before 0.1 -> threshold 0.15.
    # label 2 has no positive: the default 0.5.
    assert tune_thresholds(probs, targets) == pytest.approx([0.35, 0.15, 0.5])
    metrics = compute_multilabel_metrics(probs, targets, ["a", "b", "c"], [0.35, 0.15, 0.5])
    a, b, c = metrics.per_label
    assert (a.precision, a.recall, a.f1) == pytest.approx((0.75, 1.0, 6 / 7))
    assert (b.precision, b.recall) == pytest.approx((2 / 3, 1.0))
    assert (c.precision, c.recall, c.support) == (0.0, 0.0, 0)
    # predicted sets: {a,b,c}, {a,b}, {a,b}, {a}, {c}; true: {a,b}, {}, {a,b}, {a}, {}
    assert metrics.subset_accuracy == pytest.approx(2 / 5)
    assert metrics.hamming_loss == pytest.approx(4 / 15)
    assert metrics.micro["precision"] == pytest.approx(5 / 9)
    assert metrics.micro["recall"] == 1.0
    # AP of label 0: ranks 1, 3, 4 are positives -> (1 + 2/3 + 3/4) / 3
    assert a.ap == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert math.isnan(c.ap) and metrics.map == pytest.approx((a.ap + b.ap) / 2)
    assert metrics.to_dict()["per_label"][2]["ap"] is None
    rows = mistaken_rows(
        [f"{i}.png" for i in range(5)], probs, targets, ["a", "b", "c"], metrics.thresholds
    )
    assert [(r["path"], r["wrong"], r["missed"], r["extra"]) for r in rows] == [
        ("1.png", 2, "", "a;b"),
        ("0.png", 1, "", "c"),
        ("4.png", 1, "", "c"),
    ]


def test_average_precision_with_ties_and_without_positives():
    # Two tied scores, one positive among them: one cut, precision 1/2 at recall 1.
    assert average_precision(np.array([0.5, 0.5, 0.1]), np.array([0, 1, 0])) == 0.5
    assert math.isnan(average_precision(np.array([0.5, 0.2]), np.array([0, 0])))
