"""Dynamic batching: the documents of concurrent requests decoded together by one worker thread, off the event loop.

A request's documents join one queue. The worker takes the oldest document, waits until it has waited `max_wait_ms`
(or until `max_batch_size` documents that can share its batch are waiting), then runs it with the waiting documents
of the same options closest to it in length, at most `max_batch_size` in all. At most `max_queue` requests wait;
one more is refused (`QueueFull`) with an estimate of when to retry. A request that stops waiting (a timeout, a
client gone) takes its documents that have not started out of the queue.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)
RECENT_WEIGHT = 0.2  # share of the newest batch in the running mean of batch times (a mean over ~5 batches)

RunBatch = Callable[..., Sequence[Any]]  # run_batch(texts, *, options) -> one result per text


class QueueFull(Exception):
    """No room for another request; `retry_after` estimates the seconds until there is."""

    def __init__(self, retry_after: int):
        super().__init__(f"the queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass(eq=False)
class _Document:
    text: str
    options: Hashable
    arrival: float
    ticket: Ticket
    future: Future = field(default_factory=Future)


class Ticket:
    """One request's place in the queue: a future per document, in input order, each resolved with its result."""

    def __init__(self) -> None:
        self.documents: list[_Document] = []
        self.waiting = 0  # documents not yet taken into a batch

    @property
    def futures(self) -> list[Future]:
        return [document.future for document in self.documents]


class DynamicBatcher:
    """Runs `run_batch(texts, options=...) -> results` (one result per text, in order) on batches formed from the
    documents of concurrent requests with equal options. `on_batch(documents, seconds=...)` is told of every batch.

    Use: `start()`; per request `ticket = submit(texts, options)`, wait for `ticket.futures`, `cancel(ticket)` if
    the request stops waiting; `close()` runs what is queued, then stops the worker.
    """

    def __init__(self, run_batch: RunBatch, *, max_batch_size: int, max_wait_ms: float, max_queue: int,
                 on_batch: Callable[..., None] | None = None):
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self._max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self._on_batch = on_batch or (lambda documents, *, seconds: None)
        self._queue: list[_Document] = []  # in arrival order
        self._waiting_requests = 0
        self._running_documents = 0
        self._mean_batch_seconds = 1.0  # until the first batch is measured
        self._closing = False
        self._condition = threading.Condition()
        self._worker = threading.Thread(target=self._work, name="bigbird-pegasus-batcher", daemon=True)

    def start(self) -> None:
        self._worker.start()

    def close(self) -> None:
        """Refuse new requests, run the queued ones, stop the worker."""
        with self._condition:
            self._closing = True
            self._condition.notify_all()
        if self._worker.is_alive():
            self._worker.join()

    @property
    def waiting_requests(self) -> int:
        """Requests with documents not yet taken into a batch."""
        return self._waiting_requests

    @property
    def waiting_documents(self) -> int:
        return len(self._queue)

    @property
    def running_documents(self) -> int:
        """Documents of the batch the model is running (0: idle)."""
        return self._running_documents

    def is_full(self) -> bool:
        return self._waiting_requests >= self.max_queue

    def retry_after(self) -> int:
        """Seconds until the waiting documents have been run, by the recent batch times (at least 1)."""
        batches = math.ceil((len(self._queue) + 1) / self.max_batch_size)
        return max(1, math.ceil(batches * self._mean_batch_seconds))

    def submit(self, texts: Sequence[str], *, options: Hashable) -> Ticket:
        """Queue the documents of one request; QueueFull when `max_queue` requests are already waiting."""
        with self._condition:
            if self._closing or self.is_full():
                raise QueueFull(self.retry_after())
            ticket = Ticket()
            arrival = time.monotonic()
            ticket.documents = [_Document(text, options, arrival, ticket) for text in texts]
            ticket.waiting = len(texts)
            self._queue.extend(ticket.documents)
            self._waiting_requests += 1
            self._condition.notify_all()
        return ticket

    def cancel(self, ticket: Ticket) -> int:
        """Take the request's documents that have not started out of the queue; how many there were."""
        with self._condition:
            removed = ticket.waiting
            if removed:
                self._queue = [document for document in self._queue if document.ticket is not ticket]
                ticket.waiting = 0
                self._waiting_requests -= 1
                self._condition.notify_all()
        return removed

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._run(batch)

    def _next_batch(self) -> list[_Document] | None:
        """The next batch to run, once its oldest document has waited long enough; None when closed and empty."""
        with self._condition:
            while True:
                if not self._queue:
                    if self._closing:
                        return None
                    self._condition.wait()
                    continue
                oldest = self._queue[0]
                wait = oldest.arrival + self._max_wait - time.monotonic()
                if wait > 0 and not self._closing and self._count_like(oldest) < self.max_batch_size:
                    self._condition.wait(wait)  # woken early by a new or cancelled request: look again
                    continue
                batch = self._take(oldest)
                if batch:
                    self._running_documents = len(batch)
                    return batch

    def _count_like(self, oldest: _Document) -> int:
        return sum(1 for document in self._queue if document.options == oldest.options)

    def _take(self, oldest: _Document) -> list[_Document]:
        """Out of the queue: `oldest` and the documents of equal options nearest to it in length (characters),
        at most max_batch_size. Documents whose futures were cancelled meanwhile are dropped."""
        alike = [document for document in self._queue if document.options == oldest.options]
        alike.sort(key=lambda document: (abs(len(document.text) - len(oldest.text)), document.arrival))
        chosen = alike[:self.max_batch_size]
        taken = {id(document) for document in chosen}
        self._queue = [document for document in self._queue if id(document) not in taken]
        for document in chosen:
            document.ticket.waiting -= 1
            if document.ticket.waiting == 0:
                self._waiting_requests -= 1
        return [document for document in chosen if document.future.set_running_or_notify_cancel()]

    def _run(self, batch: list[_Document]) -> None:
        """Run one batch and resolve its documents' futures; a failure fails this batch's requests only."""
        started = time.monotonic()
        try:
            results = self._run_batch([document.text for document in batch], options=batch[0].options)
        except Exception as error:  # noqa: BLE001 (the worker must outlive any failure of one batch)
            logger.exception("a batch of %d documents failed", len(batch))
            for document in batch:
                document.future.set_exception(error)
        else:
            for document, result in zip(batch, results, strict=True):
                document.future.set_result(result)
        seconds = time.monotonic() - started
        self._mean_batch_seconds += RECENT_WEIGHT * (seconds - self._mean_batch_seconds)
        self._running_documents = 0
        self._on_batch(len(batch), seconds=seconds)
