"""`POST /upload`: a .txt or .pdf file's bytes, summarized as the text `bigbird_pegasus.text.pdf` reads from it,
read in memory only (a name in a request is never opened), PDFs one at a time (PDFium is not thread-safe)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from bigbird_pegasus.serve import uploads
from bigbird_pegasus.text.pdf import extract_pdf_text
from helpers.pdfs import image_only_pdf, password_protected_pdf, truncated_pdf, typeset_paper
from helpers.spm import english_paragraphs

PAPERS = [typeset_paper(seed=seed, sections=2, paragraphs_per_section=2, columns=1 + seed % 2) for seed in range(4)]


def summarize_text(server, text: str) -> dict:
    answer = httpx.post(f"{server.url}/", json={"inputs": text}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()[0]


def upload(server, data: bytes, query: str = "", content_type: str = "application/octet-stream") -> httpx.Response:
    return httpx.post(f"{server.url}/upload{query}", content=data, headers={"content-type": content_type},
                      timeout=60)


@pytest.mark.parametrize("query, content_type", [("?filename=paper.pdf", "application/octet-stream"),
                                                 ("", "application/pdf"), ("", "application/octet-stream")],
                         ids=["by name", "by type", "by its first bytes"])
def test_an_uploaded_pdf_is_summarized_as_the_text_read_from_it(server, query, content_type):
    paper = PAPERS[0]
    answer = upload(server, paper.pdf, query, content_type)
    assert answer.status_code == 200, answer.text
    expected = summarize_text(server, extract_pdf_text(paper.pdf, source="paper.pdf"))
    (result,) = answer.json()
    assert (result["summary_text"], result["input_tokens"]) == (expected["summary_text"], expected["input_tokens"])


def test_concurrent_pdf_uploads_are_all_read_and_summarized(server):
    expected = [summarize_text(server, extract_pdf_text(paper.pdf, source="p.pdf"))["summary_text"]
                for paper in PAPERS]
    with ThreadPoolExecutor(len(PAPERS) * 2) as pool:
        answers = list(pool.map(lambda index: upload(server, PAPERS[index % len(PAPERS)].pdf, "?filename=p.pdf"),
                                range(len(PAPERS) * 2)))
    for index, answer in enumerate(answers):
        assert answer.status_code == 200, answer.text
        assert answer.json()[0]["summary_text"] == expected[index % len(PAPERS)]


def test_pdfs_are_read_one_at_a_time(monkeypatch):
    inside, most = 0, 0
    count = threading.Lock()

    def watched_extract(data: bytes, *, source: str) -> str:
        nonlocal inside, most
        with count:
            inside += 1
            most = max(most, inside)
        time.sleep(0.02)  # long enough for the other threads to arrive while one reads
        with count:
            inside -= 1
        return extract_pdf_text(data, source=source)

    monkeypatch.setattr(uploads, "extract_pdf_text", watched_extract)
    with ThreadPoolExecutor(len(PAPERS)) as pool:
        texts = list(pool.map(lambda paper: uploads.uploaded_text(paper.pdf, filename="p.pdf", content_type=None),
                              PAPERS))
    assert most == 1, f"{most} threads were inside PDFium at once"
    assert texts == [extract_pdf_text(paper.pdf, source="p.pdf") for paper in PAPERS]


@pytest.mark.parametrize("make, message", [
    (truncated_pdf, "paper.pdf: corrupt PDF: truncated, no %%EOF at its end"),
    (password_protected_pdf, "paper.pdf: needs a password"),
    (image_only_pdf, "paper.pdf: no text layer, OCR it first"),
    (lambda: b"%PDF-1.7\nnot really a PDF\n%%EOF\n", "paper.pdf: corrupt PDF"),
], ids=["truncated", "password", "scanned", "garbage"])
def test_a_pdf_without_readable_text_gets_422(server, make, message):
    answer = upload(server, make(), "?filename=paper.pdf")
    assert answer.status_code == 422
    assert answer.json()["error"].startswith(message), answer.json()


def test_an_uploaded_text_file_is_summarized_like_the_same_text_posted(server):
    text = "\n\n".join(english_paragraphs(2, seed=51)) + "\n"
    answer = upload(server, text.encode(), "?filename=notes.txt&num_beams=2&max_length=9", "text/plain")
    assert answer.status_code == 200, answer.text
    posted = httpx.post(f"{server.url}/", json={"inputs": text, "parameters": {"generate_parameters": {
        "num_beams": 2, "max_length": 9}}}, timeout=60).json()[0]
    assert answer.json()[0]["summary_text"] == posted["summary_text"]


def test_paths_named_in_requests_are_never_opened(server, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text(" ".join(english_paragraphs(6, seed=52)), encoding="utf-8")
    short = "A short note about the weather."
    by_name = upload(server, short.encode(), f"?filename={secret}", "text/plain")
    assert by_name.status_code == 200
    assert by_name.json()[0] == {**summarize_text(server, short), "seconds": by_name.json()[0]["seconds"]}
    file_tokens = summarize_text(server, secret.read_text(encoding="utf-8"))["input_tokens"]
    path_tokens = summarize_text(server, str(secret))["input_tokens"]
    assert path_tokens < 100 < file_tokens, "a path in 'inputs' is summarized as the text it is, not as its file"
    named_pdf = upload(server, b"Some words of a text file.", f"?filename={tmp_path / 'missing.pdf'}")
    assert named_pdf.status_code == 422 and "corrupt PDF: no %PDF- header" in named_pdf.json()["error"]
