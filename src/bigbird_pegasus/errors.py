"""Errors the user can fix (a bad input file, a model folder that is not a checkpoint).

The command line prints their message, without a traceback, and exits with status 1.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user asked for, explained by its message."""


class DocumentError(UserError):
    """An input document that cannot be read; the message names the file and, where it helps, the line."""

    def __init__(self, source: str, reason: str, line: int | None = None):
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {reason}")


class ModelLoadError(UserError):
    """A model or tokenizer that cannot be loaded."""
