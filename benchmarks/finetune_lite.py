"""EfficientNet-Lite0 speed: cnn's jitted forward and train step against timm's
tf_efficientnet_lite0 in PyTorch eager, with the same ImageNet weights, in one run.

For each size (160, 224; batch 32) it measures images/s of
- forward: inference (cnn: network.forward under jax.jit; timm: model.eval() under no_grad),
- train step: forward, backward and an Adam update of every weight (cnn: the real step
  cnncli.training.steps.make_steps builds for `cnn train --init efficientnet_lite0`, backbone lr / 10;
  PyTorch: the same with two Adam parameter groups, batch norm in train mode),
- top-5 step (224 only): what --tune-blocks 5 trains per image, blocks 11-15 + head from
  cached 14x14x112 activations (cnn only; PyTorch has no such mode to compare with).
Each side runs in its own worker process and only when asked, so one side's idle thread
pool never competes with the other's work. Rounds alternate which side goes first, so a
busy machine slows both alike; medians and per-round ratios are printed. PyTorch runs with 1 and with 2 threads and its best counts.

Needs torch and timm next to cnn (not in cnn's extras: timm pulls torchvision):
    python -m venv /tmp/bench && /tmp/bench/bin/pip install -e . torch timm
    /tmp/bench/bin/python benchmarks/finetune_lite.py --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH = 32
CLASSES = 10


def _time(fn, steps: int) -> float:
    fn()  # compile / warm up
    fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return steps * BATCH / (time.perf_counter() - start)


def cnn_side(size: int):
    """(forward fn, train-step fn, top-5 step fn or None) of cnn's Lite0, each blocking."""
    import jax
    import jax.numpy as jnp

    from cnncli.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from cnncli.model import network
    from cnncli.model.pretrained.lite_weights import load_packaged
    from cnncli.training.finetune import top_forward, top_names, top_start
    from cnncli.training.optimizer import make_optimizer
    from cnncli.training.steps import make_steps

    loaded = load_packaged()
    rng = np.random.default_rng(0)
    model = ModelConfig(backbone="efficientnet_lite0", dense=[], global_pool=True, dropout=0.2)
    model.mean, model.std = [0.5] * 3, [0.5] * 3
    train = TrainConfig(batch_size=BATCH, epochs=1, lr=1e-3, backbone_lr=1e-4)
    cfg = RunConfig(model=model, data=DataConfig(image_size=size), train=train)
    params = {k: jnp.asarray(v) for k, v in loaded.params.items()}
    params["logits/kernel"] = jnp.asarray(rng.normal(0, 0.01, (1280, CLASSES)), jnp.float32)
    params["logits/bias"] = jnp.zeros((CLASSES,), jnp.float32)
    stats = {k: jnp.asarray(v) for k, v in loaded.stats.items()}
    images = jnp.asarray(rng.integers(0, 256, (BATCH, size, size, 3)), jnp.uint8)
    labels = jnp.asarray(rng.integers(0, CLASSES, BATCH), jnp.int32)
    mask = jnp.ones((BATCH,), jnp.float32)
    infer = jax.jit(lambda p, s, x: network.forward(p, s, model, network.normalize(x, model))[0])
    tx = make_optimizer(train, 100)
    step, _ = make_steps(cfg, tx, None)
    owned = {k: jnp.array(v) for k, v in params.items()}  # the step donates its state
    state = {"params": owned, "stats": {k: jnp.array(v) for k, v in stats.items()}}
    state["opt"] = tx.init(owned)
    holder = {"state": state, "top": None}
    key = jax.random.key(0)

    def forward():
        infer(params, stats, images).block_until_ready()

    def train_step():
        holder["state"], metrics = step(holder["state"], images, labels, mask, key)
        jax.block_until_ready(metrics)

    top = None
    if size == 224:
        start = top_start(model, 5)
        names = top_names(model, 5, params)
        top_params = {k: jnp.array(params[k]) for k in names}
        top_stats = {k: jnp.array(stats[k]) for k in top_names(model, 5, stats)}
        cached = jnp.asarray(rng.normal(0, 1, (BATCH, 2, 14, 14, 112)), jnp.float16)
        top_tx = make_optimizer(train, 100)
        top_step, _ = make_steps(cfg, top_tx, None, head_only=top_forward(model, start))
        holder["top"] = {"params": top_params, "stats": top_stats, "opt": top_tx.init(top_params)}

        def top():
            holder["top"], metrics = top_step(holder["top"], cached, labels, mask, key)
            jax.block_until_ready(metrics)

    return forward, train_step, top


def torch_side(size: int, threads: int):
    """(forward fn, train-step fn) of timm's tf_efficientnet_lite0 with the same weights."""
    import timm
    import torch

    from cnncli.model.pretrained.lite_weights import load_packaged, timm_name

    torch.set_num_threads(threads)
    loaded = load_packaged()
    model = timm.create_model("tf_efficientnet_lite0", num_classes=CLASSES)
    state = model.state_dict()
    for ours, array in {**loaded.params, **loaded.stats}.items():
        array = array.transpose(3, 2, 0, 1) if array.ndim == 4 else array
        state[timm_name(ours)] = torch.from_numpy(np.ascontiguousarray(array))
    model.load_state_dict(state)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(0, 1, (BATCH, 3, size, size)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, CLASSES, BATCH))
    head = list(model.classifier.parameters())
    rest = [p for n, p in model.named_parameters() if not n.startswith("classifier.")]
    opt = torch.optim.Adam([{"params": rest, "lr": 1e-4}, {"params": head, "lr": 1e-3}])

    def forward():
        model.eval()
        with torch.no_grad():
            model(x)

    def train_step():
        model.train()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return forward, train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--torch-malloc",
        action="store_true",
        help="give PyTorch's process the glibc malloc thresholds cnn sets for itself "
        "(configure_malloc); by default PyTorch runs as a user would run it",
    )
    args = parser.parse_args()
    import os
    import platform

    from cnncli.training.xla_env import configure_xla

    configure_xla()  # the XLA flags `cnn train` runs with, set before jax starts
    print(f"machine: {platform.processor() or platform.machine()}, batch {BATCH}")
    print(f"XLA_FLAGS: {os.environ.get('XLA_FLAGS', '(unset)')}")
    print(f"PyTorch with cnn's malloc thresholds: {'yes' if args.torch_malloc else 'no'}")
    import multiprocessing

    # Each side runs in its own process and only when asked: one side's idle thread pool
    # (OpenMP's, XLA's) never competes with the other's work, as it could in one process.
    ctx = multiprocessing.get_context("spawn")
    workers = {}
    for side in ("cnn", "torch"):
        mine, theirs_end = ctx.Pipe()
        malloc = side == "cnn" or args.torch_malloc
        proc = ctx.Process(target=_worker, args=(side, theirs_end, malloc), daemon=True)
        proc.start()
        workers[side] = (proc, mine)

    def ask(side: str, size: int, threads: int, what: str) -> float | None:
        conn = workers[side][1]
        conn.send((size, threads, what, args.steps))
        return conn.recv()

    for size in (160, 224):
        rates: dict[str, list[float]] = {}
        for r in range(args.rounds):
            order = ["cnn", "torch"] if r % 2 == 0 else ["torch", "cnn"]
            for side in order:
                if side == "cnn":
                    rates.setdefault("cnn forward", []).append(ask("cnn", size, 0, "forward"))
                    rates.setdefault("cnn step", []).append(ask("cnn", size, 0, "step"))
                    top = ask("cnn", size, 0, "top")
                    if top is not None:
                        rates.setdefault("cnn top-5 step", []).append(top)
                    continue
                for t in (1, 2):
                    rates.setdefault(f"torch{t} forward", []).append(
                        ask("torch", size, t, "forward")
                    )
                    rates.setdefault(f"torch{t} step", []).append(ask("torch", size, t, "step"))
        med = {k: statistics.median(v) for k, v in rates.items()}
        for what in ("forward", "step"):
            best = max(med[f"torch1 {what}"], med[f"torch2 {what}"])
            per_round = [
                c / max(a, b)
                for c, a, b in zip(
                    rates[f"cnn {what}"],
                    rates[f"torch1 {what}"],
                    rates[f"torch2 {what}"],
                    strict=True,
                )
            ]
            print(
                f"{size} px {what:8s}: cnn {med[f'cnn {what}']:6.1f} img/s, PyTorch eager "
                f"{med[f'torch1 {what}']:6.1f} (1 thread) / {med[f'torch2 {what}']:6.1f} (2) "
                f"-> {med[f'cnn {what}'] / best:.2f}x of PyTorch's best "
                f"(rounds {', '.join(f'{v:.2f}' for v in per_round)})"
            )
        if "cnn top-5 step" in med:
            print(f"{size} px top-5 step (--tune-blocks 5): cnn {med['cnn top-5 step']:6.1f} img/s")
    for proc, conn in workers.values():
        conn.send(None)
        proc.join(timeout=60)


def _worker(side: str, conn, malloc: bool) -> None:
    """One side's process: builds its functions per size when first asked, then
    answers (size, threads, what, steps) with images/s (None: no such function). malloc:
    apply cnn's glibc malloc thresholds (cnn always does, through configure_xla)."""
    from cnncli.training.xla_env import configure_malloc, configure_xla

    if side == "cnn":
        configure_xla()
    elif malloc:
        configure_malloc()
    built: dict = {}
    while (request := conn.recv()) is not None:
        size, threads, what, steps = request
        if size not in built:
            built[size] = cnn_side(size) if side == "cnn" else torch_side(size, threads)
        if side == "torch":
            import torch

            torch.set_num_threads(threads)
        fns = built[size]
        index = ("forward", "step", "top").index(what)
        fn = fns[index] if index < len(fns) else None
        conn.send(None if fn is None else _time(fn, steps))


if __name__ == "__main__":
    main()
