"""Documents uploaded as files (`POST /upload`): UTF-8 text, or a PDF whose text layer is read (`text.pdf`), both in
memory. The name a client gives is used in messages and to tell a PDF; the service never opens a path named in
a request."""

from __future__ import annotations

import threading

from ..errors import DocumentError
from ..text.documents import decode_utf8
from ..text.pdf import HEADER_WINDOW, PDF_MAGIC, extract_pdf_text
from ..text.sentences import paragraphs
from .errors import ServiceError
from .payload import BAD_REQUEST, UNPROCESSABLE

DEFAULT_NAME = "upload"
PDF_TYPE = "application/pdf"
# PDFium may not be called from two threads at once, even on different documents (pypdfium2's documentation:
# "Incompatibility with Threading"); uploads are read in worker threads, so one PDF at a time.
_PDFIUM = threading.Lock()


def uploaded_text(data: bytes, *, filename: str | None, content_type: str | None) -> str:
    """The text of an uploaded file: a PDF (by its type, its name or its first bytes) or UTF-8 text. 400 when a
    text file is not UTF-8; 422 for a PDF that cannot be read (damaged, password-protected, scanned pages without
    a text layer) and for a file without words."""
    source = filename or DEFAULT_NAME
    if is_pdf(data, filename=filename, content_type=content_type):
        try:
            with _PDFIUM:
                text = extract_pdf_text(data, source=source)
        except DocumentError as error:
            raise ServiceError(UNPROCESSABLE, str(error)) from None
    else:
        try:
            text = decode_utf8(data, source)
        except DocumentError as error:
            raise ServiceError(BAD_REQUEST, str(error)) from None
    if not paragraphs(text):
        raise ServiceError(UNPROCESSABLE, f"{source}: no text to summarize")
    return text


def is_pdf(data: bytes, *, filename: str | None, content_type: str | None) -> bool:
    media_type = (content_type or "").split(";")[0].strip().lower()
    return (media_type == PDF_TYPE or (filename or "").lower().endswith(".pdf")
            or PDF_MAGIC in data[:HEADER_WINDOW])
