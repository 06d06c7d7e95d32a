"""One prepared check of cnn on an accelerator: every figure of issue 19 in one run.

    .venv/bin/python benchmarks/device_check.py                    # a GPU/TPU, < 5 minutes
    .venv/bin/python benchmarks/device_check.py --platform cpu     # small sizes, here

Prints, in order:
1. the device, and its memory after start (jax's bytes in use; on a CPU the process RSS);
2. images/s of the real train step (cnncli.training.steps.step_functions, the reference CNN of
   benchmarks/: 32x32x3, conv 32/64/128 + pool, dense 128, 10 classes, Adam) at each
   batch size, fp32 and bf16, in three ways: `host` (numpy gathers the batch and copies
   it, one step a call: cnn before issue 19), `step` (the split on the device, the step
   gathers its batch, one step a call) and `scan` (K steps a call, lax.scan);
3. compile time of the step and the scan: cold (empty persistent cache) and warm (jax's
   in-memory caches cleared, the persistent cache filled, as a second `cnn train`);
4. host->device GB/s: one chunk of --chunk-mb (256 MB) against 64-image batches;
5. the full `cnn train` of the Fashion-MNIST large-batch recipe, launch to saved model,
   cold and warm caches, and its test accuracy (`cnn eval`), unless --no-train.

The compilation cache lives in a temporary folder, never in ~/.cache/cnn. Goals on one
H100 (issue 19): >= 500k images/s at 32x32 and batch >= 1024; Fashion-MNIST >= 93.5 % test
in <= 30 s cold and <= 15 s warm.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"

CLASSES = 10
# The Fashion-MNIST recipe of docs/results.md, scaled by --large-batch.
RECIPE = [
    "--image-size", "28", "--channels", "1", "--filters", "32,64", "--batch-norm",
    "--dense", "256", "--dropout", "0.3", "--augment", "flip", "--optimizer", "adamw",
    "--lr", "0.002", "--weight-decay", "0.05", "--label-smoothing", "0.1",
    "--val-fraction", "0.02", "--batch-size", "64", "--recipe", "fixed",
]  # fmt: skip


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--platform", default="", help="cpu, gpu or tpu (default: jax's choice)")
    p.add_argument("--batches", default="", help="batch sizes (default: 64,256,1024,4096; cpu: 64)")
    p.add_argument("--scan", type=int, default=0, help="steps per scan call (default: 32; cpu: 2)")
    p.add_argument("--seconds", type=float, default=0.0, help="timing per case (default 1; cpu 2)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per case")
    p.add_argument("--image", default="32x3", help="step test input: SIZExCHANNELS (default 32x3)")
    p.add_argument("--chunk-mb", type=float, default=256.0, help="chunk of the transfer test")
    p.add_argument("--data", type=Path, default=SHARED / "fashion_mnist", help="Fashion-MNIST IDX")
    p.add_argument("--per-class", type=int, default=0, help="train images per class (cpu: 200)")
    p.add_argument("--epochs", type=int, default=0, help="epochs of the recipe (default 20; cpu 1)")
    p.add_argument("--large-batch", type=int, default=1024, help="the recipe's batch size")
    p.add_argument("--no-train", action="store_true", help="skip the full cnn train")
    args = p.parse_args()
    cpu = args.platform == "cpu"
    args.batches = [
        int(b) for b in (args.batches or ("64" if cpu else "64,256,1024,4096")).split(",")
    ]
    args.size, args.channels = (int(v) for v in args.image.split("x"))
    args.scan = args.scan or (2 if cpu else 32)
    args.seconds = args.seconds or (2.0 if cpu else 1.0)
    args.per_class = args.per_class or (200 if cpu else 0)
    args.epochs = args.epochs or (1 if cpu else 20)
    if cpu:
        args.chunk_mb = min(args.chunk_mb, 64.0)
    return args


def main() -> None:
    args = parse_args()
    cache = Path(tempfile.mkdtemp(prefix="cnn-device-check-"))
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(cache / "jax")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    if args.platform:
        os.environ["JAX_PLATFORMS"] = args.platform
    from cnncli.training.xla_env import configure_xla

    configure_xla()
    started = time.perf_counter()
    import jax

    device = jax.devices()[0]
    print(f"# cnn device check, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(
        f"device: {device.platform} / {getattr(device, 'device_kind', '?')} x {jax.device_count()}"
    )
    print(
        f"host: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, jax {jax.__version__}"
    )
    print(f"jax start: {time.perf_counter() - started:.2f} s; memory after start: {memory(device)}")
    try:
        throughput(args, device)
        transfers(args)
        if not args.no_train:
            full_train(args, cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def memory(device) -> str:
    """jax's bytes in use / limit on an accelerator; the process's peak RSS on a CPU."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_in_use" in stats:
        used, limit = stats["bytes_in_use"], stats.get("bytes_limit", 0)
        peak = stats.get("peak_bytes_in_use", used)
        return f"{used / 2**30:.2f} GiB in use, peak {peak / 2**30:.2f} of {limit / 2**30:.1f} GiB"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return f"process peak RSS {rss:.2f} GiB (no device memory statistics on {device.platform})"


# ---------------------------------------------------------------------------- step speed


def reference_config(batch: int, precision: str, size: int = 32, channels: int = 3):
    from cnncli.config import ConvBlock, DataConfig, ModelConfig, RunConfig, TrainConfig

    model = ModelConfig(
        conv=[ConvBlock(32), ConvBlock(64), ConvBlock(128)], dense=[128], dropout=0.0
    )
    train = TrainConfig(batch_size=batch, precision=precision)
    return RunConfig(model=model, data=DataConfig(image_size=size, channels=channels), train=train)


def throughput(args, device) -> None:
    import jax
    import numpy as np

    from cnncli.data.loader import SplitArrays

    rng = np.random.default_rng(0)
    n = max(args.batches) * args.scan * 2
    split = SplitArrays(
        rng.integers(0, 256, (n, args.size, args.size, args.channels), np.uint8),
        rng.integers(0, CLASSES, n).astype(np.int32),
    )
    images, labels = jax.device_put(split.images), jax.device_put(split.labels)
    print(
        f"\ntrain split for the step: {n} random {args.size}x{args.size}x{args.channels} images on the device ({split.images.nbytes / 2**20:.0f} MiB); memory: {memory(device)}"
    )
    print(
        f"\n## train step, images/s (reference CNN {args.size}x{args.size}x{args.channels}, Adam; scan = {args.scan} steps a call)"
    )
    print(
        "| batch | precision | host (copy per step) | step (gather on device) | scan | scan / step | compile step cold / warm s | compile scan cold / warm s |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    key = jax.random.key(0)
    for batch in args.batches:
        for precision in ("fp32", "bf16"):
            measure_case(args, split, images, labels, key, batch, precision)
    print(f"\nmemory after the step tests: {memory(device)}")


def measure_case(args, split, images, labels, key, batch: int, precision: str) -> None:
    """One row of the step table: host, step and scan images/s, and compile times."""
    import jax
    import numpy as np

    from cnncli.data.loader import epoch_batches, gather
    from cnncli.model.flax_module import init_weights
    from cnncli.training.optimizer import make_optimizer
    from cnncli.training.steps import make_fed_step, step_functions

    cfg = reference_config(batch, precision, args.size, args.channels)
    params, stats = init_weights(
        cfg.model, image_size=args.size, channels=args.channels, num_classes=CLASSES, seed=0
    )
    tx = make_optimizer(cfg.train, 100)
    fresh = {"params": params, "stats": stats, "opt": tx.init(params)}
    order = list(epoch_batches(split, 0, 1, batch))
    rows = jax.device_put(np.stack([i for i, _ in order]).astype(np.int32))
    mask = jax.device_put(np.stack([m for _, m in order]).astype(np.float32))
    steps = len(order)

    def build():
        step_fn, _ = step_functions(cfg, tx, None)
        return jax.jit(step_fn, donate_argnums=0), make_fed_step(step_fn)

    def first_calls(fed, state):
        """(state, seconds of the first 1-step call, of the first scan call): with compiling."""
        seconds = []
        for count in (1, args.scan):
            t0 = time.perf_counter()
            state, m = fed(state, images, labels, rows, mask, 0, 0, key, 1, count=count)
            jax.block_until_ready(m)
            seconds.append(time.perf_counter() - t0)
        return state, *seconds

    plain, fed = build()
    state, cold_step, cold_scan = first_calls(fed, jax.tree_util.tree_map(jax.numpy.asarray, fresh))
    jax.clear_caches()  # the second build compiles again, now from the persistent cache
    plain, fed = build()
    state, warm_step, warm_scan = first_calls(fed, state)

    def run_host(state, i):
        idx, msk = order[i % steps]
        x, y = gather(split, idx)
        return plain(state, jax.numpy.asarray(x), jax.numpy.asarray(y), jax.numpy.asarray(msk), key)

    def run_step(state, i):
        return fed(state, images, labels, rows, mask, i % steps, i, key, 1, count=1)

    def run_scan(state, i):
        first = (i * args.scan) % (steps - args.scan + 1)
        return fed(state, images, labels, rows, mask, first, i, key, 1, count=args.scan)

    modes = (("host", run_host, 1), ("step", run_step, 1), ("scan", run_scan, args.scan))
    rates = {name: [] for name, _, _ in modes}
    for r in range(args.rounds):  # alternating rounds, rotating who goes first
        for name, call, per in modes[r % 3 :] + modes[: r % 3]:
            state, seconds, calls = timed(call, state, args.seconds / args.rounds)
            rates[name].append(calls * per * batch / seconds)
    speeds = {name: statistics.median(v) for name, v in rates.items()}
    print(
        f"| {batch} | {precision} | {speeds['host']:,.0f} | {speeds['step']:,.0f} | {speeds['scan']:,.0f} "
        f"| {speeds['scan'] / speeds['step']:.2f}x | {cold_step:.2f} / {warm_step:.2f} | {cold_scan:.2f} / {warm_scan:.2f} |",
        flush=True,
    )


def timed(call, state, seconds: float):
    """(state, seconds, calls): calls of `call` for about `seconds`, after one warm-up call."""
    import jax

    state, m = call(state, 0)
    jax.block_until_ready(m)
    calls, t0 = 0, time.perf_counter()
    while True:  # dispatch until the time is up (calls queue up), then wait for them
        state, m = call(state, calls + 1)
        calls += 1
        if time.perf_counter() - t0 >= seconds:
            break
    jax.block_until_ready(m)
    return state, time.perf_counter() - t0, calls


# ---------------------------------------------------------------------------- transfers


def transfers(args) -> None:
    import jax
    import numpy as np

    chunk = np.random.default_rng(1).integers(0, 256, int(args.chunk_mb * 2**20), np.uint8)
    batch = chunk[: 64 * 32 * 32 * 3].reshape(64, 32, 32, 3)
    jax.device_put(chunk[:1024]).block_until_ready()
    rounds = []
    for _ in range(3):
        t0 = time.perf_counter()
        jax.device_put(chunk).block_until_ready()
        rounds.append(chunk.nbytes / (time.perf_counter() - t0) / 1e9)
    t0, puts = time.perf_counter(), 0
    while time.perf_counter() - t0 < 1.0:
        out = [jax.device_put(batch + 0) for _ in range(16)]  # + 0: a new host buffer each time
        jax.block_until_ready(out)
        puts += 16
    small = puts * batch.nbytes / (time.perf_counter() - t0) / 1e9
    print(
        f"\n## host -> device\none {args.chunk_mb:.0f} MB chunk: {max(rounds):.2f} GB/s (best of 3); "
        f"64-image batches ({batch.nbytes / 1e3:.0f} kB each): {small:.2f} GB/s"
    )


# ---------------------------------------------------------------------------- cnn train


def full_train(args, cache: Path) -> None:
    expand = args.data.parent / "expand_idx.py"
    if not expand.is_file() or not args.data.is_dir():
        print(f"\n## cnn train: skipped ({args.data} or {expand} not present)")
        return
    work = cache / "fm"
    limit = ["--limit-per-class", str(args.per_class)] if args.per_class else []
    t0 = time.perf_counter()
    for split in ("train", "test"):
        subprocess.run(
            [sys.executable, str(expand), str(args.data), str(work / split), "--split", split, *limit],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    print(
        f"\n## cnn train, Fashion-MNIST recipe at --large-batch {args.large_batch}, {args.epochs} epochs"
    )
    print(
        f"PNG folders written in {time.perf_counter() - t0:.1f} s ({args.per_class or 'all'} train images per class)"
    )
    cnn = [sys.executable, "-m", "cnncli"]
    env = {**os.environ, "XDG_CACHE_HOME": str(cache / "user")}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # cnn's own default, under XDG_CACHE_HOME
    flags = [*RECIPE, "--large-batch", str(args.large_batch), "--epochs", str(args.epochs), "-q"]
    print("| caches | launch to saved model s | test accuracy |")
    print("| --- | ---: | ---: |")
    for run in ("cold", "warm"):
        out = work / f"run-{run}"
        t0 = time.perf_counter()
        subprocess.run(
            [*cnn, "train", str(work / "train"), "--out", str(out), *flags], check=True, env=env
        )
        wall = time.perf_counter() - t0
        if not (out / "model" / "model.json").is_file():
            raise SystemExit(f"{out}: no saved model")
        result = subprocess.run(
            [*cnn, "eval", str(out), str(work / "test"), "--json"],
            check=True, env=env, capture_output=True, text=True,
        )  # fmt: skip
        import json

        metrics = json.loads(result.stdout.strip().splitlines()[-1])
        accuracy = metrics.get("top1", metrics.get("accuracy", float("nan")))
        print(f"| {run} | {wall:.1f} | {100 * accuracy:.2f} % |", flush=True)
    print("command: cnn train DIR " + " ".join(flags))


if __name__ == "__main__":
    main()
