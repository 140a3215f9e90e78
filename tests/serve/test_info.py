"""`GET /info` describes the model the service runs: its name, positions, dtype, quantization, device and the
summaries' defaults; a service started with `--quantize int8` runs the int8 model and says so."""

from __future__ import annotations

import httpx
import pytest
from starlette.testclient import TestClient
from torch import nn

from bigbird_pegasus import Summarizer
from bigbird_pegasus.modeling.linear import Linear
from bigbird_pegasus.serve.app import ENDPOINTS, build_app
from bigbird_pegasus.serve.engine import SummaryEngine
from bigbird_pegasus.serve.limits import ServiceLimits
from bigbird_pegasus.serve.metrics import ServiceMetrics
from helpers.cli import MAX_POSITIONS, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXT = "The council approved the budget on Monday. Critics said the figures were incomplete."


def test_info_describes_the_model_and_its_defaults(server, tiny_checkpoint):
    info = httpx.get(f"{server.url}/info", timeout=30).json()
    assert info["model"] == str(tiny_checkpoint)
    assert info["max_position_embeddings"] == MAX_POSITIONS
    assert (info["dtype"], info["quantize"], info["device"]) == ("float32", None, "cpu")
    assert info["generation_defaults"]["num_beams"] >= 1 and info["api_key_required"] is False


def test_a_quantized_service_runs_the_int8_model_and_says_so(tiny_checkpoint):
    """The service's Summarizer built as `serve --quantize int8` builds it: the int8 model answers, with the
    summary `summarize --quantize int8` prints."""
    summarizer = Summarizer(tiny_checkpoint, device="cpu", quantize="int8")
    assert not any(type(module) in (nn.Linear, Linear) for module in summarizer.model.modules())
    engine = SummaryEngine(summarizer, model_name="tiny", max_batch_size=2)
    app = build_app(engine, limits=ServiceLimits(), metrics=ServiceMetrics(ENDPOINTS), api_key=None)
    with TestClient(app) as client:
        assert client.get("/info").json()["quantize"] == "int8"
        answer = client.post("/", json={"inputs": TEXT})
    assert answer.status_code == 200, answer.text
    printed = run_cli("summarize", "-", "--model", str(tiny_checkpoint), "--quantize", "int8", "--device", "cpu",
                      "--threads", "1", stdin=TEXT.encode())
    assert printed.returncode == 0, printed.stderr
    assert [answer.json()[0]["summary_text"]] == printed.stdout.splitlines()

