"""Rich output: dataset and layer tables, live training progress, epoch rows."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table


def make_console(to_stderr: bool = False, quiet: bool = False) -> Console:
    """The console commands print to (stderr when stdout is reserved for JSON)."""
    return Console(stderr=to_stderr, quiet=quiet, highlight=False, soft_wrap=False)


def dataset_table(counts: dict[str, dict[str, int]], title: str) -> Table:
    """Classes x images per split, with totals."""
    splits = [s for s in ("train", "val", "test") if any(s in c for c in counts.values())]
    table = Table(title=title, title_justify="left")
    table.add_column("class")
    for split in splits:
        table.add_column(split, justify="right")
    for name, per_split in counts.items():
        table.add_row(name, *(str(per_split.get(s, 0)) for s in splits))
    table.add_section()
    table.add_row(
        "total", *(str(sum(c.get(s, 0) for c in counts.values())) for s in splits), style="bold"
    )
    return table


def recipe_table(rows: list[dict[str, str]], title: str = "recipe") -> Table:
    """The automatic recipe: each choice, the value used, and why."""
    table = Table(title=title, title_justify="left")
    table.add_column("choice")
    table.add_column("value")
    table.add_column("why")
    for row in rows:
        table.add_row(escape(row["choice"]), escape(row["value"]), escape(row["reason"]))
    return table


def candidates_table(rows: list[dict[str, Any]]) -> Table:
    """--time-budget: every candidate recipe's outcome (candidates.csv's rows)."""
    table = Table(title="candidate recipes (successive halving)", title_justify="left")
    for name in ("candidate", "status", "epochs", "best val acc", "val loss", "seconds"):
        table.add_column(name, justify="left" if name in ("candidate", "status") else "right")
    for r in rows:
        acc = f"{100 * float(r['best_val_acc']):.1f}%" if r["best_val_acc"] else "-"
        loss = f"{float(r['lowest_val_loss']):.4f}" if r["lowest_val_loss"] else "-"
        table.add_row(
            escape(r["name"]),
            escape(r["status"]),
            f"{r['epochs']}/{r['of_epochs']}",
            acc,
            loss,
            r["seconds"],
        )
    return table


def layer_inputs(rows, input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Each row's input shape: the previous row's output (the image for the first row).

    A residual block's 1x1 shortcut projection (projN) reads the block's input instead.
    """
    shapes: list[tuple[int, ...]] = []
    block_inputs: dict[str, tuple[int, ...]] = {}
    previous = tuple(input_shape)
    for r in rows:
        block_inputs.setdefault(r.name, previous)
        if r.in_shape is not None:
            shapes.append(tuple(r.in_shape))
        elif r.name.startswith("proj"):
            shapes.append(block_inputs.get("conv" + r.name[len("proj") :], previous))
        else:
            shapes.append(previous)
        previous = tuple(r.out_shape)
    return shapes


def block_rows(rows):
    """A backbone's layer rows folded to one row per block (ResNet layerN.i, Lite blocks.s.i):
    its output, summed params and MACs, and the arithmetic of its strided conv; other rows
    (stem, head, pooling, logits) as they are. `cnn summary` shows every layer."""
    from cnncli.model.shapes import LayerRow

    out: list = []
    for r in rows:
        parts = r.name.split(".")
        key = ".".join(parts[:3]) if parts[0] == "blocks" else ".".join(parts[:2])
        is_block = parts[0] == "blocks" or (parts[0].startswith("layer") and len(parts) > 2)
        if not is_block:
            out.append(r)
            continue
        if not out or out[-1].name != key:
            out.append(LayerRow(key, "block", r.out_shape))
        last = out[-1]
        last.out_shape = r.out_shape if r.kind in ("conv", "dwconv", "add") else last.out_shape
        last.params += r.params
        last.macs += r.macs
        if r.formula and "/ 2 +" in r.formula:
            last.formula = r.formula
    return out


def layers_table(rows, title: str = "network", input_shape: tuple[int, ...] | None = None) -> Table:
    """Layer, (input shape,) output shape, parameters, MACs and the (W - F + 2P)/S + 1 arithmetic.

    The input column appears when input_shape (the image's H, W, C) is given.
    """
    inputs = layer_inputs(rows, input_shape) if input_shape is not None else None
    table = Table(title=title, title_justify="left")
    columns = [("layer", "left"), ("input", "left"), ("output", "left")]
    columns += [("params", "right"), ("MACs", "right"), ("(W - F + 2P) / S + 1", "left")]
    for col, justify in columns:
        if col != "input" or inputs is not None:
            table.add_column(col, justify=justify)
    for i, r in enumerate(rows):
        cells = [r.name]
        if inputs is not None:
            cells.append(_shape(inputs[i]))
        cells += [
            _shape(r.out_shape),
            f"{r.params:,}" if r.params else "",
            f"{r.macs:,}" if r.macs else "",
            r.formula,
        ]
        table.add_row(*cells)
    table.add_section()
    blanks = ["", ""] if inputs is not None else [""]
    table.add_row(
        "total",
        *blanks,
        f"{sum(r.params for r in rows):,}",
        f"{sum(r.macs for r in rows):,}",
        "",
        style="bold",
    )
    return table


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in shape)


def _fmt(value: float, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}%" if pct else f"{value:.4f}"


class TrainingDisplay:
    """Callbacks for train.fit: a live progress bar per epoch and a growing epoch table."""

    def __init__(
        self,
        console: Console,
        history: list[dict[str, Any]] | None = None,
        multi_label: bool = False,
    ):
        self.console = console
        self.multi_label = multi_label
        title = "training"
        columns = ["epoch", "train loss", "train acc", "val loss", "val acc", "lr", "time"]
        if multi_label:  # val mAP picks the best epoch
            title = "training (acc: subset accuracy, every label right at p = 0.5)"
            columns.insert(5, "val mAP")
        self.table = Table(title=title, title_justify="left")
        for col in columns:
            self.table.add_column(col, justify="right")
        for row in history or []:
            self._add(row, None, False)
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} img/s"),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = None
        self.live = Live(
            Group(self.table, self.progress), console=console, refresh_per_second=8, transient=False
        )

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        self.live.update(self.table)  # drop the finished progress bar from the final frame
        self.live.__exit__(*exc)

    def _add(self, row: dict[str, Any], seconds: float | None, improved: bool) -> None:
        mark = " *" if improved else ""
        cells = [
            str(row["epoch"]),
            _fmt(row["train_loss"]),
            _fmt(row["train_acc"], True),
            _fmt(row["val_loss"]),
            _fmt(row["val_acc"], True) + ("" if self.multi_label else mark),
        ]
        if self.multi_label:
            cells.append(_fmt(row["val_map"]) + mark)
        cells += [f"{row['lr']:.2e}", f"{seconds:.1f}s" if seconds is not None else ""]
        self.table.add_row(*cells)

    def on_setup(self, text: str) -> None:
        """The device, precision and where the data lives, once before epoch 1."""
        self.console.print(text)

    def on_decode(self, done: int, total: int) -> None:
        """Progress of decoding images (epoch 1's data preparation)."""
        if self.task is None:
            self.task = self.progress.add_task(
                "decode", total=total, epoch="0 (decoding)", loss="-", speed="-"
            )
        self.progress.update(self.task, completed=done, total=total)

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(
            "train", total=steps, epoch=f"{epoch}/{epochs}", loss="-", speed="-"
        )

    def on_step(self, step: int, steps: int, loss: float, images_per_s: float) -> None:
        self.progress.update(
            self.task, completed=step, loss=f"{loss:.4f}", speed=f"{images_per_s:,.0f}"
        )

    def on_epoch_end(self, row, seconds: float, improved: bool) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        self._add(row.as_dict(), seconds, improved)

    def on_not_learning(self, line: str) -> None:
        """The learning check's line (train.fit), printed when it fires."""
        self.console.print(f"[bold yellow]{escape(line)}[/bold yellow]")


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
        _fmt(m.map),
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
            _fmt(r.ap),
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
            _fmt(m.map) if name == "macro avg" else "",
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


def folds_table(summary: dict[str, Any]) -> Table:
    """K-fold results (crossval.summarize): one row per fold, then mean, std, min and max."""
    multi = summary.get("multi_label", False)
    table = Table(
        title=f"{summary['k']}-fold cross-validation ({summary['images']} images)",
        title_justify="left",
    )
    for name in ("fold", "train", "val", "best epoch", "val acc"):
        table.add_column(name, justify="right")
    if multi:
        table.add_column("val mAP", justify="right")
    for row in summary["folds"]:
        cells = [str(row["fold"]), str(row["train_images"]), str(row["val_images"])]
        cells += [str(row["best_epoch"]), f"{100 * row['val_acc']:.1f}%"]
        table.add_row(*cells, *([f"{row['val_map']:.4f}"] if multi else []))
    table.add_section()
    for stat in ("mean", "std", "min", "max"):
        acc = f"{100 * summary['val_acc'][stat]:.1f}%"
        extra = [f"{summary['val_map'][stat]:.4f}"] if multi else []
        table.add_row(stat, "", "", "", acc, *extra, style="bold" if stat == "mean" else None)
    return table
