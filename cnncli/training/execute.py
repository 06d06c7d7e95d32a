"""One planned run executed: decode (or read the cache), initialise or restore, fit with
checkpoints after every epoch, metrics.csv and the curves as it goes, the bundle of the
best epoch at the end. Reports progress through the caller's callbacks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cnncli.config import RunConfig
from cnncli.data.scan import (
    DatasetError,
)
from cnncli.training.run import RunOutcome, RunPlan, write_metrics
from cnncli.training.timing import RunTimer
from cnncli.training.warm_start import InitSource


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
    state = fresh_state(cfg, len(classes), 1)
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
    samples = None
    try:
        if len(train) == 0:
            raise DatasetError(f"{plan.dataset.root}: none of the training images could be decoded")

        ops = resolve_ops(cfg.augment.preset, cfg.augment.ops)
        augment_fn = make_augment(ops) if ops else None
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
    except BaseException:  # bad weights, no decodable image, Ctrl-C: nothing runs on
        checkpoints.close()  # orbax's threads and the samples drawing end first
        if samples is not None:
            samples.thread.join()
        if timer is not None:
            timer.finish()
        raise
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


def fresh_state(cfg: RunConfig, num_classes: int, steps_per_epoch: int) -> dict[str, Any]:
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
