"""The `cnn` command line: one thin Typer function per subcommand; heavy imports stay inside."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Train and classify images with convolutional networks (JAX/Flax).",
)

EXIT_USAGE = 2


class _State:
    debug = False


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print one red line on stderr and return the Exit to raise."""
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[red]error:[/red] {message}", markup=True
    )
    return typer.Exit(code)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that are the user's input problem: shown as one line, exit 2."""
    from cnncli.config import ConfigError
    from cnncli.data.scan import DatasetError

    errors: list[type[BaseException]] = [ConfigError, DatasetError, FileNotFoundError]
    try:
        from cnncli.bundle import BundleError

        errors.append(BundleError)
    except ImportError:  # pragma: no cover - during partial builds
        pass
    return tuple(errors)


@contextmanager
def handled_errors():
    """Turn user errors raised inside a command into one red line and exit code 2."""
    try:
        yield
    except typer.Exit:
        raise
    except Exception as exc:
        if _State.debug or not isinstance(exc, _user_errors()):
            raise
        raise _fail(str(exc)) from None


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks for errors.")
    ] = False,
) -> None:
    """Train and classify images with convolutional networks (JAX/Flax)."""
    _State.debug = debug


# ---------------------------------------------------------------------------- train

Opt = typer.Option


def _int_list(text: str | None, flag: str) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise _fail(
            f"{flag} takes comma-separated integers, e.g. 32,64,128; got {text!r}"
        ) from None
    return values


def _model_overrides(cfg, filters, kernel, stride, padding, pool, batch_norm) -> list[dict]:
    """Per-block conv settings from flags: a list applies to all blocks, count from --filters."""
    from cnncli.config import to_dict

    blocks = to_dict(cfg.model)["conv"]
    if filters is not None:
        template = blocks[-1] if blocks else {}
        blocks = [
            dict(blocks[i] if i < len(blocks) else template, filters=f)
            for i, f in enumerate(filters)
        ]
    for key, value in (
        ("kernel", kernel),
        ("stride", stride),
        ("padding", padding),
        ("pool", pool),
        ("batch_norm", batch_norm),
    ):
        if value is not None:
            for b in blocks:
                b[key] = value
                if key == "pool":
                    b["pool_stride"] = 0
    return blocks


@app.command()
def train(
    data_dir: Annotated[
        Path | None,
        typer.Argument(
            help="Folder with <class>/ subfolders (or train/ and val/).", show_default=False
        ),
    ] = None,
    config: Annotated[
        Path | None,
        Opt("--config", help="TOML config (e.g. a run's config.toml); flags override it."),
    ] = None,
    out: Annotated[
        Path | None, Opt("--out", help="Run folder [default: runs/train, runs/train2, ...].")
    ] = None,
    resume: Annotated[
        Path | None,
        Opt("--resume", help="Continue the run in this folder from its last checkpoint."),
    ] = None,
    image_size: Annotated[
        int | None, Opt("--image-size", help="Square input size in pixels [default: 64].")
    ] = None,
    channels: Annotated[
        int | None, Opt("--channels", help="1 (grayscale) or 3 (RGB) [default: 3].")
    ] = None,
    filters: Annotated[
        str | None,
        Opt("--filters", help="Filters per conv block, comma-separated [default: 32,64,128]."),
    ] = None,
    kernel: Annotated[int | None, Opt("--kernel", help="Conv kernel size F [default: 3].")] = None,
    stride: Annotated[int | None, Opt("--stride", help="Conv stride S [default: 1].")] = None,
    padding: Annotated[
        str | None,
        Opt("--padding", help="Conv padding P: same, valid or an integer [default: same]."),
    ] = None,
    pool: Annotated[
        int | None,
        Opt("--pool", help="Max-pool size (and stride) after each conv; 0 = none [default: 2]."),
    ] = None,
    batch_norm: Annotated[
        bool | None,
        Opt("--batch-norm/--no-batch-norm", help="Batch norm after each conv [default: off]."),
    ] = None,
    global_pool: Annotated[
        bool | None,
        Opt(
            "--global-pool/--flatten",
            help="Global average pool instead of flatten [default: flatten].",
        ),
    ] = None,
    dense: Annotated[
        str | None,
        Opt(
            "--dense",
            help="Fully connected layer sizes, comma-separated; '' for none [default: 128].",
        ),
    ] = None,
    dropout: Annotated[
        float | None, Opt("--dropout", help="Dropout after each dense layer [default: 0.3].")
    ] = None,
    epochs: Annotated[int | None, Opt("--epochs", help="Epochs [default: 15].")] = None,
    batch_size: Annotated[int | None, Opt("--batch-size", help="Batch size [default: 64].")] = None,
    optimizer: Annotated[
        str | None, Opt("--optimizer", help="adam, adamw or sgd [default: adam].")
    ] = None,
    lr: Annotated[float | None, Opt("--lr", help="Peak learning rate [default: 0.001].")] = None,
    weight_decay: Annotated[
        float | None, Opt("--weight-decay", help="Weight decay for adamw/sgd [default: 1e-4].")
    ] = None,
    momentum: Annotated[
        float | None, Opt("--momentum", help="SGD momentum [default: 0.9].")
    ] = None,
    warmup_epochs: Annotated[
        float | None, Opt("--warmup-epochs", help="Linear warm-up length [default: 1].")
    ] = None,
    schedule: Annotated[
        str | None, Opt("--schedule", help="cosine or constant after warm-up [default: cosine].")
    ] = None,
    label_smoothing: Annotated[
        float | None, Opt("--label-smoothing", help="Label smoothing [default: 0].")
    ] = None,
    augment: Annotated[
        str | None,
        Opt(
            "--augment",
            help="Preset (none, light, default, strong) or ops, e.g. flip,translate=0.1,zoom=0.2,rotate=15 [default: none].",
        ),
    ] = None,
    val_fraction: Annotated[
        float | None,
        Opt(
            "--val-fraction",
            help="Validation share per class when there is no val/ folder [default: 0.2].",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        Opt(
            "--seed", help="Seed for the split, init, order, dropout and augmentation [default: 0]."
        ),
    ] = None,
    cache_memory: Annotated[
        int | None,
        Opt(
            "--cache-memory",
            help="MiB of decoded images kept in RAM; beyond it a memory-mapped file [default: 2048].",
        ),
    ] = None,
    follow_symlinks: Annotated[
        bool | None,
        Opt("--follow-symlinks", help="Follow symlinks that point outside the data folder."),
    ] = None,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="Print nothing but errors.")] = False,
    json_out: Annotated[
        bool, Opt("--json", help="Print a JSON summary on stdout (progress goes to stderr).")
    ] = False,
) -> None:
    """Train a CNN on a folder of images: DIR/<class>/*.jpg (or DIR/train + DIR/val)."""
    with handled_errors():
        from cnncli.config import RunConfig, load_toml, merge_overrides
        from cnncli.report import make_console
        from cnncli.run import plan_new_run, plan_resume

        console = make_console(to_stderr=json_out, quiet=quiet)
        if resume is not None:
            if data_dir is not None or config is not None:
                raise _fail(
                    "--resume takes its data and config from the run folder; drop DATA_DIR/--config"
                )
            plan = plan_resume(resume)
        else:
            if data_dir is None:
                raise _fail(
                    "missing DATA_DIR (a folder of class subfolders), or use --resume RUN_DIR"
                )
            cfg = load_toml(config) if config else RunConfig()
            if augment is not None:
                cfg = _with_augment(cfg, augment)
            overrides = {
                "data.image_size": image_size,
                "data.channels": channels,
                "data.val_fraction": val_fraction,
                "data.cache_memory": cache_memory,
                "data.follow_symlinks": follow_symlinks,
                "model.dense": _int_list(dense, "--dense"),
                "model.dropout": dropout,
                "model.global_pool": global_pool,
                "train.epochs": epochs,
                "train.batch_size": batch_size,
                "train.optimizer": optimizer,
                "train.lr": lr,
                "train.weight_decay": weight_decay,
                "train.momentum": momentum,
                "train.warmup_epochs": warmup_epochs,
                "train.schedule": schedule,
                "train.label_smoothing": label_smoothing,
                "train.seed": seed,
            }
            if any(v is not None for v in (filters, kernel, stride, padding, pool, batch_norm)):
                overrides["model.conv"] = _model_overrides(
                    cfg, _int_list(filters, "--filters"), kernel, stride, padding, pool, batch_norm
                )
            cfg = merge_overrides(cfg, overrides)
            plan = plan_new_run(data_dir, cfg, out)
        _run_training(plan, console, json_out, quiet)


def _with_augment(cfg, text: str):
    from cnncli.augment import PRESETS, parse_ops
    from cnncli.config import AugmentConfig, ConfigError

    name = text.strip().lower()
    try:
        if name in PRESETS:
            cfg.augment = AugmentConfig(preset=name, ops={})
        else:
            cfg.augment = AugmentConfig(preset="none", ops=parse_ops(text))
    except ValueError as exc:
        raise ConfigError(f"--augment: {exc}") from None
    return cfg


def _run_training(plan, console, json_out: bool, quiet: bool) -> None:
    import json

    from cnncli.data.scan import class_counts
    from cnncli.report import TrainingDisplay, dataset_table, layers_table
    from cnncli.run import execute_run, write_summary

    console.print(
        f"run folder: [bold]{plan.run_dir}[/bold]" + ("  (resuming)" if plan.resume else "")
    )
    console.print(
        dataset_table(
            class_counts(plan.dataset), f"data: {plan.dataset.root} ({plan.dataset.layout} layout)"
        )
    )
    if plan.dataset.ignored:
        console.print(
            f"[yellow]ignored {len(plan.dataset.ignored)} non-image or unreachable file(s)[/yellow]"
        )
    console.print(
        layers_table(
            plan.layers,
            f"network for {plan.cfg.data.image_size}x{plan.cfg.data.image_size}x{plan.cfg.data.channels} input",
        )
    )
    from cnncli.train import TrainingDiverged

    display = TrainingDisplay(console)
    try:
        with display:
            outcome = execute_run(plan, display, display.on_decode)
        if not console.is_terminal:
            console.line()
    except TrainingDiverged as exc:
        raise _fail(f"{exc} ({plan.run_dir})", 1) from None
    except KeyboardInterrupt:
        console.print(
            f"[yellow]interrupted; the last finished epoch is checkpointed. Resume with: cnn train --resume {plan.run_dir}[/yellow]"
        )
        raise typer.Exit(130) from None
    for path, reason in outcome.skipped:
        console.print(f"[yellow]skipped {path}: {reason}[/yellow]")
    if outcome.finished_before:
        console.print(
            f"run already finished ({len(outcome.history)} epochs); nothing to do. Model: {plan.run_dir / 'model'}"
        )
    summary = {
        "run_dir": str(plan.run_dir),
        "model": str(plan.run_dir / "model"),
        "epochs": len(outcome.history),
        "best_epoch": outcome.best_epoch,
        "best_val_acc": outcome.best_val_acc,
        "final": outcome.history[-1] if outcome.history else None,
        "skipped": [{"path": p, "reason": r} for p, r in outcome.skipped],
        "already_finished": outcome.finished_before,
    }
    write_summary(plan.run_dir, summary)
    if not outcome.finished_before:
        console.print(
            f"best val acc {100 * outcome.best_val_acc:.1f}% at epoch {outcome.best_epoch}; "
            f"{len(outcome.skipped)} file(s) skipped; model saved to [bold]{plan.run_dir / 'model'}[/bold]"
        )
    if json_out:
        print(json.dumps(summary))


# ---------------------------------------------------------------------------- eval


def _eval_items(bundle, data_dir: Path | None):
    """(root, items with model class indices, notes) for eval: DIR, or the run's own val split."""
    import json

    from cnncli.data.scan import DatasetError, read_manifest, scan_labelled
    from cnncli.run import MANIFEST_FILE, RUN_FILE

    notes: list[str] = []
    if data_dir is None:
        run_dir = bundle.path.parent
        if not (run_dir / MANIFEST_FILE).is_file() or not (run_dir / RUN_FILE).is_file():
            raise DatasetError(
                f"{bundle.path}: not inside a run folder; pass a DIR of class folders to evaluate on"
            )
        info = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
        dataset = read_manifest(run_dir / MANIFEST_FILE, info["data_dir"])
        split = "test" if dataset.splits.get("test") else "val"
        notes.append(f"evaluating on the run's {split} split ({dataset.root})")
        items = dataset.splits[split]
        index = {
            name: bundle.classes.index(name) for name in dataset.classes if name in bundle.classes
        }
        return dataset.root, [(p, index[dataset.classes[i]]) for p, i in items], notes
    dataset = scan_labelled(data_dir)
    unknown = [c for c in dataset.classes if c not in bundle.classes]
    if unknown:
        raise DatasetError(
            f"{dataset.root}: class folder(s) unknown to the model: {', '.join(unknown)} "
            f"(model classes: {', '.join(bundle.classes)})"
        )
    missing = [c for c in bundle.classes if c not in dataset.classes]
    if missing:
        notes.append(f"classes with no images in {dataset.root}: {', '.join(missing)}")
    items = [(p, bundle.classes.index(dataset.classes[i])) for p, i in dataset.splits["eval"]]
    return dataset.root, items, notes


@app.command("eval")
def eval_(
    model: Annotated[
        Path, typer.Argument(help="A run folder or its model/ folder.", show_default=False)
    ],
    data_dir: Annotated[
        Path | None,
        typer.Argument(
            help="Class-folder tree to evaluate on [default: the run's validation split].",
            show_default=False,
        ),
    ] = None,
    top_k: Annotated[
        int | None, Opt("--top-k", help="k for top-k accuracy [default: 5 with >= 5 classes].")
    ] = None,
    out: Annotated[
        Path | None,
        Opt(
            "--out",
            help="Folder for metrics.json, misclassified.csv, confusion_matrix.png [default: RUN/eval].",
        ),
    ] = None,
    batch_size: Annotated[int, Opt("--batch-size", help="Images per batch.")] = 64,
    json_out: Annotated[bool, Opt("--json", help="Print the metrics as JSON on stdout.")] = False,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Evaluate a trained model: accuracy, top-k, per-class precision/recall/F1, confusion matrix."""
    with handled_errors():
        import csv
        import io
        import json

        from rich.progress import Progress

        from cnncli.atomic import atomic_write_text
        from cnncli.bundle import load_bundle
        from cnncli.evaluate import compute_metrics, misclassified_rows
        from cnncli.plots import plot_confusion_matrix
        from cnncli.predict import evaluate_items
        from cnncli.report import make_console, metrics_tables

        console = make_console(to_stderr=json_out, quiet=quiet)
        if top_k is not None and top_k < 1:
            raise _fail("--top-k must be >= 1")
        bundle = load_bundle(model)
        root, items, notes = _eval_items(bundle, data_dir)
        for note in notes:
            console.print(note)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("evaluating", total=len(items))
            logits, labels, paths, skipped = evaluate_items(
                bundle,
                root,
                items,
                batch_size=batch_size,
                progress=lambda done, total: progress.update(task, completed=done),
            )
        for path, reason in skipped:
            console.print(f"[yellow]skipped {path}: {reason}[/yellow]")
        if len(labels) == 0:
            raise _fail(f"{root}: none of the {len(items)} images could be decoded", 1)
        metrics = compute_metrics(logits, labels, bundle.classes, k=top_k)
        out_dir = out or (
            bundle.path.parent / "eval"
            if (bundle.path.parent / "run.json").is_file()
            else Path("eval")
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        result = {
            **metrics.to_dict(),
            "model": str(bundle.path),
            "data": str(root),
            "skipped": [{"path": p, "reason": r} for p, r in skipped],
        }
        atomic_write_text(
            out_dir / "metrics.json", json.dumps(result, indent=2, ensure_ascii=False) + "\n"
        )
        buf = io.StringIO()
        writer = csv.DictWriter(
            buf, fieldnames=["path", "true", "predicted", "confidence"], lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(misclassified_rows(paths, logits, labels, bundle.classes))
        atomic_write_text(out_dir / "misclassified.csv", buf.getvalue())
        import numpy as np

        plot_confusion_matrix(
            np.asarray(metrics.confusion), bundle.classes, out_dir / "confusion_matrix.png"
        )
        for table in metrics_tables(metrics):
            console.print(table)
        console.print(
            f"{len(skipped)} file(s) skipped; wrote metrics.json, misclassified.csv, confusion_matrix.png to [bold]{out_dir}[/bold]"
        )
        if json_out:
            print(json.dumps(result, ensure_ascii=False))


# ---------------------------------------------------------------------------- predict


@app.command()
def predict(
    inputs: Annotated[
        list[str],
        typer.Argument(help="Image files, folders (recursive) and globs.", show_default=False),
    ],
    model: Annotated[
        Path | None,
        Opt("--model", "-m", help="Run folder or model/ folder [default: newest run under runs/]."),
    ] = None,
    top_k: Annotated[int, Opt("--top-k", help="Show the k most likely classes.")] = 1,
    threshold: Annotated[
        float | None, Opt("--threshold", help="Below this confidence the label is 'unknown'.")
    ] = None,
    csv_path: Annotated[
        Path | None, Opt("--csv", help="Write the predictions to this CSV file.")
    ] = None,
    json_out: Annotated[
        bool, Opt("--json", help="Print one JSON object per image on stdout.")
    ] = False,
    sort_into: Annotated[
        Path | None,
        Opt("--sort-into", help="Copy each image into DIR/<label>/ (never moves or overwrites)."),
    ] = None,
    tta: Annotated[
        bool, Opt("--tta", help="Average over the image and its horizontal flip.")
    ] = False,
    batch_size: Annotated[int, Opt("--batch-size", help="Images per batch.")] = 64,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Classify images with a trained model; exit 1 if some files could not be read."""
    with handled_errors():
        from cnncli.bundle import load_bundle
        from cnncli.predict import collect_inputs, label_of, predict_paths
        from cnncli.predict import top_k as top_k_of
        from cnncli.report import make_console, predictions_table
        from cnncli.run import newest_run

        console = make_console(to_stderr=json_out, quiet=quiet)
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise _fail("--threshold must be between 0 and 1")
        if top_k < 1:
            raise _fail("--top-k must be >= 1")
        if model is None:
            model = newest_run()
            if model is None:
                raise _fail("no trained model under runs/; pass --model RUN_OR_MODEL_DIR")
            console.print(f"using model [bold]{model}[/bold]")
        bundle = load_bundle(model)
        paths, problems = collect_inputs(inputs)
        for item, reason in problems:
            console.print(f"[red]error:[/red] {item}: {reason}")
        preds = predict_paths(bundle, paths, batch_size=batch_size, tta=tta)
        k = min(top_k, len(bundle.classes))
        rows = []
        for p in preds:
            if p.error is not None:
                rows.append({"path": p.path, "error": p.error})
                continue
            label, conf = label_of(p.probs, bundle.classes, threshold)
            row = {"path": p.path, "label": label, "confidence": conf}
            if k > 1:
                row["top_k"] = [
                    {"label": c, "p": v} for c, v in top_k_of(p.probs, bundle.classes, k)
                ]
            rows.append(row)
        if csv_path is not None:
            _write_predictions_csv(csv_path, rows, k)
        if json_out:
            import json

            for row in rows:
                print(json.dumps(row, ensure_ascii=False))
        else:
            console.print(predictions_table(rows, k))
        if sort_into is not None:
            from cnncli.predict import sort_into as copy_sorted

            ok = [p for p in preds if p.error is None]
            labels = [r["label"] for r in rows if "error" not in r]
            copies = copy_sorted(ok, labels, sort_into)
            console.print(f"copied {len(copies)} image(s) into [bold]{sort_into}[/bold]")
        failed = sum(1 for p in preds if p.error is not None) + len(problems)
        if failed:
            for p in preds:
                if p.error is not None:
                    console.print(f"[red]error:[/red] {p.path}: {p.error}")
            raise typer.Exit(1)


def _write_predictions_csv(path: Path, rows: list[dict], k: int) -> None:
    import csv
    import io

    from cnncli.atomic import atomic_write_text

    buf = io.StringIO()
    fields = ["path", "label", "confidence"] + (["top_k"] if k > 1 else []) + ["error"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        out = {
            "path": row["path"],
            "label": row.get("label", ""),
            "confidence": row.get("confidence", ""),
            "error": row.get("error", ""),
        }
        if k > 1:
            out["top_k"] = ";".join(f"{a['label']}:{a['p']:.6f}" for a in row.get("top_k", []))
        writer.writerow(out)
    atomic_write_text(path, buf.getvalue())


# --- augment command (owned by expand.py's author; keep edits inside this section) ---


@app.command("augment")
def augment_command(
    src: Annotated[
        Path, typer.Argument(help="Dataset folder: <class>/ subfolders, or train/ and val/.")
    ],
    out: Annotated[Path, typer.Argument(help="Output folder (outside SRC).")],
    per_image: Annotated[
        int | None, Opt("--per-image", help="New images per original (K).")
    ] = None,
    target_per_class: Annotated[
        int | None,
        Opt("--target-per-class", help="Top every class up to N images (balances classes)."),
    ] = None,
    ops: Annotated[
        str | None,
        Opt("--ops", help="Ops, e.g. flip,translate=0.1,zoom=0.2,rotate=15 (added to --preset)."),
    ] = None,
    preset: Annotated[
        str | None,
        Opt(
            "--preset",
            help="none, light, default or strong (default: default; none when --ops is given).",
        ),
    ] = None,
    seed: Annotated[int, Opt("--seed", help="Seed; the same seed rewrites identical files.")] = 0,
    no_originals: Annotated[
        bool, Opt("--no-originals", help="Do not copy the original images into OUT.")
    ] = False,
    all_splits: Annotated[
        bool, Opt("--all-splits", help="Also augment val/ and test/ (default: train/ only).")
    ] = False,
    fill: Annotated[
        str, Opt("--fill", help="What shows beyond the border: reflect, edge or constant.")
    ] = "reflect",
    preview: Annotated[
        Path | None,
        Opt("--preview", help="Also write a PNG grid of originals beside augmented versions."),
    ] = None,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Write augmented copies of a dataset's images into OUT, plus augment_manifest.csv."""
    with handled_errors():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
        from rich.table import Table

        from cnncli.augment import parse_ops, resolve_ops
        from cnncli.report import make_console

        try:
            chosen = resolve_ops(
                preset or ("none" if ops else "default"), parse_ops(ops) if ops else {}
            )
        except ValueError as exc:
            raise _fail(str(exc)) from None

        from cnncli.expand import ExpandError, expand_dataset, preview_target, write_preview

        console = make_console(quiet=quiet)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        try:
            if preview is not None:
                preview_target(src, preview)
            with Progress(*columns, console=console, transient=True) as bar:
                task = bar.add_task("reading", total=None)

                def on_progress(phase: str, done: int, total: int) -> None:
                    bar.update(task, description=phase, completed=done, total=total)

                result = expand_dataset(
                    src,
                    out,
                    ops=chosen,
                    per_image=per_image,
                    target_per_class=target_per_class,
                    seed=seed,
                    copy_originals=not no_originals,
                    all_splits=all_splits,
                    fill=fill,
                    progress=on_progress,
                )
            made_new = any(row.kind == "augmented" for row in result.rows)
            preview_path = write_preview(result, preview) if preview and made_new else None
        except ExpandError as exc:
            raise _fail(str(exc)) from None

        for rel, reason in result.skipped:
            console.print(f"[yellow]skipped {result.src / rel}: {reason}[/yellow]", markup=True)
        with_split = any(split for split, _ in result.counts)
        table = Table(title=f"augmented into {result.out}", title_justify="left")
        if with_split:
            table.add_column("split")
        for name in ("class", "originals", "new images"):
            table.add_column(name, justify="left" if name == "class" else "right")
        for (split, name), count in sorted(result.counts.items()):
            cells = [name, str(count.originals), str(count.new)]
            table.add_row(*([split] if with_split else []), *cells)
        console.print(table)
        if result.copied_other_splits:
            console.print(
                f"copied {result.copied_other_splits} image(s) of the other splits unaugmented"
            )
        console.print(
            f"{result.written} file(s) written, {result.unchanged} already identical"
            + (f", {result.removed} stale output(s) removed" if result.removed else "")
            + f"; manifest: {result.manifest}"
        )
        if preview_path is not None:
            console.print(f"preview: {preview_path}")


# --- end augment command ---


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
