"""`bigbird-pegasus summarize`: documents in, summaries out, in input order."""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError
from ..text.documents import JSONL_SUFFIXES, InputFormat
from .arguments import positive_int
from .running import warn
from .summarizer_options import (add_generation_arguments, add_long_input_arguments, add_model_arguments,
                                 build_summarizer)

HELP = "Summarize documents (PDF, text, Markdown, JSON Lines, folders of them, or standard input)."
INTERRUPTED = "interrupted (a run with -o FILE.jsonl keeps the summaries it wrote: go on with --resume)"
MAX_TRUNCATION_LINES = 10  # per-document truncation warnings printed before summing up the rest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Inputs, model, generation, long-document and output options of `summarize`."""
    from ..pipeline.summarizer import DEFAULT_BATCH_SIZE

    inputs = parser.add_argument_group("input")
    inputs.add_argument("files", nargs="*", metavar="FILE",
                        help="PDF, text or Markdown files (one document each), JSON Lines files (.jsonl, one "
                             "document per line), folders (every .pdf, .txt, .md and .jsonl file under them, in "
                             "sorted order), or - for standard input (the default when it is not a terminal)")
    inputs.add_argument("--input-format", choices=[kind.value for kind in InputFormat], default="auto",
                        help="read every FILE as text, JSON Lines or PDF (default: by suffix; standard input is "
                             "text)")
    inputs.add_argument("--text-field", default="document",
                        help="JSON Lines field with the text (default: %(default)s)")
    inputs.add_argument("--id-field", help="JSON Lines field with the document's id (default: FILE:LINE)")
    inputs.add_argument("--errors", choices=("fail", "skip"), default="fail",
                        help="on an unreadable or empty document (a corrupt PDF, one that needs a password or has "
                             "no text layer): stop (default), or skip it, say why, and go on")

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
                        help="progress bar on standard error (default: when it is a terminal; under torchrun, the "
                             "first process's)")
    corpus = parser.add_argument_group("corpus runs (-o FILE.jsonl: each summary appended as soon as it is done)")
    existing = corpus.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="go on with the run that wrote the output: skip the documents it holds")
    existing.add_argument("--overwrite", action="store_true", help="replace an existing output")
    corpus.add_argument("--shard", type=_shard, metavar="K/N",
                        help="summarize only shard K of N (K from 0): the documents at positions K, K+N, K+2N, "
                             "...; for launchers without torchrun (SLURM arrays, Kubernetes indexed jobs), each "
                             "shard with its own -o file")


def run(args: argparse.Namespace) -> int:
    """Read the documents, summarize them in length-grouped batches, write the summaries in input order: to a
    JSON Lines file as they are done (resumable, shared out over shards and torchrun's processes), or at the end
    to a text file or standard output."""
    from ..pipeline.sharing import processes
    from ..pipeline.writing import check_output_path
    from ..text.documents import list_documents

    if args.output:
        check_output_path(args.output)
    corpus = args.output is not None and args.output.lower().endswith(JSONL_SUFFIXES)
    with processes() as procs:
        _check_corpus_options(args, corpus=corpus, distributed=procs.distributed)
        sources = args.files or [_stdin_source()]
        documents, skipped = list_documents(sources, input_format=InputFormat(args.input_format),
                                            text_field=args.text_field, id_field=args.id_field,
                                            skip_errors=args.errors == "skip",
                                            exclude=[args.output] if args.output else ())
        if procs.is_main:
            for problem in skipped:
                warn(f"skipped {problem}")
        if not documents:
            raise UserError(f"no documents to summarize ({len(skipped)} skipped)")
        if corpus:
            return _summarize_corpus(args, documents, skipped=len(skipped), procs=procs)
        return _summarize_at_once(args, documents, skipped=skipped)


def _check_corpus_options(args: argparse.Namespace, *, corpus: bool, distributed: bool) -> None:
    """Options of corpus runs need a JSON Lines output."""
    needs = [name for name, given in (("--resume", args.resume), ("--overwrite", args.overwrite),
                                      ("--shard", args.shard), ("torchrun", distributed)) if given]
    if needs and not corpus:
        raise UserError(f"{needs[0]} needs a JSON Lines output (-o FILE.jsonl), which keeps each summary as soon as "
                        "it is done")


def _summarize_corpus(args: argparse.Namespace, documents, *, skipped: int, procs) -> int:
    """Append each summary to the JSON Lines output as it is done; merge in input order at the end."""
    from ..pipeline.corpus import plan_corpus, summarize_corpus
    from ..pipeline.sharing import Shard

    plan = plan_corpus(documents, output=args.output, resume=args.resume, overwrite=args.overwrite,
                       shard=args.shard or Shard(), processes=procs)
    if plan.already_done and procs.is_main:
        warn(f"resuming: {plan.already_done} of {len(plan.order)} documents are already summarized in {args.output}")
    args.device = _process_device(args.device, procs)
    summarizer = build_summarizer(args, batch_size=args.batch_size)
    show_progress = procs.is_main and (sys.stderr.isatty() if args.progress is None else args.progress)
    run = summarize_corpus(plan, summarizer, skip_errors=args.errors == "skip", progress=show_progress,
                           report=warn)
    _report_truncation(run.truncated, limit=summarizer.limit)
    if procs.is_main and (skipped or run.skipped):
        warn(f"summarized {run.summarized} documents, skipped {skipped + run.skipped}")
    return 0


def _summarize_at_once(args: argparse.Namespace, documents, *, skipped: list) -> int:
    """Read every document first (a problem stops the run before the model is loaded), summarize them all,
    then write the summaries to the text output or standard output."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from ..checkpoint.atomic import write_file_atomically
    from ..errors import DocumentError
    from ..pipeline.writing import summaries_as_text

    texts, ids = [], []
    for document in documents:
        try:
            texts.append(document.read())
            ids.append(document.id)
        except DocumentError as problem:
            if args.errors != "skip":
                raise
            skipped.append(problem)
            warn(f"skipped {problem}")
    if not texts:
        raise UserError(f"no documents to summarize ({len(skipped)} skipped)")
    summarizer = build_summarizer(args, batch_size=args.batch_size)
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    with tqdm(total=len(texts), unit="doc", desc="summarizing", file=sys.stderr, disable=not show_progress,
              dynamic_ncols=True) as bar, logging_redirect_tqdm():
        results = summarizer.summarize(texts, ids=ids, progress=bar.update)
    _report_truncation([result for result in results if result.truncated], limit=summarizer.limit)

    if args.output:
        write_file_atomically(args.output, summaries_as_text(results))
    else:
        sys.stdout.write(summaries_as_text(results))
        sys.stdout.flush()
    if skipped:
        warn(f"summarized {len(results)} documents, skipped {len(skipped)}")
    return 0


def _report_truncation(truncated, *, limit: int) -> None:
    """One warning per truncated document (the first few), then how many more."""
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


def _shard(text: str):
    """argparse type: K/N."""
    from ..pipeline.sharing import Shard

    try:
        return Shard.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _process_device(device: str | None, procs) -> str | None:
    """Under torchrun on GPUs, each process on the GPU of its local rank (unless --device names one); more
    processes than GPUs share them in turn."""
    import torch

    if procs.distributed and device in (None, "cuda") and torch.cuda.is_available():
        return f"cuda:{procs.local_rank % torch.cuda.device_count()}"
    return device
