"""`bigbird-pegasus summarize`: documents in, summaries out, in input order."""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError
from .arguments import positive_int
from .running import warn
from .summarizer_options import (add_generation_arguments, add_long_input_arguments, add_model_arguments,
                                 build_summarizer)

HELP = "Summarize documents (text, Markdown, JSON Lines or standard input)."
MAX_TRUNCATION_LINES = 10  # per-document truncation warnings printed before summing up the rest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Inputs, model, generation, long-document and output options of `summarize`."""
    from ..pipeline.summarizer import DEFAULT_BATCH_SIZE

    inputs = parser.add_argument_group("input")
    inputs.add_argument("files", nargs="*", metavar="FILE",
                        help="text or Markdown files (one document each), JSON Lines files (.jsonl, one document "
                             "per line), or - for standard input (the default when it is not a terminal)")
    inputs.add_argument("--input-format", choices=("auto", "text", "jsonl"), default="auto",
                        help="read every FILE as text or as JSON Lines (default: by suffix; standard input is text)")
    inputs.add_argument("--text-field", default="document",
                        help="JSON Lines field with the text (default: %(default)s)")
    inputs.add_argument("--id-field", help="JSON Lines field with the document's id (default: FILE:LINE)")
    inputs.add_argument("--errors", choices=("fail", "skip"), default="fail",
                        help="on an unreadable or empty document: stop (default), or skip it and go on")

    model = add_model_arguments(parser)
    model.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                       help="documents (or windows) per batch, grouped by length (default: %(default)s)")
    add_generation_arguments(parser)
    add_long_input_arguments(parser)

    output = parser.add_argument_group("output")
    output.add_argument("-o", "--output", metavar="PATH",
                        help=".txt (one summary per line) or .jsonl (id, summary, input_tokens, truncated, chunks, "
                             "seconds); default: summaries on standard output, one per line")
    output.add_argument("--progress", action=argparse.BooleanOptionalAction,
                        help="progress bar on standard error (default: when it is a terminal)")


def run(args: argparse.Namespace) -> int:
    """Read every document, summarize them in length-grouped batches, write the summaries in input order."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from ..checkpoint.atomic import write_file_atomically
    from ..pipeline.writing import check_output_path, render, summaries_as_text
    from ..text.documents import InputFormat, read_documents

    if args.output:
        check_output_path(args.output)
    sources = args.files or [_stdin_source()]
    documents, skipped = read_documents(sources, input_format=InputFormat(args.input_format),
                                        text_field=args.text_field, id_field=args.id_field,
                                        skip_errors=args.errors == "skip")
    for problem in skipped:
        warn(f"skipped {problem}")
    if not documents:
        raise UserError(f"no documents to summarize ({len(skipped)} skipped)")

    summarizer = build_summarizer(args, batch_size=args.batch_size)
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    with tqdm(total=len(documents), unit="doc", desc="summarizing", file=sys.stderr, disable=not show_progress,
              dynamic_ncols=True) as bar, logging_redirect_tqdm():
        results = summarizer.summarize([d.text for d in documents], ids=[d.id for d in documents],
                                       progress=bar.update)
    _report_truncation(results, limit=summarizer.limit)

    if args.output:
        write_file_atomically(args.output, render(results, path=args.output))
    else:
        sys.stdout.write(summaries_as_text(results))
        sys.stdout.flush()
    if skipped:
        warn(f"summarized {len(results)} documents, skipped {len(skipped)}")
    return 0


def _report_truncation(results, *, limit: int) -> None:
    """One warning per truncated document (the first few), then how many more."""
    truncated = [result for result in results if result.truncated]
    for result in truncated[:MAX_TRUNCATION_LINES]:
        warn(f"{result.id}: {result.input_tokens:,} tokens, the model reads {limit:,}: {result.truncated:,} tokens "
             "were cut (--long-input chunk reads them all)")
    if len(truncated) > MAX_TRUNCATION_LINES:
        rest = truncated[MAX_TRUNCATION_LINES:]
        warn(f"... and {len(rest)} more documents were truncated ({sum(r.truncated for r in rest):,} tokens cut)")


def _stdin_source() -> str:
    """"-" when standard input is piped; a UserError when it is a terminal (nothing to read)."""
    if sys.stdin is None or sys.stdin.isatty():
        raise UserError("no input: pass FILE arguments, or pipe text into standard input")
    return "-"
