"""A training run on disk: folder naming, config/manifest/metrics files, start and resume."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnncli.atomic import atomic_write_text
from cnncli.config import RunConfig, load_toml, save_toml
from cnncli.data.scan import Dataset, DatasetError, read_manifest, scan_dataset, write_manifest
from cnncli.shapes import LayerRow, layer_table

CONFIG_FILE = "config.toml"
MANIFEST_FILE = "split.csv"
METRICS_FILE = "metrics.csv"
RUN_FILE = "run.json"
METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")


@dataclass
class RunPlan:
    """Everything decided before any image is decoded or any jax is compiled."""

    run_dir: Path
    cfg: RunConfig
    dataset: Dataset
    layers: list[LayerRow]
    resume: bool = False
    start_epoch: int = 0
    info: dict[str, Any] = field(default_factory=dict)


def next_run_dir(base: str | Path = "runs", name: str = "train") -> Path:
    """runs/train, runs/train2, runs/train3, ... : the first that does not exist."""
    base = Path(base)
    candidate = base / name
    n = 2
    while candidate.exists():
        candidate = base / f"{name}{n}"
        n += 1
    return candidate


def check_writable(directory: Path) -> None:
    """Fail early, naming the folder, if we cannot create files in it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".cnn-write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise DatasetError(
            f"{directory}: output folder is not writable ({exc.strerror or exc})"
        ) from None


def plan_new_run(data_dir: str | Path, cfg: RunConfig, out: str | Path | None) -> RunPlan:
    """Scan and split the data, check the network's shapes, then create the run folder."""
    dataset = scan_dataset(
        data_dir,
        val_fraction=cfg.data.val_fraction,
        seed=cfg.train.seed,
        follow_symlinks=cfg.data.follow_symlinks,
    )
    layers = layer_table(cfg.model, cfg.data.image_size, cfg.data.channels, len(dataset.classes))
    run_dir = Path(out) if out else next_run_dir()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise DatasetError(
            f"{run_dir}: output folder exists and is not empty (use --resume {run_dir} or another --out)"
        )
    check_writable(run_dir)
    save_toml(cfg, run_dir / CONFIG_FILE)
    write_manifest(dataset, run_dir / MANIFEST_FILE)
    info = {
        "data_dir": str(dataset.root),
        "argv": sys.argv,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    atomic_write_text(run_dir / RUN_FILE, json.dumps(info, indent=2) + "\n")
    return RunPlan(run_dir, cfg, dataset, layers, info=info)


def plan_resume(run_dir: str | Path) -> RunPlan:
    """Reload a run folder's config, data root and split for `cnn train --resume`."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file() or not (run_dir / RUN_FILE).is_file():
        raise DatasetError(f"{run_dir}: not a run folder (no {CONFIG_FILE} / {RUN_FILE})")
    cfg = load_toml(run_dir / CONFIG_FILE)
    info = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    dataset = read_manifest(run_dir / MANIFEST_FILE, info["data_dir"])
    layers = layer_table(cfg.model, cfg.data.image_size, cfg.data.channels, len(dataset.classes))
    check_writable(run_dir)
    return RunPlan(run_dir, cfg, dataset, layers, resume=True, info=info)


def write_metrics(run_dir: Path, rows: list[dict[str, float]]) -> None:
    """Rewrite metrics.csv (atomically) with one row per finished epoch."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: (repr(float(row[k])) if k != "epoch" else int(row[k])) for k in METRIC_COLUMNS}
        )
    atomic_write_text(run_dir / METRICS_FILE, buf.getvalue())


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """summary.json: the final numbers of the run."""
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")


def newest_run(base: str | Path = "runs") -> Path | None:
    """The most recently modified run folder under base that holds a model, or None."""
    base = Path(base)
    if not base.is_dir():
        return None
    runs = [p for p in base.iterdir() if (p / "model" / "model.json").is_file()]
    return max(runs, key=lambda p: os.stat(p / "model" / "model.json").st_mtime_ns, default=None)


@dataclass
class RunOutcome:
    """How execute_run ended."""

    finished_before: bool
    history: list[dict[str, float]]
    best_epoch: int
    best_val_acc: float
    skipped: list[tuple[str, str]]
    train_size: int
    val_size: int


def load_split(plan: RunPlan, split: str, progress=None):
    """Decode (or read from cache) one split's images; returns (SplitArrays, skipped)."""
    import numpy as np

    from cnncli.data.cache import load_images
    from cnncli.train import SplitArrays

    items = plan.dataset.splits.get(split, [])
    d = plan.cfg.data
    loaded = load_images(
        plan.dataset.root,
        [path for path, _ in items],
        d.image_size,
        d.channels,
        memory_budget_mb=d.cache_memory,
        cache_dir=plan.run_dir / "cache",
        progress=progress,
    )
    labels = np.array([label for _, label in items], np.int32)
    ok = np.asarray(loaded.ok, bool)
    images = loaded.images if ok.all() else loaded.images[ok]
    return SplitArrays(images, labels[ok]), list(loaded.skipped)


def execute_run(plan: RunPlan, callbacks=None, decode_progress=None) -> RunOutcome:
    """Decode the data, build or restore the state, train, and keep model/ at the best epoch."""
    from cnncli.augment import make_augment, resolve_ops
    from cnncli.bundle import save_bundle
    from cnncli.checkpoint import TrainCheckpoints
    from cnncli.train import Callbacks, EpochRow, fit

    cfg, run_dir = plan.cfg, plan.run_dir
    classes = plan.dataset.classes
    checkpoints = TrainCheckpoints(run_dir / "checkpoints")
    latest = checkpoints.latest_epoch()
    history: list[EpochRow] = []
    if latest is not None and latest >= cfg.train.epochs:
        _, meta = checkpoints.restore(latest, _fresh_state(cfg, len(classes), 1))
        checkpoints.close()
        return RunOutcome(
            True,
            meta["history"],
            meta["best_epoch"],
            max(r["val_acc"] for r in meta["history"]),
            [],
            0,
            0,
        )

    train, skipped_train = load_split(plan, "train", decode_progress)
    val, skipped_val = load_split(plan, "val", decode_progress)
    if len(train) == 0:
        raise DatasetError(f"{plan.dataset.root}: none of the training images could be decoded")
    steps = -(-len(train) // cfg.train.batch_size)
    state = _fresh_state(cfg, len(classes), steps)
    start = 0
    if latest is not None:
        state, meta = checkpoints.restore(latest, state)
        history = [EpochRow(**r) for r in meta["history"]]
        start = latest

    def save_best(host_state, row):
        save_bundle(
            run_dir / "model",
            cfg,
            classes,
            host_state["params"],
            host_state["stats"],
            {"epoch": row.epoch, "val_acc": row.val_acc},
        )

    recorder = _MetricsRecorder(run_dir, callbacks or Callbacks(), history)
    ops = resolve_ops(cfg.augment.preset, cfg.augment.ops)
    try:
        result = fit(
            cfg,
            train,
            val,
            state,
            checkpoints,
            start_epoch=start,
            history=history,
            on_improved=save_best,
            augment_fn=make_augment(ops) if ops else None,
            callbacks=recorder,
        )
    finally:
        checkpoints.close()
    return RunOutcome(
        False,
        [r.as_dict() for r in result.history],
        result.best_epoch,
        result.best_val_acc,
        skipped_train + skipped_val,
        len(train),
        len(val),
    )


def _fresh_state(cfg: RunConfig, num_classes: int, steps_per_epoch: int) -> dict[str, Any]:
    from cnncli.model import init_weights
    from cnncli.train import make_optimizer

    params, stats = init_weights(
        cfg.model,
        image_size=cfg.data.image_size,
        channels=cfg.data.channels,
        num_classes=num_classes,
        seed=cfg.train.seed,
    )
    opt = make_optimizer(cfg.train, steps_per_epoch).init(params)
    return {"params": params, "stats": stats, "opt": opt}


class _MetricsRecorder:
    """Writes metrics.csv after every epoch, then forwards to the caller's callbacks."""

    def __init__(self, run_dir: Path, inner, history):
        self.run_dir, self.inner = run_dir, inner
        self.rows = [r.as_dict() for r in history]

    def on_epoch_start(self, epoch, epochs, steps):
        self.inner.on_epoch_start(epoch, epochs, steps)

    def on_step(self, step, steps, loss, images_per_s):
        self.inner.on_step(step, steps, loss, images_per_s)

    def on_epoch_end(self, row, seconds, improved):
        self.rows.append(row.as_dict())
        write_metrics(self.run_dir, self.rows)
        self.inner.on_epoch_end(row, seconds, improved)
