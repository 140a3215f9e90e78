"""How every subcommand runs: problems the user can fix are one line on stderr, never a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from ..errors import UserError

PROGRAM = "bigbird-pegasus"
BROKEN_PIPE_STATUS = 141  # 128 + SIGPIPE, what a shell reports for a command killed by a closed pipe


def run_as_command(label: str, run: Callable[[], int], *, interrupted: str = "interrupted") -> int:
    """The exit status of `run()`; a UserError is printed as `label: error: MESSAGE` (status 1), Ctrl-C as
    `label: INTERRUPTED` (status 130), both on stderr and without a traceback; standard output closed by its
    reader ends the command quietly (status 141)."""
    try:
        return run()
    except UserError as error:
        print(f"{label}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{label}: {interrupted}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of standard output went away (`... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that exiting flushes nowhere
        return BROKEN_PIPE_STATUS


def warn(message: str) -> None:
    """One line on stderr, under the program's name."""
    print(f"{PROGRAM}: {message}", file=sys.stderr)
