"""`cnn doctor`: check a dataset without training; a Rich report or JSON, exit 1 on harm."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnncli.commands.common import (
    LabelDelimiterOpt,
    LabelsOpt,
    MultiLabelOpt,
    Opt,
    fail,
    handled_errors,
    label_options,
)


def doctor(
    data_dir: Annotated[
        Path,
        typer.Argument(
            help="Folder with <class>/ subfolders (or train/ and val/).", show_default=False
        ),
    ],
    json_out: Annotated[bool, Opt("--json", help="Print the report as JSON on stdout.")] = False,
    near_distance: Annotated[
        int,
        Opt(
            "--near-distance",
            help="Perceptual-hash bits (of 64) within which images are near-duplicates; -1 = off.",
        ),
    ] = 4,
    min_side: Annotated[
        int, Opt("--min-side", help="Report images smaller than this many pixels on a side.")
    ] = 8,
    val_fraction: Annotated[
        float,
        Opt("--val-fraction", help="The split to check for leaks, as `cnn train` would make it."),
    ] = 0.2,
    seed: Annotated[int, Opt("--seed", help="Split seed, as for `cnn train`.")] = 0,
    follow_symlinks: Annotated[
        bool, Opt("--follow-symlinks", help="Follow symlinks that point outside the folder.")
    ] = False,
    workers: Annotated[
        int | None, Opt("--workers", help="Decoding processes (default: CPUs, at most 8).")
    ] = None,
    limit: Annotated[int, Opt("--limit", help="Rows shown per section (0 = all).")] = 20,
    labels: LabelsOpt = None,
    label_delimiter: LabelDelimiterOpt = ";",
    multi_label: MultiLabelOpt = False,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="Print nothing; only the exit code.")] = False,
    model: Annotated[
        Path | None,
        Opt(
            "--model",
            help="A trained run: rank likely-mislabeled images by its predictions (confident "
            "learning) and add them to its report.",
        ),
    ] = None,
    oof: Annotated[
        Path | None,
        Opt(
            "--oof",
            help="Out-of-fold predictions (oof.csv of `cnn train --folds K`) to rank "
            "likely-mislabeled images by; finds more than --model's in-sample predictions.",
        ),
    ] = None,
    folds: Annotated[
        int | None,
        Opt(
            "--folds",
            help="Train K models (`cnn train DIR --folds K`, with --model's config if given) "
            "and rank likely-mislabeled images by their out-of-fold predictions.",
        ),
    ] = None,
    folds_config: Annotated[
        Path | None,
        Opt(
            "--config",
            help="With --folds: the TOML config the K models train with (default: --model's "
            "config, else the automatic recipe).",
        ),
    ] = None,
    copy_suspects: Annotated[
        Path | None,
        Opt(
            "--copy-suspects",
            help="Copy each likely-mislabeled image into DIR/<suggested label>/ for review "
            "(copies only, never overwrites; not inside the data folder).",
        ),
    ] = None,
    issues_out: Annotated[
        Path | None,
        Opt(
            "--issues-out",
            help="Where to write label_issues.csv (default: the run's or oof.csv's folder).",
        ),
    ] = None,
) -> None:
    """Check a dataset without training; exit 1 on unreadable files, leaks or conflicting labels.

    With --model RUN, --oof FILE or --folds K it also lists likely-mislabeled images (the
    given label against the model's confident one) and writes label_issues.csv; it never
    moves or edits a file.
    """
    with handled_errors():
        import json

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from cnncli.data.labels import load_dataset, skipped_rows
        from cnncli.doctor import check_dataset
        from cnncli.report import make_console

        if not -1 <= near_distance <= 32:
            raise fail("--near-distance must be between -1 (off) and 32 bits")
        if min_side < 1:
            raise fail("--min-side must be >= 1")
        console = make_console(to_stderr=json_out, quiet=quiet)
        dataset = load_dataset(
            data_dir,
            label_options(labels, label_delimiter, multi_label),
            val_fraction=val_fraction,
            seed=seed,
            follow_symlinks=follow_symlinks,
        )
        columns = (TextColumn("checking"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("checking", total=None)
            report = check_dataset(
                dataset,
                near_distance=near_distance,
                min_side=min_side,
                workers=workers,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        skipped = skipped_rows(dataset)
        issues = None
        if model is not None or oof is not None or folds is not None:
            from cnncli.commands.label_check import label_check

            issues = label_check(
                dataset, model, oof, folds, issues_out, console, folds_config, copy_suspects
            )
        if json_out:
            result = report.to_dict()
            if dataset.label_source is not None:
                result["labels"] = dataset.label_source
                result["multi_label"] = dataset.multi_label
            if issues is not None:
                result["label_issues"] = issues
            print(json.dumps(result, ensure_ascii=False))
        else:
            _render(console, report, limit or None)
            _render_skipped(console, dataset, skipped, limit or None)
            if issues is not None:
                from cnncli.commands.label_check import render_issues

                render_issues(console, issues, limit or None)
        if report.hurts_training or skipped:
            raise typer.Exit(1)


def _render_skipped(console, dataset, skipped: list[str], limit: int | None) -> None:
    """The labels file's skipped rows, one line each (nothing for class folders)."""
    from rich.markup import escape

    source = dataset.label_source
    if source is None:
        return
    mode = "multi-label" if dataset.multi_label else "one label per image"
    console.print(
        f"labels: {escape(source['file'])}: {source['used']} of {source['rows']} rows used ({mode})"
    )
    shown, more = _more(skipped, limit)
    for line in shown:
        console.print(f"[red]skipped {escape(line)}[/red]", soft_wrap=True)
    if more:
        console.print(more)
    if skipped:
        console.print(f"[red]{len(skipped)} row(s) of the labels file skipped: fix them[/red]")


def _more(rows: list, limit: int | None) -> tuple[list, str]:
    if limit is None or len(rows) <= limit:
        return rows, ""
    return rows[:limit], f"... and {len(rows) - limit} more (--limit 0 shows all)"


def _render(console, report, limit: int | None) -> None:
    from rich.markup import escape
    from rich.table import Table

    from cnncli.report import dataset_table

    console.print(f"data: [bold]{escape(report.root)}[/bold] ({report.layout} layout)")
    console.print(dataset_table(report.counts, "files"))
    ratio = report.imbalance
    usable = ", ".join(f"{c} {n}" for c, n in report.usable.items())
    console.print(
        f"usable images per class: {escape(usable)}; imbalance (largest / smallest): "
        + (f"{ratio:.1f}x" if ratio is not None else "a class has no usable image")
    )
    bad = report.unreadable + report.tiny
    if bad:
        table = Table(title="files training would skip or barely use", title_justify="left")
        for col in ("file", "problem", "reason"):
            table.add_column(col)
        shown, more = _more(bad, limit)
        for f in shown:
            table.add_row(escape(f.path), f.problem, escape(f.reason or ""))
        console.print(table)
        if more:
            console.print(more)
    for group in _more(report.duplicates, limit)[0]:
        harmful = group.conflict or group.leak
        colour = "red" if harmful else "yellow"
        console.print(f"[{colour}]{escape(group.describe())}[/{colour}]")
    if _more(report.duplicates, limit)[1]:
        console.print(_more(report.duplicates, limit)[1])
    for name, mix in report.mixed_modes().items():
        console.print(
            f"class {escape(name)} mixes greyscale ({mix['grey']}) and colour "
            f"({mix['colour']}) images"
        )
    if report.ignored:
        console.print(f"[yellow]ignored {len(report.ignored)} path(s):[/yellow]")
        shown, more = _more(report.ignored, limit)
        for path, reason in shown:
            console.print(f"  {escape(path)}: {escape(reason)}")
        if more:
            console.print(f"  {more}")
    _render_sizes(console, report)
    counts = (len(report.unreadable), len(report.leaks), len(report.conflicts))
    summary = (
        f"{len(report.files)} files: {counts[0]} unreadable, {counts[1]} leak(s), "
        f"{counts[2]} conflicting label(s), {len(report.duplicates)} duplicate group(s), "
        f"{len(report.tiny)} tiny"
    )
    if report.hurts_training:
        console.print(f"[red]{summary}: fix these before training[/red]")
    else:
        console.print(f"[green]{summary}: nothing that would hurt training[/green]")


def _render_sizes(console, report) -> None:
    sizes = report.sizes()
    if not sizes:
        return
    w, h = sizes["width"], sizes["height"]
    console.print(
        f"image sizes: width {w['min']}..{w['max']} (median {w['median']:g}), "
        f"height {h['min']}..{h['max']} (median {h['median']:g}); shorter side "
        + ", ".join(f"{k}: {v}" for k, v in sizes["shorter_side"].items())
    )
    console.print("commonest sizes: " + ", ".join(f"{k} ({v})" for k, v in sizes["common"].items()))
    console.print("colour modes: " + ", ".join(f"{m} {n}" for m, n in report.modes().items()))
