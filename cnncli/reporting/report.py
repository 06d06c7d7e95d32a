"""Rich output: dataset and layer tables, live training progress, epoch rows, K-fold results.

The evaluation and prediction tables are in result_tables."""

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
    from cnncli.model.conv_arithmetic import LayerRow

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


def metric_text(value: float, pct: bool = False) -> str:
    """A metric with 4 decimals, or a percentage with 1 (pct); "-" when missing."""
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
            metric_text(row["train_loss"]),
            metric_text(row["train_acc"], True),
            metric_text(row["val_loss"]),
            metric_text(row["val_acc"], True) + ("" if self.multi_label else mark),
        ]
        if self.multi_label:
            cells.append(metric_text(row["val_map"]) + mark)
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
