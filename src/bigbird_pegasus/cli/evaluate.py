"""`bigbird-pegasus evaluate`: ROUGE of predictions against references, with bootstrap intervals."""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError
from .arguments import fraction, non_negative_int

HELP = "ROUGE-1/2/L/Lsum of predictions against references, with bootstrap intervals."


def add_arguments(parser: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
    """Pair predictions with references line by line and print their ROUGE scores."""
    from ..pipeline.rouge import evaluate
    from ..text.documents import InputFormat, read_texts

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
