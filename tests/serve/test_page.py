"""The page at `GET /`, in a real headless browser (Debian's Chromium driven by Playwright): a person pastes text
or uploads a .txt or .pdf file and reads the summary the API gives for that text; errors are shown, not thrown;
the API key is asked for when the service has one. The browser reaches nothing but the service."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import sync_playwright

from bigbird_pegasus.text.pdf import extract_pdf_text
from helpers.pdfs import typeset_paper
from helpers.server import API_KEY
from helpers.spm import english_paragraphs

# Debian's chromium (`apt-get install chromium`; .ci/run installs it): Playwright's own browser download does not
# work where the tests run. Flags: no sandbox (root in CI), no GPU, and no background traffic to Google's hosts.
CHROMIUM = os.environ.get("BIGBIRD_PEGASUS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-quic", "--disable-sync"]
ANSWER_TIMEOUT_MS = 60_000
TEXT = "\n\n".join(english_paragraphs(3, seed=41))


@pytest.fixture(scope="module")
def browser():
    assert os.path.isfile(CHROMIUM), (f"the page's tests need Chromium at {CHROMIUM}: `apt-get install chromium` "
                                      "(or set BIGBIRD_PEGASUS_CHROMIUM to its path)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser):
    """open_page(server) -> a page showing the service's `/`; every request it makes beyond the service fails
    the test."""
    contexts, strays = [], []

    def open_page(server):
        context = browser.new_context()
        contexts.append(context)
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(server.url))

        def only_the_service(route):
            if route.request.url.startswith(origin):
                route.continue_()
            else:
                strays.append(route.request.url)
                route.abort()

        context.route("**/*", only_the_service)
        page = context.new_page()
        page.goto(f"{server.url}/")
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not strays, f"the page reached beyond the service: {strays}"


def api_summary(server, text: str, headers=None) -> dict:
    answer = httpx.post(f"{server.url}/", json={"inputs": text}, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()[0]


def read_answer(page) -> tuple[str, str]:
    """The summary and the details line, once the page has them (or the error it shows instead)."""
    page.wait_for_function("document.getElementById('status').textContent === 'Done.' || "
                           "document.getElementById('error').textContent !== ''", timeout=ANSWER_TIMEOUT_MS)
    error = page.inner_text("#error")
    assert not error, error
    return page.inner_text("#summary"), page.inner_text("#details")


def test_pasted_text_shows_the_summary_the_api_gives(server, open_page):
    page = open_page(server)
    assert page.title() == "BigBird-Pegasus summarizer"
    page.fill("#text", TEXT)
    page.click("#summarize-text")
    summary, details = read_answer(page)
    expected = api_summary(server, TEXT)
    assert summary == expected["summary_text"]
    assert details.startswith(f"{expected['input_tokens']} tokens read")


def test_an_uploaded_text_file_shows_its_summary(server, open_page, tmp_path):
    document = tmp_path / "notes.txt"
    document.write_text(TEXT + "\n", encoding="utf-8")
    page = open_page(server)
    page.set_input_files("#file", str(document))
    page.click("#summarize-file")
    summary, _ = read_answer(page)
    assert summary == api_summary(server, TEXT + "\n")["summary_text"]


def test_an_uploaded_pdf_shows_the_summary_of_its_text(server, open_page, tmp_path):
    paper = typeset_paper(seed=7, sections=2, paragraphs_per_section=2)
    document = tmp_path / "paper.pdf"
    document.write_bytes(paper.pdf)
    page = open_page(server)
    page.set_input_files("#file", str(document))
    page.click("#summarize-file")
    summary, _ = read_answer(page)
    assert summary == api_summary(server, extract_pdf_text(paper.pdf, source="paper.pdf"))["summary_text"]


def test_errors_are_shown_on_the_page(server, open_page, tmp_path):
    page = open_page(server)
    page.fill("#text", "   ")
    page.click("#summarize-text")
    page.wait_for_function("document.getElementById('error').textContent !== ''", timeout=ANSWER_TIMEOUT_MS)
    assert page.inner_text("#error") == "'inputs' is empty: there is nothing to summarize"
    page.click("#summarize-file")
    assert page.inner_text("#error") == "Choose a .txt or .pdf file first."
    binary = tmp_path / "image.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    page.set_input_files("#file", str(binary))
    page.click("#summarize-file")
    page.wait_for_function("document.getElementById('error').textContent.includes('image.txt')",
                           timeout=ANSWER_TIMEOUT_MS)
    assert "binary content" in page.inner_text("#error") and page.inner_text("#summary") == ""


def test_the_page_asks_for_the_key_when_the_service_has_one(guarded_server, open_page):
    page = open_page(guarded_server)
    page.fill("#text", TEXT)
    page.click("#summarize-text")
    page.wait_for_function("document.getElementById('error').textContent !== ''", timeout=ANSWER_TIMEOUT_MS)
    assert page.inner_text("#error").startswith("missing or wrong API key")
    page.fill("#key", API_KEY)
    page.click("#summarize-text")
    summary, _ = read_answer(page)
    key = {"Authorization": f"Bearer {API_KEY}"}
    assert summary == api_summary(guarded_server, TEXT, headers=key)["summary_text"]
