"""Wall time of `cnn predict one.jpg --model RUN` as a fresh process, the way a user sees it.

Runs alternate between the variants so a noisy machine slows them alike; prints medians.

    .venv/bin/python benchmarks/predict_coldstart.py                 # trains a model first
    .venv/bin/python benchmarks/predict_coldstart.py --model runs/train --runs 11
    .venv/bin/python benchmarks/predict_coldstart.py --compare /tmp/cnn-old   # another source tree

Variants: `first` (an empty compilation cache: the very first prediction with a model),
`cached` (jax's persistent compilation cache already holds the program: every later one),
and with --compare the same two for the other tree (e.g. `git archive HEAD~3 | tar -x -C
/tmp/cnn-old`). The user's own cache folders are never touched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cnn_command(source: Path, *args: str) -> list[str]:
    """`python -m cnncli ARGS` with cnncli imported from `source`."""
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(source)!r}); "
            "from cnncli.cli import main; sys.argv[0] = 'cnn'; main()", *args]  # fmt: skip


def train_model(work: Path) -> Path:
    """Train the default network for one epoch on sample_data (about ten seconds)."""
    run = work / "run"
    cmd = cnn_command(ROOT, "train", str(ROOT / "sample_data"), "--epochs", "1", "--out", str(run))
    subprocess.run([*cmd, "--quiet"], check=True, env=isolated_env(work / "train-cache"))
    return run


def isolated_env(cache_home: Path) -> dict[str, str]:
    """The caller's environment with cnn's and jax's caches under cache_home.

    Bytecode is cached (outside the source tree) as in any installed package, even where
    PYTHONDONTWRITEBYTECODE is set: recompiling cnncli on every run would add ~0.1 s.
    """
    skip = ("JAX_COMPILATION_CACHE", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env["XDG_CACHE_HOME"] = str(cache_home)
    env["PYTHONPYCACHEPREFIX"] = str(cache_home.parent / "pycache")
    return env


def time_predict(source: Path, model: Path, image: Path, cache_home: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `cnn predict`, from process start to exit.

    CPU time (user + system) is the steadier number on a shared machine: waiting for a
    core does not count in it.
    """
    cmd = cnn_command(source, "predict", str(image), "--model", str(model), "--quiet")
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=isolated_env(cache_home), stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"cnn predict failed (exit code {proc.returncode}): {' '.join(cmd)}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    """Parse options, time the variants in alternation, print medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="run or model folder [default: train one]")
    parser.add_argument("--image", type=Path, help="the image [default: one from sample_data]")
    parser.add_argument("--runs", type=int, default=7, help="runs per variant")
    parser.add_argument("--compare", type=Path, help="another cnn source tree to time as well")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cnn-coldstart-"))
    try:
        model = args.model or train_model(work)
        image = args.image or next((ROOT / "sample_data").rglob("*.png"))
        sources = {"this tree": ROOT}
        if args.compare:
            sources[f"{args.compare}"] = args.compare.resolve()
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for r in range(args.runs):
            for name, source in sources.items():
                warm = work / f"warm-{len(name)}-{abs(hash(name))}"
                if r == 0:  # fill the persistent cache once
                    time_predict(source, model, image, warm)
                fresh = work / f"fresh-{r}-{abs(hash(name))}"
                times.setdefault((name, "first"), []).append(
                    time_predict(source, model, image, fresh)
                )
                times.setdefault((name, "cached"), []).append(
                    time_predict(source, model, image, warm)
                )
            print(f"# run {r + 1}/{args.runs}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"cnn predict <1 image> --model <default CNN>: seconds over {args.runs} runs")
    print(f"{'source':<32} {'variant':<8} {'wall':>6} {'min':>6} {'max':>6} {'CPU':>6}")
    for (name, variant), pairs in times.items():
        wall = [w for w, _ in pairs]
        cpu = statistics.median(c for _, c in pairs)
        print(
            f"{name:<32} {variant:<8} {statistics.median(wall):6.2f} {min(wall):6.2f} "
            f"{max(wall):6.2f} {cpu:6.2f}"
        )
    print("(wall: median, min, max; CPU: median user + system seconds)")


if __name__ == "__main__":
    main()
