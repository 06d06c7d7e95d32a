"""The HTTP API and the page, as a Starlette app: POST /predict, POST /explain, GET /model,
GET /health, GET /. Every refusal is a JSON answer ({"error", "message", "status"})."""

from __future__ import annotations

import asyncio
import base64
import hmac
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from cnncli.data.decode import DecodeError
from cnncli.serving.batcher import Batcher
from cnncli.serving.engine import ServedModel
from cnncli.serving.errors import ApiError
from cnncli.serving.model_card import model_card
from cnncli.serving.page import content_security_policy, page_html
from cnncli.serving.upload import decode_upload, read_body, split_images

# On every answer: no MIME sniffing, no caching of predictions, no referrer leaks.
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}
DECODE_THREADS = 2  # Pillow releases the GIL while it decodes: one thread per core here
DEFAULT_TOP_K = 5


@dataclass
class Settings:
    """The limits and access rules of one server."""

    max_upload_bytes: int
    max_images: int
    token: str | None = None
    # Host header names a loopback-only server answers to (DNS rebinding guard); None: any.
    allowed_hosts: frozenset[str] | None = None


def build_app(served: ServedModel, batcher: Batcher, settings: Settings) -> Starlette:
    """The app for one loaded model whose batcher is running."""
    card = model_card(served.model)
    decode_pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="cnn-serve-decode")
    explain_pool = ThreadPoolExecutor(1, thread_name_prefix="cnn-serve-explain")
    explainer = []  # compiled on the first /explain request

    def guard(request: Request, needs_token: bool = True) -> None:
        if settings.allowed_hosts is not None:
            host = request.headers.get("host", "").rsplit(":", 1)[0].lower()
            if host.strip("[]") not in settings.allowed_hosts:
                raise ApiError(
                    400,
                    "bad_host",
                    "this server only answers to 127.0.0.1 and localhost; start it with "
                    "--host to serve other names",
                )
        if needs_token and settings.token is not None:
            given = request.headers.get("authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                value.strip().encode(), settings.token.encode()
            ):
                raise ApiError(
                    401,
                    "unauthorized",
                    "missing or wrong token: send the header 'Authorization: Bearer TOKEN'",
                )

    async def decoded_images(request: Request, max_images: int):
        body = await read_body(
            request.stream(), request.headers.get("content-length"), settings.max_upload_bytes
        )
        uploads = split_images(body, request.headers.get("content-type"), max_images)
        loop = asyncio.get_running_loop()
        resize, channels = served.model.resize, served.model.channels
        jobs = [
            loop.run_in_executor(decode_pool, decode_upload, u.data, u.name, resize, channels)
            for u in uploads
        ]
        images = await asyncio.gather(*jobs, return_exceptions=True)
        for index, (upload, image) in enumerate(zip(uploads, images, strict=True), 1):
            if isinstance(image, DecodeError):
                where = upload.name if len(uploads) == 1 else f"image {index} ({upload.name})"
                raise ApiError(400, image.kind, f"{where}: {image.reason}")
            if isinstance(image, BaseException):
                raise image
        return uploads, images

    async def classified(images) -> list:
        futures = batcher.submit(list(images))
        return await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))

    async def predict(request: Request) -> Response:
        guard(request)
        k = _top_k(request, len(served.classes))
        uploads, images = await decoded_images(request, settings.max_images)
        probs = await classified(images)
        results = [
            {"name": u.name, **served.result(p, k)} for u, p in zip(uploads, probs, strict=True)
        ]
        return _json({"model": card["name"], "results": results})

    async def explain(request: Request) -> Response:
        guard(request)
        if not served.is_bundle:
            raise ApiError(
                400,
                "explain_unavailable",
                "Grad-CAM needs a run's model (cnn serve RUN), not an exported file",
            )
        k = _top_k(request, len(served.classes))
        uploads, images = await decoded_images(request, 1)
        (probs,) = await classified(images)
        target = int(probs.argmax())
        loop = asyncio.get_running_loop()
        png = await loop.run_in_executor(explain_pool, _gradcam_png, images[0], target)
        result = {"name": uploads[0].name, **served.result(probs, k)}
        result["gradcam"] = {
            "label": served.classes[target],
            "png": "data:image/png;base64," + base64.b64encode(png).decode("ascii"),
        }
        return _json({"model": card["name"], "results": [result]})

    def _gradcam_png(image, target: int) -> bytes:
        from cnncli.serving.gradcam import make_explainer, overlay_png

        if not explainer:
            explainer.append(make_explainer(served.model))
        return overlay_png(image, explainer[0](image, target))

    async def model(request: Request) -> Response:
        guard(request)
        limits = {
            "max_upload_mb": settings.max_upload_bytes / (1024 * 1024),
            "max_images": settings.max_images,
            "batch_sizes": list(served.batch_sizes),
        }
        return _json({**card, "server": limits})

    async def health(request: Request) -> Response:
        guard(request, needs_token=False)
        stats = batcher.stats
        return _json(
            {
                "status": "ok",
                "model": card["name"],
                "batches": stats.batches,
                "images": stats.images,
                "largest_batch": stats.largest,
            }
        )

    async def page(request: Request) -> Response:
        guard(request, needs_token=False)
        nonce = secrets.token_urlsafe(18)
        headers = {**COMMON_HEADERS, "Content-Security-Policy": content_security_policy(nonce)}
        return HTMLResponse(page_html(nonce), headers=headers)

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/predict", predict, methods=["POST"]),
        Route("/explain", explain, methods=["POST"]),
        Route("/model", model, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
    handlers = {
        ApiError: _api_error,
        HTTPException: _http_error,
        Exception: _server_error,
    }
    return Starlette(routes=routes, exception_handlers=handlers)


def _top_k(request: Request, classes: int) -> int:
    text = request.query_params.get("top_k")
    if text is None:
        return min(DEFAULT_TOP_K, classes)
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 1:
        raise ApiError(400, "bad_request", f"top_k must be a whole number >= 1, not {text!r}")
    return min(k, classes)


def _json(data: dict, status: int = 200, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers={**COMMON_HEADERS, **(headers or {})})


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    extra = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return _json(exc.as_json(), exc.status, extra)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    message = {
        404: f"no such route: {request.method} {request.url.path} (routes: GET /, "
        "POST /predict, POST /explain, GET /model, GET /health)",
        405: f"{request.method} is not allowed on {request.url.path}",
    }.get(exc.status_code, str(exc.detail))
    error = ApiError(exc.status_code, codes.get(exc.status_code, "http_error"), message)
    return _json(error.as_json(), exc.status_code, dict(exc.headers or {}))


async def _server_error(request: Request, exc: Exception) -> Response:
    error = ApiError(500, "internal_error", f"the server failed: {type(exc).__name__}")
    return _json(error.as_json(), 500)
