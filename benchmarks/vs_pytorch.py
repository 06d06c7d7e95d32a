"""The CPU peer job: `cnn train` against PyTorch eager + DataLoader, launch to saved model.

    flock /work/cpu.lock .venv/bin/python benchmarks/vs_pytorch.py --rounds 3

Data: a 10k-image Fashion-MNIST PNG folder (1,000 per class, ../shared/data/expand_idx.py),
or --data DIR. Both sides train the reference CNN of benchmarks/ (conv 3x3 32/64/128 each
with ReLU and 2x2 max pool, dense 128 + ReLU + dropout 0.3, 10 logits) on 28x28 grey
images for 5 epochs: Adam at 1e-3 with one epoch of linear warm-up then cosine decay,
batch 64, 80/20 stratified split, validation after every epoch, the best epoch's weights
saved. PyTorch decodes the PNGs in a Dataset served by DataLoader(num_workers=2), as its
tutorials do, with torch.set_num_threads 1 and 2 (on 2 shared cores one thread has run
faster). cnn runs as `cnn train` in a fresh process with its compilation cache empty
(`cold`) and filled by a previous run (`warm`).

Every setting is a fresh process; rounds alternate the settings (rotating who goes first).
Prints wall seconds from launch to saved model (medians), launch to the first finished
train step, and cnn's ratio to PyTorch's best setting. PyTorch is optional
(`pip install -e '.[bench]'`); without it only cnn's times are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
EPOCHS, BATCH, LR, CLASSES = 5, 64, 1e-3, 10
CNN_FLAGS = [
    "--image-size", "28", "--channels", "1", "--filters", "32,64,128", "--dense", "128",
    "--dropout", "0.3", "--batch-size", str(BATCH), "--lr", str(LR), "--epochs", str(EPOCHS),
    "--val-fraction", "0.2", "--recipe", "fixed", "-q",
]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--settings", default="cnn-cold,cnn-warm,torch1,torch2")
    p.add_argument("--data", type=Path, help="a class-folder tree (default: 10k FMNIST PNGs)")
    if sys.argv[1:2] == ["--child"]:  # one timed process (see run())
        return child(sys.argv[2:])
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cnn-vs-pytorch-"))
    try:
        data = args.data or make_data(work / "fm10k")
        settings = args.settings.split(",")
        if any(s.startswith("torch") for s in settings) and not has_torch():
            print("PyTorch is not installed: its settings are left out")
            settings = [s for s in settings if not s.startswith("torch")]
        results = {s: [] for s in settings}
        warm_cache = work / "warm-cache"
        if "cnn-warm" in settings:
            run("cnn-cold", data, work / "fill", warm_cache)  # fills the warm cache
        for r in range(args.rounds):
            for s in settings[r % len(settings) :] + settings[: r % len(settings)]:
                cache = warm_cache if s == "cnn-warm" else work / f"cold-{r}-{s}"
                out = run(s, data, work / f"run-{r}-{s}", cache)
                results[s].append(out)
                print(
                    f"round {r + 1} {s}: {out['wall']:.1f} s (first step {out['first_step']:.1f} s)",
                    flush=True,
                )
        report(results)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def make_data(out: Path) -> Path:
    expand = SHARED / "expand_idx.py"
    if not expand.is_file():
        raise SystemExit(f"{expand} not found: pass --data DIR")
    subprocess.run(
        [sys.executable, str(expand), str(SHARED / "fashion_mnist"), str(out), "--split", "train",
         "--limit-per-class", "1000"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return out


def has_torch() -> bool:
    return (
        subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0
    )


def run(setting: str, data: Path, out: Path, cache: Path) -> dict:
    """One fresh process of `setting`; its wall time and launch-to-first-step time."""
    stamps = out.parent / f"{out.name}.json"
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    if setting.startswith("cnn"):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "cnn",
            str(stamps),
            "train",
            str(data),
            "--out",
            str(out),
            *CNN_FLAGS,
        ]
    else:
        threads = setting.removeprefix("torch")
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "torch",
            str(stamps),
            threads,
            str(data),
            str(out),
        ]
    launched = time.time()
    subprocess.run(cmd, check=True, env=env)
    wall = time.time() - launched
    saved = out / ("model/model.json" if setting.startswith("cnn") else "model.pt")
    if not saved.is_file():
        raise SystemExit(f"{setting}: no saved model at {saved}")
    marks = json.loads(stamps.read_text())
    return {
        "wall": wall,
        "first_step": marks["first_step"] - launched,
        "val_acc": marks.get("val_acc"),
    }


def report(results: dict) -> None:
    med = {s: statistics.median(r["wall"] for r in rs) for s, rs in results.items() if rs}
    first = {s: statistics.median(r["first_step"] for r in rs) for s, rs in results.items() if rs}
    print("\n| setting | launch to saved model, s (median) | launch to first step, s | runs |")
    print("| --- | ---: | ---: | --- |")
    for s in med:
        runs = ", ".join(f"{r['wall']:.1f}" for r in results[s])
        print(f"| {s} | {med[s]:.1f} | {first[s]:.1f} | {runs} |")
    torch_best = min((v for s, v in med.items() if s.startswith("torch")), default=None)
    if torch_best:
        for s in (s for s in med if s.startswith("cnn")):
            print(f"{s} / PyTorch's best: {med[s] / torch_best:.2f}x (target <= 0.8x)")
    for s, rs in results.items():
        accs = [r["val_acc"] for r in rs if r.get("val_acc") is not None]
        if accs:
            print(f"{s}: best val acc {', '.join(f'{100 * a:.1f}%' for a in accs)}")


# ---------------------------------------------------------------------------- children


def child(argv: list[str]) -> None:
    kind, stamps, *rest = argv
    if kind == "cnn":
        return cnn_child(Path(stamps), rest)
    return torch_child(Path(stamps), int(rest[0]), Path(rest[1]), Path(rest[2]))


def cnn_child(stamps: Path, argv: list[str]) -> None:
    """`cnn train ...` as the console script runs it, noting when the first step is done."""
    sys.path.insert(0, str(ROOT))
    from cnncli.training.xla_env import configure_xla

    configure_xla()  # what `cnn train` does first; then the hook may import jax
    from cnncli.training import train

    marks = {}
    original = train._accumulate

    def noted(*args, **kwargs):
        marks.setdefault("first_step", time.time())
        return original(*args, **kwargs)

    train._accumulate = noted
    sys.argv = ["cnn", *argv]
    from cnncli.cli import main

    try:
        main()
    except SystemExit as exc:
        if exc.code:
            raise
    summary = json.loads((Path(argv[argv.index("--out") + 1]) / "summary.json").read_text())
    marks["val_acc"] = summary["best_val_acc"]
    stamps.write_text(json.dumps(marks))


def torch_child(stamps: Path, threads: int, data: Path, out: Path) -> None:
    """The same job in PyTorch eager with a DataLoader of 2 worker processes."""
    import math

    import numpy as np
    import torch
    from PIL import Image
    from torch import nn
    from torch.utils.data import DataLoader, Dataset

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    classes = sorted(p.name for p in data.iterdir() if p.is_dir())
    rng = np.random.default_rng(0)
    train_items, val_items = [], []
    for label, name in enumerate(classes):
        files = sorted((data / name).glob("*.png"))
        order = rng.permutation(len(files))
        n_val = round(0.2 * len(files))
        val_items += [(files[i], label) for i in order[:n_val]]
        train_items += [(files[i], label) for i in order[n_val:]]

    class PNGs(Dataset):
        def __init__(self, items):
            self.items = items

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            path, label = self.items[i]
            with Image.open(path) as im:
                x = np.asarray(im.convert("L"), np.float32)
            return torch.from_numpy(x * (2 / 255) - 1).unsqueeze(0), label

    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]

    model = nn.Sequential(
        *block(1, 32), *block(32, 64), *block(64, 128), nn.Flatten(),
        nn.Linear(128 * 3 * 3, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, CLASSES),
    )  # fmt: skip
    loader = DataLoader(
        PNGs(train_items), BATCH, shuffle=True, num_workers=2, persistent_workers=True
    )
    val_loader = DataLoader(PNGs(val_items), 256, num_workers=2, persistent_workers=True)
    steps = EPOCHS * len(loader)
    warm = len(loader)
    opt = torch.optim.Adam(model.parameters(), LR)

    def factor(step):  # cnn's schedule: linear warm-up, cosine to 1 %
        if step < warm:
            return step / warm
        t = (step - warm) / max(1, steps - warm)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    loss_fn = nn.CrossEntropyLoss()
    marks, best = {}, -1.0
    out.mkdir(parents=True, exist_ok=True)
    for _ in range(EPOCHS):
        model.train()
        for x, y in loader:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            sched.step()
            marks.setdefault("first_step", time.time())
        model.eval()
        right = 0
        with torch.no_grad():
            for x, y in val_loader:
                right += (model(x).argmax(1) == y).sum().item()
        acc = right / len(val_items)
        if acc > best:
            best = acc
            torch.save(model.state_dict(), out / "model.pt")
    marks["val_acc"] = best
    stamps.write_text(json.dumps(marks))


if __name__ == "__main__":
    main()
