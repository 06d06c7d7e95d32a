"""`cnn doctor`: check a dataset without training; a Rich report or JSON, exit 1 on what is
certain (unreadable files, identical files across classes or splits)."""

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
from cnncli.quality.near_duplicates import NearRule


def doctor(
    data_dir: Annotated[
        Path,
        typer.Argument(
            help="Folder with <class>/ subfolders (or train/ and val/).", show_default=False
        ),
    ],
    json_out: Annotated[bool, Opt("--json", help="Print the report as JSON on stdout.")] = False,
    near_similarity: Annotated[
        float,
        Opt(
            "--near-similarity",
            help="How alike two pictures' pretrained features must be (cosine, 0.5-1) to be "
            "listed as near-duplicates; higher lists fewer.",
        ),
    ] = NearRule.similarity,
    no_near: Annotated[
        bool,
        Opt("--no-near", help="Skip the near-duplicate search (identical files are still found)."),
    ] = False,
    near_distance: Annotated[
        int | None,
        Opt("--near-distance", hidden=True, help="Old perceptual-hash setting; -1 = --no-near."),
    ] = None,
    html_out: Annotated[
        Path | None,
        Opt(
            "--html",
            help="Write a page with the identical files and near-duplicates as thumbnails "
            "side by side.",
        ),
    ] = None,
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
    """Check a dataset without training; exit 1 on unreadable files or on identical files
    across classes (conflicting labels) or splits (leaks).

    Near-duplicates (similar pretrained features: re-encoded, resized, cropped, rotated or
    framed copies, or the same thing shot twice) are listed for you to check, not errors.

    With --model RUN, --oof FILE or --folds K it also lists likely-mislabeled images (the
    given label against the model's confident one) and writes label_issues.csv; it never
    moves or edits a file.
    """
    with handled_errors():
        import json

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from cnncli import api
        from cnncli.data.labels import load_dataset, skipped_rows
        from cnncli.reporting.report import make_console
        from cnncli.training.xla_env import configure_xla

        if near_distance is not None and near_distance != -1:
            raise fail(
                "--near-distance is gone (near-duplicates are found by pretrained features "
                "now): use --near-similarity S, or --no-near to skip them"
            )
        if not 0.5 <= near_similarity <= 1.0:
            raise fail("--near-similarity must be between 0.5 and 1")
        if min_side < 1:
            raise fail("--min-side must be >= 1")
        near = None if no_near or near_distance == -1 else NearRule(similarity=near_similarity)
        if near is not None:
            configure_xla()  # before the near-duplicate search imports jax
        console = make_console(to_stderr=json_out, quiet=quiet)
        dataset = load_dataset(
            data_dir,
            label_options(labels, label_delimiter, multi_label),
            val_fraction=val_fraction,
            seed=seed,
            follow_symlinks=follow_symlinks,
        )
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("checking files", total=None)
            tasks = {"near": None}

            def comparing(done: int, total: int) -> None:
                if tasks["near"] is None:
                    tasks["near"] = bar.add_task("comparing pictures", total=total)
                bar.update(tasks["near"], completed=done, total=total)

            report = api.doctor_of(
                dataset,
                near,
                min_side=min_side,
                workers=workers,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
                near_progress=comparing,
            )
        if html_out is not None:
            from cnncli.quality.doctor_html import write_page

            write_page(html_out, dataset.root, report.duplicates)
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
            _render(console, report, limit or None, html_out)
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


def _render(console, report, limit: int | None, html_out: Path | None = None) -> None:
    from rich.markup import escape
    from rich.table import Table

    from cnncli.reporting.report import dataset_table

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
    _render_duplicates(console, report, limit, html_out)
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
    certain = [g for g in report.duplicates if g.certain]
    summary = (
        f"{len(report.files)} files: {len(report.unreadable)} unreadable, "
        f"{len(certain)} group(s) of identical files ({len(report.leaks)} leak(s), "
        f"{len(report.conflicts)} conflicting label(s)), {len(report.tiny)} tiny"
    )
    if report.hurts_training:
        console.print(f"[red]{summary}: fix these before training[/red]")
    else:
        console.print(f"[green]{summary}: nothing certain that would hurt training[/green]")
    if report.near:
        near = report.near
        console.print(
            f"[yellow]{len(near)} near-duplicate group(s) to check by eye "
            f"({sum(g.leak for g in near)} across splits, {sum(g.conflict for g in near)} "
            "across classes)[/yellow]"
        )


def _render_duplicates(console, report, limit: int | None, html_out: Path | None) -> None:
    """Identical files (fix these), then near-duplicates (check these), each one group a line."""
    from rich.markup import escape

    certain = [g for g in report.duplicates if g.certain]
    if certain:
        console.print("[bold]identical files[/bold] (same bytes or pixels):")
        shown, more = _more(certain, limit)
        for group in shown:
            colour = "red" if group.conflict or group.leak else "yellow"
            console.print(f"  [{colour}]{escape(group.describe())}[/{colour}]", soft_wrap=True)
        if more:
            console.print(f"  {more}")
    near = report.near
    if report.near_rule is None:
        console.print("near-duplicates: not looked for (--no-near)")
    elif near:
        console.print(
            "[bold]near-duplicates[/bold] (check these: the first picture, then the ones that "
            "look like it with their similarity, 1.00 = the same; not errors):"
        )
        shown, more = _more(near, limit)
        for group in shown:
            console.print(f"  [yellow]{escape(group.describe())}[/yellow]", soft_wrap=True)
        if more:
            console.print(f"  {more}")
    if html_out is not None:
        console.print(f"duplicates side by side: {escape(str(html_out))}")
    elif near or certain:
        console.print(f"see them side by side: cnn doctor {escape(report.root)} --html dups.html")


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
