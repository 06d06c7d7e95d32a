"""Warm-start experiments on Fashion-MNIST (docs/results.md, "Warm starts").

(a) New classes from few images: train the `resnet` preset on 5 classes (all their train
    images), then 20 images per class of the other 5: from scratch, `--init RUN` (head-only
    epochs, then everything at lr / 10) and `--init RUN --freeze`; test accuracy on those 5
    classes' test images.
(b) A new class: train on 9 classes, then `--init` that run on all 10; per-class test
    accuracy against a from-scratch run on the 10, and the epochs the warm start needs to
    reach the scratch run's best val accuracy.

Needs the images expanded by ../shared/data/expand_idx.py (train and test, all classes):

    python ../shared/data/expand_idx.py ../shared/data/fashion_mnist DATA/fm_train --split train
    python ../shared/data/expand_idx.py ../shared/data/fashion_mnist DATA/fm_test --split test
    flock /work/cpu.lock .venv/bin/python scripts/warm_start_experiments.py DATA --out OUT

Class folders for each experiment are made of hard links (no copies). Prints JSON lines and
writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

OLD5 = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat"]
NEW5 = ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot"]
NEW_CLASS = "Shirt"  # (b): the class added to a 9-class run (the hardest one)
COMMON = ["--recipe", "fixed", "--channels", "1", "--image-size", "28", "--seed", "0"]
SCRATCH = ["--model", "resnet"]


def link_tree(src: Path, dst: Path, classes: list[str], limit: int | None) -> Path:
    """dst/<class>/ with hard links to the first `limit` files of src/<class>/."""
    for name in classes:
        folder = dst / name
        if folder.is_dir():
            continue
        folder.mkdir(parents=True)
        for path in sorted((src / name).iterdir())[:limit]:
            os.link(path, folder / path.name)
    return dst


def cnn(*args: str) -> tuple[dict, float]:
    """Run the CLI with --json; (its last JSON line, wall seconds)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cnncli", *args, "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"cnn {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), seconds


def train(data: Path, out: Path, *flags: str) -> dict:
    """Train (or reuse a finished run in `out`); the summary plus metrics.csv and seconds."""
    if not (out / "summary.json").is_file():
        summary, seconds = cnn("train", str(data), "--out", str(out), *flags)
        summary["seconds"] = round(seconds, 1)
        (out / "experiment_seconds.json").write_text(json.dumps({"seconds": summary["seconds"]}))
    else:
        summary = json.loads((out / "summary.json").read_text())
        timing = out / "experiment_seconds.json"
        summary["seconds"] = json.loads(timing.read_text())["seconds"] if timing.is_file() else None
    with (out / "metrics.csv").open() as fh:
        summary["val_acc_by_epoch"] = [float(r["val_acc"]) for r in csv.DictReader(fh)]
    return summary


def evaluate(run: Path, data: Path) -> dict:
    """Test accuracy and per-class recall (= per-class accuracy) of a run on a class tree."""
    metrics, _ = cnn("eval", str(run), str(data), "--out", str(run / "test_eval"))
    per_class = {c["name"]: c["recall"] for c in metrics["per_class"]}
    return {"accuracy": metrics["top1"], "per_class": per_class}


def experiment_a(data: Path, out: Path, epochs: int) -> dict:
    old = link_tree(data / "fm_train", out / "a_old5", OLD5, None)
    few = link_tree(data / "fm_train", out / "a_new5_20", NEW5, 20)
    test = link_tree(data / "fm_test", out / "a_new5_test", NEW5, None)
    base = train(old, out / "a_base", *COMMON, *SCRATCH, "--epochs", "2", "--batch-size", "128")
    runs = {
        "scratch": train(few, out / "a_scratch", *COMMON, *SCRATCH, "--epochs", str(epochs)),
        "init": train(
            few, out / "a_init", *COMMON, "--init", str(out / "a_base"), "--epochs", str(epochs)
        ),
        "init_freeze": train(
            few, out / "a_freeze", *COMMON, "--init", str(out / "a_base"), "--freeze"
        ),
    }
    result = {"base": {"best_val_acc": base["best_val_acc"], "seconds": base["seconds"]}}
    for name, summary in runs.items():
        tested = evaluate(
            out / {"scratch": "a_scratch", "init": "a_init"}.get(name, "a_freeze"), test
        )
        result[name] = {**tested, "seconds": summary["seconds"], "epochs": summary["epochs"]}
    return result


def experiment_b(data: Path, out: Path, per_class: int, epochs: int) -> dict:
    nine = [c for c in OLD5 + NEW5 if c != NEW_CLASS]
    train9 = link_tree(data / "fm_train", out / "b_9", nine, per_class)
    train10 = link_tree(data / "fm_train", out / "b_10", OLD5 + NEW5, per_class)
    test = link_tree(data / "fm_test", out / "b_test", OLD5 + NEW5, None)
    flags = [*COMMON, "--epochs", str(epochs)]
    base = train(train9, out / "b_base9", *flags, *SCRATCH)
    scratch = train(train10, out / "b_scratch10", *flags, *SCRATCH)
    warm = train(train10, out / "b_init10", *flags, "--init", str(out / "b_base9"))
    target = max(scratch["val_acc_by_epoch"])
    reached = next((i + 1 for i, acc in enumerate(warm["val_acc_by_epoch"]) if acc >= target), None)
    return {
        "base9": {"best_val_acc": base["best_val_acc"], "seconds": base["seconds"]},
        "scratch10": {**evaluate(out / "b_scratch10", test), "seconds": scratch["seconds"]},
        "init10": {**evaluate(out / "b_init10", test), "seconds": warm["seconds"]},
        "scratch_val_by_epoch": scratch["val_acc_by_epoch"],
        "init_val_by_epoch": warm["val_acc_by_epoch"],
        "epochs_to_scratch_best_val": reached,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder holding fm_train/ and fm_test/")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", choices=("a", "b"), default=None)
    parser.add_argument("--epochs-a", type=int, default=15)
    parser.add_argument("--per-class-b", type=int, default=200)
    parser.add_argument("--epochs-b", type=int, default=6)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    if args.only in (None, "a"):
        results["a"] = experiment_a(args.data, args.out, args.epochs_a)
        print(json.dumps({"a": results["a"]}), flush=True)
        results_path.write_text(json.dumps(results, indent=2))
    if args.only in (None, "b"):
        results["b"] = experiment_b(args.data, args.out, args.per_class_b, args.epochs_b)
        print(json.dumps({"b": results["b"]}), flush=True)
        results_path.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
