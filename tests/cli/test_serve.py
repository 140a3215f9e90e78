"""`bigbird-pegasus serve` refusing to start, as one line and status 1 (or argparse's 2) without a traceback, and
its warning when it would listen beyond this machine without an API key."""

from __future__ import annotations

import logging
import socket

import pytest

from bigbird_pegasus import Summarizer
from bigbird_pegasus.serve import server
from bigbird_pegasus.serve.limits import ServiceLimits
from helpers.cli import run_cli


def failed(result, fragment: str, *, status: int = 1) -> None:
    assert result.returncode == status, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert fragment in result.stderr, result.stderr


def test_a_port_in_use_is_one_line(tiny_checkpoint):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_cli("serve", "--model", str(tiny_checkpoint), "--port", str(port))
    failed(result, f"bigbird-pegasus serve: error: cannot listen on 127.0.0.1:{port}: Address already in use")


@pytest.mark.parametrize("option, message", [
    (["--max-length", "600"], "a summary of 600 tokens (start token included) is longer than the model's 512 positions"),
    (["--num-beams", "17"], "the summaries' defaults cannot work with this model: num_beams=17: at most 16 on this "
                            "service"),
], ids=["past the positions", "past the service's beams"])
def test_defaults_the_model_cannot_follow_are_refused_before_listening(tiny_checkpoint, option, message):
    result = run_cli("serve", "--model", str(tiny_checkpoint), "--port", "0", *option)
    failed(result, f"bigbird-pegasus serve: error: {message}")


@pytest.mark.parametrize("args, env, fragment, status", [
    (["--api-key", " "], {}, "the API key is empty (--api-key or $BIGBIRD_PEGASUS_API_KEY)", 1),
    ([], {"BIGBIRD_PEGASUS_API_KEY": ""}, "the API key is empty", 1),
    (["--max-wait-ms", "-1"], {}, "argument --max-wait-ms: must be 0 or more, got -1", 2),
    (["--request-timeout", "0"], {}, "argument --request-timeout: must be greater than 0, got 0", 2),
    (["--max-queue", "0"], {}, "argument --max-queue: must be at least 1, got 0", 2),
], ids=["blank key", "empty key variable", "negative wait", "no timeout", "no queue"])
def test_bad_service_options_are_one_line(tiny_checkpoint, args, env, fragment, status):
    failed(run_cli("serve", "--model", str(tiny_checkpoint), "--port", "0", *args, env=env), fragment, status=status)


@pytest.mark.parametrize("host, api_key, warned", [("0.0.0.0", None, True), ("::", None, True),
                                                   ("0.0.0.0", "k", False), ("127.0.0.1", None, False),
                                                   ("localhost", None, False), ("::1", None, False)])
def test_listening_beyond_this_machine_without_a_key_warns(tiny_checkpoint, monkeypatch, caplog, host, api_key,
                                                           warned):
    # the tests bind 127.0.0.1 only: the socket asked for `host` is a loopback one, and uvicorn does not run
    monkeypatch.setattr(server, "listen", lambda host, *, port: socket.create_server(("127.0.0.1", 0)))
    monkeypatch.setattr(server.uvicorn.Server, "run", lambda self, sockets: sockets[0].close())
    summarizer = Summarizer(tiny_checkpoint, device="cpu")
    with caplog.at_level(logging.WARNING, logger="bigbird_pegasus.serve"):
        server.serve_forever(summarizer, model_name="tiny", limits=ServiceLimits(), api_key=api_key, host=host,
                             port=0)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings == ([f"listening on {host} without an API key: anyone who can reach this port can use the "
                         "service (set --api-key or BIGBIRD_PEGASUS_API_KEY)"] if warned else [])
