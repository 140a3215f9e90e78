"""The one error type of fine-tuning: bad input, a bad resume folder, a checkpoint that could not be written."""


class FinetuneError(Exception):
    """A problem the user can fix; the message names the file, line or option at fault.

    The command line prints it without a traceback and exits non-zero."""
