"""A run's held-out images classified by its model: the test split (or val split) of the
run's split manifest, predicted the way `cnn eval` does. The HTML report and TensorBoard's
confusion matrix use it; and the plain-words warning for a model whose predictions fall
mostly on one class (the end of `cnn train`, the report)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# A model "answers mostly one class" when at least this share of the images of the other
# classes get that class (at least: predicted - true images of it); its accuracy is "near
# the largest class's share" within max(5 points, a tenth of the gap to 100 %).
ONE_CLASS_OTHERS = 2 / 3
NEAR_MAJORITY = 0.1


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


def prediction_warning(
    predicted: list[int], true: list[int], classes: list[str], accuracy: float, split: str
) -> str:
    """A plain-words warning when a model's predictions on a labelled split fall mostly on
    one class, or its accuracy is near what always answering the largest class scores; ''
    when neither holds. predicted / true: images per class (predicted as, labelled as)."""
    n, total = sum(predicted), sum(true)
    if n == 0 or total == 0 or len(classes) < 2:
        return ""
    top = max(range(len(classes)), key=lambda i: predicted[i])
    share, true_share = predicted[top] / n, true[top] / total
    largest = max(range(len(classes)), key=lambda i: true[i])
    majority = true[largest] / total
    others = n - true[top] * n / total  # images of the other classes (scaled to n)
    one_class = others > 0 and (predicted[top] - true[top] * n / total) >= ONE_CLASS_OTHERS * others
    near = accuracy <= majority + max(0.05, NEAR_MAJORITY * (1.0 - majority))
    if not (one_class or near):
        return ""
    parts = []
    if one_class:
        parts.append(
            f"the model answers '{classes[top]}' for {predicted[top]} of {n} {split} images "
            f"({100 * share:.0f}%, while {100 * true_share:.0f}% of them are '{classes[top]}')"
        )
    if near:
        than = "no better than" if accuracy <= majority + 0.005 else "barely above"
        parts.append(
            f"its {split} accuracy {100 * accuracy:.1f}% is {than} the "
            f"{100 * majority:.1f}% that always answering the largest class "
            f"'{classes[largest]}' would score"
        )
    verdict = (
        "it mostly answers one class instead of telling the classes apart"
        if one_class
        else "it has learnt little beyond how common each class is"
    )
    return (
        f"{'; '.join(parts)}: {verdict}. Try --recipe fixed, less augmentation and "
        "regularisation (--augment none --dropout 0.3), more epochs, or check that the labels "
        "match the images"
    )
