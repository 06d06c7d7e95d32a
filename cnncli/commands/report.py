"""`cnn report RUN`: write RUN/report.html, one self-contained page about the run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnncli.commands.common import QuietOpt, fail, handled_errors
from cnncli.training.xla_env import configure_xla


def report(
    run: Annotated[Path, typer.Argument(help="A run folder (runs/train).", show_default=False)],
    quiet: QuietOpt = False,
) -> None:
    """Write RUN/report.html: command and config, data, layers, curves, confusion matrix,
    per-class metrics, galleries of mistakes, augmentation samples, Grad-CAM, timing.

    One file with everything inline (no network, no scripts): open it from disk or mail it.
    """
    configure_xla()
    with handled_errors():
        from cnncli.reporting.htmlreport import write_report
        from cnncli.reporting.report import make_console

        if not (run / "config.toml").is_file() or not (run / "run.json").is_file():
            raise fail(f"{run}: not a run folder (no config.toml / run.json)")
        path = write_report(run)
        make_console(quiet=quiet).print(f"wrote [bold]{path}[/bold]")
