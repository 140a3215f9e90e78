"""The `bigbird-pegasus` command (also `python -m bigbird_pegasus`): one subcommand per task.

A subcommand is a row of SUBCOMMANDS: its name, a one-line help, a function that declares its arguments and a
function that runs it and returns the exit status. Problems the user can fix raise `UserError`; `main` prints
them as one line and exits with status 1 (argparse uses 2 for a bad command line).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

from .cache import CrossAttentionCache
from .errors import UserError, run_as_command
from .finetune import command as finetune

PROGRAM = "bigbird-pegasus"
MAX_TRUNCATION_LINES = 10  # per-document truncation warnings printed before summing up the rest


@dataclass(frozen=True)
class Subcommand:
    """One `bigbird-pegasus NAME ...` command."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    interrupted: str = "interrupted"  # what Ctrl-C prints after the command's name


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]) and return its exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(format=f"{PROGRAM}: %(message)s", level=logging.WARNING)
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.disable_propagation()  # the hub prints its own messages (retries...): not a second time through ours
    subcommand = args.subcommand
    return run_as_command(f"{PROGRAM} {subcommand.name}", lambda: subcommand.run(args), subcommand.interrupted)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand in SUBCOMMANDS."""
    parser = argparse.ArgumentParser(prog=PROGRAM, description="Summarize long documents with BigBird-Pegasus.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for subcommand in SUBCOMMANDS:
        sub = commands.add_parser(subcommand.name, help=subcommand.help, description=subcommand.help)
        subcommand.add_arguments(sub)
        sub.set_defaults(subcommand=subcommand)
    return parser


# ---- summarize ---------------------------------------------------------------------------------------------


def add_summarize_arguments(parser: argparse.ArgumentParser) -> None:
    """Inputs, model, generation, long-document and output options of `summarize`."""
    from .summarize import DEFAULT_BATCH_SIZE, DEFAULT_MODEL

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


def run_summarize(args: argparse.Namespace) -> int:
    """Read every document, summarize them in length-grouped batches, write the summaries in input order."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from .documents import InputFormat, read_documents
    from .writing import check_output_path, render, summaries_as_text, write_atomically

    if args.output:
        check_output_path(args.output)
    sources = args.files or [_stdin_source()]
    documents, skipped = read_documents(sources, InputFormat(args.input_format), args.text_field, args.id_field,
                                        skip_errors=args.errors == "skip")
    for problem in skipped:
        _warn(f"skipped {problem}")
    if not documents:
        raise UserError(f"no documents to summarize ({len(skipped)} skipped)")

    summarizer = _summarizer(args)
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    with tqdm(total=len(documents), unit="doc", desc="summarizing", file=sys.stderr, disable=not show_progress,
              dynamic_ncols=True) as bar, logging_redirect_tqdm():
        results = summarizer.summarize([d.text for d in documents], ids=[d.id for d in documents],
                                       progress=bar.update)
    _report_truncation(results, summarizer.limit)

    if args.output:
        write_atomically(args.output, render(results, args.output))
    else:
        sys.stdout.write(summaries_as_text(results))
        sys.stdout.flush()
    if skipped:
        _warn(f"summarized {len(results)} documents, skipped {len(skipped)}")
    return 0


def _summarizer(args: argparse.Namespace):
    """The Summarizer the options ask for; bad option values and unloadable models become UserErrors."""
    from .errors import ModelLoadError
    from .hub import is_local
    from .summarize import Summarizer

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


def _report_truncation(results, limit: int) -> None:
    """One warning per truncated document (the first few), then how many more."""
    truncated = [result for result in results if result.truncated]
    for result in truncated[:MAX_TRUNCATION_LINES]:
        _warn(f"{result.id}: {result.input_tokens:,} tokens, the model reads {limit:,}: {result.truncated:,} tokens "
              "were cut (--long-input chunk reads them all)")
    if len(truncated) > MAX_TRUNCATION_LINES:
        rest = truncated[MAX_TRUNCATION_LINES:]
        _warn(f"... and {len(rest)} more documents were truncated ({sum(r.truncated for r in rest):,} tokens cut)")


def _stdin_source() -> str:
    """"-" when standard input is piped; a UserError when it is a terminal (nothing to read)."""
    if sys.stdin is None or sys.stdin.isatty():
        raise UserError("no input: pass FILE arguments, or pipe text into standard input")
    return "-"


# ---- evaluate ----------------------------------------------------------------------------------------------


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Prediction and reference files, their fields, bootstrap settings and the output form of `evaluate`."""
    parser.add_argument("--predictions", required=True, metavar="PATH",
                        help=".txt (one summary per line) or .jsonl; a .jsonl may hold the references too")
    parser.add_argument("--references", metavar="PATH",
                        help=".txt (one reference per line) or .jsonl, in the same order as the predictions")
    parser.add_argument("--prediction-field", default="summary", help="JSON Lines field (default: %(default)s)")
    parser.add_argument("--reference-field", default="reference", help="JSON Lines field (default: %(default)s)")
    parser.add_argument("--bootstrap", type=non_negative_int, default=1000, metavar="N",
                        help="bootstrap resamples for the intervals, 0 for none (default: %(default)s)")
    parser.add_argument("--confidence", type=fraction, default=0.95,
                        help="interval coverage, between 0 and 1 (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap random seed (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of a table")


def run_evaluate(args: argparse.Namespace) -> int:
    """Pair predictions with references line by line and print their ROUGE scores."""
    from .documents import InputFormat, read_texts
    from .evaluate import evaluate

    references_path = args.references or args.predictions
    if InputFormat.AUTO.of(references_path) is not InputFormat.JSONL and not args.references:
        raise UserError(f"{args.predictions}: pass --references, or a .jsonl file that holds both the "
                        f"{args.prediction_field!r} and the {args.reference_field!r} fields")
    predictions = read_texts(args.predictions, args.prediction_field, "--prediction-field")
    references = read_texts(references_path, args.reference_field, "--reference-field")
    if len(predictions) != len(references):
        raise UserError(f"{args.predictions} holds {len(predictions)} predictions but {references_path} holds "
                        f"{len(references)} references; they must pair up line by line")
    if not predictions:
        raise UserError(f"{args.predictions}: no predictions to evaluate")
    report = evaluate(predictions, references, bootstrap=args.bootstrap, confidence=args.confidence, seed=args.seed)
    sys.stdout.write(report.to_json() + "\n" if args.json else report.to_table())
    return 0


# ---- shared helpers ----------------------------------------------------------------------------------------


def _warn(message: str) -> None:
    print(f"{PROGRAM}: {message}", file=sys.stderr)


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer of at least 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


SUBCOMMANDS = [
    Subcommand("summarize", "Summarize documents (text, Markdown, JSON Lines or standard input).",
               add_summarize_arguments, run_summarize),
    Subcommand("evaluate", "ROUGE-1/2/L/Lsum of predictions against references, with bootstrap intervals.",
               add_evaluate_arguments, run_evaluate),
    Subcommand("finetune", finetune.HELP, finetune.add_arguments, finetune.run, finetune.INTERRUPTED),
]
