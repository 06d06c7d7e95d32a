"""Train-step throughput of cnn (and PyTorch eager, when installed), measured side by side.

Each setting runs in its own worker process, because XLA reads XLA_FLAGS once, at jax's
start. The parent sends the workers rounds in turn (rotating who goes first), so a noisy
machine slows every setting alike; it prints images/s medians and per-round ratios.

    .venv/bin/python benchmarks/train_throughput.py                      # default settings
    .venv/bin/python benchmarks/train_throughput.py --settings flag,2dev --rounds 7

--batch-norm puts batch norm after every conv (and drops the conv biases), in both.

Settings: plain (XLA_FLAGS unset: jax's defaults), flag (cnncli.training.xla_env.CPU_FLAGS, what
cnn uses on CPU), ynn:TYPES (other YNNPACK fusion
types, `+` between them, e.g. ynn:-individual_convolution+-reduce), 2dev (flag plus two
host devices, the batch sharded over them), torch (the same network in PyTorch eager,
`pip install -e '.[bench]'`), torch1 (the same with one thread: on a shared machine
torch's default threads can wait on each other for a core), torchm (torch with the malloc
settings cnn makes, cnncli.training.xla_env.configure_malloc: the same allocator for both), and base
(with --compare DIR: the flag setting run by another checkout's code, to measure a change
side by side). Every cnn setting but plain tunes malloc as `cnn` does; torch and torch1 run
with glibc's defaults, as a PyTorch user gets them:

    git worktree add /tmp/cnn-head HEAD
    .venv/bin/python benchmarks/train_throughput.py --compare /tmp/cnn-head --settings flag,torch
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (image size, batch size); the first is the reference CNN's CIFAR-like setting.
CASES = ((32, 128), (32, 32), (64, 128))
CLASSES = 10
FILTERS = (32, 64, 128)
DENSE = 128


# ---------------------------------------------------------------------------- workers


def jax_worker(devices: int, batch_norm: bool = False) -> None:
    """Serve rounds of cnn's real jitted train step (cnncli.training.steps.make_steps)."""
    import jax
    import numpy as np

    from cnncli.config import ConvBlock, DataConfig, ModelConfig, RunConfig, TrainConfig
    from cnncli.model.flax_module import init_weights
    from cnncli.training.optimizer import make_optimizer
    from cnncli.training.steps import make_steps

    mesh = None
    if devices > 1:  # data parallel: replicated state, the batch split over host devices
        mesh = jax.make_mesh((devices,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))

    def place(tree, split: bool):
        if mesh is None:
            return jax.device_put(tree)
        spec = jax.sharding.PartitionSpec("data") if split else jax.sharding.PartitionSpec()
        return jax.device_put(tree, jax.sharding.NamedSharding(mesh, spec))

    def build(size: int, batch: int) -> dict:
        cfg = RunConfig(
            model=ModelConfig(
                conv=[ConvBlock(f, batch_norm=batch_norm) for f in FILTERS],
                dense=[DENSE],
                dropout=0.0,
            ),
            data=DataConfig(image_size=size, channels=3),
            train=TrainConfig(batch_size=batch, optimizer="adam"),
        )
        params, stats = init_weights(
            cfg.model, image_size=size, channels=3, num_classes=CLASSES, seed=0
        )
        tx = make_optimizer(cfg.train, steps_per_epoch=100)
        train_step, _ = make_steps(cfg, tx, None)
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        labels = rng.integers(0, CLASSES, batch).astype(np.int32)
        mask = np.ones(batch, np.float32)
        case = {
            "step": train_step,
            "state": place({"params": params, "stats": stats, "opt": tx.init(params)}, False),
            "batch": place((images, labels, mask), True),
            "key": jax.random.key(0),
            "n": 0,
        }
        started = time.perf_counter()
        run_steps(case, 1)
        case["first_step_s"] = time.perf_counter() - started
        return case

    def run_steps(case: dict, count: int) -> None:
        state = case["state"]
        for _ in range(count):
            key = jax.random.fold_in(case["key"], case["n"])
            state, metrics = case["step"](state, *case["batch"], key)
            case["n"] += 1
        jax.block_until_ready(metrics)
        case["state"] = state

    serve(build, run_steps, {"jax": jax.__version__, "devices": jax.device_count()})


def torch_worker(threads: int | None, batch_norm: bool = False) -> None:
    """Serve rounds of the same network and Adam step in PyTorch eager (NCHW, float32)."""
    import torch
    from torch import nn

    if threads:
        torch.set_num_threads(threads)

    def build(size: int, batch: int) -> dict:
        torch.manual_seed(0)
        layers, cin = [], 3
        for f in FILTERS:
            layers.append(nn.Conv2d(cin, f, 3, padding=1, bias=not batch_norm))
            layers += [nn.BatchNorm2d(f, momentum=0.1)] if batch_norm else []
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
            cin = f
        flat = FILTERS[-1] * (size // 2 ** len(FILTERS)) ** 2
        layers += [nn.Flatten(), nn.Linear(flat, DENSE), nn.ReLU(), nn.Linear(DENSE, CLASSES)]
        model = nn.Sequential(*layers)
        case = {
            "model": model,
            "opt": torch.optim.Adam(model.parameters(), lr=1e-3),
            "images": torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8),
            "labels": torch.randint(0, CLASSES, (batch,)),
        }
        started = time.perf_counter()
        run_steps(case, 1)
        case["first_step_s"] = time.perf_counter() - started
        return case

    def run_steps(case: dict, count: int) -> None:
        model, opt = case["model"], case["opt"]
        for _ in range(count):
            x = case["images"].float() * (2.0 / 255.0) - 1.0  # cnn's normalize, in the step
            loss = nn.functional.cross_entropy(model(x), case["labels"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        loss.item()

    serve(build, run_steps, {"torch": torch.__version__, "threads": torch.get_num_threads()})


def serve(build, run_steps, info: dict) -> None:
    """Worker loop: 'SIZE BATCH SECONDS' on stdin -> one JSON result line on stdout."""
    cases: dict[tuple[int, int], dict] = {}
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        size, batch, seconds = line.split()
        key = (int(size), int(batch))
        if key not in cases:
            cases[key] = build(*key)
        case = cases[key]
        run_steps(case, 1)  # settle thread pools after the other worker's round
        steps, started = 0, time.perf_counter()
        while steps < 3 or time.perf_counter() - started < float(seconds):
            run_steps(case, 1)
            steps += 1
        elapsed = time.perf_counter() - started
        result = {"images_per_s": steps * key[1] / elapsed, "first_step_s": case["first_step_s"]}
        print(json.dumps(result), flush=True)


# ---------------------------------------------------------------------------- parent


def worker_env(setting: str) -> dict[str, str]:
    """The environment a setting's worker starts with (XLA_FLAGS decided here, not inherited)."""
    from cnncli.training.xla_env import CPU_FLAGS

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    if setting == "flag":
        env["XLA_FLAGS"] = CPU_FLAGS
    elif setting.startswith("ynn:"):  # other YNNPACK fusion types, e.g. ynn:-reduce+-eltwise
        env["XLA_FLAGS"] = f"--xla_cpu_experimental_ynn_fusion_type={setting[4:].replace('+', ',')}"
    elif setting == "2dev":
        env["XLA_FLAGS"] = f"{CPU_FLAGS} --xla_force_host_platform_device_count=2"
    return env


def start_worker(
    setting: str, batch_norm: bool = False, compare: Path | None = None
) -> tuple[subprocess.Popen, dict]:
    script, role = Path(__file__), setting
    if setting == "base":  # the flag setting, run by another checkout's copy of this script
        script, role = compare / "benchmarks" / Path(__file__).name, "flag"
    cmd = [sys.executable, str(script), "--worker", role] + (["--batch-norm"] if batch_norm else [])
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=worker_env(role)
    )
    return proc, json.loads(proc.stdout.readline())


def ask(proc: subprocess.Popen, size: int, batch: int, seconds: float) -> dict:
    proc.stdin.write(f"{size} {batch} {seconds}\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"a worker died (exit code {proc.wait()})")
    return json.loads(line)


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def main() -> None:
    """Parse options, run the rounds, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--settings", default=None, help="comma-separated: plain,flag,2dev,torch,torch1,torchm"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per round")
    parser.add_argument("--cases", default=None, help="e.g. 32x128,64x128 (size x batch)")
    parser.add_argument(
        "--batch-norm", action="store_true", help="batch norm after each conv (no conv bias)"
    )
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        help="another checkout (e.g. `git worktree add /tmp/cnn-head HEAD`); "
        "adds the setting 'base': its code with the flag",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker not in (None, "plain", "torch", "torch1"):
        from cnncli.training.xla_env import configure_malloc

        configure_malloc()  # what `cnn` does at start (torchm: the same for PyTorch)
    if args.worker in ("torch", "torch1", "torchm"):
        torch_worker(1 if args.worker == "torch1" else None, args.batch_norm)
        return
    if args.worker is not None:
        jax_worker(2 if args.worker == "2dev" else 1, args.batch_norm)
        return

    default = "plain,flag" + (",torch,torch1" if torch_available() else "")
    settings = (args.settings or default).split(",")
    if args.compare is not None and "base" not in settings:
        settings.insert(0, "base")
    if "base" in settings and args.compare is None:
        parser.error("the setting 'base' needs --compare DIR")
    cases = CASES
    if args.cases:
        cases = tuple(tuple(int(v) for v in c.split("x")) for c in args.cases.split(","))
    workers = {s: start_worker(s, args.batch_norm, args.compare) for s in settings}
    for s, (_, info) in workers.items():
        print(f"# worker {s}: {info}")
    speeds = {(s, c): [] for s in settings for c in cases}
    first = {}
    for r in range(args.rounds):
        for case in cases:
            order = settings[r % len(settings) :] + settings[: r % len(settings)]
            for s in order:
                res = ask(workers[s][0], *case, args.seconds)
                speeds[s, case].append(res["images_per_s"])
                first[s, case] = res["first_step_s"]
        print(f"# round {r + 1}/{args.rounds} done", file=sys.stderr)
    for proc, _ in workers.values():
        proc.stdin.close()
        proc.wait()
    report(settings, cases, speeds, first, args)


def report(settings, cases, speeds, first, args) -> None:
    """Medians of images/s, and medians of per-round speed ratios between settings."""
    base = settings[0]
    pairs = [(s, base) for s in settings[1:]]
    if "flag" in settings and base != "flag":  # against what cnn runs: the flag
        pairs += [(s, "flag") for s in ("2dev", "torch", "torch1", "torchm") if s in settings]
    print(
        f"\ntrain step, images/s (median of {args.rounds} alternating rounds of ~{args.seconds} s)"
    )
    head = f"{'case':>10} " + " ".join(f"{s:>9}" for s in settings)
    print(head + "  " + " ".join(f"{a + '/' + b:>11}" for a, b in pairs))
    for case in cases:
        row = f"{case[0]:>3}px b{case[1]:<4} " + " ".join(
            f"{statistics.median(speeds[s, case]):9.0f}" for s in settings
        )
        for a, b in pairs:
            ratios = [x / y for x, y in zip(speeds[a, case], speeds[b, case], strict=True)]
            row += f"  {statistics.median(ratios):10.2f}x"
        print(row)
    print("\nfirst step (trace + compile + one step), seconds")
    for case in cases:
        print(
            f"{case[0]:>3}px b{case[1]:<4} "
            + " ".join(f"{s}={first[s, case]:.2f}" for s in settings)
        )


if __name__ == "__main__":
    main()
