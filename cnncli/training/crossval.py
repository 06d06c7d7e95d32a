"""K-fold cross-validation: stratified folds, one run per fold, out-of-fold predictions.

One 80/20 split of a few hundred images is noisy by several points; K runs, each
validated on a different fifth (K = 5), give the mean and the spread. Each fold is an
ordinary run folder (RUN/fold1, ...), so `cnn eval` and `cnn predict` work on it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnncli.atomic import atomic_write_text
from cnncli.config import RunConfig, load_toml, save_toml
from cnncli.data.labels import LabelOptions
from cnncli.data.scan import Dataset, DatasetError, Label, label_name
from cnncli.data.stratify import iterative_folds, stratified_folds
from cnncli.model.shapes import layer_table
from cnncli.training.run import (
    CONFIG_FILE,
    RUN_FILE,
    RunPlan,
    check_writable,
    load_run_dataset,
    next_run_dir,
    plan_for_dataset,
    plan_resume,
)

OOF_FILE = "oof.csv"
FOLDS_FILE = "folds.csv"
CV_FILE = "cv.json"


@dataclass
class CrossValidation:
    """A K-fold run: every image (train and val pooled), its fold, and one RunPlan per fold."""

    run_dir: Path
    cfg: RunConfig
    dataset: Dataset
    items: list[tuple[str, Label]]  # sorted by path
    folds: list[int]  # 0..k-1, one per item
    plans: list[RunPlan] = field(default_factory=list)

    @property
    def k(self) -> int:
        return len(self.plans)


@dataclass
class FoldResult:
    """How one fold's run ended, and its out-of-fold probabilities."""

    fold: int  # 1..k
    train_images: int
    val_images: int
    best_epoch: int
    val_acc: float
    val_map: float | None
    # item index (into CrossValidation.items) -> probabilities over the classes
    probs: dict[int, np.ndarray]


def pooled_items(dataset: Dataset) -> list[tuple[str, Label]]:
    """The images K-fold divides: train and val together (a test split stays out)."""
    return sorted(dataset.splits.get("train", []) + dataset.splits.get("val", []))


def assign_folds(dataset: Dataset, items: list[tuple[str, Label]], k: int, seed: int) -> list[int]:
    """The fold of each item: stratified by class, or iteratively by label (multi-label).

    DatasetError when a class has fewer than k images (a fold would miss it in val).
    """
    if k < 2:
        raise DatasetError(f"--folds must be at least 2, got {k}")
    if dataset.multi_label:
        if len(items) < k:
            raise DatasetError(f"{dataset.root}: --folds {k} needs at least {k} images")
        return iterative_folds(items, len(dataset.classes), k, seed)
    counts = np.bincount([label for _, label in items], minlength=len(dataset.classes))
    smallest = int(np.argmin(counts))
    if counts[smallest] < k:
        raise DatasetError(
            f"{dataset.root}: --folds {k} needs at least {k} images of every class; "
            f"'{dataset.classes[smallest]}' has {counts[smallest]} (use fewer folds)"
        )
    return stratified_folds(items, k, seed)


def plan_cross_validation(
    data_dir: str | Path,
    cfg: RunConfig,
    out: str | Path | None,
    k: int,
    labels: LabelOptions | None = None,
    dataset: Dataset | None = None,
    extra: dict[str, Any] | None = None,
) -> CrossValidation:
    """Scan (or take the `dataset` already scanned), assign folds, check the network's
    shapes, then create RUN and RUN/fold1..k; `extra` goes into every run.json (e.g. the
    resolved --init source, which each fold starts from)."""
    if dataset is None:
        dataset = load_run_dataset(data_dir, labels, cfg, guard=False)
    items = pooled_items(dataset)
    folds = assign_folds(dataset, items, k, cfg.train.seed)
    layer_table(cfg.model, cfg.data.image_size, cfg.data.channels, len(dataset.classes))
    run_dir = Path(out) if out else next_run_dir(name="cv")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise DatasetError(f"{run_dir}: output folder exists and is not empty (use another --out)")
    check_writable(run_dir)
    save_toml(cfg, run_dir / CONFIG_FILE)
    info = {"data_dir": str(dataset.root), "folds": k, **(extra or {}), "argv": sys.argv}
    atomic_write_text(run_dir / RUN_FILE, json.dumps(info, indent=2) + "\n")
    cv = CrossValidation(run_dir, cfg, dataset, items, folds)
    for fold in range(k):
        val = [item for item, f in zip(items, folds, strict=True) if f == fold]
        train = [item for item, f in zip(items, folds, strict=True) if f != fold]
        splits = {"train": train, "val": val}
        fold_data = dataclasses.replace(dataset, splits=splits)
        info = {"fold": fold + 1, "folds": k, **(extra or {})}
        cv.plans.append(plan_for_dataset(fold_data, cfg, run_dir / f"fold{fold + 1}", info))
    return cv


def is_cross_validation(run_dir: str | Path) -> bool:
    """Whether run_dir is the top folder of a K-fold run (its run.json names the folds)."""
    try:
        info = json.loads((Path(run_dir) / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and "folds" in info and "fold" not in info


def resume_cross_validation(run_dir: str | Path) -> CrossValidation:
    """Reload a K-fold run: its config and each fold's run (finished folds stay finished)."""
    run_dir = Path(run_dir)
    info = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    cfg = load_toml(run_dir / CONFIG_FILE)
    plans = [plan_resume(run_dir / f"fold{fold}") for fold in range(1, int(info["folds"]) + 1)]
    fold_of = {path: fold for fold, p in enumerate(plans) for path, _ in p.dataset.splits["val"]}
    items = sorted(item for p in plans for item in p.dataset.splits["val"])
    dataset = dataclasses.replace(plans[0].dataset, splits={"all": items})
    folds = [fold_of[path] for path, _ in items]
    return CrossValidation(run_dir, cfg, dataset, items, folds, plans)


def decode_all(cv: CrossValidation, progress=None):
    """Decode every image once (cached in RUN/cache); returns the cache's LoadedImages."""
    from cnncli.data.cache import load_images
    from cnncli.data.decode import resize_of

    d = cv.cfg.data
    return load_images(
        cv.dataset.root,
        [path for path, _ in cv.items],
        resize_of(d),
        d.channels,
        memory_budget_mb=d.cache_memory,
        cache_dir=cv.run_dir / "cache",
        progress=progress,
    )


def seed_fold_cache(cv: CrossValidation, fold: int, loaded) -> None:
    """Give fold's run the cache entries of its train and val splits, cut from decode_all's
    images, so that K folds decode the data once instead of K times."""
    from cnncli.data.cache import store_rows
    from cnncli.data.decode import resize_of

    plan = cv.plans[fold]
    index = {path: i for i, (path, _) in enumerate(cv.items)}
    for split in ("train", "val"):
        paths = [path for path, _ in plan.dataset.splits[split]]
        rows = np.array([index[path] for path in paths], np.int64)
        d = cv.cfg.data
        store_rows(
            plan.run_dir / "cache", cv.dataset.root, loaded, paths, rows, resize_of(d), d.channels
        )


def fold_probabilities(plan: RunPlan, batch_size: int = 64) -> dict[int, np.ndarray]:
    """Probabilities of the fold's best model (model/) on its val images: val row -> probs.

    The images come from the run's decode cache (the same pixels training validated on);
    images that could not be decoded are left out.
    """
    from cnncli.inference.bundle import load_bundle
    from cnncli.inference.predict import make_classifier
    from cnncli.training.execute import load_split

    bundle = load_bundle(plan.run_dir / "model")
    val, _ = load_split(plan, "val")
    size = max(1, min(batch_size, len(val)))
    classify = make_classifier(bundle, size)
    out: dict[int, np.ndarray] = {}
    for start in range(0, len(val), size):
        probs = classify(np.asarray(val.images[start : start + size]))
        for row, p in zip(val.rows[start : start + size], probs, strict=True):
            out[int(row)] = np.asarray(p, np.float64)
    return out


def fold_result(cv: CrossValidation, fold: int, outcome, probs_by_row: dict[int, np.ndarray]):
    """A FoldResult from execute_run's outcome and fold_probabilities (val rows -> items)."""
    index = {item[0]: i for i, item in enumerate(cv.items)}
    val = cv.plans[fold].dataset.splits["val"]
    probs = {index[val[row][0]]: p for row, p in probs_by_row.items()}
    # A fold finished before a resume decoded nothing this time: count its split instead.
    train_size = outcome.train_size or len(cv.plans[fold].dataset.splits["train"])
    return FoldResult(
        fold=fold + 1,
        train_images=train_size,
        val_images=len(probs),
        best_epoch=outcome.best_epoch,
        val_acc=float(outcome.best_val_acc),
        val_map=None if outcome.best_val_map is None else float(outcome.best_val_map),
        probs=probs,
    )


def spread(values: list[float]) -> dict[str, float]:
    """mean, std (sample, ddof 1), min and max of per-fold values."""
    array = np.asarray(values, np.float64)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {
        "mean": float(array.mean()),
        "std": std,
        "min": float(array.min()),
        "max": float(array.max()),
    }


def summarize(cv: CrossValidation, results: list[FoldResult]) -> dict[str, Any]:
    """cv.json's content: per fold, the spread of val accuracy (and mAP), OOF accuracy."""
    rows = [
        {k: v for k, v in dataclasses.asdict(r).items() if k != "probs" and v is not None}
        for r in results
    ]
    summary: dict[str, Any] = {
        "run_dir": str(cv.run_dir),
        "data_dir": str(cv.dataset.root),
        "k": cv.k,
        "seed": cv.cfg.train.seed,
        "images": len(cv.items),
        "folds": rows,
        "val_acc": spread([r.val_acc for r in results]),
        "oof": str(cv.run_dir / OOF_FILE),
    }
    if cv.dataset.multi_label:
        summary["multi_label"] = True
        summary["val_map"] = spread([r.val_map or 0.0 for r in results])
    else:
        predicted = [
            (cv.items[i][1], int(np.argmax(p))) for r in results for i, p in r.probs.items()
        ]
        if predicted:
            summary["oof_accuracy"] = float(np.mean([t == p for t, p in predicted]))
    summary["oof_images"] = sum(len(r.probs) for r in results)
    return summary


def oof_text(cv: CrossValidation, results: list[FoldResult]) -> str:
    """oof.csv: path (relative to the data folder), label, fold (1..k), p_<class> columns.

    One row per image that decoded, each exactly once, in path order. Single-label
    probabilities are softmax (sum 1); multi-label ones are per-label sigmoids.
    """
    probs: dict[int, tuple[int, np.ndarray]] = {}
    for result in results:
        for index, p in result.probs.items():
            probs[index] = (result.fold, p)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label", "fold", *(f"p_{c}" for c in cv.dataset.classes)])
    for index in sorted(probs):
        path, label = cv.items[index]
        fold, p = probs[index]
        name = label_name(cv.dataset.classes, label)
        writer.writerow([path, name, fold, *(f"{float(v):.8g}" for v in p)])
    return buf.getvalue()


def folds_text(results: list[FoldResult], multi_label: bool) -> str:
    """folds.csv: one row per fold (images, best epoch, val accuracy, and mAP)."""
    columns = ["fold", "train_images", "val_images", "best_epoch", "val_acc"]
    columns += ["val_map"] if multi_label else []
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in results:
        writer.writerow([getattr(r, c) for c in columns])
    return buf.getvalue()


def write_results(cv: CrossValidation, results: list[FoldResult]) -> dict[str, Any]:
    """Write oof.csv, folds.csv and cv.json (each atomically); returns cv.json's dict."""
    summary = summarize(cv, results)
    atomic_write_text(cv.run_dir / OOF_FILE, oof_text(cv, results))
    atomic_write_text(cv.run_dir / FOLDS_FILE, folds_text(results, cv.dataset.multi_label))
    atomic_write_text(cv.run_dir / CV_FILE, json.dumps(summary, indent=2) + "\n")
    return summary
