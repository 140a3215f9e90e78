"""Servers the service's tests share, each a real `bigbird-pegasus serve` process on the tiny checkpoint.

`server`: open (no API key), batches of up to 4 documents gathered over 50 ms.
`guarded_server`: an API key, one document per batch, a queue of 2 requests, 64 KiB bodies, a 2 s timeout: small
limits that tests can reach with a few requests.
"""

from __future__ import annotations

import pytest

from helpers.server import API_KEY, GUARDED_LIMITS, start_server


@pytest.fixture(scope="session")
def server(tiny_checkpoint, tmp_path_factory):
    running = start_server(tiny_checkpoint, "--max-batch-size", "4", "--max-wait-ms", "50",
                           log=tmp_path_factory.mktemp("server") / "server.log")
    yield running
    assert running.stop() == 0, running.log_text()


@pytest.fixture(scope="session")
def guarded_server(tiny_checkpoint, tmp_path_factory):
    running = start_server(tiny_checkpoint, "--max-batch-size", "1",
                           "--max-queue", str(GUARDED_LIMITS["max_queue"]),
                           "--max-request-bytes", str(GUARDED_LIMITS["max_request_bytes"]),
                           "--request-timeout", str(GUARDED_LIMITS["request_timeout"]),
                           env={"BIGBIRD_PEGASUS_API_KEY": API_KEY},
                           log=tmp_path_factory.mktemp("guarded_server") / "server.log")
    yield running
    assert running.stop() == 0, running.log_text()
