"""What each endpoint does. Summaries go through the batcher; every refusal is a ServiceError (JSON, right status).

A summary request is checked in the order that costs the service least: the API key (401), the declared body size
(413, before any of the body is read), room in the queue (503), then the body itself, read up to the limit (413)
within the time left (408), its JSON (400, 422) and options (422); then it waits for its batch until
--request-timeout (504) or until its client leaves (its documents that have not started leave the queue).
At most --max-queue bodies are read at once (more: 503), so bodies in memory stay under
max_queue x max_request_bytes whatever the number of connections.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
from importlib.resources import files
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from ..pipeline.summarizer import Summary
from .batcher import DynamicBatcher, QueueFull
from .engine import SummaryEngine
from .errors import ServiceError
from .limits import ServiceLimits
from .metrics import DISCONNECTED, ServiceMetrics
from .payload import SummaryOptions, parse_summary_request, parse_upload_query
from .uploads import uploaded_text

PAGE = files(__package__).joinpath("page.html")


class Endpoints:
    """The handlers of one service; `api_key` None means every endpoint is open."""

    def __init__(self, engine: SummaryEngine, batcher: DynamicBatcher, *, limits: ServiceLimits,
                 metrics: ServiceMetrics, api_key: str | None):
        self.engine = engine
        self.batcher = batcher
        self.limits = limits
        self.metrics = metrics
        self.api_key = api_key
        self.page_html = PAGE.read_text(encoding="utf-8")
        self._bodies_in_flight = 0

    async def summarize(self, request: Request) -> Response:
        """`POST /`: the Inference API's summarization task, one `{"summary_text", ...}` per input."""
        deadline = _now() + self.limits.request_timeout
        self._authorize(request)
        self._check_declared_size(request)
        self._refuse_when_full()
        wanted = parse_summary_request(await self._read_body(request, deadline=deadline))
        self.engine.check(wanted.options)
        return await self._answer(request, wanted.texts, options=wanted.options, deadline=deadline)

    async def upload(self, request: Request) -> Response:
        """`POST /upload?filename=NAME&...`: the body is a .txt or .pdf file, summarized as one document."""
        deadline = _now() + self.limits.request_timeout
        self._authorize(request)
        self._check_declared_size(request)
        self._refuse_when_full()
        filename, options = parse_upload_query(request.query_params.multi_items())
        self.engine.check(options)
        body = await self._read_body(request, deadline=deadline)
        reading = asyncio.to_thread(uploaded_text, body, filename=filename,
                                    content_type=request.headers.get("content-type"))
        try:
            text = await asyncio.wait_for(reading, timeout=max(deadline - _now(), 0))
        except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11 on
            raise self._timed_out("the file could not be read") from None
        return await self._answer(request, [text], options=options, deadline=deadline)

    async def page(self, request: Request) -> Response:
        """`GET /`: the page where a person pastes text or uploads a file (it asks for the key when one is set)."""
        return HTMLResponse(self.page_html)

    async def health(self, request: Request) -> Response:
        """`GET /health`: 200 while the service answers (its model is loaded before it listens); no key needed."""
        return JSONResponse({"status": "ok"})

    async def info(self, request: Request) -> Response:
        """`GET /info`: the model, its positions, the summaries' defaults, the limits, the version."""
        self._authorize(request)
        return JSONResponse({**self.engine.describe(), "limits": dataclasses.asdict(self.limits),
                             "api_key_required": self.api_key is not None})

    async def prometheus(self, request: Request) -> Response:
        """`GET /metrics`: Prometheus' text format."""
        self._authorize(request)
        return Response(self.metrics.exposition(), media_type=self.metrics.content_type)

    def _authorize(self, request: Request) -> None:
        """Nothing when no key is set or `Authorization: Bearer KEY` holds it (compared in constant time)."""
        if self.api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.api_key.encode()):
            raise ServiceError(401, "missing or wrong API key: send the header 'Authorization: Bearer KEY'",
                               headers={"WWW-Authenticate": "Bearer"})

    def _check_declared_size(self, request: Request) -> None:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limits.max_request_bytes:
            raise ServiceError(413, self._too_large(f"{int(declared):,} bytes"))

    def _refuse_when_full(self) -> None:
        if self.batcher.is_full() or self._bodies_in_flight >= self.limits.max_queue:
            raise self._busy(self.batcher.retry_after())

    def _busy(self, retry_after: int) -> ServiceError:
        return ServiceError(503, f"the service is busy: {self.limits.max_queue} requests are waiting or arriving "
                                 f"(--max-queue); retry in {retry_after} s", headers={"Retry-After": str(retry_after)})

    def _too_large(self, size: str) -> str:
        return f"the body has {size}; this service reads at most {self.limits.max_request_bytes:,} bytes " \
               "(--max-request-bytes)"

    def _timed_out(self, what: str, *, then: str = "") -> ServiceError:
        return ServiceError(504, f"{what} within --request-timeout {self.limits.request_timeout:g} s{then}; retry "
                                 "later, or send shorter documents or a smaller max_length")

    async def _read_body(self, request: Request, *, deadline: float) -> bytes:
        """The whole body, at most max_request_bytes of it, read before the deadline."""
        self._bodies_in_flight += 1
        try:
            return await self._read_bounded_body(request, deadline=deadline)
        finally:
            self._bodies_in_flight -= 1

    async def _read_bounded_body(self, request: Request, *, deadline: float) -> bytes:
        chunks: list[bytes] = []
        received = 0

        async def read() -> None:
            nonlocal received
            async for chunk in request.stream():
                received += len(chunk)
                if received > self.limits.max_request_bytes:
                    raise ServiceError(413, self._too_large(f"more than {self.limits.max_request_bytes:,} bytes"))
                chunks.append(chunk)

        try:
            await asyncio.wait_for(read(), timeout=max(deadline - _now(), 0))
        except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11 on
            raise ServiceError(408, f"the body did not arrive within --request-timeout "
                                    f"{self.limits.request_timeout:g} s") from None
        return b"".join(chunks)

    async def _answer(self, request: Request, texts: list[str], *, options: SummaryOptions,
                      deadline: float) -> Response:
        """Queue the texts, wait for their summaries; 503 when the queue is full, 504 past the deadline, and
        nothing (status 499, for the metrics) when the client leaves first."""
        try:
            ticket = self.batcher.submit(texts, options=options)
        except QueueFull as full:
            raise self._busy(full.retry_after) from None
        results = asyncio.gather(*(asyncio.wrap_future(future) for future in ticket.futures))
        client_gone = asyncio.ensure_future(_client_leaves(request))
        try:
            done, _ = await asyncio.wait({results, client_gone}, timeout=max(deadline - _now(), 0),
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            client_gone.cancel()
            self.batcher.cancel(ticket)  # its documents not started, if any (one failed batch fails the request)
            results.cancel()
        if results in done:
            return JSONResponse([_as_json(summary) for summary in results.result()])
        if client_gone in done:
            return Response(status_code=DISCONNECTED)
        raise self._timed_out("no summary", then=": the documents not started were taken out of the queue")


async def _client_leaves(request: Request) -> None:
    """Returns when the client has closed its connection (the body has been read, so only that can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _as_json(summary: Summary) -> dict[str, Any]:
    return {"summary_text": summary.summary, "input_tokens": summary.input_tokens, "truncated": summary.truncated,
            "chunks": summary.chunks, "seconds": summary.seconds}


def _now() -> float:
    return asyncio.get_running_loop().time()
