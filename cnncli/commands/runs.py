"""`cnn runs [DIR]`: a table of the runs under runs/ (or DIR); `--diff A B` compares two."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnncli.commands.common import Opt, fail, handled_errors


def runs(
    base: Annotated[
        Path, typer.Argument(help="Folder of run folders (or one run).", show_default=False)
    ] = Path("runs"),
    sort: Annotated[str, Opt("--sort", help="date, name, acc, wall, epochs or status.")] = "date",
    json_out: Annotated[bool, Opt("--json", help="Print the runs as JSON on stdout.")] = False,
    diff: Annotated[
        tuple[Path, Path] | None,
        Opt("--diff", help="Two run folders: the config lines that differ, final metrics."),
    ] = None,
) -> None:
    """List runs: name, date, data, model, image size, epochs, best val accuracy, wall
    time and status (finished, interrupted, running)."""
    with handled_errors():
        import json

        from rich.markup import escape

        from cnncli.reporting.report import make_console
        from cnncli.reporting.runs import SORT_KEYS, diff_runs, find_runs, is_run, sort_runs

        console = make_console(to_stderr=json_out)
        if diff is not None:
            for run in diff:
                if not is_run(run):
                    raise fail(f"{run}: not a run folder (no run.json, config.toml or metrics.csv)")
            result = diff_runs(*diff)
            if json_out:
                print(json.dumps(result))
            else:
                _print_diff(console, result)
            return
        if sort not in SORT_KEYS:
            raise fail(f"--sort must be one of {', '.join(SORT_KEYS)}, not {sort!r}")
        if not base.is_dir():
            raise fail(f"{base}: no such folder of runs")
        found = sort_runs(find_runs(base), sort)
        if json_out:
            print(json.dumps([r.to_dict() for r in found]))
            return
        if not found:
            console.print(f"no runs in {escape(str(base))}")
            return
        console.print(_table(found, f"runs in {base}"))


def _table(found, title: str):
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left")
    columns = ["run", "date", "data", "model", "size", "epochs", "best val acc", "wall", "status"]
    if any(r.notes for r in found):
        columns.append("notes")
    right = ("size", "epochs", "best val acc", "wall")
    for col in columns:
        table.add_column(col, justify="right" if col in right else "left")
    colours = {"finished": "green", "running": "cyan", "interrupted": "yellow"}
    for r in found:
        acc = f"{100 * r.best_val_acc:.1f}%" if r.best_val_acc is not None else "-"
        wall = f"{r.wall_s / 60:.1f} min" if r.wall_s is not None else "-"
        table.add_row(
            escape(r.name),
            r.date.replace("T", " ")[:16],
            escape(r.data),
            escape(r.model),
            _size(r.image_size),
            f"{r.epochs_done}/{r.epochs if r.epochs is not None else '?'}",
            acc,
            wall,
            f"[{colours[r.status]}]{r.status}[/]",
            *([escape("; ".join(r.notes))] if len(columns) == 10 else []),
        )
    return table


def _size(size) -> str:
    if isinstance(size, list):
        return "x".join(map(str, size))
    return str(size or "-")


def _print_diff(console, result) -> None:
    from rich.markup import escape
    from rich.table import Table

    a, b = Path(result["a"]).name, Path(result["b"]).name
    table = Table(title="config lines that differ", title_justify="left")
    for col in ("key", a, b):
        table.add_column(escape(col))
    for key, va, vb in result["config"]:
        table.add_row(escape(key), escape(va), escape(vb))
    if not result["config"]:
        table.add_row("(none)", "", "")
    console.print(table)
    final = Table(title="final metrics", title_justify="left")
    for col in ("", a, b):
        final.add_column(escape(col), justify="right")
    fa, fb = result["final"]
    for key in dict.fromkeys([*fa, *fb]):
        final.add_row(key, _cell(key, fa.get(key)), _cell(key, fb.get(key)))
    console.print(final)


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key.endswith("acc") and isinstance(value, float):
        return f"{100 * value:.2f}%"
    if key == "epoch":
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
