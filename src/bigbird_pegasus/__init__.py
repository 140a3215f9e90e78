"""bigbird_pegasus: a fast, standalone PyTorch implementation of BigBird-Pegasus.

The public names are those of `transformers`, so that imports are drop-in.
"""

import os

# Large activations on the CPU are freshly allocated and page-faulted 4 KiB at a time; PyTorch's
# allocator can back them with transparent huge pages instead, which makes the encoder's copies and
# elementwise passes several times cheaper. PyTorch reads this once, at its first allocation, so it
# only takes effect if the package is imported before any tensor exists; set it to 0 to opt out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from .cache import CrossAttentionCache
from .config import BigBirdPegasusConfig
from .heads import (
    BigBirdPegasusForCausalLM,
    BigBirdPegasusForConditionalGeneration,
    BigBirdPegasusForQuestionAnswering,
    BigBirdPegasusForSequenceClassification,
)
from .model import BigBirdPegasusModel, BigBirdPegasusPreTrainedModel
from .summarize import Summarizer, Summary, summarize
from .tokenizer import PegasusTokenizer, decode_newlines, encode_newlines

__all__ = [
    "BigBirdPegasusConfig",
    "BigBirdPegasusForCausalLM",
    "BigBirdPegasusForConditionalGeneration",
    "BigBirdPegasusForQuestionAnswering",
    "BigBirdPegasusForSequenceClassification",
    "BigBirdPegasusModel",
    "BigBirdPegasusPreTrainedModel",
    "CrossAttentionCache",
    "PegasusTokenizer",
    "Summarizer",
    "Summary",
    "decode_newlines",
    "encode_newlines",
    "summarize",
]
