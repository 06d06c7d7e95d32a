"""What GET /model says about the served model: classes, input, preprocessing, accuracy and
licence, read from the bundle (model.json) and the run folder around it (summary.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cnncli.inference.bundle import META_FILE, Bundle
from cnncli.inference.exported import ExportedModel

SUMMARY_FILE = "summary.json"


def model_card(model: Bundle | ExportedModel) -> dict[str, Any]:
    """The model's description as JSON-ready data; missing files leave their fields null."""
    if isinstance(model, Bundle):
        meta, fmt, run_dir = model.meta, "bundle", model.path.parent
        name = run_dir.name if model.path.name == "model" else model.path.name
    else:  # an export folder sits in its run (RUN/export/model.onnx) unless moved
        fmt, run_dir = model.format, model.path.parent.parent
        meta = _read_json(run_dir / "model" / META_FILE) or {}
        name = run_dir.name if meta else model.path.parent.name
    height, width = model.resize.hw
    card: dict[str, Any] = {
        "name": name,
        "format": fmt,
        "classes": list(model.classes),
        "multi_label": bool(model.multi_label),
        "thresholds": model.thresholds if model.multi_label else None,
        "input": {"height": height, "width": width, "channels": model.channels},
        "preprocessing": {
            **model.resize.spec(),
            "decode": model.resize.describe(),
            "normalize": meta.get("preprocess", {}).get("normalize"),
        },
        "accuracy": _accuracy(meta, _read_json(run_dir / SUMMARY_FILE)),
        "licence": _licence(meta),
        "explain": fmt == "bundle",
    }
    return card


def _accuracy(meta: dict, summary: dict | None) -> dict[str, Any] | None:
    """The saved epoch's validation numbers (model.json), and the run's summary if present."""
    found = {key: meta[key] for key in ("epoch", "val_acc", "val_map") if key in meta}
    if summary:
        for key in ("best_val_acc", "best_val_map", "epochs"):
            if summary.get(key) is not None:
                found[key] = summary[key]
    return found or None


def _licence(meta: dict) -> str | None:
    """The licence of the weights training started from (`--init`), when it was stated."""
    init = meta.get("init")
    if isinstance(init, dict) and init.get("licence"):
        return str(init["licence"])
    return None


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
