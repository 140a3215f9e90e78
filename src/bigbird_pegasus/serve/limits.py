"""How much the service takes on: the batches it forms, the requests it queues, the bodies it reads, the time it
gives a request. The defaults are the safe ones `bigbird-pegasus serve` starts with."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 2 ** 20
DEFAULT_MAX_BATCH_SIZE = 4          # documents decoded together (the CLI's --batch-size default)
DEFAULT_MAX_WAIT_MS = 20.0          # a request waits this long for others to share its batch
DEFAULT_MAX_QUEUE = 32              # requests waiting for the model; past it, 503 with Retry-After
DEFAULT_MAX_REQUEST_BYTES = 16 * MIB  # a long paper's text is ~0.1 MiB, its PDF a few MiB; the issue caps it at 32
DEFAULT_REQUEST_TIMEOUT = 300.0     # seconds from a request's arrival to its answer (a 4096-token paper with the
                                    # large model takes about a minute on 2 CPU cores, see README "Performance")


@dataclass(frozen=True)
class ServiceLimits:
    """max_batch_size: documents decoded together; max_wait_ms: how long the first request of a batch waits for
    others; max_queue: requests waiting for the model; max_request_bytes: the largest body read;
    request_timeout: seconds a request may take, from its arrival to its answer."""

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    max_queue: int = DEFAULT_MAX_QUEUE
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT

    def __post_init__(self):
        for name in ("max_batch_size", "max_queue", "max_request_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be 0 or more, got {self.max_wait_ms}")
        if not self.request_timeout > 0:
            raise ValueError(f"request_timeout must be positive, got {self.request_timeout}")
