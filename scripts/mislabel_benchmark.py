"""How well `cnn doctor` finds mislabeled images: flip 5 % of real Fashion-MNIST labels
(files copied into wrong class folders), get out-of-fold predictions (K models, each
scoring the fold it never saw), run `cnn doctor DIR --oof oof.csv` and compare the
flagged files with the known flips (precision, recall). Also the in-sample route,
`cnn doctor DIR --model RUN`, on one model trained on everything.

    flock /work/cpu.lock python scripts/mislabel_benchmark.py --per-class 100 --folds 5

The K-fold training uses `cnn train DIR --labels folds.csv` with a split column (fold k
is `val`), so it needs nothing beyond `cnn`; each fold's model then classifies its val
images. Prints one JSON line per route.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_noisy_tree(out: Path, per_class: int, rate: float, seed: int) -> set[str]:
    """out/clean (expanded) and out/noisy (same files, `rate` of them in a wrong class
    folder); returns the flipped files' paths relative to out/noisy."""
    clean = out / "clean"
    if not clean.exists():
        subprocess.run(
            [
                sys.executable,
                str(SHARED / "expand_idx.py"),
                str(SHARED / "fashion_mnist"),
                str(clean),
                "--split",
                "train",
                "--limit-per-class",
                str(per_class),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    classes = sorted(p.name for p in clean.iterdir() if p.is_dir())
    files = sorted((c, f.name) for c in classes for f in (clean / c).iterdir())
    rng = random.Random(seed)
    flipped = set(rng.sample(range(len(files)), round(rate * len(files))))
    noisy = out / "noisy"
    shutil.rmtree(noisy, ignore_errors=True)
    truth = set()
    for i, (cls, name) in enumerate(files):
        target = cls
        if i in flipped:
            target = rng.choice([c for c in classes if c != cls])
            truth.add(f"{target}/{name}")
        (noisy / target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clean / cls / name, noisy / target / name)
    return truth


def train(data: Path, out: Path, args, extra: list[str]) -> None:
    cmd = [sys.executable, "-m", "cnncli", "train", str(data), "--out", str(out), "--quiet"]
    cmd += ["--image-size", "28", "--channels", "1", "--epochs", str(args.epochs)]
    cmd += ["--seed", str(args.seed), *extra]
    if args.augment != "auto":  # auto: the recipe's choice for the data
        cmd += ["--augment", args.augment]
    subprocess.run(cmd, check=True)


def out_of_fold(noisy: Path, work: Path, args) -> Path:
    """oof.csv (path,label,fold,p_<class>...) from K runs on a labels file with a split column."""
    import numpy as np

    from cnncli.inference.bundle import load_bundle
    from cnncli.inference.predict import evaluate_items

    items = sorted((f"{c.name}/{f.name}", c.name) for c in noisy.iterdir() for f in c.iterdir())
    rng = random.Random(args.seed)
    by_class: dict[str, list[int]] = {}
    for i, (_, label) in enumerate(items):
        by_class.setdefault(label, []).append(i)
    fold_of = [0] * len(items)
    for members in by_class.values():  # stratified: each class dealt round-robin
        rng.shuffle(members)
        for n, i in enumerate(members):
            fold_of[i] = n % args.folds
    rows = {}
    classes = None
    for k in range(args.folds):
        labels = work / f"fold{k + 1}.csv"
        with labels.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "label", "split"])
            for (path, label), f in zip(items, fold_of, strict=True):
                w.writerow([path, label, "val" if f == k else "train"])
        run = work / f"fold{k + 1}"
        shutil.rmtree(run, ignore_errors=True)
        train(noisy, run, args, ["--labels", str(labels)])
        bundle = load_bundle(run)
        classes = bundle.classes
        held = [
            (p, classes.index(lab)) for (p, lab), f in zip(items, fold_of, strict=True) if f == k
        ]
        logp, _, paths, _ = evaluate_items(bundle, noisy, held)
        for path, lp in zip(paths, np.exp(logp), strict=True):
            rows[str(Path(path).relative_to(noisy))] = (k + 1, lp)
        shutil.rmtree(run / "cache", ignore_errors=True)
    oof = work / "oof.csv"
    with oof.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "fold", *(f"p_{c}" for c in classes)])
        for path in sorted(rows):
            fold, p = rows[path]
            w.writerow([path, path.split("/")[0], fold, *(f"{v:.8g}" for v in p)])
    return oof


def score(flagged: list[dict], truth: set[str]) -> dict:
    found = {row["path"] for row in flagged}
    hits = len(found & truth)
    return {
        "flagged": len(found),
        "flipped": len(truth),
        "true_positives": hits,
        "precision": round(hits / len(found), 3) if found else None,
        "recall": round(hits / len(truth), 3) if truth else None,
    }


def doctor(noisy: Path, extra: list[str]) -> list[dict]:
    cmd = [sys.executable, "-m", "cnncli", "doctor", str(noisy), "--json", "--near-distance", "-1"]
    done = subprocess.run([*cmd, *extra], capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise SystemExit(done.stderr)
    return json.loads(done.stdout)["label_issues"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/cnn-mislabel"))
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--rate", type=float, default=0.05)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--augment", default="auto", help="auto (the recipe's), none, or ops")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-model", action="store_true", help="only the out-of-fold route")
    ap.add_argument(
        "--route",
        choices=["doctor-folds", "labels"],
        default="doctor-folds",
        help="out-of-fold predictions from `cnn doctor --folds K`, or from K runs of "
        "`cnn train --labels` with a split column (--epochs)",
    )
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    truth = make_noisy_tree(args.work, args.per_class, args.rate, args.seed)
    noisy = args.work / "noisy"
    setting = {
        "images": sum(1 for _ in noisy.rglob("*.png")),
        "epochs": args.epochs,
        "augment": args.augment,
        "seed": args.seed,
    }
    started = time.perf_counter()
    if args.route == "doctor-folds":  # the user's path: cnn doctor DIR --folds K
        flagged = doctor(noisy, ["--folds", str(args.folds)])
        route = f"cnn doctor --folds {args.folds} (cnn train --folds, recipe defaults)"
    else:
        oof = out_of_fold(noisy, args.work, args)
        flagged = doctor(noisy, ["--oof", str(oof)])
        route = f"--oof ({args.folds} folds, --epochs {args.epochs})"
    result = score(flagged, truth)
    seconds = round(time.perf_counter() - started)
    print(json.dumps({"route": route, **setting, **result, "seconds": seconds}), flush=True)
    if args.skip_model:
        return
    started = time.perf_counter()
    run = args.work / "whole"
    shutil.rmtree(run, ignore_errors=True)
    train(noisy, run, args, [])
    result = score(doctor(noisy, ["--model", str(run)]), truth)
    seconds = round(time.perf_counter() - started)
    print(json.dumps({"route": "--model (in-sample)", **setting, **result, "seconds": seconds}))


if __name__ == "__main__":
    main()
