"""Read a PDF's text layer as the text a summarizer should read.

    >>> text = extract_pdf_text(Path("paper.pdf").read_bytes(), source="paper.pdf")

pypdfium2 (Google's PDFium, the engine of Chrome's PDF viewer) opens the file and gives each character with its
box on the page. Characters make words (PDFium spells ligatures out; any odd whitespace separates words; control
and zero-width characters are dropped); the words are laid out in reading order (`pdf_layout`: running
headers, footers and page numbers dropped, two columns read one after the other) and joined into paragraphs
(`pdf_paragraphs`: hyphenation undone, the references section and what follows it dropped). The result holds
the paragraphs separated by one blank line.

A file that is not a PDF or is damaged (a truncated download), a password-protected one and one without a text
layer (scanned pages) each raise a `DocumentError` naming the file and saying which.
"""

from __future__ import annotations

import functools
import sys
import unicodedata

import pypdfium2
import pypdfium2.raw as pdfium_c

from ..errors import DocumentError
from .pdf_layout import PageWords, Word, reading_order
from .pdf_paragraphs import SOFT_HYPHEN, paragraphs_of

PDF_MAGIC = b"%PDF-"
END_MARK = b"%%EOF"
# The PDF specification puts `%%EOF` on the last line; Acrobat looks for it in the last 1024 bytes and for
# the header in the first 1024, so the same tolerance here.
HEADER_WINDOW = END_WINDOW = 1024
LINE_END_HYPHEN = "\x02"  # how PDFium marks a hyphen it found at the end of a line
NEW_WORD_GAP = 0.5  # a gap wider than this many character heights between two characters starts a new word
BACKWARD_TOLERANCE = 1.0  # points a character may start left of the previous one (kerning) within a word
NO_TEXT_LAYER = "no text layer, OCR it first"


def extract_pdf_text(data: bytes, *, source: str) -> str:
    """The cleaned text of a PDF (`data`, the file's bytes; `source` names it in errors): paragraphs in reading
    order separated by one blank line, without running headers, footers, page numbers, references or what
    follows them. Raises DocumentError for a corrupt or truncated PDF, one that needs a password, and one
    without a text layer."""
    document = _open(data, source=source)
    try:
        pages = [_page_words(document, number, source=source) for number in range(len(document))]
    finally:
        document.close()
    text = "\n\n".join(paragraphs_of(reading_order(pages)))
    if not text:
        raise DocumentError(source, NO_TEXT_LAYER)
    return text


def _open(data: bytes, *, source: str) -> pypdfium2.PdfDocument:
    if PDF_MAGIC not in data[:HEADER_WINDOW]:
        raise DocumentError(source, "corrupt PDF: no %PDF- header, not a PDF file")
    if END_MARK not in data[-END_WINDOW:]:
        raise DocumentError(source, "corrupt PDF: truncated, no %%EOF at its end (copy or download it again)")
    try:
        return pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as error:
        if getattr(error, "err_code", None) == pdfium_c.FPDF_ERR_PASSWORD:
            raise DocumentError(source, "needs a password (decrypt it first, e.g. `qpdf --decrypt "
                                "--password=... in.pdf out.pdf`)") from None
        raise DocumentError(source, f"corrupt PDF: {str(error).rstrip('.')}") from None


def _page_words(document: pypdfium2.PdfDocument, number: int, *, source: str) -> PageWords:
    """The words of one page, in the order they are drawn, with their boxes (PDF points, y upwards)."""
    try:
        page = document[number]
    except pypdfium2.PdfiumError as error:
        raise DocumentError(source, f"corrupt PDF: page {number + 1}: {error}") from None
    try:
        textpage = page.get_textpage()
        try:
            return PageWords(number, _words(textpage.raw))
        finally:
            textpage.close()
    finally:
        page.close()


def _words(textpage) -> list[Word]:
    """Characters grouped into words: a space (drawn or inferred by PDFium), a line change, a step backwards or
    a wide gap ends a word."""
    words: list[Word] = []
    letters: list[str] = []
    left = right = bottom = top = previous_left = 0.0

    def end_word() -> None:
        if letters:
            words.append(Word("".join(letters), left, right, bottom, top))
            letters.clear()

    box = pdfium_c.FS_RECTF()
    for index in range(pdfium_c.FPDFText_CountChars(textpage)):
        char = _character(pdfium_c.FPDFText_GetUnicode(textpage, index))
        if char is None:
            continue
        if char.isspace():
            end_word()
            continue
        pdfium_c.FPDFText_GetLooseCharBox(textpage, index, box)
        if letters and _starts_new_word(box, left=left, right=right, bottom=bottom, top=top,
                                        previous_left=previous_left):
            end_word()
        if letters:
            right, bottom, top = max(right, box.right), min(bottom, box.bottom), max(top, box.top)
        else:
            left, right, bottom, top = box.left, box.right, box.bottom, box.top
        previous_left = box.left
        letters.append(char)
    end_word()
    return words


@functools.cache
def _character(code: int) -> str | None:
    """The text of one character code (PDFium spells ligatures out: "ﬁ" comes as "f", "i"): its line-end hyphen
    and soft hyphens as SOFT_HYPHEN, any whitespace (no-break, thin, ...) a space; None for control, zero-width
    and unassigned characters."""
    if code == ord(LINE_END_HYPHEN) or code == ord(SOFT_HYPHEN):
        return SOFT_HYPHEN
    if code > sys.maxunicode:
        return None
    char = chr(code)
    if char.isspace():
        return " "
    if unicodedata.category(char) in _DROPPED_CATEGORIES:
        return None
    return char


def _starts_new_word(box, *, left: float, right: float, bottom: float, top: float, previous_left: float) -> bool:
    """Whether a character at `box` cannot continue the word spanning left..right, bottom..top."""
    height = top - bottom
    centre, box_centre = (top + bottom) / 2, (box.top + box.bottom) / 2
    return (abs(box_centre - centre) > height / 2 or box.left < previous_left - BACKWARD_TOLERANCE
            or box.left > right + NEW_WORD_GAP * height)


# Control, format (zero-width), surrogate, private-use and unassigned characters carry no text.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
