"""Shared pieces of the subcommands: one-line errors, the --debug switch, option alias."""

from __future__ import annotations

from contextlib import contextmanager

import typer

EXIT_USAGE = 2
Opt = typer.Option


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


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that are the user's input problem: shown as one line, exit 2."""
    from cnncli.bundle import BundleError
    from cnncli.config import ConfigError
    from cnncli.data.scan import DatasetError

    return (ConfigError, DatasetError, BundleError, FileNotFoundError)


@contextmanager
def handled_errors():
    """Turn user errors raised inside a command into one red line and exit code 2."""
    try:
        yield
    except typer.Exit:
        raise
    except Exception as exc:
        if DebugState.debug or not isinstance(exc, _user_errors()):
            raise
        raise fail(str(exc)) from None
