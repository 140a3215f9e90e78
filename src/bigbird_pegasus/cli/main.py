"""The `bigbird-pegasus` command (also `python -m bigbird_pegasus`): one subcommand per task.

A subcommand is a row of SUBCOMMANDS: its name, a one-line help, a function that declares its arguments and a
function that runs it and returns the exit status, each in a module of its own. Problems the user can fix raise
`UserError`; `main` prints them as one line and exits with status 1 (argparse uses 2 for a bad command line).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass

from . import evaluate, extract, finetune, serve, summarize
from .running import PROGRAM, run_as_command


@dataclass(frozen=True)
class Subcommand:
    """One `bigbird-pegasus NAME ...` command."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    interrupted: str = "interrupted"  # what Ctrl-C prints after the command's name


SUBCOMMANDS = [
    Subcommand("summarize", summarize.HELP, summarize.add_arguments, summarize.run, summarize.INTERRUPTED),
    Subcommand("extract", extract.HELP, extract.add_arguments, extract.run),
    Subcommand("evaluate", evaluate.HELP, evaluate.add_arguments, evaluate.run),
    Subcommand("finetune", finetune.HELP, finetune.add_arguments, finetune.run, finetune.INTERRUPTED),
    Subcommand("serve", serve.HELP, serve.add_arguments, serve.run),
]


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]) and return its exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(format=f"{PROGRAM}: %(message)s", level=logging.WARNING)
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.disable_propagation()  # the hub prints its own messages (retries...): not a second time through ours
    subcommand = args.subcommand
    return run_as_command(f"{PROGRAM} {subcommand.name}", lambda: subcommand.run(args),
                          interrupted=subcommand.interrupted)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand in SUBCOMMANDS."""
    parser = argparse.ArgumentParser(prog=PROGRAM, description="Summarize long documents with BigBird-Pegasus.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for subcommand in SUBCOMMANDS:
        sub = commands.add_parser(subcommand.name, help=subcommand.help, description=subcommand.help)
        subcommand.add_arguments(sub)
        sub.set_defaults(subcommand=subcommand)
    return parser
