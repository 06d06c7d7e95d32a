"""Prediction throughput: `cnn predict` on a folder against the pure forward pass (and PyTorch).

Everything is measured in alternating rounds in this one process, with cnn's own XLA
settings (cnncli.training.xla_env), so a noisy machine slows each part alike:

  cli       `cnn predict DIR --json` as a fresh process: start-up, decode, forward, output
  library   cnncli.inference.predict.predict_paths (decode + forward; compile from jax's cache)
  decode    cnncli.data.decode.decode_image alone, every file
  forward   the jitted classifier on already-decoded uint8 batches (softmax included);
            full batches only, so its images/s compare with torch's like for like
  torch     the same network in PyTorch eager, no_grad, on the same batches (if installed)
  torch1    the same on one thread (torch's threads can stall each other on a shared machine)

PyTorch runs in this process, so it gets the malloc settings cnn makes
(cnncli.training.xla_env.configure_malloc) too: the same allocator for both.

    .venv/bin/python benchmarks/predict.py [--images DIR] [--rounds 5] [--batch-size 64]

The model is the default CNN at 64x64 (conv 32/64/128, dense 128) with seeded random
weights: speed does not depend on what the weights learned.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "hymenoptera_data"
CLASSES = ["ants", "bees"]


def write_bundle(directory: Path, size: int) -> Path:
    """A model/ bundle of the default CNN with seeded random weights."""
    from cnncli.config import DataConfig, RunConfig
    from cnncli.inference.bundle import save_bundle
    from cnncli.model.flax_module import init_weights

    cfg = RunConfig(data=DataConfig(image_size=size, channels=3))
    params, stats = init_weights(
        cfg.model, image_size=size, channels=3, num_classes=len(CLASSES), seed=0
    )
    save_bundle(directory, cfg, CLASSES, params, stats)
    return directory


def torch_forward(bundle):
    """PyTorch eager forward of the bundle's network (same layers, NCHW), or None."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return None
    layers, cin = [], bundle.channels
    for block in bundle.model.conv:
        layers += [nn.Conv2d(cin, block.filters, block.kernel, padding="same"), nn.ReLU()]
        layers.append(nn.MaxPool2d(block.pool))
        cin = block.filters
    height, width = (side // 2 ** len(bundle.model.conv) for side in bundle.image_hw)
    units = cin * height * width
    layers.append(nn.Flatten())
    for width in bundle.model.dense:
        layers += [nn.Linear(units, width), nn.ReLU()]
        units = width
    layers.append(nn.Linear(units, len(bundle.classes)))
    model = nn.Sequential(*layers).eval()

    default_threads = torch.get_num_threads()

    def run(batch_u8, threads=None):
        torch.set_num_threads(threads or default_threads)
        with torch.no_grad():
            x = torch.from_numpy(batch_u8).permute(0, 3, 1, 2).float() * (2.0 / 255.0) - 1.0
            return torch.softmax(model(x), dim=-1).numpy()

    return run


def main() -> None:
    """Parse options, time each part in alternating rounds, print images/s and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of images")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    if not args.images.is_dir():
        print(f"skipped: {args.images} not present (see ../shared/data/README.md)")
        return

    work = Path(tempfile.mkdtemp(prefix="cnn-bench-predict-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # jax's compile cache, kept private
    from cnncli.training.xla_env import configure_xla

    configure_xla()
    import numpy as np

    from cnncli.data.decode import decode_image
    from cnncli.inference.bundle import load_bundle
    from cnncli.inference.predict import collect_inputs, make_classifier, predict_paths

    bundle = load_bundle(write_bundle(work / "model", args.image_size))
    paths, _ = collect_inputs([str(args.images)])
    n, bs = len(paths), args.batch_size
    decoded = np.stack([decode_image(p, bundle.resize, bundle.channels) for p in paths])
    # The forward parts run full batches only: classify pads a short batch to the compiled
    # size, torch would not, and that would not compare like with like.
    batches = [decoded[i : i + bs] for i in range(0, n - bs + 1, bs)]
    classify = make_classifier(bundle, bs)
    torch_run = torch_forward(bundle)
    cli = [sys.executable, "-m", "cnncli", "predict", str(args.images), "--model", str(work)]

    def run_cli():
        subprocess.run([*cli, "--json"], check=True, stdout=subprocess.DEVNULL)

    parts = {
        "cli": run_cli,
        "library": lambda: predict_paths(bundle, paths, batch_size=bs),
        "decode": lambda: [decode_image(p, bundle.resize, bundle.channels) for p in paths],
        "forward": lambda: [classify(b) for b in batches],
    }
    if torch_run is not None:
        parts["torch"] = lambda: [torch_run(b) for b in batches]
        parts["torch1"] = lambda: [torch_run(b, threads=1) for b in batches]
    for fn in parts.values():  # warm-up: compile, fill the compile cache and the page cache
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in parts}
    for r in range(args.rounds):
        names = list(parts)
        for name in names[r % len(names) :] + names[: r % len(names)]:
            started = time.perf_counter()
            parts[name]()
            seconds[name].append(time.perf_counter() - started)
        print(f"# round {r + 1}/{args.rounds}", file=sys.stderr)

    import jax

    print(
        f"{n} images from {args.images}, model {args.image_size}px default CNN, batch {bs}, "
        f"jax {jax.__version__}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    print(f"{'part':<9} {'images/s':>9} {'seconds':>8}   (medians of {args.rounds} rounds)")
    full = len(batches) * bs
    for name, values in seconds.items():
        count = full if name in ("forward", "torch", "torch1") else n
        print(
            f"{name:<9} {count / statistics.median(values):9.0f} {statistics.median(values):8.3f}"
        )

    def ratio(top: list[str], bottom: list[str], times=seconds) -> float:
        """Median over rounds of sum(top times) / sum(bottom times)."""
        rounds = range(args.rounds)
        return statistics.median(
            sum(times[a][i] for a in top) / sum(times[b][i] for b in bottom) for i in rounds
        )

    # The forward ran full batches only: scaled to all n images to compare with the library.
    all_n = {**seconds, "forward": [t * n / full for t in seconds["forward"]]}
    print(f"library / forward time:          {ratio(['library'], ['forward'], all_n):6.2f}x")
    print(
        f"library / (decode + forward):    {ratio(['library'], ['decode', 'forward'], all_n):6.2f}x"
    )
    print(f"cli / library time:              {ratio(['cli'], ['library']):6.2f}x")
    if "torch" in seconds:
        print(f"forward speed, jax / torch:      {ratio(['torch'], ['forward']):6.2f}x")
        print(f"forward speed, jax / torch1:     {ratio(['torch1'], ['forward']):6.2f}x")


if __name__ == "__main__":
    main()
