"""Rich tables of results: evaluation metrics (single- and multi-label) and predictions."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from cnncli.reporting.report import metric_text


def metrics_tables(m) -> list[Table]:
    """Summary, per-class and confusion-matrix tables for an EvalMetrics."""
    summary = Table(title="evaluation", title_justify="left")
    for col in ("images", "loss", "top-1", f"top-{m.k}", "macro F1", "weighted F1", "ECE"):
        summary.add_column(col, justify="right")
    summary.add_row(
        str(m.n),
        f"{m.loss:.4f}",
        f"{100 * m.top1:.2f}%",
        f"{100 * m.topk:.2f}%",
        f"{m.macro['f1']:.4f}",
        f"{m.weighted['f1']:.4f}",
        f"{m.ece:.4f}",
    )
    per_class = Table(title="per class", title_justify="left")
    for col, justify in (
        ("class", "left"),
        ("precision", "right"),
        ("recall", "right"),
        ("F1", "right"),
        ("support", "right"),
    ):
        per_class.add_column(col, justify=justify)
    for c in m.per_class:
        per_class.add_row(
            c.name, f"{c.precision:.4f}", f"{c.recall:.4f}", f"{c.f1:.4f}", str(c.support)
        )
    per_class.add_section()
    for name, avg in (("macro avg", m.macro), ("weighted avg", m.weighted)):
        per_class.add_row(
            name,
            f"{avg['precision']:.4f}",
            f"{avg['recall']:.4f}",
            f"{avg['f1']:.4f}",
            str(m.n),
            style="bold",
        )
    confusion = Table(
        title="confusion matrix (rows: true, columns: predicted; count / row %)",
        title_justify="left",
    )
    confusion.add_column("true \\ pred")
    for name in m.classes:
        confusion.add_column(name[:12], justify="right")
    for name, row in zip(m.classes, m.confusion, strict=True):
        total = sum(row)
        cells = [f"{v} / {100 * v / total:.0f}%" if total else "0" for v in row]
        confusion.add_row(name, *cells)
    return [summary, per_class, confusion]


def multilabel_tables(m) -> list[Table]:
    """Summary and per-label tables for a MultiLabelMetrics."""
    summary = Table(title="evaluation (multi-label)", title_justify="left")
    columns = ("images", "BCE loss", "mAP", "subset acc", "Hamming loss", "micro F1", "macro F1")
    for col in columns:
        summary.add_column(col, justify="right")
    summary.add_row(
        str(m.n),
        f"{m.loss:.4f}",
        metric_text(m.map),
        f"{100 * m.subset_accuracy:.2f}%",
        f"{m.hamming_loss:.4f}",
        f"{m.micro['f1']:.4f}",
        f"{m.macro['f1']:.4f}",
    )
    per_label = Table(title="per label (at each label's threshold)", title_justify="left")
    for col in ("label", "threshold", "precision", "recall", "F1", "AP", "support"):
        per_label.add_column(col, justify="left" if col == "label" else "right")
    for r in m.per_label:
        per_label.add_row(
            r.name,
            f"{r.threshold:.3f}",
            f"{r.precision:.4f}",
            f"{r.recall:.4f}",
            f"{r.f1:.4f}",
            metric_text(r.ap),
            str(r.support),
        )
    per_label.add_section()
    for name, avg in (("micro avg", m.micro), ("macro avg", m.macro)):
        per_label.add_row(
            name,
            "",
            f"{avg['precision']:.4f}",
            f"{avg['recall']:.4f}",
            f"{avg['f1']:.4f}",
            metric_text(m.map) if name == "macro avg" else "",
            "",
            style="bold",
        )
    return [summary, per_label]


def predictions_table(rows: list[dict[str, Any]], k: int) -> Table:
    """path, label, confidence and (k > 1) the alternatives."""
    table = Table(title="predictions", title_justify="left")
    table.add_column("path", overflow="fold")
    table.add_column("label")
    table.add_column("confidence", justify="right")
    if k > 1:
        table.add_column(f"top-{k}")
    for r in rows:
        if r.get("error"):
            cells = [
                r["path"],
                "[red]error[/red]",
                "",
            ] + ([r["error"]] if k > 1 else [])
            if k <= 1:
                cells[2] = r["error"]
            table.add_row(*cells)
            continue
        cells = [r["path"], r["label"], f"{100 * r['confidence']:.1f}%"]
        if k > 1:
            cells.append(", ".join(f"{a['label']} {100 * a['p']:.1f}%" for a in r["top_k"]))
        table.add_row(*cells)
    return table


def label_sets_table(rows: list[dict[str, Any]]) -> Table:
    """Multi-label predictions: path and the labels at or above their thresholds."""
    table = Table(title="predictions (multi-label)", title_justify="left")
    table.add_column("path", overflow="fold")
    table.add_column("labels")
    for r in rows:
        if r.get("error"):
            table.add_row(escape(r["path"]), f"[red]error[/red] {escape(r['error'])}")
            continue
        found = ", ".join(f"{escape(c)} {100 * r['probs'][c]:.1f}%" for c in r["labels"])
        table.add_row(escape(r["path"]), found or "(none)")
    return table
