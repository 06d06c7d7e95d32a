"""What an export writes beside its model: labels.json (the class names, and for a
multi-label model each label's threshold) and preprocess.json (the input contract)."""

from __future__ import annotations

from cnncli.inference.bundle import Bundle
from cnncli.inference.exported import LABELS_FILE


def labels_json(bundle: Bundle) -> list[str] | dict:
    """labels.json: the class names in output order; for a multi-label model an object with
    the names, multi_label true and each label's threshold (`probs >= thresholds`)."""
    if not bundle.multi_label:
        return list(bundle.classes)
    return {
        "classes": list(bundle.classes),
        "multi_label": True,
        "thresholds": list(bundle.thresholds or [0.5] * len(bundle.classes)),
    }


def preprocess_spec(bundle: Bundle) -> dict:
    """The input contract of both exported formats, written as preprocess.json."""
    (h, w), c = bundle.image_hw, bundle.channels
    return {
        **bundle.resize.spec(),
        "channels": c,
        "color": "RGB" if c == 3 else "L (ITU-R 601 luma)",
        "input": {
            "name": "images",
            "dtype": "uint8",
            "layout": "NHWC",
            "shape": ["batch", h, w, c],
        },
        "decode": bundle.resize.describe(),
        "normalize": "inside the model: "
        + (
            f"(x / 255 - mean) / std, mean {bundle.model.mean}, std {bundle.model.std}"
            if bundle.model.mean
            else "x / 127.5 - 1"
        )
        + " (do not normalise before)",
        "outputs": {"logits": ["batch", len(bundle.classes)], "probs": "softmax of logits"},
        "labels": f"{LABELS_FILE}: class names in output order",
    } | (_multi_label_outputs(bundle) if bundle.multi_label else {})


def _multi_label_outputs(bundle: Bundle) -> dict:
    return {
        "outputs": {
            "logits": ["batch", len(bundle.classes)],
            "probs": "sigmoid of logits: one independent probability per label",
        },
        "labels": f"{LABELS_FILE}: class names in output order and each label's threshold "
        "(a label is present when probs >= its threshold)",
    }
