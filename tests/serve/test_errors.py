"""Every bad request gets a JSON `{"error": "..."}` with the right status and a message naming the problem, never
a traceback, and the service stays up and correct after each; the API key guards every endpoint but /health and
the page, and is compared in constant time."""

from __future__ import annotations

import hmac

import httpx
import pytest
from starlette.testclient import TestClient

from bigbird_pegasus import Summarizer
from bigbird_pegasus.serve.app import ENDPOINTS, build_app
from bigbird_pegasus.serve.engine import SummaryEngine
from bigbird_pegasus.serve.limits import ServiceLimits
from bigbird_pegasus.serve.metrics import ServiceMetrics
from helpers.inference_client import run_inference_client
from helpers.server import API_KEY, GUARDED_LIMITS, raw_request

TEXT = "The council approved the budget on Monday. Critics said the figures were incomplete."


def generation(**values):
    return {"inputs": TEXT, "parameters": {"generate_parameters": values}}


# (what is wrong, the body: JSON-able or raw bytes, status, a fragment of the error message)
BAD_BODIES = [
    ("malformed JSON", b'{"inputs": "unterminated', 400, "not valid JSON: Unterminated string"),
    ("not UTF-8", b'{"inputs": "caf\xe9 au lait"}', 400, "not UTF-8: byte 0xe9 at offset 15"),
    ("empty body", b"", 400, "the body is empty"),
    ("not an object", [TEXT], 422, "must be a JSON object"),
    ("missing inputs", {"parameters": {}}, 422, "missing 'inputs'"),
    ("unknown field", {"inputs": TEXT, "text": TEXT}, 422, "unknown field 'text'"),
    ("empty inputs", {"inputs": ""}, 422, "'inputs' is empty"),
    ("blank inputs", {"inputs": " \n\t "}, 422, "'inputs' is empty"),
    ("empty list", {"inputs": []}, 422, "'inputs' is an empty list"),
    ("number inputs", {"inputs": 42}, 422, "'inputs' must be a string or a list of strings, got a number"),
    ("non-string item", {"inputs": [TEXT, None]}, 422, "inputs[1] must be a string, got null"),
    ("blank item", {"inputs": [TEXT, "  "]}, 422, "inputs[1] is empty"),
    ("parameters not an object", {"inputs": TEXT, "parameters": [1]}, 422, "'parameters' must be an object"),
    ("unknown parameter", {"inputs": TEXT, "parameters": {"temperature": 0.7}}, 422,
     "unknown parameter 'temperature'"),
    ("generate_parameters not an object", {"inputs": TEXT, "parameters": {"generate_parameters": 3}}, 422,
     "'generate_parameters' must be an object, got a number"),
    ("unknown generation parameter", generation(do_sample=True), 422, "unknown generation parameter 'do_sample'"),
    ("string for an integer", generation(num_beams="4"), 422, 'num_beams must be an integer, got "4"'),
    ("fraction for an integer", generation(max_length=9.5), 422, "max_length must be an integer, got 9.5"),
    ("boolean for an integer", generation(num_beams=True), 422, "num_beams must be an integer, got true"),
    ("string for a number", generation(length_penalty="high"), 422, 'length_penalty must be a number, got "high"'),
    ("no beams", generation(num_beams=0), 422, "num_beams=0: must be a positive integer"),
    ("too many beams", generation(num_beams=17), 422, "num_beams=17: at most 16"),
    ("negative length", generation(min_length=-1), 422, "min_length=-1: must be a non-negative integer"),
    ("summary past the positions", generation(max_length=600), 422, "longer than the model's 512 positions"),
    ("new tokens past the positions", generation(max_new_tokens=512), 422, "a summary of 513 tokens"),
    ("no room after the start token", generation(max_length=1), 422, "max_length=1"),
    ("early_stopping", generation(early_stopping="sometimes"), 422, 'early_stopping must be true, false or "never"'),
    ("repetition_penalty", generation(repetition_penalty=0), 422, "repetition_penalty=0: must be positive"),
    ("truncation", {"inputs": TEXT, "parameters": {"truncation": "only_second"}}, 422, "truncation must be one of"),
    ("clean_up_tokenization_spaces", {"inputs": TEXT, "parameters": {"clean_up_tokenization_spaces": False}}, 422,
     "only true"),
]
BAD_UPLOADS = [
    ("unknown query parameter", "?filename=a.txt&path=/etc/passwd", b"Some words.", 422,
     "unknown query parameter 'path'"),
    ("parameter given twice", "?num_beams=2&num_beams=3", b"Some words.", 422, "'num_beams' is given twice"),
    ("bad generation value", "?num_beams=many", b"Some words.", 422, 'num_beams must be an integer, got "many"'),
    ("text not UTF-8", "?filename=notes.txt", "Caf\u00e9 au lait.".encode("latin-1"), 400,
     "notes.txt:1: not UTF-8 text (byte 0xe9 at column 4)"),
    ("binary", "?filename=data.bin", b"\x00\x01\x02 binary", 400, "data.bin:1: binary content"),
    ("no words", "?filename=blank.txt", b" \n\n \t", 422, "blank.txt: no text to summarize"),
]


def assert_json_error(response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert list(response.json()) == ["error"] and fragment in response.json()["error"], response.json()
    assert "Traceback" not in response.text


def post(url: str, body, **options) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=60, **options)
    return httpx.post(url, json=body, timeout=60, **options)


@pytest.mark.parametrize("problem, body, status, fragment", BAD_BODIES, ids=[case[0] for case in BAD_BODIES])
def test_a_bad_summary_request_gets_its_status_and_a_json_error(server, problem, body, status, fragment):
    assert_json_error(post(f"{server.url}/", body), status, fragment)


@pytest.mark.parametrize("problem, query, body, status, fragment", BAD_UPLOADS, ids=[case[0] for case in BAD_UPLOADS])
def test_a_bad_upload_gets_its_status_and_a_json_error(server, problem, query, body, status, fragment):
    assert_json_error(httpx.post(f"{server.url}/upload{query}", content=body, timeout=60), status, fragment)


def test_unknown_paths_and_methods_get_json_errors(server):
    assert_json_error(httpx.get(f"{server.url}/v1/models"), 404, "no such endpoint: GET /v1/models")
    assert_json_error(httpx.delete(f"{server.url}/health"), 405, "/health does not take DELETE")
    assert_json_error(httpx.get(f"{server.url}/upload"), 405, "/upload does not take GET")


def test_after_every_bad_request_the_service_is_healthy_and_correct(server):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    good = post(f"{server.url}/", {"inputs": TEXT})
    assert good.status_code == 200 and good.json()[0]["summary_text"]
    assert post(f"{server.url}/", {"inputs": TEXT}).json()[0]["summary_text"] == good.json()[0]["summary_text"]
    assert "Traceback" not in server.log_text()
    assert not [name for name in server.metrics() if 'status="500"' in name]


# ---- bodies: declared size, actual size, time ------------------------------------------------------------------

KEY_HEADER = f"Authorization: Bearer {API_KEY}"


def test_a_declared_body_over_the_limit_gets_413_before_it_is_sent(guarded_server):
    too_big = GUARDED_LIMITS["max_request_bytes"] + 1
    head = f"POST / HTTP/1.1\nHost: test\n{KEY_HEADER}\nContent-Type: application/json\nContent-Length: {too_big}"
    response = raw_request(guarded_server.url, head, b"", timeout=20)  # no body at all: the answer cannot wait for it
    assert response.status == 413
    assert response.json() == {"error": f"the body has {too_big:,} bytes; this service reads at most "
                                        f"{GUARDED_LIMITS['max_request_bytes']:,} bytes (--max-request-bytes)"}


def test_an_undeclared_body_is_read_only_up_to_the_limit(guarded_server):
    limit = GUARDED_LIMITS["max_request_bytes"]
    chunk = b'{"inputs": "' + b"word " * (limit // 5)  # one chunk longer than the limit, in chunked encoding
    body = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n"
    head = f"POST / HTTP/1.1\nHost: test\n{KEY_HEADER}\nTransfer-Encoding: chunked\nConnection: close"
    response = raw_request(guarded_server.url, head, body)
    assert response.status == 413
    assert f"more than {limit:,} bytes" in response.json()["error"]


def test_a_body_that_does_not_arrive_in_time_gets_408(guarded_server):
    head = f"POST / HTTP/1.1\nHost: test\n{KEY_HEADER}\nContent-Length: 1000\nConnection: close"
    response = raw_request(guarded_server.url, head, b'{"inputs": ', timeout=30)
    assert response.status == 408
    assert response.json() == {"error": "the body did not arrive within --request-timeout 2 s"}


# ---- the API key ---------------------------------------------------------------------------------------------------

WRONG_KEYS = {"none": None, "wrong": "Bearer nope", "prefix": f"Bearer {API_KEY[:-1]}",
              "longer": f"Bearer {API_KEY}0", "other scheme": f"Basic {API_KEY}", "bare key": API_KEY}


@pytest.mark.parametrize("case", WRONG_KEYS)
@pytest.mark.parametrize("method, path", [("POST", "/"), ("POST", "/upload"), ("GET", "/info"), ("GET", "/metrics")])
def test_a_missing_or_wrong_key_gets_401(guarded_server, case, method, path):
    headers = {} if WRONG_KEYS[case] is None else {"Authorization": WRONG_KEYS[case]}
    response = httpx.request(method, f"{guarded_server.url}{path}", headers=headers,
                             content=b'{"inputs": "Some words."}' if method == "POST" else None)
    assert_json_error(response, 401, "missing or wrong API key: send the header 'Authorization: Bearer KEY'")
    assert response.headers["www-authenticate"] == "Bearer"


def test_the_key_opens_every_endpoint_and_health_and_the_page_need_none(guarded_server):
    key = {"Authorization": f"Bearer {API_KEY}"}
    assert httpx.get(f"{guarded_server.url}/health").status_code == 200
    page = httpx.get(f"{guarded_server.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert httpx.post(f"{guarded_server.url}/", json={"inputs": TEXT}, headers=key, timeout=60).status_code == 200
    upload = httpx.post(f"{guarded_server.url}/upload", content=TEXT.encode(), headers=key, timeout=60)
    assert upload.status_code == 200
    info = httpx.get(f"{guarded_server.url}/info", headers=key).json()
    assert info["api_key_required"] is True
    assert "bigbird_pegasus_requests_total" in httpx.get(f"{guarded_server.url}/metrics", headers=key).text


def test_the_inference_client_sends_the_key(guarded_server):
    answer = run_inference_client(guarded_server.url, TEXT, api_key=API_KEY)
    assert answer.returncode == 0, answer.stderr
    refused = run_inference_client(guarded_server.url, TEXT)
    assert refused.returncode != 0 and "401" in refused.stderr


def test_the_key_is_compared_in_constant_time(tiny_checkpoint, monkeypatch):
    compared = []
    constant_time = hmac.compare_digest

    def compare_digest(given, expected):
        compared.append((given, expected))
        return constant_time(given, expected)

    monkeypatch.setattr("bigbird_pegasus.serve.endpoints.hmac.compare_digest", compare_digest)
    metrics = ServiceMetrics(ENDPOINTS)
    engine = SummaryEngine(Summarizer(tiny_checkpoint, device="cpu"), model_name="tiny", max_batch_size=1)
    with TestClient(build_app(engine, limits=ServiceLimits(), metrics=metrics, api_key="s3cret")) as client:
        assert client.get("/info", headers={"Authorization": "Bearer guess"}).status_code == 401
        assert client.get("/info", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert compared == [(b"guess", b"s3cret"), (b"s3cret", b"s3cret")]
