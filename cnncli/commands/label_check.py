"""`cnn doctor DIR --model RUN | --oof FILE | --folds K`: likely-mislabeled images.

Gets each image's class probabilities (the run's model, an oof.csv, or a fresh K-fold
training), ranks suspects by confident learning (cnncli.quality.labelissues), writes
label_issues.csv and refreshes the run's report. Never moves or edits an image.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from cnncli.commands.common import fail


def _model_probs(dataset, run: Path):
    """The run's model over every image of the dataset: (paths, labels, probs, classes)."""
    import numpy as np

    from cnncli.inference.bundle import load_bundle
    from cnncli.inference.predict import evaluate_items

    bundle = load_bundle(run)
    unknown = [c for c in dataset.classes if c not in bundle.classes]
    if unknown:
        raise fail(f"{dataset.root}: classes unknown to the model {run}: {', '.join(unknown)}")
    to_model = [bundle.classes.index(c) for c in dataset.classes]
    items = [(p, to_model[label]) for split in dataset.splits.values() for p, label in split]
    root = Path(dataset.root)
    logp, labels, paths, _ = evaluate_items(bundle, root, items)
    rel = [str(Path(p).relative_to(root)) for p in paths]
    return rel, labels, np.exp(logp), bundle.classes


def _oof_probs(dataset, path: Path):
    """oof.csv rows for the images of the dataset, labels as the dataset gives them."""
    import numpy as np

    from cnncli.quality.labelissues import OofError, read_oof

    try:
        paths, labels, probs, classes = read_oof(path)
    except OofError as exc:
        raise fail(str(exc)) from None
    given = {p: dataset.classes[label] for s in dataset.splits.values() for p, label in s}
    keep = [i for i, p in enumerate(paths) if p in given]
    if not keep:
        raise fail(f"{path}: none of its paths is an image of {dataset.root}")
    unknown = sorted({given[paths[i]] for i in keep} - set(classes))
    if unknown:
        raise fail(f"{path}: no probability column for class(es) {', '.join(unknown)}")
    # The folder's labels count (the file's label column may predate a relabelling).
    labels = np.array([classes.index(given[paths[i]]) for i in keep])
    return [paths[i] for i in keep], labels, probs[keep], classes


def _train_folds(dataset, k: int, run: Path | None, config: Path | None, console) -> Path:
    """Run `cnn train DIR --folds K` (with --config, or run's config) and return its oof.csv."""
    from importlib.util import find_spec

    from cnncli.training.run import next_run_dir

    if find_spec("cnncli.training.crossval") is None:
        raise fail("--folds needs `cnn train --folds K` (not in this version); pass --oof FILE")
    if k < 2:
        raise fail("--folds must be >= 2")
    out = next_run_dir(name="doctor_folds")
    cmd = [sys.executable, "-m", "cnncli", "train", str(dataset.root), "--folds", str(k)]
    cmd += ["--out", str(out), "--quiet"]
    if run is not None:
        config = (
            run / "config.toml" if (run / "config.toml").is_file() else run.parent / "config.toml"
        )
        cmd += ["--config", str(config)]
    console.print(f"training {k} folds into {out} for out-of-fold predictions ...")
    if subprocess.run(cmd, check=False).returncode != 0:
        raise fail(f"cross-validation training failed ({' '.join(cmd)})", 1)
    return out / "oof.csv"


def label_check(
    dataset, model, oof, folds, issues_out, console, config=None, copy_to=None
) -> list[dict[str, Any]]:
    """Suspects as dicts (also written to label_issues.csv); refreshes the run's report."""
    from dataclasses import asdict

    from cnncli.quality.labelissues import ISSUES_FILE, find_label_issues, write_issues

    if dataset.multi_label:
        raise fail("likely-mislabeled images: single-label data only (one label per image)")
    if sum(x is not None for x in (oof, folds)) > 1:
        raise fail("pass one of --oof FILE and --folds K")
    if config is not None and folds is None:
        raise fail("--config is for the --folds K training")
    root = Path(dataset.root).resolve()
    if copy_to is not None and (copy_to.resolve() == root or root in copy_to.resolve().parents):
        raise fail(f"--copy-suspects {copy_to}: must not be inside the data folder {root}")
    if folds is not None:
        oof = _train_folds(dataset, folds, model, config, console)
    if oof is not None:
        paths, labels, probs, classes = _oof_probs(dataset, oof)
        where, source = oof.parent, f"out-of-fold predictions {oof}"
    else:
        paths, labels, probs, classes = _model_probs(dataset, model)
        where = model if (model / "run.json").is_file() else model.parent
        source = f"the model {model} (in-sample for its training images)"
    issues, _ = find_label_issues(probs, labels, classes, paths, Path(dataset.root))
    target = issues_out or where / ISSUES_FILE
    write_issues(target, issues)
    console.print(
        f"{len(issues)} likely-mislabeled image(s) of {len(paths)} by {source}; wrote {target}"
    )
    if copy_to is not None:
        from cnncli.inference.predict import Prediction, sort_into

        copies = sort_into(
            [Prediction(i.file) for i in issues], [i.suggested for i in issues], copy_to
        )
        console.print(f"copied {len(copies)} suspect(s) into {copy_to}/<suggested label>/")
    if model is not None and (where / "run.json").is_file() and target == where / ISSUES_FILE:
        from cnncli.commands.common import write_run_report

        write_run_report(where, console)
    return [asdict(i) for i in issues]


def render_issues(console, issues: list[dict[str, Any]], limit: int | None) -> None:
    """The top suspects: file, given label, suggested label and the two probabilities."""
    from rich.markup import escape
    from rich.table import Table

    if not issues:
        console.print("[green]no likely-mislabeled images[/green]")
        return
    table = Table(title="likely mislabeled (confident learning)", title_justify="left")
    for col in ("#", "file", "given", "suggested", "p(suggested)", "p(given)"):
        table.add_column(col, justify="right" if col.startswith(("#", "p(")) else "left")
    for row in issues[:limit] if limit else issues:
        table.add_row(
            str(row["rank"]),
            escape(row["path"]),
            escape(row["given"]),
            escape(row["suggested"]),
            f"{row['p_suggested']:.3f}",
            f"{row['p_given']:.3f}",
        )
    console.print(table)
    if limit and len(issues) > limit:
        console.print(
            f"... and {len(issues) - limit} more in label_issues.csv (--limit 0 shows all)"
        )
