"""K-fold cross-validation: stratified folds (cnncli.data.stratify) and the fold plans."""

from __future__ import annotations

import csv
import random

import numpy as np
import pytest

from cnncli.config import RunConfig
from cnncli.data.scan import DatasetError
from cnncli.data.stratify import stratified_folds
from cnncli.training.crossval import plan_cross_validation, spread
from tests.imagefactory import make_class_tree


def _items(sizes: dict[int, int]) -> list[tuple[str, int]]:
    return [(f"c{label}/{i:03d}.png", label) for label, n in sizes.items() for i in range(n)]


@pytest.mark.parametrize("k", [2, 3, 5])
def test_folds_are_disjoint_stratified_and_cover_everything_once(k):
    sizes = {0: 23, 1: 10, 2: 7, 3: 5}
    items = _items(sizes)
    folds = stratified_folds(items, k, seed=0)
    assert len(folds) == len(items) and set(folds) == set(range(k))
    # Each image is in exactly one validation fold: the K val sets partition the data.
    val_sets = [
        {p for (p, _), f in zip(items, folds, strict=True) if f == fold} for fold in range(k)
    ]
    assert sum(len(s) for s in val_sets) == len(items)
    assert set().union(*val_sets) == {p for p, _ in items}
    # Stratified: per class and in all, fold sizes differ by at most one.
    per_fold = np.zeros((k, len(sizes)), int)
    for (_, label), f in zip(items, folds, strict=True):
        per_fold[f, label] += 1
    assert (per_fold.max(axis=0) - per_fold.min(axis=0) <= 1).all()
    assert per_fold.sum(axis=1).max() - per_fold.sum(axis=1).min() <= 1
    assert (per_fold.sum(axis=0) == list(sizes.values())).all()


def test_folds_depend_on_paths_and_seed_only():
    items = _items({0: 12, 1: 9})
    folds = dict(zip([p for p, _ in items], stratified_folds(items, 3, seed=1), strict=True))
    shuffled = items[:]
    random.Random(0).shuffle(shuffled)
    again = stratified_folds(shuffled, 3, seed=1)
    assert {p: f for (p, _), f in zip(shuffled, again, strict=True)} == folds
    assert stratified_folds(items, 3, seed=2) != stratified_folds(items, 3, seed=1)
    with pytest.raises(ValueError, match="k >= 2"):
        stratified_folds(items, 1, seed=0)


def test_fold_plans_validate_on_each_fold_and_train_on_the_rest(tmp_path):
    data = tmp_path / "photos"
    make_class_tree(data, {"blue": 7, "green": 6, "red": 5}, size=8)
    cfg = RunConfig()
    cfg.data.image_size = 16
    cv = plan_cross_validation(data, cfg, tmp_path / "run", 3)
    everything = {p for p, _ in cv.items}
    assert len(everything) == 18 and cv.k == 3
    vals = [{p for p, _ in plan.dataset.splits["val"]} for plan in cv.plans]
    assert sum(map(len, vals)) == 18 and set().union(*vals) == everything
    for plan, val in zip(cv.plans, vals, strict=True):
        train = {p for p, _ in plan.dataset.splits["train"]}
        assert train == everything - val
        # Each fold is a run folder of its own, its split.csv naming the fold's val images.
        rows = [r for r in csv.reader((plan.run_dir / "split.csv").open()) if r and r[0] == "val"]
        assert {r[3] for r in rows} == val
        assert {r[2] for r in rows} == {"blue", "green", "red"}


def test_a_class_smaller_than_k_is_a_one_line_error(tmp_path):
    data = tmp_path / "photos"
    make_class_tree(data, {"blue": 6, "red": 3}, size=8)
    with pytest.raises(DatasetError, match="'red' has 3"):
        plan_cross_validation(data, RunConfig(), tmp_path / "run", 4)
    assert not (tmp_path / "run").exists()


def test_spread_is_mean_sample_std_min_max():
    s = spread([0.5, 0.7, 0.6])
    assert s["mean"] == pytest.approx(0.6) and s["std"] == pytest.approx(0.1)
    assert (s["min"], s["max"]) == (0.5, 0.7)


def test_oof_rows_for_a_multi_label_model(tmp_path):
    from cnncli.data.scan import Dataset
    from cnncli.training.crossval import CrossValidation, FoldResult, oof_text

    items = [("a.png", (0, 2)), ("b.png", (1,)), ("c.png", (2,))]
    dataset = Dataset(tmp_path, "labels", ["cat", "dog", "sky"], {}, multi_label=True)
    cv = CrossValidation(tmp_path, RunConfig(), dataset, items, [1, 0, 1])
    probs = {0: np.array([0.9, 0.1, 0.8]), 2: np.array([0.2, 0.3, 0.7])}
    results = [
        FoldResult(1, 2, 1, 1, 1.0, 0.9, {1: np.array([0.1, 0.95, 0.2])}),
        FoldResult(2, 1, 2, 1, 0.5, 0.8, probs),
    ]
    lines = oof_text(cv, results).splitlines()
    assert lines == [
        "path,label,fold,p_cat,p_dog,p_sky",
        "a.png,cat;sky,2,0.9,0.1,0.8",
        "b.png,dog,1,0.1,0.95,0.2",
        "c.png,sky,2,0.2,0.3,0.7",
    ]
