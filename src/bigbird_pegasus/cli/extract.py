"""`bigbird-pegasus extract`: the text the model reads of each document (a PDF's cleaned text layer, a text file's
paragraphs), so that users can see what is summarized."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from ..errors import DocumentError, UserError
from ..text.documents import JSONL_SUFFIXES, TEXT_SUFFIXES, InputFormat, document_text, list_documents
from .running import warn

HELP = "Print the text the model reads of each document: a PDF's cleaned text, a text file's paragraphs."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Inputs (as `summarize` reads them) and the output."""
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="PDF, text, Markdown or JSON Lines files, folders of them, or - for standard input")
    parser.add_argument("--input-format", choices=[kind.value for kind in InputFormat], default="auto",
                        help="read every FILE as text, JSON Lines or PDF (default: by suffix)")
    parser.add_argument("--text-field", default="document",
                        help="JSON Lines field with the text (default: %(default)s)")
    parser.add_argument("--id-field", help="JSON Lines field with the document's id (default: FILE:LINE)")
    parser.add_argument("--errors", choices=("fail", "skip"), default="fail",
                        help="on an unreadable or empty document: stop (default), or skip it, say why, and go on")
    parser.add_argument("-o", "--output", metavar="PATH",
                        help=".txt (the texts, as printed) or .jsonl (one {\"id\", \"document\"} object per line, "
                             "which `summarize` reads); default: standard output")


def run(args: argparse.Namespace) -> int:
    """Read each document and write its text: alone, or after a `==> ID <==` line when there are several."""
    from ..checkpoint.atomic import write_file_atomically

    if args.output and not args.output.lower().endswith(JSONL_SUFFIXES + TEXT_SUFFIXES):
        raise UserError(f"{args.output}: the output must end in .txt or .jsonl")
    skip = args.errors == "skip"
    documents, skipped = list_documents(args.files, input_format=InputFormat(args.input_format),
                                        text_field=args.text_field, id_field=args.id_field, skip_errors=skip,
                                        exclude=[args.output] if args.output else ())
    for problem in skipped:
        warn(f"skipped {problem}")
    as_jsonl = args.output is not None and args.output.lower().endswith(JSONL_SUFFIXES)
    several = len(documents) > 1
    written = 0

    def write_all(write: Callable[[str], None]) -> None:
        nonlocal written
        for document in documents:
            try:
                text = document_text(document.read())
            except DocumentError as problem:
                if not skip:
                    raise
                skipped.append(problem)
                warn(f"skipped {problem}")
                continue
            if as_jsonl:
                write(json.dumps({"id": document.id, "document": text}, ensure_ascii=False) + "\n")
            else:
                write(("\n" if written else "") + (f"==> {document.id} <==\n" if several else "") + text + "\n")
            written += 1

    if args.output:
        def write_file(path: str) -> None:
            with open(path, "x", encoding="utf-8", newline="\n") as file:
                write_all(file.write)

        write_file_atomically(args.output, write_file)
    else:
        write_all(sys.stdout.write)
        sys.stdout.flush()
    if skipped:
        warn(f"extracted {written} documents, skipped {len(skipped)}")
    return 0
