"""Test-wide settings: never touch the network; keep the reference's log noise down."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import transformers  # noqa: E402  (the reference, a test dependency only)

transformers.logging.set_verbosity_error()


def pytest_terminal_summary(terminalreporter):
    """The worst fp32 max |diff| over every parity comparison of the run (tests/reference_models.py)."""
    from reference_models import PARITY_DIFFS

    if PARITY_DIFFS:
        terminalreporter.write_line(f"parity: worst max |diff| over {len(PARITY_DIFFS)} comparisons with the "
                                    f"reference: {max(PARITY_DIFFS):.3g}")
