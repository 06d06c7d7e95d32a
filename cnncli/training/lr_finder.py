"""The learning-rate range test (`cnn train --find-lr`): a short run with the lr rising
exponentially, the loss curve, a suggestion and lr_find.png."""

from __future__ import annotations

from cnncli.training.execute import fresh_state, load_split
from cnncli.training.run import RunPlan


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
    state = jax.tree_util.tree_map(jnp.asarray, fresh_state(cfg, len(plan.dataset.classes), 1))
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
