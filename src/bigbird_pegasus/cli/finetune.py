"""`bigbird-pegasus finetune ...`; also `python -m bigbird_pegasus.finetune`, which torchrun can start with `-m`."""

from __future__ import annotations

import argparse
import os

from ..finetune.options import TrainConfig, add_arguments
from .running import PROGRAM, run_as_command

HELP = "Fine-tune a checkpoint on a JSON Lines file of documents and summaries (torchrun for several processes)."
INTERRUPTED = "interrupted; continue with --resume"
STANDALONE = f"{PROGRAM} finetune"

__all__ = ["HELP", "INTERRUPTED", "add_arguments", "main", "run"]


def run(args: argparse.Namespace) -> int:
    """Train with parsed `finetune` arguments (a FinetuneError reaches the caller)."""
    from ..finetune.trainer import train  # torch.distributed's checkpoint and FSDP modules: imported only to train

    fields = {name: value for name, value in vars(args).items() if name in TrainConfig.__dataclass_fields__}
    result = train(TrainConfig.from_any(fields))
    if os.environ.get("RANK", "0") == "0":  # under torchrun, the main process speaks for all
        print(f"fine-tuned model: {result.final_model}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command on its own (`python -m bigbird_pegasus.finetune`): errors the user can fix are printed as one
    line, exit status 1."""
    parser = argparse.ArgumentParser(prog=STANDALONE, description=HELP)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_as_command(STANDALONE, lambda: run(args), interrupted=INTERRUPTED)
