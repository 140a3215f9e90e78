"""Test-wide settings: never touch the network; keep the reference's log noise down."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import transformers  # noqa: E402  (the reference, a test dependency only)

transformers.logging.set_verbosity_error()
