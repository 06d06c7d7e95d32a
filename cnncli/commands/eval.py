"""`cnn eval`: metrics of a trained model on a labelled folder or its own validation split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnncli.commands.common import (
    BatchOpt,
    LabelDelimiterOpt,
    LabelsOpt,
    Opt,
    QuietOpt,
    TtaOpt,
    fail,
    handled_errors,
    label_options,
)
from cnncli.training.xla_env import configure_xla


def eval_(
    model: Annotated[
        Path, typer.Argument(help="A run folder or its model/ folder.", show_default=False)
    ],
    data_dir: Annotated[
        Path | None,
        typer.Argument(
            help="Class-folder tree to evaluate on (default: the run's validation split).",
            show_default=False,
        ),
    ] = None,
    top_k: Annotated[
        int | None, Opt("--top-k", help="k for top-k accuracy (default: 5 with >= 5 classes).")
    ] = None,
    out: Annotated[
        Path | None,
        Opt(
            "--out",
            help="Folder for metrics.json, misclassified.csv, confusion_matrix.png (default: RUN/eval).",
        ),
    ] = None,
    batch_size: BatchOpt = 64,
    tta: TtaOpt = False,
    json_out: Annotated[bool, Opt("--json", help="Print the metrics as JSON on stdout.")] = False,
    quiet: QuietOpt = False,
    labels_file: LabelsOpt = None,
    label_delimiter: LabelDelimiterOpt = ";",
) -> None:
    """Evaluate a trained model: accuracy, top-k, per-class precision/recall/F1, confusion matrix.

    Multi-label models: per-label precision/recall/F1/AP, mAP, subset accuracy, Hamming loss.
    """
    configure_xla()
    with handled_errors():
        import json

        from rich.markup import escape
        from rich.progress import Progress

        from cnncli.charts.plots import plot_confusion_matrix
        from cnncli.inference.bundle import load_bundle
        from cnncli.inference.eval_data import eval_items
        from cnncli.inference.evaluate import compute_metrics, misclassified_rows
        from cnncli.inference.predict import evaluate_items
        from cnncli.reporting.report import make_console
        from cnncli.reporting.result_tables import metrics_tables

        console = make_console(to_stderr=json_out, quiet=quiet)
        if top_k is not None and top_k < 1:
            raise fail("--top-k must be >= 1")
        if labels_file is not None and data_dir is None:
            raise fail("--labels FILE needs the DIR its paths are relative to")
        source = label_options(labels_file, label_delimiter, False)
        bundle = load_bundle(model)
        root, items, notes = eval_items(bundle, data_dir, source)
        for note in notes:
            style = "yellow" if note.startswith("skipped") else ""
            console.print(escape(note), style=style)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("evaluating", total=len(items))
            logits, labels, paths, skipped = evaluate_items(
                bundle,
                root,
                items,
                batch_size=batch_size,
                tta=tta,
                progress=lambda done, total: progress.update(task, completed=done),
            )
        for path, reason in skipped:
            console.print(f"[yellow]skipped {path}: {reason}[/yellow]", soft_wrap=True)
        if len(labels) == 0:
            raise fail(f"{root}: none of the {len(items)} images could be decoded", 1)
        out_dir = out or (
            bundle.path.parent / "eval"
            if (bundle.path.parent / "run.json").is_file()
            else Path("eval")
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        source = notes[0].removeprefix("evaluating on ") if data_dir is None else str(root)
        predictions = (source, paths, logits, labels, skipped)
        if bundle.multi_label:
            _report_multilabel(
                console, bundle, root, logits, labels, paths, skipped, out_dir, json_out
            )
            _refresh_report(bundle, console, *predictions)
            return
        metrics = compute_metrics(logits, labels, bundle.classes, k=top_k)
        result = _write_results(
            out_dir,
            metrics,
            bundle,
            root,
            skipped,
            ["path", "true", "predicted", "confidence"],
            misclassified_rows(paths, logits, labels, bundle.classes),
        )
        import numpy as np

        plot_confusion_matrix(
            np.asarray(metrics.confusion), bundle.classes, out_dir / "confusion_matrix.png"
        )
        for table in metrics_tables(metrics):
            console.print(table)
        console.print(
            f"{len(skipped)} file(s) skipped; wrote metrics.json, misclassified.csv, confusion_matrix.png to [bold]{out_dir}[/bold]"
        )
        _refresh_report(bundle, console, *predictions)
        if json_out:
            print(json.dumps(result, ensure_ascii=False))


def _refresh_report(bundle, console, source, paths, scores, labels, skipped) -> None:
    """Rewrite RUN/report.html with these predictions when the model is inside a run folder."""
    import numpy as np

    from cnncli.commands.common import write_run_report
    from cnncli.inference.heldout import Predictions

    run_dir = bundle.path.parent
    if not (run_dir / "run.json").is_file():
        return
    probs = scores if bundle.multi_label else np.exp(scores)  # single-label: log-probabilities
    written = write_run_report(run_dir, console, Predictions(source, paths, probs, labels, skipped))
    if written is not None:
        console.print(f"report: [bold]{written}[/bold]")


def _write_results(out_dir, metrics, bundle, root, skipped, fields, wrong_rows) -> dict:
    """Write metrics.json and misclassified.csv (atomically); returns the metrics.json dict."""
    import csv
    import io
    import json

    from cnncli.atomic import atomic_write_text

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
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(wrong_rows)
    atomic_write_text(out_dir / "misclassified.csv", buf.getvalue())
    return result


def _report_multilabel(
    console, bundle, root, probs, targets, paths, skipped, out_dir, json_out: bool
) -> None:
    """Multi-label eval: metrics at the bundle's thresholds, metrics.json, misclassified.csv."""
    import json

    from cnncli.inference.multilabel import compute_multilabel_metrics, mistaken_rows
    from cnncli.reporting.result_tables import multilabel_tables

    metrics = compute_multilabel_metrics(probs, targets, bundle.classes, bundle.thresholds)
    result = _write_results(
        out_dir,
        metrics,
        bundle,
        root,
        skipped,
        ["path", "true", "predicted", "missed", "extra", "wrong"],
        mistaken_rows(paths, probs, targets, bundle.classes, metrics.thresholds),
    )
    for table in multilabel_tables(metrics):
        console.print(table)
    console.print(
        f"{len(skipped)} file(s) skipped; wrote metrics.json, misclassified.csv to "
        f"[bold]{out_dir}[/bold]"
    )
    if json_out:
        print(json.dumps(result, ensure_ascii=False))
