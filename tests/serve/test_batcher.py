"""The dynamic batcher on its own: which documents it runs together and when, its bounded queue, cancellation,
failures and closing. Its batches run a function that records them; a document "gate" holds the worker until
the test opens it, so that what waits in the queue is known."""

from __future__ import annotations

import threading

import pytest

from bigbird_pegasus.serve.batcher import DynamicBatcher, QueueFull

SETTLE = 10  # seconds a future may take to resolve before the test fails (the batches here take microseconds)
NEVER = 60_000  # ms: a window no test waits out, so that only full batches (or closing) start a batch


class Recorder:
    """run_batch for the batcher: records (options, texts) and answers each text with `text!`; raises for "boom";
    the "gate" document holds the worker until `gate.set()`."""

    def __init__(self):
        self.batches: list[tuple[object, list[str]]] = []
        self.gate = threading.Event()
        self.gate_running = threading.Event()

    def __call__(self, texts, *, options):
        if "gate" in texts:
            self.gate_running.set()
            assert self.gate.wait(SETTLE)
        self.batches.append((options, list(texts)))
        if "boom" in texts:
            raise RuntimeError("the model failed")
        return [f"{text}!" for text in texts]


@pytest.fixture
def recorder():
    return Recorder()


def started(recorder: Recorder, **limits) -> DynamicBatcher:
    batcher = DynamicBatcher(recorder, **{"max_batch_size": 4, "max_wait_ms": 50, "max_queue": 8, **limits})
    batcher.start()
    return batcher


def hold_worker(batcher: DynamicBatcher, recorder: Recorder):
    """Occupy the worker with the gate document (it starts once its window ends: the batcher's max_wait_ms must be
    short); the documents queued next wait until the gate opens."""
    ticket = batcher.submit(["gate"], options="gate")
    assert recorder.gate_running.wait(SETTLE)
    return ticket


def results(ticket) -> list[str]:
    return [future.result(timeout=SETTLE) for future in ticket.futures]


def test_requests_arriving_within_the_window_share_one_batch(recorder):
    batcher = started(recorder, max_batch_size=8, max_wait_ms=NEVER)
    tickets = [batcher.submit(texts, options="same") for texts in (["a"], ["b", "c"], ["d"])]
    batcher.close()  # the window never ends here: closing runs what waits
    assert [results(ticket) for ticket in tickets] == [["a!"], ["b!", "c!"], ["d!"]]
    assert recorder.batches == [("same", ["a", "b", "c", "d"])]


def test_a_full_batch_starts_at_once_and_never_exceeds_max_batch_size(recorder):
    batcher = started(recorder, max_batch_size=2, max_wait_ms=NEVER)
    first = batcher.submit(["a", "b", "c"], options="same")
    second = batcher.submit(["d", "e"], options="same")
    assert first.futures[0].result(timeout=SETTLE) == "a!", "a full batch does not wait for the window"
    assert second.futures[0].result(timeout=SETTLE) == "d!"
    assert batcher.waiting_documents == 1, "the last document, alone, waits for its window"
    batcher.close()
    assert [texts for _, texts in recorder.batches] == [["a", "b"], ["c", "d"], ["e"]]


def test_only_documents_with_equal_options_share_a_batch(recorder):
    batcher = started(recorder, max_batch_size=8)
    hold_worker(batcher, recorder)
    beams = [batcher.submit([text], options=("num_beams", 2)) for text in ("a", "c")]
    plain = [batcher.submit([text], options=()) for text in ("b", "d")]
    recorder.gate.set()
    batcher.close()
    assert [results(t) for t in beams + plain] == [["a!"], ["c!"], ["b!"], ["d!"]]
    assert recorder.batches[1:] == [(("num_beams", 2), ["a", "c"]), ((), ["b", "d"])]


def test_the_oldest_document_goes_first_with_those_nearest_its_length(recorder):
    batcher = started(recorder, max_batch_size=3, max_wait_ms=0)
    hold_worker(batcher, recorder)
    for length in (100, 5, 95, 10, 103):
        batcher.submit(["x" * length], options="same")
    recorder.gate.set()
    batcher.close()
    assert [[len(text) for text in texts] for _, texts in recorder.batches[1:]] == [[100, 103, 95], [5, 10]]


def test_a_full_queue_refuses_a_request_until_one_leaves(recorder):
    batcher = started(recorder, max_queue=2)
    hold_worker(batcher, recorder)
    waiting = [batcher.submit(["a", "b"], options="same"), batcher.submit(["c"], options="same")]
    assert batcher.is_full() and batcher.waiting_requests == 2 and batcher.waiting_documents == 3
    with pytest.raises(QueueFull) as refused:
        batcher.submit(["d"], options="same")
    assert refused.value.retry_after >= 1
    assert batcher.cancel(waiting[0]) == 2
    later = batcher.submit(["d"], options="same")
    recorder.gate.set()
    batcher.close()
    assert results(waiting[1]) == ["c!"] and results(later) == ["d!"]
    assert not any(future.done() for future in waiting[0].futures), "a cancelled request's documents never ran"
    assert all(text not in texts for _, texts in recorder.batches for text in ("a", "b"))


def test_cancelling_a_request_whose_documents_all_started_changes_nothing(recorder):
    batcher = started(recorder)
    gate = hold_worker(batcher, recorder)
    assert batcher.cancel(gate) == 0 and batcher.waiting_requests == 0
    recorder.gate.set()
    assert results(gate) == ["gate!"]
    batcher.close()


def test_a_failing_batch_fails_its_own_requests_and_the_worker_goes_on(recorder):
    batcher = started(recorder, max_batch_size=2, max_wait_ms=0)
    hold_worker(batcher, recorder)
    failing = batcher.submit(["boom", "x"], options="same")
    fine = batcher.submit(["y"], options="same")
    recorder.gate.set()
    with pytest.raises(RuntimeError, match="the model failed"):
        failing.futures[1].result(timeout=SETTLE)
    assert results(fine) == ["y!"]
    batcher.close()


def test_closing_runs_what_is_queued_then_refuses_requests(recorder):
    batcher = started(recorder, max_wait_ms=NEVER)
    ticket = batcher.submit(["a", "b"], options="same")
    batcher.close()
    assert results(ticket) == ["a!", "b!"]
    with pytest.raises(QueueFull):
        batcher.submit(["c"], options="same")
