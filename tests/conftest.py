"""Test-wide settings and fixtures.

Never touch the network; keep the reference's log noise down; print the worst parity difference at the end.

Naming: a fixture is named after what it gives (`tiny_checkpoint`, `tiny_tokenizer`, `one_torch_thread`) and
lives in the conftest.py of the narrowest folder that uses it; plain functions and constants shared by several
folders live in `tests/helpers/` (importable as `helpers.*`, see `pythonpath` in pyproject.toml).
"""

import atexit
import os
import shutil
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
# the C kernels are built once per test session into a folder of its own (not the user's cache), removed at the end
if "BIGBIRD_PEGASUS_KERNEL_CACHE" not in os.environ:
    os.environ["BIGBIRD_PEGASUS_KERNEL_CACHE"] = tempfile.mkdtemp(prefix="bigbird-pegasus-kernels-")
    atexit.register(shutil.rmtree, os.environ["BIGBIRD_PEGASUS_KERNEL_CACHE"], ignore_errors=True)

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402  (the reference, a test dependency only)

transformers.logging.set_verbosity_error()


@pytest.fixture
def one_torch_thread():
    """Run tiny models on one CPU thread: on a shared 2-core machine, more threads only wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random summarizer with its SentencePiece tokenizer, saved once per session
    (`helpers.cli.build_tiny_checkpoint`): summaries of exactly SUMMARY_TOKENS pieces, 512 positions."""
    from helpers.cli import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_checkpoint"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_checkpoint):
    from bigbird_pegasus import PegasusTokenizer

    return PegasusTokenizer.from_pretrained(tiny_checkpoint)


def pytest_terminal_summary(terminalreporter):
    """The worst fp32 max |diff| over every parity comparison of the run (helpers/reference.py)."""
    from helpers.reference import PARITY_DIFFS

    if PARITY_DIFFS:
        terminalreporter.write_line(f"parity: worst max |diff| over {len(PARITY_DIFFS)} comparisons with the "
                                    f"reference: {max(PARITY_DIFFS):.3g}")
