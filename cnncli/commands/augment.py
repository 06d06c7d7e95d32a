"""`cnn augment`: expand a dataset on disk with the training augmentation ops."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnncli.commands.common import (
    LabelDelimiterOpt,
    LabelsOpt,
    Opt,
    QuietOpt,
    fail,
    handled_errors,
    label_options,
)
from cnncli.training.xla_env import configure_xla


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
    quiet: QuietOpt = False,
    labels_file: LabelsOpt = None,
    label_delimiter: LabelDelimiterOpt = ";",
) -> None:
    """Write augmented copies of a dataset's images into OUT, plus augment_manifest.csv.

    With --labels, every output keeps its source's labels, listed in OUT/labels.csv.
    """
    configure_xla()
    with handled_errors():
        from rich.markup import escape
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
        from rich.table import Table

        from cnncli import api
        from cnncli.augment.expand_paths import ExpandError
        from cnncli.augment.expand_preview import preview_target, write_preview
        from cnncli.reporting.report import make_console

        console = make_console(quiet=quiet)
        labels = label_options(labels_file, label_delimiter, False)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        try:
            if preview is not None:
                preview_target(src, preview)
            with Progress(*columns, console=console, transient=True) as bar:
                task = bar.add_task("reading", total=None)

                def on_progress(phase: str, done: int, total: int) -> None:
                    bar.update(task, description=phase, completed=done, total=total)

                result = api.augment(
                    src,
                    out,
                    ops,
                    preset=preset,
                    per_image=per_image,
                    target_per_class=target_per_class,
                    seed=seed,
                    copy_originals=not no_originals,
                    all_splits=all_splits,
                    fill=fill,
                    progress=on_progress,
                    labels=labels,
                )
            made_new = any(row.kind == "augmented" for row in result.rows)
            preview_path = write_preview(result, preview) if preview and made_new else None
        except ExpandError as exc:
            raise fail(str(exc)) from None

        for line in result.skipped_rows:
            console.print(f"[yellow]skipped {escape(line)}[/yellow]", soft_wrap=True)
        for rel, reason in result.skipped:
            console.print(
                f"[yellow]skipped {result.src / rel}: {reason}[/yellow]",
                markup=True,
                soft_wrap=True,
            )
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
        if labels_file is not None:
            console.print(
                f"labels: {result.out / 'labels.csv'} (train on it with "
                f"--labels {result.out / 'labels.csv'})"
            )
        if preview_path is not None:
            console.print(f"preview: {preview_path}")
