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
import time
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
from cnncli.model.shapes import LayerRow, layer_table
from cnncli.run_files import (
    ATTEMPTS_FILE,
    CONFIG_FILE,
    MANIFEST_FILE,
    METRIC_COLUMNS,
    METRICS_FILE,
    RECIPE_FILE,
    RUN_FILE,
)
from cnncli.training.timing import RunTimer
from cnncli.training.warm_start import InitSource


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


def load_split(plan: RunPlan, split: str, progress=None, shards=None):
    """Decode (or read from cache) one split's images; returns (SplitArrays, skipped).

    With `shards` (a DataShards), only the manifest rows of the shards this process feeds.
    """
    import numpy as np

    from cnncli.data.cache import load_images, select_rows
    from cnncli.data.decode import resize_of
    from cnncli.data.loader import DataShards, SplitArrays

    shards = shards or DataShards()
    items = plan.dataset.splits.get(split, [])
    rows = np.flatnonzero(shards.owns(np.arange(len(items))))
    d = plan.cfg.data
    loaded = load_images(
        plan.dataset.root,
        [items[r][0] for r in rows],
        resize_of(d),
        d.channels,
        memory_budget_mb=d.cache_memory,
        cache_dir=plan.run_dir / "cache",
        progress=progress,
    )
    if plan.dataset.multi_label:
        from cnncli.inference.multilabel import multi_hot

        labels = multi_hot([items[r][1] for r in rows], len(plan.dataset.classes))
    else:
        labels = np.array([items[r][1] for r in rows], np.int32)
    ok = np.asarray(loaded.ok, bool)
    arrays = SplitArrays(select_rows(loaded.images, ok), labels[ok], rows[ok], len(items))
    return arrays, list(loaded.skipped)


def execute_run(plan: RunPlan, callbacks=None, decode_progress=None) -> RunOutcome:
    """Decode the data, build or restore the state, train, and keep model/ at the best epoch.

    In a multi-process run (cnncli.training.distributed) process 0 alone reads and writes the run
    folder (checkpoints, model/, metrics, plots) and sends the restored state to the others;
    every process decodes only the shards of the split it feeds.
    """
    from cnncli.augment.ops import make_augment, resolve_ops
    from cnncli.data.loader import DataShards
    from cnncli.inference.bundle import save_bundle
    from cnncli.training import distributed
    from cnncli.training.checkpoint import NoCheckpoints, TrainCheckpoints
    from cnncli.training.epochs import Callbacks, epoch_row
    from cnncli.training.train import fit

    cfg, run_dir = plan.cfg, plan.run_dir
    classes = plan.dataset.classes
    rank, processes = distributed.process_index(), distributed.process_count()
    if plan.dataset.multi_label and processes > 1:
        raise DatasetError(
            f"{plan.dataset.root}: multi-label training runs in one process (val mAP and the "
            "thresholds need every validation image); drop --coordinator/--num-processes"
        )
    init = InitSource.from_dict(plan.info["init"]) if plan.info.get("init") else None
    if init is not None and processes > 1:
        raise DatasetError("--init runs in one process; drop --coordinator/--num-processes")
    shards = DataShards.for_process(max(cfg.train.shards, 1), rank, processes)
    checkpoints = TrainCheckpoints(run_dir / "checkpoints") if rank == 0 else NoCheckpoints()
    # The optimizer state's structure does not depend on the schedule, so one fresh state
    # serves both as the restore template and as the start of a new run.
    state = _fresh_state(cfg, len(classes), 1)
    latest, meta = checkpoints.latest_epoch(), {}
    if latest is not None:
        state, meta = checkpoints.restore(latest, state)
    latest, meta = distributed.broadcast_json([latest, meta])
    history = [epoch_row(r) for r in meta.get("history", [])]
    if latest is not None:
        state = distributed.broadcast_tree(state)
        if latest >= cfg.train.epochs or meta.get("stopped", "").startswith("no val"):
            checkpoints.close()
            rows = meta["history"]
            if plan.dataset.multi_label:
                best = next(r for r in rows if r["epoch"] == meta["best_epoch"])
                outcome = RunOutcome(True, rows, best["epoch"], best["val_acc"], [], 0, 0)
                outcome.best_val_map = best["val_map"]
                return outcome
            best = max(rows, key=lambda r: r["val_acc"])
            return RunOutcome(True, rows, meta["best_epoch"], best["val_acc"], [], 0, 0)

    timer = RunTimer(run_dir) if rank == 0 else None
    decode_started = time.perf_counter()
    try:
        train, skipped_train = load_split(plan, "train", decode_progress, shards)
        val, skipped_val = load_split(plan, "val", decode_progress, shards)
    except BaseException:  # Ctrl-C while decoding: let orbax's threads finish first
        checkpoints.close()
        if timer is not None:
            timer.finish()
        raise
    if timer is not None:
        timer.decoded(time.perf_counter() - decode_started, len(train) + len(val))
    if len(train) == 0:
        raise DatasetError(f"{plan.dataset.root}: none of the training images could be decoded")

    ops = resolve_ops(cfg.augment.preset, cfg.augment.ops)
    augment_fn = make_augment(ops) if ops else None
    samples = None
    if latest is None and rank == 0:
        # Drawn while the train step compiles and runs (matplotlib takes a second or more).
        samples = _Background(
            write_samples, run_dir / "samples.png", train, classes, augment_fn, cfg.train.seed
        )
    backbone = head_fn = None
    if init is not None:
        from cnncli.training.finetune import prepare

        start = prepare(cfg, init, state, latest is not None, classes, train, val, callbacks)
        state, train, val, backbone = start.state, start.train, start.val, start.backbone
        head_fn = start.head
        if cfg.train.freeze or cfg.train.tune_blocks:
            augment_fn = None  # features are computed once, from the plain images

    def save_best(host_state, row, thresholds=None):
        extra = {"epoch": row.epoch, "val_acc": row.val_acc}
        if init is not None:
            extra["init"] = init.as_dict()
        params, stats = host_state["params"], host_state["stats"]
        if backbone is not None:  # --freeze, --tune-blocks: the frozen part, then the trained
            params, stats = {**backbone[0], **params}, {**backbone[1], **stats}
        if plan.dataset.multi_label:
            extra.update(
                val_map=row.val_map,
                multi_label=True,
                thresholds=thresholds or [0.5] * len(classes),
            )
        save_bundle(run_dir / "model", cfg, classes, params, stats, extra)

    recorder = (
        _MetricsRecorder(run_dir, callbacks or Callbacks(), history, timer, samples)
        if rank == 0
        else callbacks or Callbacks()
    )
    tensorboard = None
    if rank == 0 and cfg.log.tensorboard:
        from cnncli.training.tblog import TensorBoardCallbacks

        tensorboard = recorder = TensorBoardCallbacks(run_dir, cfg, recorder)
    result = None
    try:
        result = fit(
            cfg,
            train,
            val,
            state,
            checkpoints,
            start_epoch=latest or 0,
            history=history,
            on_improved=save_best if rank == 0 else None,
            augment_fn=augment_fn,
            callbacks=recorder,
            num_classes=len(classes),
            shards=shards,
            head_only=head_fn or cfg.train.freeze,
            check=_learning_check(plan, train, shards),
        )
    finally:
        checkpoints.close()
        if rank == 0:
            recorder.plot()
            timer.finish()
        if tensorboard is not None:  # the confusion matrix only after a finished fit
            tensorboard.close(plan.dataset if result else None, result.best_epoch if result else 0)
    if samples is not None:
        samples.join()  # raises what went wrong drawing samples.png, if anything did
    outcome = RunOutcome(
        False,
        [r.as_dict() for r in result.history],
        result.best_epoch,
        result.best_val_acc,
        skipped_train + skipped_val,
        len(train),
        len(val),
    )
    outcome.stopped = result.stopped_early
    outcome.not_learning = result.not_learning
    outcome.val_predicted = result.best_val_predicted
    if plan.dataset.multi_label:
        best = next(r for r in result.history if r.epoch == result.best_epoch)
        outcome.best_val_map = best.val_map
    return outcome


def _learning_check(plan: RunPlan, train, shards):
    """The learning check of a single-label run (None for multi-label ones)."""
    import numpy as np

    from cnncli.training import distributed
    from cnncli.training.learning_check import advice, plan_check

    if plan.dataset.multi_label:
        return None
    cfg, classes = plan.cfg, plan.dataset.classes
    counts = distributed.sum_over_processes(np.bincount(train.labels, minlength=len(classes)))
    steps = shards.steps(train, cfg.train.batch_size)
    balanced = cfg.train.sampler == "balanced"
    stop = plan.stop_when_not_learning
    return plan_check(counts, classes, steps, balanced, stop, advice(cfg, stop))


def write_samples(
    path: Path, train, classes: list[str], augment_fn, seed: int, n: int = 32
) -> None:
    """samples.png: a seeded mix of training images as the network sees them (augmented)."""
    import jax
    import numpy as np

    from cnncli.charts.plots import plot_image_grid
    from cnncli.data.loader import epoch_order, gather

    idx = np.sort(epoch_order(train.labels, seed, 1)[: min(n, len(train))])
    images, labels = gather(train, idx)
    if augment_fn is not None:
        images = jax.jit(augment_fn)(jax.random.key(seed), images)
        images = np.clip(np.asarray(images), 0, 255).round().astype(np.uint8)
    if labels.ndim == 2:  # multi-hot: the names joined by ';'
        names = [";".join(c for c, on in zip(classes, row, strict=True) if on) for row in labels]
    else:
        names = [classes[i] for i in labels]
    plot_image_grid(images, names, path)


def _fresh_state(cfg: RunConfig, num_classes: int, steps_per_epoch: int) -> dict[str, Any]:
    import jax

    from cnncli.model.flax_module import init_weights
    from cnncli.training.optimizer import make_optimizer

    params, stats = init_weights(
        cfg.model,
        image_size=cfg.data.image_size,
        channels=cfg.data.channels,
        num_classes=num_classes,
        seed=cfg.train.seed,
    )
    if cfg.train.freeze:  # only the head trains (finetune.py); the backbone is not state
        params, stats = {k: params[k] for k in ("logits/kernel", "logits/bias")}, {}
    elif cfg.train.tune_blocks:  # the top blocks and the head (finetune.top_names)
        from cnncli.training.finetune import top_names

        keep = top_names(cfg.model, cfg.train.tune_blocks, params)
        params = {k: params[k] for k in keep}
        stats = {k: stats[k] for k in top_names(cfg.model, cfg.train.tune_blocks, stats)}
    # One compiled call: eager zeros_like would compile a program per parameter.
    opt = jax.jit(make_optimizer(cfg.train, steps_per_epoch).init)(params)
    return {"params": params, "stats": stats, "opt": opt}


class _Background:
    """fn(*args) in a thread; join() waits for it and raises the exception it raised."""

    def __init__(self, fn, *args):
        import threading

        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, args), daemon=True)
        self.thread.start()

    def _run(self, fn, args) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # handed to join()
            self.error = exc

    def join(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


class _MetricsRecorder:
    """Writes metrics.csv after every epoch, then forwards to the caller's callbacks."""

    def __init__(
        self, run_dir: Path, inner, history, timer: RunTimer, samples: _Background | None = None
    ):
        self.run_dir, self.inner, self.timer = run_dir, inner, timer
        self.samples = samples  # matplotlib draws one figure at a time: wait for samples.png
        self.rows = [r.as_dict() for r in history]
        self._plotted = time.monotonic()

    def on_setup(self, text):
        getattr(self.inner, "on_setup", lambda text: None)(text)

    def on_epoch_start(self, epoch, epochs, steps):
        self.timer.epoch_started()
        self.inner.on_epoch_start(epoch, epochs, steps)

    def on_step(self, step, steps, loss, images_per_s):
        self.timer.first_step()
        self.inner.on_step(step, steps, loss, images_per_s)

    def on_not_learning(self, line):
        getattr(self.inner, "on_not_learning", lambda line: None)(line)

    def on_epoch_end(self, row, seconds, improved):
        self.rows.append(row.as_dict())
        write_metrics(self.run_dir, self.rows)
        self.timer.epoch_ended(row.epoch, seconds)
        # Plotting takes ~0.3 s: redraw curves.png at most every 10 s, and once at the end.
        if time.monotonic() - self._plotted > 10:
            self.plot()
        self.inner.on_epoch_end(row, seconds, improved)

    def plot(self):
        """Write curves.png from the epochs so far."""
        from cnncli.charts.plots import plot_curves

        if self.samples is not None:
            self.samples.thread.join()
        if self.rows:
            plot_curves(self.rows, self.run_dir / "curves.png")
        self._plotted = time.monotonic()


def find_lr(plan: RunPlan, steps: int = 100, min_lr: float = 1e-7, max_lr: float = 10.0) -> dict:
    """Learning-rate range test: train with an exponentially rising lr, record the loss.

    Stops when the smoothed loss exceeds 4x its minimum. The suggestion is a tenth of the lr at the
    lowest smoothed loss. Writes lr_find.png in the run folder.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from cnncli.augment.ops import make_augment, resolve_ops
    from cnncli.charts.plots import plot_lr_finder
    from cnncli.data.loader import epoch_batches, gather
    from cnncli.training.optimizer import make_optimizer
    from cnncli.training.steps import make_steps

    cfg = plan.cfg
    train, _ = load_split(plan, "train")
    ops = resolve_ops(cfg.augment.preset, cfg.augment.ops)

    def schedule(step):
        return min_lr * (max_lr / min_lr) ** (step / (steps - 1))

    tx = make_optimizer(cfg.train, 1, schedule=schedule)
    augment_fn = make_augment(ops) if ops else None
    train_step, _ = make_steps(cfg, tx, augment_fn, multi_label=plan.dataset.multi_label)
    state = jax.tree_util.tree_map(jnp.asarray, _fresh_state(cfg, len(plan.dataset.classes), 1))
    state["opt"] = tx.init(state["params"])
    key = jax.random.key(cfg.train.seed)
    lrs, losses, smooth = [], [], 0.0
    step = 0
    epoch = 0
    while step < steps:
        epoch += 1
        for idx, mask in epoch_batches(train, cfg.train.seed, epoch, cfg.train.batch_size):
            images, labels = gather(train, idx)
            state, (loss_sum, _, count) = train_step(
                state,
                jnp.asarray(images),
                jnp.asarray(labels),
                jnp.asarray(mask),
                jax.random.fold_in(key, step),
            )
            loss = float(loss_sum) / max(float(count), 1.0)
            smooth = 0.9 * smooth + 0.1 * loss  # debiased exponential moving average
            lrs.append(schedule(step))
            losses.append(smooth / (1 - 0.9 ** (step + 1)))
            step += 1
            if step >= steps or not np.isfinite(loss) or losses[-1] > 4 * min(losses):
                break
        if not losses or not np.isfinite(losses[-1]) or losses[-1] > 4 * min(losses):
            break
    finite = [(lr, loss) for lr, loss in zip(lrs, losses, strict=True) if np.isfinite(loss)]
    lrs, losses = [p[0] for p in finite], [p[1] for p in finite]
    # The lr of the lowest loss divided by 10: past the minimum training diverges, and a tenth
    # of it is still on the steep, fast-learning part of the curve (fastai's "min/10").
    suggestion = float(lrs[int(np.argmin(losses))]) / 10 if losses else cfg.train.lr
    plot_lr_finder(lrs, losses, suggestion, plan.run_dir / "lr_find.png")
    return {"lrs": lrs, "losses": losses, "suggestion": suggestion, "run_dir": str(plan.run_dir)}
