"""Shared pieces of the subcommands: one-line errors, the --debug switch, option alias."""

from __future__ import annotations

import errno
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

EXIT_USAGE = 2
Opt = typer.Option


# The label-source flags, shared by every command that reads a data folder.
# Flags several commands share, declared once.
QuietOpt = Annotated[bool, Opt("--quiet", "-q", help="Print nothing but errors.")]
TtaOpt = Annotated[bool, Opt("--tta", help="Average over the image and its horizontal flip.")]
BatchOpt = Annotated[int, Opt("--batch-size", help="Images per batch.")]
LabelsOpt = Annotated[
    Path | None,
    Opt(
        "--labels",
        help="Labels file (.csv, .tsv, .jsonl): image path relative to DIR, label(s) or 0/1 "
        "columns, optional split (train/val/test). Default: class folders.",
    ),
]
LabelDelimiterOpt = Annotated[
    str, Opt("--label-delimiter", help="Separates several labels in one cell of --labels.")
]
MultiLabelOpt = Annotated[
    bool,
    Opt(
        "--multi-label",
        help="Several labels per image: sigmoid outputs (chosen automatically when any image "
        "has more than one label).",
    ),
]


# The input size flag of train and summary: N (N x N) or H,W.
ImageSizeOpt = Annotated[
    str | None,
    Opt(
        "--image-size",
        help="Input size in pixels: N (N x N) or H,W, e.g. 48,64 (default: 64; cnn train's "
        "automatic recipe may choose another).",
        show_default=False,
    ),
]


def image_size_option(text: str | None) -> int | list[int] | None:
    """--image-size parsed (None when absent); a one-line ConfigError when malformed."""
    from cnncli.config import parse_image_size

    return None if text is None else parse_image_size(text)


def label_options(labels: Path | None, delimiter: str, multi_label: bool):
    """The LabelOptions of the --labels, --label-delimiter and --multi-label flags."""
    from cnncli.data.labels import LabelOptions

    if labels is None and delimiter != ";":
        raise fail("--label-delimiter needs --labels FILE")
    if not delimiter or delimiter in ("\n", "\r", '"'):
        raise fail(f"--label-delimiter must be one or more characters, not {delimiter!r}")
    return LabelOptions(labels, delimiter, multi_label)


class DebugState:
    """Set by the root callback; --debug shows tracebacks instead of one-line errors."""

    debug = False


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print one red line on stderr and return the Exit to raise."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[red]error:[/red] {escape(message)}", markup=True
    )
    return typer.Exit(code)


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that are the user's input problem: shown as one line, exit 2."""
    from cnncli.config import ConfigError
    from cnncli.data.scan import DatasetError
    from cnncli.inference.bundle import BundleError
    from cnncli.model.pretrained.state_dict import WeightsError

    return (ConfigError, DatasetError, BundleError, WeightsError, FileNotFoundError)


# The disk, not the input, is the problem: full, over quota, read-only, or no permission.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def disk_error(exc: BaseException) -> str | None:
    """A one-line message when exc (or its cause) is a full or read-only disk, else None."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
            where = f"{exc.filename}: " if exc.filename else ""
            hint = "; free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
            return f"{where}cannot write ({exc.strerror}){hint}"
        # Orbax reports tensorstore write failures as a ValueError that quotes the OS error.
        text = str(exc)
        for reason in ("No space left on device", "Read-only file system", "Permission denied"):
            if reason in text:
                found = re.search(r'local file "([^"]+)"', text)
                where = f"{found.group(1)}: " if found else ""
                return f"{where}cannot write ({reason})"
        exc = exc.__cause__ or exc.__context__
    return None


@contextmanager
def handled_errors():
    """Turn user errors raised inside a command into one red line and exit code 2.

    A full or read-only disk met mid-command is one red line too, with exit code 1.
    """
    try:
        yield
    except typer.Exit:
        raise
    except Exception as exc:
        if DebugState.debug:
            raise
        if isinstance(exc, user_errors()):
            raise fail(str(exc)) from None
        message = disk_error(exc)
        if message is None:
            raise
        raise fail(message, 1) from None


def write_run_report(run_dir: Path, console, predictions=None) -> Path | None:
    """Write RUN/report.html after train or eval; a failure is a warning, never fatal
    (the run itself is already saved)."""
    from rich.markup import escape

    from cnncli.reporting.htmlreport import write_report

    try:
        return write_report(run_dir, predictions)
    except Exception as exc:
        if DebugState.debug:
            raise
        console.print(f"[yellow]report.html not written: {escape(repr(exc))}[/yellow]")
        return None
