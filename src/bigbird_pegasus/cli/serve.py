"""`bigbird-pegasus serve`: the summarizer as an HTTP service other programs call."""

from __future__ import annotations

import argparse
import logging
import os

from ..errors import UserError
from .arguments import non_negative_float, non_negative_int, positive_float, positive_int
from .summarizer_options import (add_generation_arguments, add_long_input_arguments, add_model_arguments,
                                 build_summarizer)

HELP = "Serve summaries over HTTP: the Hugging Face Inference API's summarization task, a web page, metrics."
API_KEY_VARIABLE = "BIGBIRD_PEGASUS_API_KEY"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Address, key and limits of the service; then the model, generation and long-document options of
    `summarize`, which become the service's defaults."""
    from ..serve.limits import (DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_QUEUE, DEFAULT_MAX_REQUEST_BYTES,
                                DEFAULT_MAX_WAIT_MS, DEFAULT_REQUEST_TIMEOUT, MIB)

    service = parser.add_argument_group("service")
    service.add_argument("--host", default="127.0.0.1",
                         help="address to listen on (default: %(default)s, this machine only; 0.0.0.0: every "
                              "interface, with an API key)")
    service.add_argument("--port", type=non_negative_int, default=8000,
                         help="port to listen on (default: %(default)s; 0: any free port, printed at start)")
    service.add_argument("--api-key", metavar="KEY",
                         help=f"require 'Authorization: Bearer KEY' on every endpoint but /health and the page "
                              f"(default: ${API_KEY_VARIABLE}, which keeps the key out of the process list; none)")
    service.add_argument("--max-batch-size", type=positive_int, default=DEFAULT_MAX_BATCH_SIZE,
                         help="most documents decoded together (default: %(default)s)")
    service.add_argument("--max-wait-ms", type=non_negative_float, default=DEFAULT_MAX_WAIT_MS,
                         help="how long a request waits for others to share its batch (default: %(default)g)")
    service.add_argument("--max-queue", type=positive_int, default=DEFAULT_MAX_QUEUE,
                         help="most requests waiting for the model; more get 503 with Retry-After "
                              "(default: %(default)s)")
    service.add_argument("--max-request-bytes", type=positive_int, default=DEFAULT_MAX_REQUEST_BYTES,
                         help=f"largest request body read; larger ones get 413 (default: %(default)s, "
                              f"{DEFAULT_MAX_REQUEST_BYTES // MIB} MiB)")
    service.add_argument("--request-timeout", type=positive_float, default=DEFAULT_REQUEST_TIMEOUT,
                         metavar="SECONDS",
                         help="time from a request's arrival to its answer; past it, 504 (default: %(default)g)")
    service.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                         help="server log on standard error, one line per request at info (default: %(default)s)")
    add_model_arguments(parser)
    add_generation_arguments(parser)
    add_long_input_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Load the model, then serve until SIGTERM or Ctrl-C."""
    from ..serve.limits import ServiceLimits
    from ..serve.server import serve_forever

    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_VARIABLE)
    if api_key is not None and not api_key.strip():
        raise UserError(f"the API key is empty (--api-key or ${API_KEY_VARIABLE}); give a key, or none at all")
    limits = ServiceLimits(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                           max_queue=args.max_queue, max_request_bytes=args.max_request_bytes,
                           request_timeout=args.request_timeout)
    summarizer = build_summarizer(args, batch_size=limits.max_batch_size)
    logging.getLogger("bigbird_pegasus.serve").setLevel(logging.INFO)  # the address it serves on, at start
    serve_forever(summarizer, model_name=args.model, limits=limits, api_key=api_key, host=args.host,
                  port=args.port, log_level=args.log_level)
    return 0
