"""The service's summaries are those `bigbird-pegasus summarize` prints for the same text and options, whatever batch
a request was grouped in: documents of several lengths, sent by many clients at once, as single texts and lists,
compared with the CLI's output; and `huggingface_hub.InferenceClient` gets them unchanged."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from helpers.cli import run_cli
from helpers.inference_client import run_inference_client
from helpers.spm import english_paragraphs, long_document

DOCUMENTS = {
    "sentence.txt": "The council approved the budget on Monday after a long debate.",
    "two.txt": "\n\n".join(english_paragraphs(2, seed=21)),
    "four.txt": "\n\n".join(english_paragraphs(4, seed=22)),
    "seven.txt": "\n\n".join(english_paragraphs(7, seed=23)),
    "pages2.txt": long_document(pages=2, seed=24),   # longer than the tiny model's 512 positions
    "pages3.txt": long_document(pages=3, seed=25),
    "lines.txt": "Line one of a list.\nLine two, longer than the first one.\nLine three.\n",
}
# The same options on both sides: the command line's flags, and the request's parameters.
CHUNKED_FLAGS = ["--long-input", "chunk", "--num-beams", "2", "--max-length", "9"]
CHUNKED_PARAMETERS = {"truncation": "do_not_truncate", "generate_parameters": {"num_beams": 2, "max_length": 9}}
CLIENTS = 16
REPEATS = 3  # each document is asked for this many times per option set, in random groups and order


@pytest.fixture(scope="module")
def cli_summaries(tmp_path_factory, tiny_checkpoint):
    """{"default"|"chunked": {file name: the CLI's JSON Lines row}}, both runs at once."""
    folder = tmp_path_factory.mktemp("cli_summaries")
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text, encoding="utf-8")
    runs = {"default": [], "chunked": CHUNKED_FLAGS}

    def run(label: str) -> dict[str, dict]:
        done = run_cli("summarize", *DOCUMENTS, "--model", str(tiny_checkpoint), *runs[label], "-o",
                       f"{label}.jsonl", cwd=folder)
        assert done.returncode == 0, done.stderr
        rows = [json.loads(line) for line in (folder / f"{label}.jsonl").read_text().splitlines()]
        return {row["id"]: row for row in rows}

    with ThreadPoolExecutor(len(runs)) as pool:
        return dict(zip(runs, pool.map(run, runs)))


def test_concurrent_requests_get_the_cli_summaries_whatever_their_batch(server, cli_summaries):
    rng = random.Random(0)
    jobs = []  # (label, parameters, names): single texts and lists of two or three
    for label, parameters in (("default", None), ("chunked", CHUNKED_PARAMETERS)):
        names = [name for name in DOCUMENTS for _ in range(REPEATS)]
        rng.shuffle(names)
        while names:
            take = rng.choice((1, 1, 2, 3))
            jobs.append((label, parameters, names[:take]))
            names = names[take:]
    rng.shuffle(jobs)
    before = server.metrics()

    def ask(job):
        label, parameters, names = job
        inputs = DOCUMENTS[names[0]] if len(names) == 1 else [DOCUMENTS[name] for name in names]
        payload = {"inputs": inputs} if parameters is None else {"inputs": inputs, "parameters": parameters}
        response = httpx.post(f"{server.url}/", json=payload, timeout=120)
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(ask, jobs))
    for (label, _, names), answer in zip(jobs, answers):
        assert len(answer) == len(names)
        for name, result in zip(names, answer):
            expected = cli_summaries[label][name]
            assert result["summary_text"] == expected["summary"], (label, name)
            assert (result["input_tokens"], result["truncated"], result["chunks"]) == (
                expected["input_tokens"], expected["truncated"], expected["chunks"]), (label, name)
            assert result["seconds"] >= 0
    assert cli_summaries["default"]["pages3.txt"]["truncated"] > 0, "a long document was cut by the CLI too"
    assert cli_summaries["chunked"]["pages3.txt"]["chunks"] > 1, "and read in windows when asked"
    after = server.metrics()
    batches = after["bigbird_pegasus_batch_documents_count"] - before["bigbird_pegasus_batch_documents_count"]
    documents = after["bigbird_pegasus_batch_documents_sum"] - before["bigbird_pegasus_batch_documents_sum"]
    assert documents > batches, "some batches held several documents, so batching was exercised"
    assert after['bigbird_pegasus_batch_documents_bucket{le="4.0"}'] == after["bigbird_pegasus_batch_documents_count"]


def test_huggingface_inference_client_summarizes_through_the_service(server, cli_summaries):
    name = "two.txt"  # fits the model: truncating and chunking read it alike, so "chosen" compares with "chunked"
    assert cli_summaries["chunked"][name]["chunks"] == 1
    done = run_inference_client(server.url, DOCUMENTS[name])
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["offline"] == "refused", "with HF_HUB_OFFLINE=1 the client sends nothing, even to a local URL"
    assert answer["plain"] == cli_summaries["default"][name]["summary"]
    assert answer["plain_tokens"] == cli_summaries["default"][name]["input_tokens"]
    assert answer["chosen"] == cli_summaries["chunked"][name]["summary"], "generate_parameters reach the model"
