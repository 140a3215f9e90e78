"""The PDF reader on papers typeset for the test (helpers/pdfs.py): the text comes back paragraph for paragraph as
it was written, in reading order, without running headers, page numbers, references or the appendix after them;
and each kind of unreadable PDF is named."""

from __future__ import annotations

import io

import pypdfium2
import pytest
from reportlab.pdfgen.canvas import Canvas

from bigbird_pegasus.errors import DocumentError
from bigbird_pegasus.text.pdf import extract_pdf_text
from bigbird_pegasus.text.pdf_layout import Line, PageWords, Word, reading_order
from bigbird_pegasus.text.pdf_paragraphs import paragraphs_of
from helpers.pdfs import (RUNNING_HEADERS, image_only_pdf, leftover_words, password_protected_pdf, register_fonts,
                          truncated_pdf,
                          typeset_paper, words_recovered)

PAPERS = {
    "two columns, Vera with ligature glyphs": dict(),
    "two columns, Helvetica, four pages (the odd-page header on one page only)": dict(seed=1, font="Helvetica"),
    "one column, Times": dict(seed=2, columns=1, font="Times-Roman"),
    "a line beside smaller print in the other column": dict(seed=3, font="Vera", sections=7),
    "a last page whose second column holds two lines": dict(seed=39, font="Vera", sections=5),
    "a heading after an abstract's full last line": dict(seed=61, font="Helvetica", sections=3),
}


def raw_text(pdf: bytes) -> str:
    """PDFium's own text of every page, uncleaned: what the PDF holds."""
    document = pypdfium2.PdfDocument(pdf)
    try:
        return "\n".join(document[index].get_textpage().get_text_range() for index in range(len(document)))
    finally:
        document.close()


@pytest.fixture(scope="module")
def paper():
    return typeset_paper()


@pytest.fixture(scope="module")
def paper_text(paper):
    return extract_pdf_text(paper.pdf, source="paper.pdf")


@pytest.mark.parametrize("layout", PAPERS)
def test_a_typeset_paper_reads_as_it_was_written(layout):
    paper = typeset_paper(**PAPERS[layout])
    assert paper.pages >= 3 and paper.hyphenated >= 30  # running headers, many broken words
    text = extract_pdf_text(paper.pdf, source="paper.pdf")
    assert text.split("\n\n") == paper.text
    assert words_recovered(paper.text, text) == 1.0 and leftover_words(paper.text, text) == []


def test_an_odd_page_header_seen_once_is_dropped_by_its_place():
    paper = typeset_paper(**PAPERS["two columns, Helvetica, four pages (the odd-page header on one page only)"])
    assert paper.pages == 4 and raw_text(paper.pdf).count(RUNNING_HEADERS[1]) == 1
    assert RUNNING_HEADERS[1] not in extract_pdf_text(paper.pdf, source="paper.pdf")


def test_a_header_on_one_page_of_two_is_dropped_as_small_print_set_apart():
    paper = typeset_paper(seed=4, sections=2, columns=1)
    assert paper.pages == 2 and raw_text(paper.pdf).count(RUNNING_HEADERS[0]) == 1
    text = extract_pdf_text(paper.pdf, source="paper.pdf")
    assert RUNNING_HEADERS[0] not in text and text.split("\n\n") == paper.text


def test_running_headers_and_page_numbers_are_dropped(paper, paper_text):
    held = raw_text(paper.pdf)
    for header in RUNNING_HEADERS:
        assert header in held and header not in paper_text
    assert not [paragraph for paragraph in paper_text.split("\n\n") if paragraph.isdigit()]


def test_the_references_and_what_follows_them_are_dropped(paper, paper_text):
    held = raw_text(paper.pdf)
    assert "Imaginary Venues" in held and "Imaginary Venues" not in paper_text
    assert "References" not in paper_text.split("\n\n")
    for paragraph in paper.appendix:
        assert paragraph[:40] in held.replace("\r\n", " ") and paragraph[:40] not in paper_text
    assert "Additional Results" not in paper_text


def test_ligature_glyphs_come_back_as_letters(paper, paper_text):
    assert paper.ligatures >= 20
    assert "\ufb01" not in paper_text and "\ufb02" not in paper_text
    assert "significant" in paper_text and "financial" in paper_text.replace("Financial", "financial")


def test_two_columns_are_read_one_after_the_other(paper, paper_text):
    """The left column's last words run on into the right column's first (the paper's text, in order)."""
    first_body_paragraph = paper.text[5]
    assert first_body_paragraph in paper_text
    assert paper_text.index(paper.text[4]) < paper_text.index(first_body_paragraph) < paper_text.index(paper.text[-1])


def line(text: str, *, y: float, left: float = 72, right: float = 300, page: int = 0) -> Line:
    """A justified line of words spread evenly between left and right, baseline at y (height 10)."""
    words = text.split()
    step = (right - left) / len(words)
    return Line(tuple(Word(word, left + i * step, left + (i + 1) * step - 2, y, y + 10) for i, word in enumerate(words)),
                page, "full")


def test_a_line_end_hyphen_is_kept_where_the_document_spells_the_word_with_it():
    lines = [line("the long-term plan and the long-", y=700), line("term effects of experi-", y=688),
             line("ments in 2- dimensional and Non-", y=676), line("Gaussian models - and", y=664),
             line("so on", y=652, right=100)]
    assert paragraphs_of(lines) == ["the long-term plan and the long-term effects of experiments in 2- dimensional "
                                    "and Non-Gaussian models - and so on"]


def test_a_soft_hyphen_inside_a_line_is_dropped_and_odd_spaces_separate_words():
    register_fonts()
    buffer = io.BytesIO()
    canvas = Canvas(buffer)
    canvas.setFont("Vera", 10)  # a TrueType font, so that the soft hyphen is U+00AD (Helvetica draws a hyphen)
    canvas.drawString(72, 700, "A no\u00a0break space and a hy\u00adphen that may break.")
    canvas.save()
    assert extract_pdf_text(buffer.getvalue(), source="x.pdf") == "A no break space and a hyphen that may break."


def test_a_table_on_a_one_column_page_does_not_make_it_two_columns():
    """Rows of a table have a wide gap in the middle, but most rows of the page run across it."""
    body = [Word(f"w{row}-{column}", 72 + 50 * column, 72 + 50 * column + 45, 700 - 12 * row, 710 - 12 * row)
            for row in range(20) for column in range(9)]
    table = [Word(f"t{row}-{side}", 72 + 300 * side, 72 + 300 * side + 60, 400 - 12 * row, 410 - 12 * row)
             for row in range(4) for side in range(2)]
    lines = reading_order([PageWords(0, body + table)])
    assert [line.text for line in lines[-4:]] == [f"t{row}-0 t{row}-1" for row in range(4)]
    assert all(line.column == "full" for line in lines)


def damaged_in_the_middle() -> bytes:
    data = typeset_paper(sections=1, paragraphs_per_section=2).pdf
    return data[:len(data) // 3] + data[-300:]  # header and trailer intact, the objects between gone


@pytest.mark.parametrize("make, message", [
    (truncated_pdf, "corrupt PDF: truncated"),
    (damaged_in_the_middle, "corrupt PDF"),
    (lambda: b"<html>Not found</html>", "corrupt PDF: no %PDF- header"),
    (password_protected_pdf, "needs a password"),
    (image_only_pdf, "no text layer, OCR it first"),
], ids=["truncated", "damaged", "not a PDF", "password", "scanned"])
def test_an_unreadable_pdf_is_named_with_its_problem(make, message):
    with pytest.raises(DocumentError) as error:
        extract_pdf_text(make(), source="papers/bad.pdf")
    assert str(error.value).startswith(f"papers/bad.pdf: {message}")
