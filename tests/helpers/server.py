"""`bigbird-pegasus serve` as a real process on a free 127.0.0.1 port (the server picks it: `--port 0`), started
and stopped by the tests, and reading its Prometheus metrics."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from helpers.cli import SRC

START_TIMEOUT = 120  # seconds to import torch, load the tiny model and listen, on a busy 2-core machine
STOP_TIMEOUT = 60
LISTENING = re.compile(r"serving .* on (http://127\.0\.0\.1:\d+) ")
METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")
# The `guarded_server` fixture's key and limits (tests/serve/conftest.py), small enough for tests to reach.
API_KEY = "test-key-7f3a"
GUARDED_LIMITS = dict(max_queue=2, max_request_bytes=65536, request_timeout=2)


@dataclass
class RunningServer:
    """A started server: its process, base URL (no trailing slash) and log file (stdout and stderr)."""

    process: subprocess.Popen
    url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        """SIGTERM, then its exit status (killed, and the test failed, if it does not stop in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        raise AssertionError(f"the server did not stop within {STOP_TIMEOUT} s of SIGTERM:\n{self.log_text()}")

    def metrics(self, headers: dict[str, str] | None = None) -> dict[str, float]:
        """`GET /metrics` as {"name{labels}": value}."""
        response = httpx.get(f"{self.url}/metrics", headers=headers, timeout=30)
        response.raise_for_status()
        return parse_metrics(response.text)

    def rss_bytes(self) -> int:
        """The server process's resident memory now (VmRSS)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc/PID/status")


def start_server(checkpoint: Path, *args: str, log: Path, env: dict[str, str] | None = None) -> RunningServer:
    """`python -m bigbird_pegasus serve --model CHECKPOINT --port 0 ARGS`, once it answers /health."""
    environment = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                   "PYTHONFAULTHANDLER": "1", **(env or {})}
    command = [sys.executable, "-m", "bigbird_pegasus", "serve", "--model", str(checkpoint), "--port", "0",
               "--threads", "1", *args]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment)
    server = RunningServer(process, "", log)
    deadline = time.monotonic() + START_TIMEOUT
    while not (found := LISTENING.search(server.log_text())):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the server did not start (exit {process.poll()}):\n{server.log_text()}")
        time.sleep(0.1)
    server.url = found.group(1)
    while True:
        try:
            if httpx.get(f"{server.url}/health", timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"/health never answered 200:\n{server.log_text()}")
        time.sleep(0.1)


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus' text format as {"name{labels}": value} (comments dropped)."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            match = METRIC_LINE.match(line)
            assert match, f"not a metric line: {line!r}"
            values[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return values


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def raw_request(url: str, head: str, body: bytes = b"", *, timeout: float = 30) -> RawResponse:
    """Send `head` (request line and headers, without the blank line that ends them) and `body` exactly as given,
    then read the answer: for requests an HTTP client would not send (a declared length it never sends, a body
    cut short)."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as connection:
        connection.sendall(head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body)
        response = http.client.HTTPResponse(connection)
        response.begin()
        return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
