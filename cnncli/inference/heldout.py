"""A run's held-out images classified by its model: the test split (or val split) of the
run's split manifest, predicted the way `cnn eval` does. The HTML report and TensorBoard's
confusion matrix use it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Predictions:
    """A labelled set classified by the run's model (single-label: probs are softmax)."""

    source: str  # where the images came from, for the report's text
    paths: list[str]
    probs: np.ndarray  # (N, C)
    labels: np.ndarray  # (N,) class indices, or (N, C) multi-hot
    skipped: list[tuple[str, str]] = field(default_factory=list)


def run_predictions(bundle, dataset) -> Predictions | None:
    """Classify the run's test split (or val split) with the bundle, as `cnn eval` does."""
    from cnncli.inference.predict import evaluate_items

    split = "test" if dataset.splits.get("test") else "val"
    items = dataset.splits.get(split) or []
    if not items:
        return None
    index = [bundle.classes.index(c) if c in bundle.classes else -1 for c in dataset.classes]
    if bundle.multi_label:
        mapped = [(p, tuple(sorted(index[i] for i in t))) for p, t in items]
    else:
        mapped = [(p, index[label]) for p, label in items]
    mapped = [(p, t) for p, t in mapped if (min(t) if isinstance(t, tuple) else t) >= 0]
    scores, labels, paths, skipped = evaluate_items(bundle, dataset.root, mapped)
    probs = scores if bundle.multi_label else np.exp(scores)
    source = f"the run's {split} split ({dataset.root})"
    return Predictions(source, paths, probs, labels, skipped)
