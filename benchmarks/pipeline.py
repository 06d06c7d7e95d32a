"""What `cnn train` spends around the math: decode, batching, transfers, eval, checkpoints.

Trains through the same code as `cnn train` (cnncli.training.execute.execute_run, without the Rich
display) and, after every epoch, runs the pure step loop on the same arrays: the same
number of train steps on batches already on the device, plus the val forward passes.
Epochs and pure loops alternate, so a noisy machine slows both alike.

    .venv/bin/python benchmarks/pipeline.py [--epochs 4] [--only hymenoptera|fashion]

Data: the ants/bees photos in ../shared/data/hymenoptera_data (JPEGs, at 64x64) and 5000
Fashion-MNIST PNGs (28x28 grayscale) expanded from ../shared/data/fashion_mnist with its
expand_idx.py. A dataset that is absent is skipped with a message.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


class PureLoop:
    """The train and eval steps alone, on a run's decoded arrays already on the device."""

    def __init__(self, plan, batches_per_epoch: int):
        import jax
        import numpy as np

        from cnncli.data.loader import gather, padded_batches
        from cnncli.model.flax_module import init_weights
        from cnncli.training.execute import load_split
        from cnncli.training.optimizer import make_optimizer
        from cnncli.training.steps import make_steps

        cfg = plan.cfg
        bs = cfg.train.batch_size
        train, _ = load_split(plan, "train")  # from the run's cache: no second decode
        val, _ = load_split(plan, "val")
        order = np.random.default_rng(0).permutation(len(train))
        self.train_batches = []
        for idx, mask in padded_batches(order, bs):
            images, labels = gather(train, idx)
            self.train_batches.append(jax.device_put((images, labels, mask)))
        self.train_batches = self.train_batches[:batches_per_epoch]
        self.val_batches = [
            jax.device_put(gather(val, idx)[0])
            for idx, _ in padded_batches(np.arange(len(val)), bs)
        ]
        d = cfg.data
        params, stats = init_weights(
            cfg.model,
            image_size=d.image_size,
            channels=d.channels,
            num_classes=len(plan.dataset.classes),
            seed=0,
        )
        tx = make_optimizer(cfg.train, len(self.train_batches))
        self.train_step, self.eval_step = make_steps(cfg, tx, None)
        self.state = {"params": params, "stats": stats, "opt": tx.init(params)}
        self.key = jax.random.key(0)
        self.jax = jax
        self.run()  # compile both steps outside the timed rounds

    def run(self) -> tuple[float, float]:
        """Seconds for one epoch of train steps, and for one pass of val forwards."""
        jax = self.jax
        started = time.perf_counter()
        for step, batch in enumerate(self.train_batches):
            self.state, metrics = self.train_step(
                self.state, *batch, jax.random.fold_in(self.key, step)
            )
        jax.block_until_ready(metrics)
        mid = time.perf_counter()
        logits = [self.eval_step(self.state, images) for images in self.val_batches]
        jax.block_until_ready(logits)
        return mid - started, time.perf_counter() - mid


class Timer:
    """Callbacks for fit: wall time of each epoch, then one pure loop round right after it."""

    def __init__(self, plan):
        self.plan = plan
        self.epoch_s: list[float] = []
        self.pure_train_s: list[float] = []
        self.pure_eval_s: list[float] = []
        self.first_epoch_at: float | None = None
        self.decoded_at: float | None = None
        self.steps = 0
        self.pure: PureLoop | None = None

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.started = time.perf_counter()
        self.steps = steps
        if self.first_epoch_at is None:
            self.first_epoch_at = self.started

    def on_step(self, step, steps, loss, images_per_s) -> None: ...

    def on_decode(self, done: int, total: int) -> None:
        self.decoded_at = time.perf_counter()

    def on_epoch_end(self, row, seconds: float, improved: bool) -> None:
        self.epoch_s.append(time.perf_counter() - self.started)  # incl. metrics.csv, plots
        if self.pure is None:
            self.pure = PureLoop(self.plan, self.steps)
        train_s, eval_s = self.pure.run()
        self.pure_train_s.append(train_s)
        self.pure_eval_s.append(eval_s)


def bench(name: str, data_dir: Path, overrides: dict, epochs: int, work: Path) -> None:
    """Train on data_dir and print the epoch times, the pure loop and the overhead."""
    from cnncli.config import RunConfig, merge_overrides
    from cnncli.training.execute import execute_run
    from cnncli.training.run import plan_new_run

    cfg = merge_overrides(RunConfig(), {"train.epochs": epochs, **overrides})
    plan = plan_new_run(data_dir, cfg, work / name)
    timer = Timer(plan)
    started = time.perf_counter()
    execute_run(plan, timer, timer.on_decode)
    total = time.perf_counter() - started
    before = timer.first_epoch_at - started
    later = timer.epoch_s[1:]
    pure = [a + b for a, b in zip(timer.pure_train_s, timer.pure_eval_s, strict=True)][1:]
    overhead = statistics.median((e - p) / p for e, p in zip(later, pure, strict=True))
    d = cfg.data
    print(
        f"\n{name}: {data_dir} at {d.image_size}x{d.image_size}x{d.channels}, "
        f"batch {cfg.train.batch_size}, {timer.steps} steps/epoch, {epochs} epochs, "
        f"{total:.1f} s in all"
    )
    if timer.decoded_at is not None:
        print(f"  decode (train + val, worker processes)       {timer.decoded_at - started:7.2f} s")
    print(f"  before epoch 1 (decode, init, samples.png)   {before:7.2f} s")
    print(f"  epoch 1 (compiles train and eval steps)      {timer.epoch_s[0]:7.2f} s")
    print(f"  later epochs, median                         {statistics.median(later):7.2f} s")
    print(
        f"  pure loop on the same arrays, median         {statistics.median(pure):7.2f} s"
        f"  (train {statistics.median(timer.pure_train_s[1:]):.2f} + "
        f"eval {statistics.median(timer.pure_eval_s[1:]):.2f})"
    )
    print(f"  pipeline overhead, median of epoch pairs     {100 * overhead:6.0f} %")


def fashion_folder(work: Path) -> Path | None:
    """5000 Fashion-MNIST training PNGs, expanded into work/ (None if the IDX files are absent)."""
    src = SHARED / "fashion_mnist"
    if not src.is_dir():
        return None
    out = work / "fashion_mnist_png"
    cmd = [sys.executable, str(SHARED / "expand_idx.py"), str(src), str(out), "--split", "train"]
    subprocess.run([*cmd, "--limit-per-class", "500"], check=True, stdout=subprocess.DEVNULL)
    return out


def main() -> None:
    """Run the datasets that are present."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per dataset (>= 3)")
    parser.add_argument("--only", choices=["hymenoptera", "fashion"], default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cnn-bench-pipeline-") as tmp:
        work = Path(tmp)
        os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # an empty compilation cache
        from cnncli.training.xla_env import configure_xla

        configure_xla()  # what `cnn train` does first
        import jax

        print(
            f"jax {jax.__version__}, {jax.device_count()} device(s), XLA_FLAGS={os.environ.get('XLA_FLAGS')!r}"
        )
        if args.only in (None, "hymenoptera"):
            ants = SHARED / "hymenoptera_data"
            if ants.is_dir():
                bench("hymenoptera", ants, {"data.image_size": 64}, args.epochs, work)
            else:
                print(f"skipped hymenoptera: {ants} not present (see ../shared/data/README.md)")
        if args.only in (None, "fashion"):
            fm = fashion_folder(work)
            if fm is not None:
                fm_cfg = {"data.image_size": 28, "data.channels": 1}
                bench("fashion_mnist", fm, fm_cfg, args.epochs, work)
            else:
                print(f"skipped fashion_mnist: {SHARED / 'fashion_mnist'} not present")


if __name__ == "__main__":
    main()
