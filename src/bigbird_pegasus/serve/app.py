"""The ASGI application (Starlette): the routes, the batcher's worker started and stopped with the application,
every request counted and timed, and every error, unknown paths and failures included, answered as JSON."""

from __future__ import annotations

import asyncio
import contextlib
import time

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .batcher import DynamicBatcher
from .endpoints import Endpoints
from .engine import SummaryEngine
from .errors import ServiceError, error_response
from .limits import ServiceLimits
from .metrics import DISCONNECTED, ServiceMetrics

ENDPOINTS = ("/", "/upload", "/health", "/info", "/metrics")
INTERNAL_ERROR = 500


def build_app(engine: SummaryEngine, *, limits: ServiceLimits, metrics: ServiceMetrics,
              api_key: str | None) -> Starlette:
    """The service over `engine`: its batcher runs while the application does (started at startup; at shutdown,
    after the server has finished the requests in flight, it runs what is queued and stops)."""
    batcher = DynamicBatcher(engine.summarize, max_batch_size=limits.max_batch_size,
                             max_wait_ms=limits.max_wait_ms, max_queue=limits.max_queue,
                             on_batch=metrics.record_batch)
    metrics.watch_queue(requests=lambda: batcher.waiting_requests, documents=lambda: batcher.waiting_documents,
                        running=lambda: batcher.running_documents)
    endpoints = Endpoints(engine, batcher, limits=limits, metrics=metrics, api_key=api_key)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        batcher.start()
        yield
        await asyncio.to_thread(batcher.close)

    routes = [
        Route("/", endpoints.page, methods=["GET"]),
        Route("/", endpoints.summarize, methods=["POST"]),
        Route("/upload", endpoints.upload, methods=["POST"]),
        Route("/health", endpoints.health, methods=["GET"]),
        Route("/info", endpoints.info, methods=["GET"]),
        Route("/metrics", endpoints.prometheus, methods=["GET"]),
    ]
    handlers = {ServiceError: _service_error, HTTPException: _http_error, ClientDisconnect: _client_gone,
                Exception: _internal_error}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.add_middleware(CountRequests, metrics=metrics)
    return app


class CountRequests:
    """ASGI middleware: each HTTP request's status and time, in the metrics (a failure counts as a 500)."""

    def __init__(self, app: ASGIApp, *, metrics: ServiceMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = INTERNAL_ERROR

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            self.metrics.record_request(scope["path"], status=status, seconds=time.perf_counter() - started)


async def _service_error(request: Request, error: ServiceError) -> Response:
    return error.response()


async def _http_error(request: Request, error: HTTPException) -> Response:
    """Starlette's own refusals: an unknown path (404), a method a path does not take (405)."""
    if error.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path} (endpoints: {', '.join(ENDPOINTS)})"
    elif error.status_code == 405:
        message = f"{request.url.path} does not take {request.method}"
    else:
        message = error.detail
    return error_response(error.status_code, message, headers=error.headers)


async def _client_gone(request: Request, error: ClientDisconnect) -> Response:
    return Response(status_code=DISCONNECTED)


async def _internal_error(request: Request, error: Exception) -> Response:
    """A failure of the service itself, answered without its traceback (the server logs it)."""
    return error_response(INTERNAL_ERROR, "internal error: the service could not summarize this request; "
                                          "its log has the details")
