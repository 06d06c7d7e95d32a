"""Running a server: the model loaded, the socket bound, every batch size compiled, then
uvicorn until Ctrl-C (in-flight requests finish), and the batcher stopped."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cnncli.serving.engine import BATCH_SIZES

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_CONNECTIONS = 64  # more at once are answered 503; each may hold max_upload_mb in memory
GRACEFUL_SECONDS = 5  # Ctrl-C waits this long for requests in flight


class ServeError(ValueError):
    """The server cannot start (port taken, bad limits); the message says what to change."""


@dataclass
class ServeOptions:
    """How to serve: where to listen and the limits on each request."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_mb: float = 20.0
    max_images: int = 32
    token: str | None = None
    max_batch: int = BATCH_SIZES[-1]
    access_log: bool = False


@dataclass
class Ready:
    """What a started server tells its caller."""

    url: str
    model: str
    compile_seconds: float
    batch_sizes: tuple[int, ...]


def serve(
    source: str | Path,
    options: ServeOptions,
    on_compile: Callable[[int, int], None] | None = None,
    on_ready: Callable[[Ready], None] | None = None,
) -> None:
    """Serve the model at source until interrupted; on_ready once it answers requests."""
    import uvicorn

    from cnncli.inference.exported import load_model
    from cnncli.serving.app import Settings, build_app
    from cnncli.serving.batcher import Batcher
    from cnncli.serving.engine import compile_served
    from cnncli.serving.model_card import model_card

    _check(options)
    model = load_model(source)
    sock = bind(options.host, options.port)
    try:
        served = compile_served(model, options.max_batch, on_compile)
        batcher = Batcher(served.classify, served.batch_sizes)
        settings = Settings(
            max_upload_bytes=int(options.max_upload_mb * 1024 * 1024),
            max_images=options.max_images,
            token=options.token or None,
            allowed_hosts=LOOPBACK_NAMES if options.host in LOOPBACK_NAMES else None,
        )
        app = build_app(served, batcher, settings)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=options.access_log,
            lifespan="off",
            limit_concurrency=MAX_CONNECTIONS,
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
            server_header=False,
        )
        server = uvicorn.Server(config)
        batcher.start()
        try:
            if on_ready:
                url = _url(sock)
                name = model_card(model)["name"]
                on_ready(Ready(url, name, served.compile_seconds, served.batch_sizes))
            server.run(sockets=[sock])
        finally:
            batcher.stop()
    finally:
        sock.close()


def _check(options: ServeOptions) -> None:
    if options.max_upload_mb <= 0:
        raise ServeError("--max-upload-mb must be > 0")
    if options.max_images < 1:
        raise ServeError("--max-images must be >= 1")
    if options.max_batch < 1:
        raise ServeError("--max-batch must be >= 1")
    if not 0 <= options.port <= 65535:
        raise ServeError("--port must be 0..65535 (0: any free port)")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, socket.gaierror) as exc:
        raise ServeError(f"--host {host}: not an address to listen on ({exc})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = "; pick another --port (0: any free one)" if port else ""
        raise ServeError(f"cannot listen on {host}:{port} ({exc.strerror or exc}){hint}") from None
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"http://{host}:{port}/"
