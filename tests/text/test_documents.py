"""Listing documents: folders in sorted order (hidden files, other suffixes and the run's own output left out),
PDFs read when their text is needed, ids as paths and FILE:LINE."""

from __future__ import annotations

import io
import json

import pytest

from bigbird_pegasus.errors import DocumentError
from bigbird_pegasus.text.documents import InputFormat, document_text, folder_files, list_documents
from helpers.pdfs import password_protected_pdf, typeset_paper


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = {"docs/b.txt": "Bee.", "docs/a/z.md": "Zed.", "docs/a/y.PDF": None, "docs/c.jsonl": None,
             "docs/out.jsonl": "", "docs/.cache/x.txt": "hidden", "docs/.x.txt": "hidden", "docs/n.rst": "other"}
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".PDF"):
            path.write_bytes(typeset_paper(sections=1, paragraphs_per_section=1, columns=1).pdf)
        elif name == "docs/c.jsonl":
            path.write_text(json.dumps({"document": "One."}) + "\n\n" + json.dumps({"document": "Two."}) + "\n")
        else:
            path.write_text(content)
    return tmp_path


def test_a_folder_gives_its_documents_in_sorted_order(folder):
    assert folder_files("docs", exclude=["docs/out.jsonl"]) == ["docs/a/y.PDF", "docs/a/z.md", "docs/b.txt",
                                                                "docs/c.jsonl"]
    documents, skipped = list_documents(["docs/b.txt", "docs"], exclude=["docs/out.jsonl"])
    assert [d.id for d in documents] == ["docs/b.txt", "docs/a/y.PDF", "docs/a/z.md", "docs/b.txt", "docs/c.jsonl:1",
                                         "docs/c.jsonl:3"] and not skipped
    assert [d.read() for d in documents[2:]] == ["Zed.", "Bee.", "One.", "Two."]
    assert documents[1].read().startswith("On the ")  # the PDF's title


def test_a_folder_without_documents_is_named(tmp_path):
    (tmp_path / "notes.rst").write_text("no")
    with pytest.raises(DocumentError, match="is a folder without documents"):
        list_documents([str(tmp_path)])
    assert list_documents([str(tmp_path), str(tmp_path / "notes.rst")], skip_errors=True)[1][0].args[0].endswith(
        "is a folder without documents (no .pdf, .txt, .md, .jsonl, .ndjson files in it)")


def test_a_pdf_is_read_when_its_text_is_needed(tmp_path):
    locked = tmp_path / "locked.pdf"
    locked.write_bytes(password_protected_pdf())
    documents, skipped = list_documents([str(locked), str(tmp_path / "missing.pdf")], skip_errors=True)
    assert [str(problem) for problem in skipped] == [f"{tmp_path / 'missing.pdf'}: no such file"]
    with pytest.raises(DocumentError, match="locked.pdf: needs a password"):
        documents[0].read()


def test_standard_input_can_be_a_pdf():
    paper = typeset_paper(sections=1, paragraphs_per_section=1, columns=1)
    [document], _ = list_documents(["-"], input_format=InputFormat.PDF, stdin=io.BytesIO(paper.pdf))
    assert document.id == "<stdin>" and document.read().split("\n\n") == paper.text


def test_document_text_is_the_paragraphs_the_model_reads():
    assert document_text("Title\n\n  One   line\nwrapped.\n\n\n\nNext.\t") == "Title\n\nOne line wrapped.\n\nNext."
