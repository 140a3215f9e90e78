"""Read input documents: text and Markdown files and PDFs (one document each), standard input, JSON Lines (one
document per line), and folders (every such file under them, in sorted order).

Documents are listed first, by id, and read when their text is needed (`Document.read`): a corpus of PDFs is
summarized a few at a time, and a run that resumes never reads what it already summarized. Every problem is a
`DocumentError` naming the file and, in JSON Lines, the line. `skip_errors` collects the problems met while
listing and goes on with the readable documents; otherwise the first one raises.
"""

from __future__ import annotations

import enum
import functools
import json
import os
import sys
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import DocumentError
from .sentences import paragraphs

STDIN = "-"
STDIN_NAME = "<stdin>"
JSONL_SUFFIXES = (".jsonl", ".ndjson")
PDF_SUFFIX = ".pdf"
FOLDER_SUFFIXES = (PDF_SUFFIX, ".txt", ".md") + JSONL_SUFFIXES  # the files a folder's documents are read from
TEXT_SUFFIXES = (".txt",)  # text outputs (one summary, or one document's text, after another)


class InputFormat(str, enum.Enum):
    """How to read an input: by its suffix (`.jsonl`/`.ndjson` are JSON Lines, `.pdf` PDF, the rest text), or
    as given."""

    AUTO = "auto"
    TEXT = "text"
    JSONL = "jsonl"
    PDF = "pdf"

    def of(self, source: str) -> InputFormat:
        """TEXT, JSONL or PDF for this source (standard input is text unless said otherwise)."""
        if self is not InputFormat.AUTO:
            return self
        if source.lower().endswith(JSONL_SUFFIXES):
            return InputFormat.JSONL
        return InputFormat.PDF if source.lower().endswith(PDF_SUFFIX) else InputFormat.TEXT


@dataclass(frozen=True)
class Document:
    """A document to summarize: `id` is the JSONL id field's value, or else where the text comes from; `read()`
    gives its text (raising DocumentError for an unreadable or empty one)."""

    id: Any
    read: Callable[[], str]


@dataclass(frozen=True)
class JsonRow:
    """One object of a JSON Lines file and where it was."""

    source: str
    line: int
    values: dict[str, Any]

    def text(self, field: str, option: str) -> str:
        """The text in `field` (a list of strings is joined by line breaks); `option` names the flag that picks
        the field, for the message when it is missing."""
        if field not in self.values:
            fields = ", ".join(map(repr, self.values)) or "none"
            raise DocumentError(self.source, f"no field {field!r} (fields: {fields}); choose one with {option}",
                                self.line)
        value = self.values[field]
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            value = "\n".join(value)
        if not isinstance(value, str):
            raise DocumentError(self.source, f"field {field!r} holds {json_kind(value)}, not text", self.line)
        return value

    def id(self, field: str) -> str | int | float:
        """The value of the id field, which must be a string or a number."""
        if field not in self.values:
            raise DocumentError(self.source, f"no id field {field!r} (--id-field)", self.line)
        value = self.values[field]
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise DocumentError(self.source, f"id field {field!r} holds {json_kind(value)}; "
                                "expected a string or a number", self.line)
        return value


def list_documents(sources: list[str], *, input_format: InputFormat = InputFormat.AUTO,
                   text_field: str = "document", id_field: str | None = None, skip_errors: bool = False,
                   stdin: BinaryIO | None = None, exclude: Collection[str] = ()
                   ) -> tuple[list[Document], list[DocumentError]]:
    """The documents of all `sources` in order (a folder's files sorted, leaving out the paths in `exclude`),
    and the problems skipped (only with `skip_errors`). JSON Lines and standard input are read now, files
    when their documents are."""
    documents: list[Document] = []
    skipped: list[DocumentError] = []
    for source in sources:
        try:
            for file in folder_files(source, exclude=exclude) if os.path.isdir(source) else [source]:
                documents.extend(_file_documents(file, input_format=input_format, text_field=text_field,
                                                 id_field=id_field, skip_errors=skip_errors, skipped=skipped,
                                                 stdin=stdin))
        except DocumentError as error:
            _skip_or_raise(error, skip_errors, skipped)
    return documents, skipped


def folder_files(folder: str, *, exclude: Collection[str] = ()) -> list[str]:
    """The document files under `folder` (FOLDER_SUFFIXES, any depth, hidden ones left out), sorted by path;
    each named as `folder` joined with its path inside."""
    left_out = {os.path.realpath(path) for path in exclude}
    files = sorted(path.relative_to(folder) for path in Path(folder).rglob("*")
                   if path.suffix.lower() in FOLDER_SUFFIXES and path.is_file()
                   and not any(part.startswith(".") for part in path.relative_to(folder).parts)
                   and os.path.realpath(path) not in left_out)
    if not files:
        raise DocumentError(folder, f"is a folder without documents (no {', '.join(FOLDER_SUFFIXES)} files in it)")
    return [os.path.join(folder, path) for path in files]


def document_text(text: str) -> str:
    """What the model reads of a text: its paragraphs, whitespace collapsed, separated by blank lines."""
    return "\n\n".join(paragraphs(text))


def _file_documents(source: str, *, input_format: InputFormat, text_field: str, id_field: str | None,
                    skip_errors: bool, skipped: list[DocumentError], stdin: BinaryIO | None) -> Iterator[Document]:
    name = STDIN_NAME if source == STDIN else source
    kind = input_format.of(source)
    if kind is InputFormat.JSONL:
        for row in json_rows(source, stdin=stdin, skip_errors=skip_errors, skipped=skipped):
            try:
                yield _jsonl_document(row, text_field=text_field, id_field=id_field)
            except DocumentError as error:
                _skip_or_raise(error, skip_errors, skipped)
        return
    if source == STDIN:  # read now: standard input can be read only once
        data = read_bytes(source, stdin)
        yield Document(name, functools.partial(_decoded, data, name, kind))
        return
    if not os.path.exists(source):
        raise DocumentError(source, "no such file")
    yield Document(name, functools.partial(_read_file, source, kind))


def _read_file(source: str, kind: InputFormat) -> str:
    return _decoded(read_bytes(source), source, kind)


def _decoded(data: bytes, name: str, kind: InputFormat) -> str:
    """The text of a text file or PDF, refused when empty."""
    if kind is InputFormat.PDF:
        from .pdf import extract_pdf_text  # imported with the first PDF: text-only runs do without PDFium

        return _non_empty(extract_pdf_text(data, source=name), name)
    return _non_empty(decode_utf8(data, name), name)


def read_text(source: str, stdin: BinaryIO | None = None) -> str:
    """The whole content of a file (or of standard input for "-") as UTF-8 text."""
    name = STDIN_NAME if source == STDIN else source
    return decode_utf8(read_bytes(source, stdin), name)


def read_lines(source: str) -> list[str]:
    """The lines of a text file (a final line break does not start another line)."""
    text = read_text(source)
    lines = text.replace("\r\n", "\n").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def read_texts(source: str, field: str, option: str) -> list[str]:
    """One text per line of a text file, or the `field` of each object of a JSON Lines file (`option` names the
    flag that picks the field, for messages); empty texts are kept."""
    if InputFormat.AUTO.of(source) is InputFormat.TEXT:
        return read_lines(source)
    return [row.text(field, option) for row in json_rows(source)]


def json_rows(source: str, *, stdin: BinaryIO | None = None, skip_errors: bool = False,
              skipped: list[DocumentError] | None = None) -> Iterator[JsonRow]:
    """The objects of a JSON Lines file; blank lines are ignored. A bad line raises, or is added to `skipped`."""
    name = STDIN_NAME if source == STDIN else source
    for number, raw in enumerate(read_bytes(source, stdin).split(b"\n"), start=1):
        try:
            line = decode_utf8(raw, name, first_line=number)
            if not line.strip():
                continue
            try:
                values = json.loads(line)
            except json.JSONDecodeError as error:
                raise DocumentError(name, f"not valid JSON: {error.msg} (column {error.colno})", number) from None
            if not isinstance(values, dict):
                raise DocumentError(name, f"expected a JSON object, found {json_kind(values)}", number)
            yield JsonRow(name, number, values)
        except DocumentError as error:
            _skip_or_raise(error, skip_errors, skipped if skipped is not None else [])


def read_bytes(source: str, stdin: BinaryIO | None = None) -> bytes:
    """The raw content of a file, or of standard input for "-"."""
    if source == STDIN:
        return (stdin or sys.stdin.buffer).read()
    path = Path(source)
    if path.is_dir():
        raise DocumentError(source, "is a folder, not a file (pass the files in it, e.g. folder/*.txt)")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DocumentError(source, "no such file") from None
    except OSError as error:
        raise DocumentError(source, f"cannot read it: {error.strerror or error}") from None


def decode_utf8(data: bytes, source: str, first_line: int = 1) -> str:
    """`data` as UTF-8 text (a byte-order mark is dropped); binary content or other encodings raise, naming the
    line (counted from `first_line`)."""
    if b"\0" in data:
        line = first_line + data[:data.index(b"\0")].count(b"\n")
        raise DocumentError(source, "binary content (a NUL byte), not text", line)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = first_line + data[:error.start].count(b"\n")
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise DocumentError(source, f"not UTF-8 text (byte 0x{data[error.start]:02x} at column {column}); "
                            "convert it first, e.g. with `iconv -t UTF-8`", line) from None


def _jsonl_document(row: JsonRow, *, text_field: str, id_field: str | None) -> Document:
    label = row.id(id_field) if id_field else f"{row.source}:{row.line}"
    text = _non_empty(row.text(text_field, "--text-field"), row.source, row.line)
    return Document(label, lambda: text)


def _non_empty(text: str, source: str, line: int | None = None) -> str:
    if not text.strip():
        raise DocumentError(source, "empty document (nothing but whitespace)" if text else "empty document", line)
    return text


def _skip_or_raise(error: DocumentError, skip: bool, skipped: list[DocumentError]) -> None:
    if not skip:
        raise error
    skipped.append(error)


def json_kind(value: Any) -> str:
    """What a JSON value is, for messages: "an object", "a list", "a string", "true/false", "null", "a number"."""
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}
    return kinds.get(type(value), "a number")
