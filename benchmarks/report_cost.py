"""What the HTML report adds to `cnn train sample_data`: training's wall time (from the
run's timing.json) against building report.html in a fresh process, with an empty
compilation cache (`cold`, as at the end of the first run of a network) and a filled one
(`warm`), alternating rounds.

    .venv/bin/python benchmarks/report_cost.py --rounds 3
    .venv/bin/python benchmarks/report_cost.py --run runs/train   # an existing run
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
# As at the end of `cnn train`: jax is imported and configured; only the report is timed.
BUILD = (
    "import time; from cnncli.training.xla_env import configure_xla; configure_xla(); "
    "import jax.numpy as jnp; jnp.zeros(1).block_until_ready(); "
    "from cnncli.reporting.htmlreport import write_report; "
    "t = time.perf_counter(); write_report({run!r}); print(time.perf_counter() - t)"
)


def build(run: Path, cache: str) -> tuple[float, float]:
    """(seconds building the report inside the process, process wall seconds)."""
    env = {**os.environ, "XDG_CACHE_HOME": cache}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", BUILD.format(run=str(run))],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.split()[-1]), time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, help="an existing run folder (default: train one)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    run = args.run
    if run is None:
        run = Path(tempfile.mkdtemp()) / "run"
        cmd = [
            sys.executable,
            "-m",
            "cnncli",
            "train",
            str(ROOT / "sample_data"),
            "--out",
            str(run),
            "-q",
        ]
        subprocess.run(cmd, check=True)
    timing = json.loads((run / "timing.json").read_text())
    train_s = sum(s.get("wall_s", 0) for s in timing["sessions"])
    warm_cache = tempfile.mkdtemp()
    build(run, warm_cache)  # fills warm_cache
    cold, warm = [], []
    for r in range(args.rounds):
        order = [("cold", None), ("warm", warm_cache)]
        for name, cache in order if r % 2 == 0 else order[::-1]:
            seconds, _ = build(run, cache or tempfile.mkdtemp())
            (cold if name == "cold" else warm).append(seconds)
    c, w = statistics.median(cold), statistics.median(warm)
    print(
        f"run {run}: training {train_s:.1f} s (timing.json), {timing['machine'].get('cpus')} CPUs"
    )
    print(f"report.html build (collect + render, jax already imported), median of {args.rounds}:")
    print(f"  cold compile cache {c:.2f} s = {100 * c / train_s:.1f} % of training")
    print(f"  warm compile cache {w:.2f} s = {100 * w / train_s:.1f} % of training")


if __name__ == "__main__":
    main()
