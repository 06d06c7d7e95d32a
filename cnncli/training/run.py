"""A training run on disk: folder naming, config/manifest/metrics files, start and resume."""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnncli.atomic import atomic_write_text
from cnncli.config import RunConfig, dumps_toml, load_toml, loads_toml, save_toml
from cnncli.data.labels import LabelOptions, load_dataset
from cnncli.data.scan import (
    Dataset,
    DatasetError,
    manifest_text,
    parse_manifest,
    read_manifest,
    write_manifest,
)
from cnncli.model.conv_arithmetic import LayerRow
from cnncli.model.shapes import layer_table
from cnncli.run_files import (
    ATTEMPTS_FILE,
    CONFIG_FILE,
    MANIFEST_FILE,
    METRIC_COLUMNS,
    METRICS_FILE,
    RECIPE_FILE,
    RUN_FILE,
)
from cnncli.training.warm_start import InitSource


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
    stopped: str = ""
    best_val_map: float | None = None  # multi-label runs: val mAP of the best epoch
    not_learning: str = ""  # the learning check's line, when it fired
    val_predicted: list[int] = field(default_factory=list)  # val images per predicted class


def load_run_dataset(
    data_dir: str | Path, labels: LabelOptions | None, cfg: RunConfig, guard: bool = True
):
    """Scan DIR (class folders or a labels file) with cfg's split settings (val share, seed,
    symlinks, split guard): the one scan a run, a K-fold run and the recipe all start from.

    The split guard (cfg.data.split_guard) keeps the duplicate groups `cnn doctor` finds
    (quality.duplicates.split_groups) on one side of the split; guard=False skips it (K-fold
    makes its own folds). The Dataset's split_guard records what the guard did (run.json).
    """
    from cnncli.quality.duplicates import split_groups

    mode = cfg.data.split_guard if guard else "off"
    finder = functools.partial(split_groups, mode=mode) if mode != "off" else None
    dataset = load_dataset(
        data_dir,
        labels,
        val_fraction=cfg.data.val_fraction,
        seed=cfg.train.seed,
        follow_symlinks=cfg.data.follow_symlinks,
        find_groups=finder,
    )
    if dataset.split_guard is None:
        dataset.split_guard = {"mode": "off"}
    return dataset


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
    # The automatic recipe (choices, reasons, the statistics it saw), when one was used.
    recipe: dict[str, Any] | None = None
    # Stop when the learning check fires (learning_check.py): the caller restarts the run
    # from scratch with less regularisation (restart_from_scratch).
    stop_when_not_learning: bool = False


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


def plan_new_run(
    data_dir: str | Path,
    cfg: RunConfig,
    out: str | Path | None,
    name: str = "train",
    labels: LabelOptions | None = None,
    dataset: Dataset | None = None,
    init: InitSource | None = None,
) -> RunPlan:
    """Scan and split the data (class folders or a labels file; or take the `dataset`
    already scanned with cfg's split settings), check the network's shapes, then create
    the run folder. `init` (resolved --init) is kept in run.json."""
    if dataset is None:
        dataset = load_run_dataset(data_dir, labels, cfg)
    extra = {"init": init.as_dict()} if init is not None else None
    return plan_for_dataset(dataset, cfg, Path(out) if out else next_run_dir(name=name), extra)


def plan_for_dataset(
    dataset: Dataset, cfg: RunConfig, run_dir: Path, extra_info: dict[str, Any] | None = None
) -> RunPlan:
    """Check the network's shapes for an already split dataset, then create the run folder
    (config.toml, split.csv, run.json with extra_info)."""
    layers = layer_table(cfg.model, cfg.data.image_size, cfg.data.channels, len(dataset.classes))
    if run_dir.exists() and any(run_dir.iterdir()):
        raise DatasetError(
            f"{run_dir}: output folder exists and is not empty (use --resume {run_dir} or another --out)"
        )
    check_writable(run_dir)
    save_toml(cfg, run_dir / CONFIG_FILE)
    write_manifest(dataset, run_dir / MANIFEST_FILE)
    info = {
        "data_dir": str(dataset.root),
        **({"labels": dataset.label_source["file"]} if dataset.label_source else {}),
        **({"split_guard": dataset.split_guard} if dataset.split_guard else {}),
        **(extra_info or {}),
        "argv": sys.argv,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    atomic_write_text(run_dir / RUN_FILE, json.dumps(info, indent=2) + "\n")
    return RunPlan(run_dir, cfg, dataset, layers, info=info)


def write_recipe(run_dir: Path, recipe: dict[str, Any]) -> None:
    """recipe.json: the automatic recipe's choices and reasons and the statistics behind
    them (the values themselves are in config.toml, which is what a resume reads)."""
    atomic_write_text(run_dir / RECIPE_FILE, json.dumps(recipe, indent=2) + "\n")


def restart_from_scratch(
    plan: RunPlan, outcome: RunOutcome, cfg: RunConfig, changes: list[dict[str, Any]]
) -> RunPlan:
    """Keep a run that the learning check stopped as RUN/attempts/1, record both attempts in
    attempts.json, and plan the run again from scratch with cfg (the stepped-down config).

    The first attempt's config, metrics, curves, samples and model are copied away before
    its checkpoints go, and config.toml is replaced last: a run killed in between resumes
    (or restarts) one attempt or the other, never one attempt's weights with the other's
    config.
    """
    import shutil

    from cnncli.model.shapes import layer_table

    run_dir = plan.run_dir
    first = run_dir / "attempts" / "1"
    first.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_FILE, METRICS_FILE, "curves.png", "samples.png", "model"):
        source = run_dir / name
        if source.is_dir():
            shutil.copytree(source, first / name, dirs_exist_ok=True)
        elif source.is_file():
            shutil.copy2(source, first / name)
    last = outcome.history[-1] if outcome.history else {}
    attempts = [
        {
            "attempt": 1,
            "folder": "attempts/1",
            "epochs": len(outcome.history),
            "best_epoch": outcome.best_epoch,
            "best_val_acc": outcome.best_val_acc,
            "train_acc": last.get("train_acc"),
            "train_loss": last.get("train_loss"),
            "not_learning": outcome.not_learning,
        },
        {"attempt": 2, "folder": ".", "changes": changes},
    ]
    write_attempts(run_dir, attempts)
    for name in ("checkpoints", "model"):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    for name in (METRICS_FILE, "curves.png", "samples.png"):
        (run_dir / name).unlink(missing_ok=True)
    save_toml(cfg, run_dir / CONFIG_FILE)
    layers = layer_table(
        cfg.model, cfg.data.image_size, cfg.data.channels, len(plan.dataset.classes)
    )
    return dataclasses.replace(plan, cfg=cfg, layers=layers, stop_when_not_learning=False)


def discard_unstarted(run_dir: Path) -> bool:
    """Remove a run folder this command made when it failed before its first epoch was
    checkpointed (nothing in it is worth keeping); True when removed."""
    import shutil

    checkpoints = run_dir / "checkpoints"
    if checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir()):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


def write_attempts(run_dir: Path, attempts: list[dict[str, Any]]) -> None:
    """attempts.json: the learning check's restart, each attempt's outcome and changes."""
    text = json.dumps({"attempts": attempts}, indent=2, default=str) + "\n"
    atomic_write_text(run_dir / ATTEMPTS_FILE, text)


def read_attempts(run_dir: Path) -> list[dict[str, Any]]:
    """attempts.json's attempts ([] when the run never restarted)."""
    try:
        data = json.loads((Path(run_dir) / ATTEMPTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    attempts = data.get("attempts") if isinstance(data, dict) else None
    return attempts if isinstance(attempts, list) else []


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


def plan_message(plan: RunPlan) -> dict[str, Any]:
    """What process 0 tells the other processes of a multi-process run about the plan."""
    return {
        "run_dir": str(plan.run_dir),
        "config": dumps_toml(plan.cfg),
        "manifest": manifest_text(plan.dataset),
        "root": str(plan.dataset.root),
        "resume": plan.resume,
    }


def plan_from_message(message: dict[str, Any]) -> RunPlan:
    """The RunPlan of plan_message, on a process that writes nothing and may not see the
    run folder (it needs only its shards of the data, at the same path)."""
    cfg = loads_toml(message["config"], "config from process 0")
    dataset = parse_manifest(message["manifest"], message["root"], "split from process 0")
    layers = layer_table(cfg.model, cfg.data.image_size, cfg.data.channels, len(dataset.classes))
    return RunPlan(Path(message["run_dir"]), cfg, dataset, layers, resume=message["resume"])


def write_metrics(run_dir: Path, rows: list[dict[str, float]]) -> None:
    """Rewrite metrics.csv (atomically) with one row per finished epoch.

    Multi-label runs have a val_map column after val_acc (which is then subset accuracy).
    """
    columns = METRIC_COLUMNS
    if rows and "val_map" in rows[0]:
        columns = (*METRIC_COLUMNS[:-1], "val_map", METRIC_COLUMNS[-1])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: (repr(float(row[k])) if k != "epoch" else int(row[k])) for k in columns}
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
