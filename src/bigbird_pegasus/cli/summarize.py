"""`bigbird-pegasus summarize`: documents in, summaries out, in input order."""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError
from ..modeling.cache import CrossAttentionCache
from .arguments import non_negative_int, positive_int
from .running import warn

HELP = "Summarize documents (text, Markdown, JSON Lines or standard input)."
MAX_TRUNCATION_LINES = 10  # per-document truncation warnings printed before summing up the rest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Inputs, model, generation, long-document and output options of `summarize`."""
    from ..pipeline.loading import DEFAULT_MODEL
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

    model = parser.add_argument_group("model")
    model.add_argument("--model", default=DEFAULT_MODEL,
                       help="checkpoint folder or Hugging Face hub id (default: %(default)s)")
    model.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                       help="weights and activations dtype (default: as saved)")
    model.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available, else cpu)")
    model.add_argument("--threads", type=positive_int, help="CPU threads (default: torch's choice)")
    model.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                       help="documents (or windows) per batch, grouped by length (default: %(default)s)")

    generation = parser.add_argument_group("generation (default: the checkpoint's generation settings)")
    generation.add_argument("--num-beams", type=positive_int, help="beam search width (1: greedy)")
    generation.add_argument("--length-penalty", type=float, help="beam score exponent on length (>1: longer)")
    generation.add_argument("--max-length", type=positive_int, help="most summary tokens, start token included")
    generation.add_argument("--min-length", type=non_negative_int, help="fewest summary tokens before </s>")
    generation.add_argument("--no-repeat-ngram-size", type=non_negative_int,
                            help="never repeat an n-gram of this size (0: allowed)")
    generation.add_argument("--cross-attention-cache", choices=[mode.value for mode in CrossAttentionCache],
                            default=CrossAttentionCache.KEYS_AND_VALUES.value,
                            help="kept per document for the decoder's cross-attention: keys_and_values (the fastest, "
                                 "default), values (half that memory) or none (only the encoder states; the least "
                                 "memory, the slowest steps); the summaries are the same")

    long_input = parser.add_argument_group("long documents and text")
    long_input.add_argument("--long-input", choices=("truncate", "chunk"), default="truncate",
                            help="a document longer than the model's positions is cut (default) or read in "
                                 "overlapping windows whose summaries are summarized again")
    long_input.add_argument("--chunk-overlap", type=non_negative_int, metavar="TOKENS",
                            help="tokens that consecutive windows may share (default: 1/8 of the positions)")
    long_input.add_argument("--newlines", choices=("auto", "token", "space"), default="auto",
                            help="paragraph breaks reach the model as <n> (token) or as spaces (space); auto: <n> "
                                 "when the tokenizer has that piece (default)")

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

    summarizer = _summarizer(args)
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


def _summarizer(args: argparse.Namespace):
    """The Summarizer the options ask for; bad option values and unloadable models become UserErrors."""
    from ..checkpoint.hub import is_local
    from ..errors import ModelLoadError
    from ..pipeline.summarizer import Summarizer

    try:
        return Summarizer(args.model, dtype=args.dtype, device=args.device, threads=args.threads,
                          batch_size=args.batch_size, long_input=args.long_input, chunk_overlap=args.chunk_overlap,
                          newlines=args.newlines, num_beams=args.num_beams, length_penalty=args.length_penalty,
                          max_length=args.max_length, min_length=args.min_length,
                          no_repeat_ngram_size=args.no_repeat_ngram_size,
                          cross_attention_cache=args.cross_attention_cache)
    except ModelLoadError as error:
        raise UserError(str(error) if is_local(args.model) else f"{str(error).rstrip('.')} (--model FOLDER).") from None
    except ValueError as error:
        raise UserError(str(error)) from None


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
