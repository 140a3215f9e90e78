"""The one error type of fine-tuning: bad input, a bad resume folder, a checkpoint that could not be written."""

from ..errors import UserError


class FinetuneError(UserError):
    """A problem the user can fix; the message names the file, line or option at fault.

    The command line prints it without a traceback and exits with status 1."""
