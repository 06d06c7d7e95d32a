"""The served model: a run's bundle or an exported model, one classifier per batch size
(compiled and run once at start-up), and the JSON a prediction becomes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cnncli.inference.bundle import Bundle
from cnncli.inference.exported import ExportedModel
from cnncli.inference.predict import label_of, label_set, top_k

# Batch sizes compiled at start-up: a batch of n images runs in the smallest that holds it.
BATCH_SIZES = (1, 2, 4, 8, 16, 32)


@dataclass
class ServedModel:
    """A loaded model with its compiled batch sizes."""

    model: Bundle | ExportedModel
    batch_sizes: tuple[int, ...]
    classifiers: dict[int, Callable[[np.ndarray], np.ndarray]] = field(repr=False)
    compile_seconds: float = 0.0

    @property
    def classes(self) -> list[str]:
        return self.model.classes

    @property
    def is_bundle(self) -> bool:
        """A run's bundle (Grad-CAM works), not an exported file."""
        return isinstance(self.model, Bundle)

    def classify(self, images: np.ndarray) -> np.ndarray:
        """uint8 (n, H, W, C), n at most the largest batch size -> probabilities (n, classes)."""
        size = next(b for b in self.batch_sizes if b >= len(images))
        return self.classifiers[size](images)

    def result(self, probs: np.ndarray, k: int) -> dict:
        """One image's answer: label and confidence (or, multi-label, the label set with each
        label's stored threshold), the k most likely classes and every probability."""
        classes = self.classes
        answer: dict = {}
        if self.model.multi_label:
            thresholds = self.model.thresholds or [0.5] * len(classes)
            chosen = label_set(probs, classes, thresholds)
            by_name = dict(zip(classes, thresholds, strict=True))
            answer["labels"] = [name for name, _ in chosen]
            answer["label_set"] = [
                {"label": name, "p": p, "threshold": by_name[name]} for name, p in chosen
            ]
        else:
            label, confidence = label_of(probs, classes, None)
            answer["label"], answer["confidence"] = label, confidence
        answer["top_k"] = [{"label": c, "p": p} for c, p in top_k(probs, classes, k)]
        answer["probs"] = {c: float(p) for c, p in zip(classes, probs, strict=True)}
        return answer


def batch_sizes_up_to(max_batch: int) -> tuple[int, ...]:
    """BATCH_SIZES up to max_batch (itself included when it is not a power of two)."""
    if max_batch < 1:
        raise ValueError("--max-batch must be >= 1")
    sizes = [b for b in BATCH_SIZES if b < max_batch]
    return (*sizes, max_batch)


def compile_served(
    model: Bundle | ExportedModel,
    max_batch: int = BATCH_SIZES[-1],
    progress: Callable[[int, int], None] | None = None,
) -> ServedModel:
    """Compile a classifier for every batch size of the loaded model (see load_model).

    Each one runs once on a blank batch, so the first request pays no compile or first-call
    cost. progress(done, total) after each batch size.
    """
    from cnncli.inference.predict import classifier_of

    sizes = batch_sizes_up_to(max_batch)
    start = time.perf_counter()
    classifiers = {}
    for done, size in enumerate(sizes, 1):
        classify = classifier_of(model, size)
        classify(np.zeros((size, *model.resize.hw, model.channels), np.uint8))
        classifiers[size] = classify
        if progress:
            progress(done, len(sizes))
    return ServedModel(model, sizes, classifiers, time.perf_counter() - start)
