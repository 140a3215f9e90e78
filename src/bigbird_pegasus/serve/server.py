"""Run the service with uvicorn: listen, serve until SIGTERM (or Ctrl-C), then stop accepting connections, finish
the requests in flight, run what is queued, and return (the command exits 0)."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from ..errors import UserError
from ..pipeline.summarizer import Summarizer
from .app import ENDPOINTS, build_app
from .engine import SummaryEngine
from .errors import ServiceError
from .limits import ServiceLimits
from .metrics import ServiceMetrics
from .payload import SummaryOptions

logger = logging.getLogger(__name__)
LISTEN_BACKLOG = 2048  # connections the kernel holds before the server accepts them (uvicorn's default)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def serve_forever(summarizer: Summarizer, *, model_name: str, limits: ServiceLimits, api_key: str | None,
                  host: str, port: int, log_level: str = "info") -> None:
    """Serve `summarizer` (its model loaded, its options the defaults) on host:port (0: any free port) until a
    stop signal; a UserError when the defaults cannot work with the model or the address cannot be used."""
    metrics = ServiceMetrics(ENDPOINTS)
    engine = SummaryEngine(summarizer, model_name=model_name, max_batch_size=limits.max_batch_size, metrics=metrics)
    try:
        engine.check(SummaryOptions())
    except ServiceError as error:
        raise UserError(f"the summaries' defaults cannot work with this model: {error.message}") from None
    sock = listen(host, port=port)
    app = build_app(engine, limits=limits, metrics=metrics, api_key=api_key)
    if not is_loopback(host) and api_key is None:
        logger.warning("listening on %s without an API key: anyone who can reach this port can use the service "
                       "(set --api-key or BIGBIRD_PEGASUS_API_KEY)", host)
    bound_host, bound_port = sock.getsockname()[:2]
    logger.info("serving %s on http://%s:%d (SIGTERM or Ctrl-C stops it)", model_name,
                f"[{bound_host}]" if ":" in bound_host else bound_host, bound_port)
    config = uvicorn.Config(app, log_level=log_level, lifespan="on", timeout_graceful_shutdown=None,
                            server_header=False)
    with _stop_signals_end_quietly():
        uvicorn.Server(config).run(sockets=[sock])


def listen(host: str, *, port: int) -> socket.socket:
    """A socket listening on host:port; a UserError saying why it cannot (address in use, unknown host, ...)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    except OSError as error:
        raise UserError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def is_loopback(host: str) -> bool:
    """Whether `host` only reaches this machine (a name other than localhost may resolve anywhere)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def _stop_signals_end_quietly() -> Iterator[None]:
    """uvicorn catches SIGTERM and SIGINT to shut down gracefully, then raises the signal again for the handler
    that was there before it; with this one there, a graceful stop ends the command normally (status 0)."""
    previous = {stop: signal.signal(stop, lambda number, frame: None) for stop in STOP_SIGNALS}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
