"""Documents uploaded as files (`POST /upload`): UTF-8 text, read in memory. The name a client gives is used in
messages only; the service never opens a path named in a request."""

from __future__ import annotations

from ..errors import DocumentError
from ..text.documents import decode_utf8
from ..text.sentences import paragraphs
from .errors import ServiceError
from .payload import BAD_REQUEST, UNPROCESSABLE

DEFAULT_NAME = "upload"


def uploaded_text(data: bytes, *, filename: str | None, content_type: str | None) -> str:
    """The text of an uploaded file: 400 when it is not UTF-8 text, 422 when it has no words."""
    source = filename or DEFAULT_NAME
    try:
        text = decode_utf8(data, source)
    except DocumentError as error:
        raise ServiceError(BAD_REQUEST, str(error)) from None
    if not paragraphs(text):
        raise ServiceError(UNPROCESSABLE, f"{source}: no text to summarize")
    return text
