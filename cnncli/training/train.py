"""The fit loop: epochs of steps (cnncli/training/steps.py), validation, checkpoints, callbacks for output."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cnncli.config import RunConfig, TrainConfig
from cnncli.data.feed import DeviceFeed, choose_placement, steps_per_dispatch
from cnncli.data.loader import (
    DataShards,
    Placement,
    SplitArrays,
    epoch_batches,
    gather,
    padded_batches,
)
from cnncli.inference.evaluate import log_softmax
from cnncli.training import distributed
from cnncli.training.epochs import Callbacks, EpochRow, FitResult, MultiLabelRow, TrainingDiverged
from cnncli.training.learning_check import LearningCheck
from cnncli.training.optimizer import make_optimizer, make_schedule
from cnncli.training.steps import (
    class_weights_from_counts,
    make_fed_step,
    multilabel_class_weights,
    step_functions,
)
from cnncli.training.timing import CompileClock

# ---------------------------------------------------------------------------- optimiser


# ---------------------------------------------------------------------------- batching


def predict_logits(
    eval_step, state, images: np.ndarray, batch_size: int, placement: Placement | None = None
) -> np.ndarray:
    """Logits for every image, in fixed-shape padded batches (one compile)."""
    out = []
    order = np.arange(len(images))
    split = SplitArrays(images, np.zeros(len(images), np.int32))
    for idx, mask in padded_batches(order, batch_size):
        batch, _ = gather(split, idx)
        (batch,) = placement.batch(batch) if placement else (jnp.asarray(batch),)
        logits = np.asarray(eval_step(state, batch))
        out.append(logits[mask > 0])
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


# ---------------------------------------------------------------------------- fit


def _validate(
    eval_step, state, val: SplitArrays, batch_size: int, placement: Placement, classes: int
):
    """(mean cross-entropy, accuracy, images predicted per class) on the validation split
    (nan, nan, zeros when it is empty).

    Over several processes each scores its own shards on its own device, and the float64
    sums are added up across processes.
    """
    if placement.processes > 1:
        state, placement = jax.device_put(to_numpy(state), jax.local_devices()[0]), None
    sums = np.zeros(3 + classes)
    if len(val):
        logits = predict_logits(eval_step, state, val.images, batch_size, placement)
        log_probs = log_softmax(logits)
        labels = val.labels.astype(np.int64)
        predicted = logits.argmax(-1)
        sums[:3] = (
            -log_probs[np.arange(len(labels)), labels].astype(np.float64).sum(),
            np.sum(predicted == labels),
            len(labels),
        )
        sums[3:] = np.bincount(predicted, minlength=classes)[:classes]
    sums = distributed.sum_over_processes(sums)
    loss_sum, correct, count = sums[:3]
    per_class = [int(c) for c in sums[3:]]
    if count == 0:
        return float("nan"), float("nan"), per_class
    return float(loss_sum / count), float(correct / count), per_class


def _validate_multilabel(eval_step, state, val: SplitArrays, batch_size: int, placement):
    """(mean BCE, subset accuracy at 0.5, mAP, probabilities) on the validation split.

    One process only: mAP and the thresholds need every validation image's outputs.
    """
    from cnncli.inference import multilabel

    if not len(val):
        nan = float("nan")
        return nan, nan, nan, np.zeros((0, 0))
    probs = multilabel.sigmoid(predict_logits(eval_step, state, val.images, batch_size, placement))
    targets = val.labels > 0.5
    subset = float(((probs >= 0.5) == targets).all(axis=1).mean())
    loss = multilabel.binary_cross_entropy(probs, targets)
    return loss, subset, multilabel.mean_average_precision(probs, targets), probs


def to_numpy(tree: Any) -> Any:
    """Device arrays -> numpy (for saving). Replicated arrays that span other processes'
    devices are read from this process's own copy."""
    return jax.tree_util.tree_map(_host_copy, tree)


def _host_copy(x: Any) -> np.ndarray:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)


def fit(
    cfg: RunConfig,
    train: SplitArrays,
    val: SplitArrays,
    init_state: dict[str, Any],
    checkpoints,
    *,
    start_epoch: int = 0,
    history: list[EpochRow] | None = None,
    on_improved: Callable[[dict[str, Any], EpochRow], None] | None = None,
    augment_fn: Callable | None = None,
    callbacks: Callbacks | None = None,
    num_classes: int | None = None,
    shards: DataShards | None = None,
    head_only: bool = False,
    check: LearningCheck | None = None,
) -> FitResult:
    """Train from `start_epoch` to cfg.train.epochs, checkpointing after every epoch.

    init_state = {"params", "stats", "opt"} (fresh or restored). The data order, dropout and
    augmentation keys are pure functions of (seed, epoch, step), so a resumed run repeats an
    uninterrupted one exactly. Stops early on --patience or --time-limit (at an epoch end).

    In a multi-process run, `train` and `val` hold this process's shards; only process 0
    has real `checkpoints` and `on_improved`, and it decides when to stop.

    Multi-label mode (multi-hot train.labels): the best epoch has the highest val mAP, and
    on_improved(state, row, thresholds) also gets the per-label thresholds tuned on val.
    head_only: train and val hold pooled features and the state only the logits layer.
    check: the learning check (learning_check.py), looked at once after check.epoch; when
    it fires, callbacks.on_not_learning gets its line, and with check.stop the run stops.
    """
    t = cfg.train
    cb = callbacks or Callbacks()
    shards = shards or DataShards()
    steps = shards.steps(train, t.batch_size)
    schedule = make_schedule(t, steps)
    multi_label = train.labels.ndim == 2
    classes = 0 if multi_label else num_classes or int(train.labels.max()) + 1
    weights = None
    if t.class_weights == "auto" and multi_label:
        weights = multilabel_class_weights(train.labels)
    elif t.class_weights == "auto":
        counts = distributed.sum_over_processes(np.bincount(train.labels, minlength=classes))
        weights = class_weights_from_counts(counts)
    step_fn, eval_fn = step_functions(
        cfg, make_optimizer(t, steps), augment_fn, weights, multi_label, head_only
    )
    eval_step = jax.jit(eval_fn)
    placement = Placement(t.devices)
    if t.batch_size % placement.count:
        raise ValueError(
            f"--batch-size {t.batch_size} must be a multiple of the {placement.count} devices"
        )
    where = choose_placement(t, train, placement.count, placement.processes)
    device = jax.local_devices()[0]
    feed = per_call = None
    if where == "host":
        train_step = jax.jit(step_fn, donate_argnums=0)
    else:
        train_step = make_fed_step(step_fn)
        feed = DeviceFeed(train, where, t.batch_size, t.chunk_mb)
        per_call = steps_per_dispatch(t, device.platform, steps)
    getattr(cb, "on_setup", lambda text: None)(
        _setup_line(device, placement.count, t.precision, feed, per_call or 1)
    )
    state = placement.state(init_state)
    result = FitResult(history=list(history or []))
    best_score = 0.0
    for row in result.history:
        if row.score > best_score or result.best_epoch == 0:
            result.best_epoch, result.best_val_acc, best_score = row.epoch, row.val_acc, row.score
    base_key = jax.random.key(t.seed)
    # The lr at each epoch's end, for metrics.csv, in one compiled call (not an eager jnp
    # program per operation of the schedule).
    epoch_ends = np.arange(1, t.epochs + 1, dtype=np.int32) * steps - 1
    epoch_lrs = np.asarray(jax.jit(jax.vmap(schedule))(epoch_ends), np.float64)
    session_start = time.perf_counter()
    # Compiling happens in a session's first epoch; the time limit's guess of the next
    # epoch's length leaves it out (a slow-compiling --time-budget candidate lost epochs).
    with CompileClock() as compiling:
        for epoch in range(start_epoch + 1, t.epochs + 1):
            cb.on_epoch_start(epoch, t.epochs, steps)
            started, compiled_before = time.perf_counter(), compiling.seconds
            batches = epoch_batches(
                train, t.seed, epoch, t.batch_size, shards, t.sampler == "balanced"
            )
            if feed is None:
                epoch_key = jax.random.fold_in(base_key, epoch)
                state, (loss_sum, correct, count) = _train_epoch(
                    train_step, state, train, batches, steps, epoch_key, epoch, cb, placement
                )
            else:
                state, (loss_sum, correct, count) = _train_fed_epoch(
                    train_step, state, feed, batches, steps, per_call, base_key, epoch, cb
                )
            train_loss, train_acc = loss_sum / max(count, 1.0), correct / max(count, 1.0)
            lr = float(epoch_lrs[epoch - 1])
            thresholds = None
            if multi_label:
                val_loss, val_acc, val_map, val_probs = _validate_multilabel(
                    eval_step, state, val, t.batch_size, placement
                )
                row = MultiLabelRow(epoch, train_loss, train_acc, val_loss, val_acc, lr, val_map)
            else:
                val_loss, val_acc, predicted = _validate(
                    eval_step, state, val, t.batch_size, placement, classes
                )
                row = EpochRow(epoch, train_loss, train_acc, val_loss, val_acc, lr)
            result.history.append(row)
            improved = result.best_epoch == 0 or row.score > best_score
            if improved:
                result.best_epoch, result.best_val_acc, best_score = epoch, val_acc, row.score
                if multi_label and len(val):
                    from cnncli.inference.multilabel import tune_thresholds

                    thresholds = tune_thresholds(val_probs, val.labels)
                elif not multi_label:
                    result.best_val_predicted = predicted
            stop = _stop_reason(
                t,
                epoch,
                result.best_epoch,
                session_start,
                started + (compiling.seconds - compiled_before),
                multi_label,
            )
            seen = check.verdict(result.history) if check is not None else ""
            if seen:
                result.not_learning = check.line(seen)
                if check.stop:
                    stop = f"not learning after epoch {epoch} (the learning check)"
            result.stopped_early = distributed.broadcast_json(stop)
            host_state = to_numpy(state)
            # Never checkpoint (or save as model/) weights that overflowed in the last step.
            leaves = jax.tree_util.tree_leaves(host_state["params"])
            if not all(np.isfinite(v).all() for v in leaves) or (
                len(val) and not math.isfinite(val_loss)
            ):
                raise TrainingDiverged(
                    f"the weights overflowed in epoch {epoch} (validation loss {val_loss}); try a "
                    "lower learning rate (--lr) or a smaller batch; the last good checkpoint is kept"
                )
            meta = {
                "history": [r.as_dict() for r in result.history],
                "best_epoch": result.best_epoch,
                "stopped": result.stopped_early,
            }
            # model/ and metrics.csv first, the checkpoint last: a run killed in between repeats
            # this epoch on resume and rewrites them with the same bytes.
            if improved and on_improved is not None:
                on_improved(host_state, row, *([thresholds] if multi_label else []))
            cb.on_epoch_end(row, time.perf_counter() - started, improved)
            if seen:
                getattr(cb, "on_not_learning", lambda line: None)(result.not_learning)
            on_state = getattr(cb, "on_epoch_state", None)  # e.g. TensorBoard's weight histograms
            if on_state is not None:
                on_state(epoch, host_state)
            checkpoints.save(epoch, host_state, meta, 0.0 if math.isnan(row.score) else row.score)
            if result.stopped_early:
                break
    final = to_numpy(state)
    result.params, result.stats = final["params"], final["stats"]
    return result


def _stop_reason(
    t: TrainConfig,
    epoch: int,
    best_epoch: int,
    session_start: float,
    epoch_start: float,
    multi_label: bool = False,
) -> str:
    """'' to go on, or why training stops after this epoch (patience or time limit)."""
    if epoch >= t.epochs:
        return ""
    if t.patience and epoch - best_epoch >= t.patience:
        what = "mAP" if multi_label else "accuracy"
        return f"no val {what} gain for {t.patience} epochs (--patience)"
    now = time.perf_counter()
    # Stop when the next epoch (as long as this one, less its compiling: epoch_start is
    # moved on by that) would end past the limit.
    if t.time_limit and (now - session_start) + (now - epoch_start) > t.time_limit * 60:
        return f"time limit of {t.time_limit:g} min (--time-limit)"
    return ""


def _setup_line(device, devices: int, precision: str, feed, per_call: int) -> str:
    """What the start of training prints: device, precision, where the data lives."""
    where = feed.describe() if feed else "batches gathered on the host and copied each step"
    name = getattr(device, "device_kind", "") or device.platform
    if name.lower() != device.platform:
        name = f"{device.platform} ({name})"
    on = f"{devices} x {name}" if devices > 1 else name
    calls = f"{per_call} steps per call" if per_call > 1 else "1 step per call"
    return f"device: {on}; precision {precision}; {where}; {calls}"


def _train_epoch(
    train_step, state, train: SplitArrays, batches, steps, epoch_key, epoch, cb, placement
):
    """One pass over `batches`; returns (state, (loss_sum, correct, count)) of the global batches."""
    totals = (0.0, 0.0, 0.0)
    started = time.perf_counter()
    pending = None
    for step, (idx, mask) in enumerate(batches):
        images, labels = gather(train, idx)
        key = jax.random.fold_in(epoch_key, step)
        state, metrics = train_step(state, *placement.batch(images, labels, mask), key)
        # Read the previous step's numbers while this one runs, so the host never stalls XLA.
        if pending is not None:
            totals = _accumulate(pending, totals, epoch, step, cb, steps, started)
        pending = metrics
    totals = _accumulate(pending, totals, epoch, steps, cb, steps, started)
    return state, totals


def _train_fed_epoch(fed, state, feed, batches, steps, per_call, base_key, epoch, cb):
    """One epoch of calls that gather on the device (feed: DeviceFeed); as _train_epoch."""
    totals = (0.0, 0.0, 0.0)
    started = time.perf_counter()
    pending = None
    for d in feed.epoch(batches, per_call):
        state, metrics = fed(
            state,
            d.images,
            d.labels,
            d.rows,
            d.mask,
            d.first,
            d.step,
            base_key,
            epoch,
            count=d.count,
        )
        # One read per call, of the previous call's (count, 3) sums, while this one runs.
        if pending is not None:
            totals = _accumulate(pending, totals, epoch, d.step, cb, steps, started)
        pending = metrics
    totals = _accumulate(pending, totals, epoch, steps, cb, steps, started)
    return state, totals


def _accumulate(metrics, totals, epoch, done, cb, steps, started):
    """Add a call's per-step (loss sum, correct, count) to totals and report progress.

    metrics: one step's three scalars, or a (steps, 3) array of a call; `done` is the
    number of steps finished once this call is.
    """
    if isinstance(metrics, tuple):
        rows = np.array([[float(_host_copy(v)) for v in metrics]])
    else:
        rows = np.asarray(_host_copy(metrics), np.float64).reshape(-1, 3)
    bad = np.flatnonzero(~np.isfinite(rows[:, 0]))
    if len(bad):
        raise TrainingDiverged(
            f"loss became {rows[bad[0], 0]} at epoch {epoch}, step {done - len(rows) + bad[0] + 1}; "
            "try a lower learning rate (--lr) or a smaller batch; the last good checkpoint is kept"
        )
    call = rows.sum(axis=0)
    loss_sum, correct, count = (a + b for a, b in zip(totals, call, strict=True))
    elapsed = max(time.perf_counter() - started, 1e-9)
    cb.on_step(done, steps, call[0] / max(call[2], 1.0), count / elapsed)
    return loss_sum, correct, count
