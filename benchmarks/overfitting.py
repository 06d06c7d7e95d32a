"""Show the seed's lesson: on a small dataset a CNN overfits; dropout and augmentation help.

Trains the default CNN four ways (plain, dropout only, augmentation only, both) on small
real subsets — 50 images per class of Fashion-MNIST and the ants/bees photos from
../shared/data — and prints train accuracy, validation accuracy and their gap (both measured
without dropout or augmentation, on the best-epoch model). Writes overfitting_curves.png.

    python benchmarks/overfitting.py [--epochs 30] [--out /tmp/overfitting]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

VARIANTS = {
    "plain": {"dropout": 0.0, "augment": "none"},
    "dropout": {"dropout": 0.5, "augment": "none"},
    "augment": {"dropout": 0.0, "augment": "default"},
    "both": {"dropout": 0.5, "augment": "default"},
}


def fashion_subset(out: Path, per_class: int) -> Path | None:
    """50 (per_class) Fashion-MNIST training images per class as PNG class folders."""
    if not (SHARED / "fashion_mnist").is_dir():
        return None
    target = out / f"fashion_{per_class}"
    if not target.exists():
        subprocess.run(
            [
                sys.executable,
                str(SHARED / "expand_idx.py"),
                str(SHARED / "fashion_mnist"),
                str(target),
                "--split",
                "train",
                "--limit-per-class",
                str(per_class),
            ],
            check=True,
            capture_output=True,
        )
    return target


def run_variant(
    data: Path, out: Path, image_size: int, channels: int, epochs: int, dropout: float, augment: str
):
    """Train one variant through the library; returns (history, train_acc, val_acc)."""
    from cnncli.augment.ops import resolve_ops
    from cnncli.config import AugmentConfig, RunConfig, validate
    from cnncli.inference.bundle import load_bundle
    from cnncli.inference.predict import make_classifier
    from cnncli.training.execute import execute_run, load_split
    from cnncli.training.run import plan_new_run

    cfg = RunConfig()
    cfg.data.image_size, cfg.data.channels = image_size, channels
    cfg.model.dropout = dropout
    cfg.augment = AugmentConfig(preset=augment)
    cfg.train.epochs, cfg.train.batch_size = epochs, 32
    resolve_ops(cfg.augment.preset, cfg.augment.ops)
    plan = plan_new_run(data, validate(cfg), out)
    outcome = execute_run(plan)
    bundle = load_bundle(out)
    classify = make_classifier(bundle, 64)

    def accuracy(split):
        arrays, _ = load_split(plan, split)
        probs = np.concatenate(
            [classify(arrays.images[i : i + 64]) for i in range(0, len(arrays), 64)]
        )
        return float((probs.argmax(1) == arrays.labels).mean())

    return outcome.history, accuracy("train"), accuracy("val")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="cnn-overfitting-"))
    work.mkdir(parents=True, exist_ok=True)
    datasets = []
    fm = fashion_subset(work, args.per_class)
    if fm is None:
        print(f"skip Fashion-MNIST: {SHARED / 'fashion_mnist'} not found")
    else:
        datasets.append((f"Fashion-MNIST {args.per_class}/class", fm, 28, 1))
    if (SHARED / "hymenoptera_data").is_dir():
        datasets.append(("ants/bees photos", SHARED / "hymenoptera_data", 64, 3))
    else:
        print(f"skip ants/bees: {SHARED / 'hymenoptera_data'} not found")
    results = []
    for title, data, size, channels in datasets:
        for name, variant in VARIANTS.items():
            out = work / f"{data.name}_{name}"
            history, train_acc, val_acc = run_variant(
                data, out, size, channels, args.epochs, **variant
            )
            results.append((title, name, history, train_acc, val_acc))
            print(
                f"{title:28s} {name:8s} train {100 * train_acc:5.1f}%  val {100 * val_acc:5.1f}%  gap {100 * (train_acc - val_acc):5.1f} pts",
                flush=True,
            )
    print(
        "\n| data | variant | train acc | val acc | gap (points) |\n| --- | --- | ---: | ---: | ---: |"
    )
    for title, name, _, train_acc, val_acc in results:
        print(
            f"| {title} | {name} | {100 * train_acc:.1f}% | {100 * val_acc:.1f}% | {100 * (train_acc - val_acc):.1f} |"
        )
    if results:
        plot(results, work / "overfitting_curves.png")
        print(f"\ncurves: {work / 'overfitting_curves.png'}")


def plot(results, path: Path) -> None:
    """Val accuracy per epoch for each variant, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = list(dict.fromkeys(r[0] for r in results))
    fig, axes = plt.subplots(1, len(titles), figsize=(6 * len(titles), 4), squeeze=False)
    for ax, title in zip(axes[0], titles, strict=True):
        for t, name, history, _, _ in results:
            if t == title:
                ax.plot(
                    [h["epoch"] for h in history],
                    [h["val_acc"] for h in history],
                    label=f"{name} (val)",
                )
                ax.plot(
                    [h["epoch"] for h in history],
                    [h["train_acc"] for h in history],
                    "--",
                    alpha=0.5,
                    label=f"{name} (train)",
                )
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
