"""`bigbird-pegasus finetune ...` (also `python -m bigbird_pegasus.finetune ...`, which torchrun can start)."""

from __future__ import annotations

import argparse
import sys

from .errors import FinetuneError
from .options import TrainConfig, add_arguments
from .trainer import train

DESCRIPTION = "Fine-tune a BigBird-Pegasus checkpoint on a JSONL file of documents and summaries."


def run(args: argparse.Namespace) -> int:
    """Train with parsed `finetune` arguments; a FinetuneError is printed without a traceback (exit 1)."""
    try:
        result = train(TrainConfig.from_any({k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}))
    except FinetuneError as e:
        print(f"bigbird-pegasus finetune: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bigbird-pegasus finetune: interrupted; resume with --resume", file=sys.stderr)
        return 130
    print(f"fine-tuned model: {result.final_model}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bigbird-pegasus finetune", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))
