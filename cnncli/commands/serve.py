"""`cnn serve`: a trained model behind HTTP (JSON API, dynamic batching) with a page at `/`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnncli.commands.common import Opt, fail, handled_errors

INSTALL_HINT = "pip install 'cnn[serve]'"
TOKEN_ENV = "CNN_SERVE_TOKEN"


def serve(
    run: Annotated[
        Path | None,
        typer.Argument(
            help="Run or model/ folder, or an export folder (default: newest run under runs/).",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        Path | None,
        Opt("--model", "-m", help="A .onnx or .stablehlo file to serve instead (no jax for ONNX)."),
    ] = None,
    host: Annotated[
        str, Opt("--host", help="Address to listen on (0.0.0.0: every network, mind --token).")
    ] = "127.0.0.1",
    port: Annotated[int, Opt("--port", help="TCP port (0: any free one).")] = 8000,
    max_upload_mb: Annotated[
        float, Opt("--max-upload-mb", help="Largest request body in MB (413 above).")
    ] = 20.0,
    max_images: Annotated[
        int, Opt("--max-images", help="Most images in one request (413 above).")
    ] = 32,
    token: Annotated[
        str | None,
        Opt(
            "--token",
            envvar=TOKEN_ENV,
            show_envvar=True,
            help="Require 'Authorization: Bearer TOKEN' on /predict, /explain and /model.",
        ),
    ] = None,
    max_batch: Annotated[
        int, Opt("--max-batch", help="Largest batch compiled at start-up (1, 2, 4, ... up to it).")
    ] = 32,
    access_log: Annotated[bool, Opt("--access-log", help="Print one line per request.")] = False,
) -> None:
    """Serve a model over HTTP: POST /predict, GET /model, GET /health and a page at /."""
    if model is not None and run is not None:
        raise fail("give a run folder or --model FILE, not both")
    try:
        import python_multipart  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise fail(f"cnn serve needs {exc.name}: {INSTALL_HINT}") from None
    from cnncli.training.xla_env import configure_xla

    configure_xla()
    with handled_errors():
        from rich.console import Console

        from cnncli.serving.server import ServeError, ServeOptions
        from cnncli.serving.server import serve as run_server

        console = Console(highlight=False, soft_wrap=True)
        source = run or model
        if source is None:
            from cnncli.training.run import newest_run

            source = newest_run()
            if source is None:
                raise fail("no trained model under runs/; pass RUN or --model FILE")
            console.print(f"using model [bold]{source}[/bold]")
        options = ServeOptions(host, port, max_upload_mb, max_images, token, max_batch, access_log)

        def on_compile(done: int, total: int) -> None:
            if done == 1:
                console.print(f"compiling {total} batch sizes ...")

        def on_ready(ready) -> None:
            sizes = ",".join(str(b) for b in ready.batch_sizes)
            console.print(
                f"model [bold]{ready.model}[/bold]: batch sizes {sizes} compiled in "
                f"{ready.compile_seconds:.1f} s"
            )
            link = ready.url + (f"#token={token}" if token else "")
            console.print(f"serving on {ready.url} (page: {link}); Ctrl-C stops", markup=False)
            if host not in ("127.0.0.1", "localhost", "::1") and not token:
                console.print(
                    f"[yellow]warning: listening on {host} without --token: anyone on the "
                    "network can use this model[/yellow]"
                )

        try:
            run_server(source, options, on_compile, on_ready)
        except ServeError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            pass
        console.print("server stopped")
