"""cnn's Python API: the work behind the commands, for scripts and notebooks.

    from cnncli import api

    run = api.train("photos/", epochs=5)          # the run `cnn train photos/ --epochs 5` makes
    model = api.load(run.model_dir)               # or a run folder, or an exported .onnx
    print(model.predict(["photos/cat/1.jpg"])[0].label)
    print(model.evaluate("holdout/").accuracy)

Options are the config's field names (`epochs`, `batch_size`, `lr`, `image_size`, `dropout`,
`freeze`, `tune_blocks`, ...; `cnn train --help` lists them with their flags) or dotted keys
in `overrides={"train.epochs": 5}`. Results are dataclasses; progress reaches a callback
(`on_epoch`), and nothing is printed. The CLI runs the same planning and training code
(training.new_run, training.session); --time-budget, --folds, --find-lr and multi-process
runs are the CLI's only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from cnncli.config import ConfigError
from cnncli.training.epochs import Callbacks

_SECTIONS = ("data", "model", "train", "augment", "log")


def config_key(name: str) -> str:
    """The dotted config key of an option name: 'epochs' -> 'train.epochs'; a dotted key is
    returned as it is. ConfigError for an unknown name (listing the known ones), or for one
    that two sections share (none does today; the dotted key then says which)."""
    from cnncli.config import RunConfig

    if "." in name:
        return name
    owners = [s for s in _SECTIONS if any(f.name == name for f in fields(getattr(RunConfig(), s)))]
    if len(owners) == 1:
        return f"{owners[0]}.{name}"
    if owners:
        raise ConfigError(
            f"{name!r} is in {', '.join(owners)}: pass overrides={{'section.{name}': ...}}"
        )
    known = sorted({f.name for s in _SECTIONS for f in fields(getattr(RunConfig(), s))})
    raise ConfigError(f"unknown option {name!r}; options: {', '.join(known)}")


@dataclass
class Run:
    """A finished (or already finished) training run and where its files are."""

    run_dir: Path
    model_dir: Path
    best_val_acc: float
    best_epoch: int
    epochs: int
    history: list[dict[str, float]]
    summary: dict[str, Any]  # what summary.json holds (learning check, attempts, warning)

    def load(self) -> Model:
        """The run's trained model."""
        return load(self.model_dir)


class _EpochCallback(Callbacks):
    """Training callbacks that hand each finished epoch's row to `on_epoch` (a dict)."""

    def __init__(self, on_epoch: Callable[[dict[str, Any]], None] | None) -> None:
        self.on_epoch = on_epoch

    def on_epoch_end(self, row, seconds: float, improved: bool) -> None:
        if self.on_epoch is not None:
            self.on_epoch({**row.as_dict(), "seconds": seconds, "improved": improved})


def train(
    data_dir: str | Path | None,
    *,
    out: str | Path | None = None,
    config: str | Path | None = None,
    model: str | None = None,
    augment: str | None = None,
    init: str | None = None,
    recipe: str = "auto",
    labels: str | Path | None = None,
    multi_label: bool = False,
    resume: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> Run:
    """Train as `cnn train DATA_DIR` does (scan, split, recipe or --init, checkpoints, run
    folder, learning check) and return the Run. `resume` continues a run folder instead."""
    from cnncli.data.labels import LabelOptions
    from cnncli.training.execute import execute_run
    from cnncli.training.new_run import Given, plan_run
    from cnncli.training.run import write_summary
    from cnncli.training.session import run_summary, train_with_check

    if recipe not in ("auto", "fixed"):
        raise ConfigError(f"recipe must be 'auto' or 'fixed', got {recipe!r}")
    keys = {config_key(k): v for k, v in options.items()}
    keys.update(overrides or {})
    if init is not None:
        keys["train.init"] = init
    given = Given(Path(config) if config else None, model, augment, keys, (None,) * 6, 1, recipe)
    label_source = LabelOptions(Path(labels) if labels else None, ";", multi_label)
    plan = plan_run(
        data_dir, given, Path(out) if out else None, Path(resume) if resume else None, label_source
    )
    callbacks = _EpochCallback(on_epoch)
    plan, outcome = train_with_check(plan, lambda p: execute_run(p, callbacks))
    summary = run_summary(plan, outcome)
    write_summary(plan.run_dir, summary)
    _write_report(plan.run_dir)
    return Run(
        run_dir=plan.run_dir,
        model_dir=plan.run_dir / "model",
        best_val_acc=outcome.best_val_acc,
        best_epoch=outcome.best_epoch,
        epochs=len(outcome.history),
        history=list(outcome.history),
        summary=summary,
    )


def _write_report(run_dir: Path) -> Path | None:
    """RUN/report.html, as the CLI writes it; a failure leaves the run as it is."""
    from cnncli.reporting.htmlreport import write_report

    try:
        return write_report(run_dir)
    except Exception:  # the run itself is saved; the report is a convenience
        return None


@dataclass
class Prediction:
    """One image's outcome: the label and its probability, the top classes, or an error."""

    source: str  # the path, or "array[i]" for an array passed in
    label: str = ""
    probability: float = 0.0
    top: list[tuple[str, float]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # multi-label models: the label set
    error: str = ""
    frame: int | None = None  # a video's rows: the sampled frame's index and time (s)
    time: float | None = None


@dataclass
class Evaluation:
    """Accuracy and the per-class report of a labelled folder (single-label models)."""

    accuracy: float
    top_k: int
    top_k_accuracy: float
    per_class: dict[str, dict[str, float]]  # class -> precision, recall, f1, support
    confusion: list[list[int]]
    classes: list[str]
    images: int
    skipped: list[tuple[str, str]]


class Model:
    """A trained model (a run's bundle, or an exported ONNX / StableHLO folder)."""

    def __init__(self, bundle) -> None:
        self.bundle = bundle

    @property
    def classes(self) -> list[str]:
        """Class names, in the order of the model's outputs."""
        return list(self.bundle.classes)

    @property
    def path(self) -> Path:
        """Where the model was loaded from."""
        return Path(self.bundle.path)

    def predict(
        self,
        images: Iterable[str | Path | np.ndarray] | str | Path | np.ndarray,
        *,
        top_k: int = 3,
        batch_size: int = 64,
        tta: bool = False,
    ) -> list[Prediction]:
        """Classify image files, folders, globs, or uint8 arrays (H, W[, C]), which are resized
        exactly as files are. One Prediction per image, in order; a video file (with the
        `video` extra) gives one per frame sampled at 1 fps, with its frame and time."""
        from cnncli.inference.predict import collect_inputs, predict_paths

        if isinstance(images, (str, Path, np.ndarray)):
            images = [images]
        items = list(images)
        arrays = [(i, x) for i, x in enumerate(items) if isinstance(x, np.ndarray)]
        paths, problems = collect_inputs([str(x) for x in items if not isinstance(x, np.ndarray)])
        if problems:
            raise FileNotFoundError(f"{problems[0][0]}: {problems[0][1]}")
        out = []
        for p in predict_paths(self.bundle, paths, batch_size=batch_size, tta=tta):
            result = self._result(p.path, p.probs, p.error, top_k)
            result.frame, result.time = p.frame, p.time
            out.append(result)
        if arrays:
            probs = self._classify_arrays([x for _, x in arrays], batch_size, tta)
            done = [
                self._result(f"array[{i}]", p, None, top_k)
                for (i, _), p in zip(arrays, probs, strict=True)
            ]
            out = done + out if not paths else out + done
        return out

    def _classify_arrays(self, arrays: list[np.ndarray], batch_size: int, tta: bool) -> list:
        from PIL import Image

        from cnncli.data.decode import decode_array
        from cnncli.inference.predict import classifier_of

        images = [
            decode_array(
                Image.fromarray(np.asarray(a, np.uint8)), self.bundle.resize, self.bundle.channels
            )
            for a in arrays
        ]
        classify = classifier_of(self.bundle, batch_size, tta)
        probs = []
        for start in range(0, len(images), batch_size):
            probs.extend(classify(np.stack(images[start : start + batch_size])))
        return probs

    def _result(self, source: str, probs, error: str | None, k: int) -> Prediction:
        from cnncli.inference.predict import label_of, label_set, top_k

        if error or probs is None:
            return Prediction(source, error=error or "not classified")
        threshold = getattr(self.bundle, "thresholds", None)
        label, p = label_of(probs, self.bundle.classes, None)
        result = Prediction(source, label, float(p), top_k(probs, self.bundle.classes, k))
        if self.bundle.multi_label and threshold is not None:
            result.labels = [name for name, _ in label_set(probs, self.bundle.classes, threshold)]
        return result

    def evaluate(
        self, data_dir: str | Path | None = None, *, top_k: int | None = None
    ) -> Evaluation:
        """Accuracy, top-k accuracy, per-class precision/recall/F1 and the confusion matrix on
        a folder of class folders (the model's class names), or on the run's held-out split
        when data_dir is None, as `cnn eval` computes them."""
        from cnncli.inference.eval_data import eval_items
        from cnncli.inference.evaluate import compute_metrics
        from cnncli.inference.predict import evaluate_items

        if self.bundle.multi_label:
            raise ConfigError(f"{self.path}: a multi-label model; use `cnn eval` for its metrics")
        root, items, _ = eval_items(self.bundle, Path(data_dir) if data_dir else None)
        logits, labels, _, skipped = evaluate_items(self.bundle, root, items)
        if len(labels) == 0:
            raise ConfigError(f"{root}: none of the {len(items)} images could be decoded")
        m = compute_metrics(logits, labels, self.bundle.classes, k=top_k)
        return Evaluation(
            accuracy=m.top1,
            top_k=m.k,
            top_k_accuracy=m.topk,
            per_class={
                r.name: {
                    "precision": r.precision,
                    "recall": r.recall,
                    "f1": r.f1,
                    "support": r.support,
                }
                for r in m.per_class
            },
            confusion=[list(map(int, row)) for row in m.confusion],
            classes=self.classes,
            images=len(labels),
            skipped=list(skipped),
        )

    def export(self, fmt: str = "onnx", out: str | Path | None = None):
        """Write the model as ONNX or StableHLO into `out` (default: the model folder's
        export/), verified against the Flax model first as `cnn export` does; returns the
        inference.export.ExportResult (files written, size, the check's figures)."""
        from cnncli.inference.export import export_bundle

        if hasattr(self.bundle, "classifier"):
            raise ConfigError(f"{self.path}: already an exported model")
        return export_bundle(self.bundle, fmt.lower(), Path(out) if out else self.path / "export")


def load(source: str | Path) -> Model:
    """A trained model from a run folder, its model/ folder, or an exported .onnx file or
    StableHLO folder (those need no jax for predict)."""
    from cnncli.inference.exported import load_model

    return Model(load_model(source))


def augment(
    src: str | Path,
    dst: str | Path,
    ops: str | dict[str, float] | None = None,
    *,
    preset: str | None = None,
    labels: str | Path | None = None,
    **options: Any,
):
    """`cnn augment SRC DST`: seeded augmented copies written into DST with
    augment_manifest.csv; SRC is never modified. `ops` as the flag takes them
    ("flip,rotate=15") or a dict, `preset` one of the presets (default: "default" when no ops);
    other options (per_image, target_per_class, seed, copy_originals, all_splits, fill,
    progress) as augment.expand.expand_dataset takes them. Returns its ExpandResult."""
    from cnncli.augment.expand import expand_dataset
    from cnncli.augment.ops import parse_ops, resolve_ops
    from cnncli.data.labels import LabelOptions

    try:
        given = parse_ops(ops) if isinstance(ops, str) else dict(ops or {})
        chosen = resolve_ops(preset or ("none" if given else "default"), given)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    source = (
        labels
        if isinstance(labels, LabelOptions)
        else LabelOptions(Path(labels) if labels else None)
    )
    return expand_dataset(src, dst, ops=chosen, labels=source, **options)


def doctor(
    data_dir: str | Path,
    *,
    near: bool = True,
    near_similarity: float | None = None,
    labels: str | Path | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    **options: Any,
):
    """`cnn doctor DIR`: unreadable and odd files, identical files, near-duplicate groups,
    conflicting labels and leaks, as a quality.doctor_report.DoctorReport (nothing is written).
    Other options (min_side, workers, progress, near_progress) as check_dataset takes them."""
    from cnncli.data.labels import LabelOptions, load_dataset
    from cnncli.quality.near_duplicates import NearRule

    dataset = load_dataset(
        data_dir,
        LabelOptions(Path(labels) if labels else None),
        val_fraction=val_fraction,
        seed=seed,
    )
    rule = None
    if near:
        rule = NearRule() if near_similarity is None else NearRule(similarity=near_similarity)
    return doctor_of(dataset, rule, **options)


def doctor_of(dataset, near, **options: Any):
    """doctor() on a scanned data.scan.Dataset with a NearRule (None: no near-duplicates)."""
    from cnncli.quality.doctor import check_dataset

    return check_dataset(dataset, near=near, **options)
