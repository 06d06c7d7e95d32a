"""ResNet-18 fine-tuning speed: cnn's train step against PyTorch eager, and --freeze's wall time.

1. images/s of one full fine-tuning step (forward, backward, Adam with the backbone at
   lr / 10) of ResNet-18 at 128 and 160 px, batch 32: cnn's real jitted step
   (cnncli.training.steps.make_steps, the config `cnn train --init` makes) and the same network in
   PyTorch eager (`pip install -e '.[bench]'`; without torch that column is skipped with a
   message). Rounds alternate between the two (rotating who goes first), so a busy machine
   slows both alike; medians and the per-round ratio are printed.
2. wall time of `cnn train ants_bees --init FILE --freeze` at 160 px on the ants/bees photos
   (../shared/data/hymenoptera_data; skipped when absent). FILE is a ResNet-18 in timm's
   layout with seeded random weights: the build machine has no network for real ImageNet
   weights, and the time does not depend on the values.

    flock /work/cpu.lock .venv/bin/python benchmarks/finetune.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = (128, 160)
BATCH = 32
CLASSES = 10
ANTS_BEES = ROOT.parent / "shared" / "data" / "hymenoptera_data"


def cnn_stepper(size: int):
    """A function that runs n fine-tuning steps of cnn's ResNet-18 and returns the seconds."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from cnncli.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from cnncli.model.flax_module import init_weights
    from cnncli.model.pretrained.registry import IMAGENET_MEAN, IMAGENET_STD
    from cnncli.training.optimizer import make_optimizer
    from cnncli.training.steps import make_steps

    model = ModelConfig(
        backbone="resnet18",
        dense=[],
        global_pool=True,
        dropout=0.0,
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
    )
    cfg = RunConfig(
        model=model,
        data=DataConfig(image_size=size),
        train=TrainConfig(batch_size=BATCH, lr=1e-3, backbone_lr=1e-4, init="bench"),
    )
    params, stats = init_weights(model, image_size=size, channels=3, num_classes=CLASSES, seed=0)
    tx = make_optimizer(cfg.train, 100)
    step, _ = make_steps(cfg, tx, None)
    state = {"params": params, "stats": stats, "opt": tx.init(params)}
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (BATCH, size, size, 3), dtype=np.uint8))
    labels = jnp.asarray(rng.integers(0, CLASSES, BATCH, dtype=np.int32))
    mask = jnp.ones(BATCH, jnp.float32)
    key = jax.random.key(0)
    holder = {"state": state}

    def run(n: int) -> float:
        started = time.perf_counter()
        for i in range(n):
            holder["state"], metrics = step(
                holder["state"], images, labels, mask, jax.random.fold_in(key, i)
            )
        jax.block_until_ready(metrics)
        return time.perf_counter() - started

    return run


def torch_stepper(size: int):
    """The same network, loss and optimiser in PyTorch eager (NCHW, float32)."""
    import torch
    from torch import nn

    class Basic(nn.Module):
        def __init__(self, c_in: int, c_out: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.down = None
            if stride != 1 or c_in != c_out:
                self.down = nn.Sequential(
                    nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
                )

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return torch.relu(y + (x if self.down is None else self.down(x)))

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    layers.append(nn.MaxPool2d(3, 2, 1))
    c = 64
    for stage, width in enumerate((64, 128, 256, 512)):
        for index in range(2):
            layers.append(Basic(c, width, 2 if stage and not index else 1))
            c = width
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, CLASSES))
    head = list(net[-1].parameters())
    body = [p for p in net.parameters() if all(p is not h for h in head)]
    opt = torch.optim.Adam([{"params": body, "lr": 1e-4}, {"params": head, "lr": 1e-3}])
    images = torch.rand(BATCH, 3, size, size)
    labels = torch.randint(0, CLASSES, (BATCH,))
    loss_fn = nn.CrossEntropyLoss()
    net.train()

    def run(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            loss_fn(net(images), labels).backward()
            opt.step()
        return time.perf_counter() - started

    return run


def step_rates(rounds: int, steps: int) -> dict:
    """img/s per size and framework, alternating rounds."""
    try:
        import torch  # noqa: F401

        frameworks = {"cnn": cnn_stepper, "torch": torch_stepper}
    except ImportError:
        print("PyTorch not installed (pip install -e '.[bench]'): torch column skipped")
        frameworks = {"cnn": cnn_stepper}
    results = {}
    for size in SIZES:
        runners = {name: make(size) for name, make in frameworks.items()}
        for run in runners.values():  # compile / warm up outside the timing
            run(1)
        rates = {name: [] for name in runners}
        order = list(runners)
        for r in range(rounds):
            for name in order[r % len(order) :] + order[: r % len(order)]:
                rates[name].append(steps * BATCH / runners[name](steps))
        results[size] = {name: statistics.median(v) for name, v in rates.items()}
        if "torch" in rates:
            ratios = [a / b for a, b in zip(rates["cnn"], rates["torch"], strict=True)]
            results[size]["cnn/torch"] = statistics.median(ratios)
        print(json.dumps({"size": size, "batch": BATCH, **results[size]}), flush=True)
    return results


def freeze_wall_time(size: int = 160) -> dict | None:
    """Seconds of `cnn train ants_bees --init FILE --freeze` (fresh process, fresh cache)."""
    if not ANTS_BEES.is_dir():
        print(f"{ANTS_BEES} absent: --freeze wall time skipped")
        return None
    from safetensors.numpy import save_file

    from tests.resnet_reference import timm_state

    with tempfile.TemporaryDirectory(prefix="cnn-finetune-bench-") as tmp:
        weights = Path(tmp) / "resnet18"
        weights.mkdir()
        save_file(timm_state("resnet18", num_classes=1000), str(weights / "model.safetensors"))
        env = {**os.environ, "XDG_CACHE_HOME": str(Path(tmp) / "cache")}
        args = [sys.executable, "-m", "cnncli", "train", str(ANTS_BEES), "--init", str(weights)]
        args += ["--freeze", "--image-size", str(size), "--out", str(Path(tmp) / "run")]
        started = time.perf_counter()
        done = subprocess.run([*args, "--json"], capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(done.stderr[-2000:])
        summary = json.loads(done.stdout.strip().splitlines()[-1])
    result = {"freeze_seconds": round(seconds, 1), "epochs": summary["epochs"], "size": size}
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="train steps per round")
    parser.add_argument("--skip-freeze", action="store_true")
    args = parser.parse_args()
    from cnncli.training.xla_env import configure_malloc, configure_xla

    configure_xla()
    configure_malloc()
    step_rates(args.rounds, args.steps)
    if not args.skip_freeze:
        freeze_wall_time()


if __name__ == "__main__":
    main()
