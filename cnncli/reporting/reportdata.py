"""Everything the HTML run report shows, gathered from a run folder and its model.

Reads the run's files (config, split, metrics, summary, timing, samples), classifies the
run's validation (or test) split with the inference path (no flax, optax or orbax) unless
the caller passes predictions, and makes the thumbnails and Grad-CAM overlays as PNG bytes.
htmlreport.py turns a ReportData into HTML.
"""

from __future__ import annotations

import csv
import io
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnncli.charts.thumbs import THUMB_MIN, Thumb, heat_overlay, png_bytes, thumb_of
from cnncli.inference.heldout import Predictions, prediction_warning, run_predictions
from cnncli.training.timing import read_timing

GALLERY_SIZE = 12  # thumbnails per gallery
GRADCAM_COUNT = 4  # mistakes explained with Grad-CAM


@dataclass
class ReportData:
    """What the report shows; every field may be empty when its file is missing."""

    run_name: str
    command: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    config_text: str = ""
    recipe: dict[str, Any] = field(default_factory=dict)  # recipe.json of the automatic recipe
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    label_source: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    layers: list[tuple[str, str, str, int, int, str]] = field(default_factory=list)
    input_shape: str = ""
    history: list[dict[str, float]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    eval_source: str = ""
    metrics: Any = None  # EvalMetrics or MultiLabelMetrics
    mistakes: list[Thumb] = field(default_factory=list)
    unsure: list[Thumb] = field(default_factory=list)
    gradcams: list[Thumb] = field(default_factory=list)
    samples_png: bytes | None = None
    timing: dict[str, Any] = field(default_factory=dict)
    label_issues: list[Thumb] = field(default_factory=list)
    label_issues_note: str = ""
    notes: list[str] = field(default_factory=list)
    warning: str = ""  # predictions mostly on one class / accuracy near the largest class's
    attempts: list[dict[str, Any]] = field(default_factory=list)  # attempts.json's


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_history(path: Path) -> list[dict[str, float]]:
    """metrics.csv rows as floats; a truncated or damaged file gives the rows that parse."""
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return rows
    for row in csv.DictReader(io.StringIO(text)):
        try:
            rows.append({k: float(v) for k, v in row.items() if k})
        except (TypeError, ValueError):
            break
    return rows


def _load_dataset(run_dir: Path, info: dict[str, Any]):
    from cnncli.data.scan import read_manifest

    if not (run_dir / "split.csv").is_file() or "data_dir" not in info:
        return None
    try:
        return read_manifest(run_dir / "split.csv", info["data_dir"])
    except Exception:  # a damaged manifest: the report shows what else it can
        return None


def galleries(bundle, pred: Predictions, data: ReportData) -> None:
    """Most confident mistakes, least confident correct predictions, Grad-CAM of mistakes."""
    from cnncli.data.decode import DecodeError, decode_image
    from cnncli.inference.explain import grad_cams

    classes = bundle.classes
    y_pred = pred.probs.argmax(axis=1)
    conf = pred.probs.max(axis=1)
    wrong = np.flatnonzero(y_pred != pred.labels)
    right = np.flatnonzero(y_pred == pred.labels)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")][:GALLERY_SIZE]
    right = right[np.argsort(conf[right], kind="stable")][:GALLERY_SIZE]
    for i in wrong:
        t = thumb_of(bundle, pred.paths[i], classes[pred.labels[i]], classes[y_pred[i]], conf[i])
        if t is not None:
            data.mistakes.append(t)
    for i in right:
        t = thumb_of(bundle, pred.paths[i], classes[pred.labels[i]], classes[y_pred[i]], conf[i])
        if t is not None:
            data.unsure.append(t)
    explained = []
    for i in wrong[:GRADCAM_COUNT]:
        try:
            explained.append((i, decode_image(pred.paths[i], bundle.resize, bundle.channels)))
        except (DecodeError, OSError):
            continue
    if not explained:
        return
    pixels = np.stack([p for _, p in explained])
    targets = np.array([y_pred[i] for i, _ in explained])
    cams = grad_cams(bundle.params, bundle.stats, bundle.model, pixels, targets)
    for (i, image), cam in zip(explained, cams, strict=True):
        t = thumb_of(
            bundle, pred.paths[i], classes[pred.labels[i]], classes[y_pred[i]], conf[i], image
        )
        t.extra_png = png_bytes(heat_overlay(image, cam), THUMB_MIN)
        data.gradcams.append(t)


def _layers(cfg, classes: int) -> tuple[list, str]:
    from cnncli.model.shapes import layer_table
    from cnncli.reporting.report import layer_inputs

    d = cfg.data
    rows = layer_table(cfg.model, d.image_size, d.channels, classes)
    if cfg.model.backbone:  # one row per block (cnn summary shows every layer)
        from cnncli.reporting.report import block_rows

        rows = block_rows(rows)
    shape = (*d.input_hw, d.channels)
    inputs = layer_inputs(rows, shape)
    fmt = "x".join
    return [
        (r.name, fmt(map(str, i)), fmt(map(str, r.out_shape)), r.params, r.macs, r.formula)
        for r, i in zip(rows, inputs, strict=True)
    ], fmt(map(str, shape))


def collect(run_dir: str | Path, predictions: Predictions | None = None) -> ReportData:
    """Gather a ReportData from a run folder; classifies the val/test split when needed."""
    from cnncli.config import load_toml

    run_dir = Path(run_dir)
    data = ReportData(run_name=run_dir.resolve().name)
    data.info = _read_json(run_dir / "run.json")
    argv = data.info.get("argv") or []
    if argv:
        data.command = shlex.join(["cnn", *[str(a) for a in argv[1:]]])
    try:
        data.config_text = (run_dir / "config.toml").read_text(encoding="utf-8")
        cfg = load_toml(run_dir / "config.toml")
    except Exception:
        cfg = None
        data.notes.append("config.toml is missing or unreadable")
    data.summary = _read_json(run_dir / "summary.json")
    data.recipe = _read_json(run_dir / "recipe.json")
    data.skipped = [
        (s.get("path", ""), s.get("reason", "")) for s in data.summary.get("skipped", [])
    ]
    data.history = read_history(run_dir / "metrics.csv")
    attempts = _read_json(run_dir / "attempts.json").get("attempts")
    data.attempts = (
        [a for a in attempts if isinstance(a, dict)] if isinstance(attempts, list) else []
    )
    data.timing = read_timing(run_dir)
    if (run_dir / "samples.png").is_file():
        data.samples_png = (run_dir / "samples.png").read_bytes()
    dataset = _load_dataset(run_dir, data.info)
    if dataset is not None:
        _describe_data(dataset, data)
    if cfg is not None and dataset is not None:
        data.layers, data.input_shape = _layers(cfg, len(dataset.classes))
    _predictions_part(run_dir, dataset, predictions, data)
    if data.metrics is None and isinstance(data.summary.get("warning"), str):
        data.warning = data.summary["warning"]  # the training's own val predictions
    return data


def _describe_data(dataset, data: ReportData) -> None:
    from cnncli.data.scan import class_counts
    from cnncli.quality.doctor import quick_check

    data.counts = class_counts(dataset)
    if dataset.label_source:
        data.label_source = str(dataset.label_source.get("file", ""))
    try:
        data.warnings = [g.describe() for g in quick_check(dataset)]
    except OSError as exc:  # the data folder moved: the rest of the report still stands
        data.notes.append(f"data folder not readable for the duplicate check: {exc}")


def _predictions_part(run_dir: Path, dataset, predictions, data: ReportData) -> None:
    from cnncli.inference.bundle import BundleError, load_bundle

    if not (run_dir / "model" / "model.json").is_file():
        data.notes.append("no model/ yet (no finished epoch): no predictions to show")
        return
    try:
        bundle = load_bundle(run_dir / "model")
    except BundleError as exc:
        data.notes.append(f"model not readable: {exc}")
        return
    if predictions is None and dataset is not None:
        predictions = run_predictions(bundle, dataset)
    if predictions is None or len(predictions.paths) == 0:
        data.notes.append("no labelled images to evaluate the model on")
        return
    data.eval_source = predictions.source
    if bundle.multi_label:
        from cnncli.inference.multilabel import compute_multilabel_metrics

        data.metrics = compute_multilabel_metrics(
            predictions.probs, predictions.labels, bundle.classes, bundle.thresholds
        )
        data.notes.append("multi-label model: per-label metrics; galleries show single-label runs")
        return
    from cnncli.inference.evaluate import compute_metrics

    logp = np.log(np.clip(predictions.probs, 1e-12, 1.0))
    data.metrics = compute_metrics(logp, predictions.labels, bundle.classes)
    cm = np.asarray(data.metrics.confusion)
    split = "evaluated"
    for name, word in (("test", "test"), ("val", "validation")):
        if predictions.source.startswith(f"the run's {name} split"):
            split = word
    data.warning = prediction_warning(
        [int(v) for v in cm.sum(axis=0)],
        [int(v) for v in cm.sum(axis=1)],
        list(data.metrics.classes),
        float(data.metrics.top1),
        split,
    )
    galleries(bundle, predictions, data)
    from cnncli.quality.labelissues import report_thumbs

    report_thumbs(run_dir, bundle, data)
