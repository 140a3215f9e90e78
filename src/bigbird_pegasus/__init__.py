"""bigbird_pegasus: a fast, standalone PyTorch implementation of BigBird-Pegasus.

The public names are those of `transformers`, so that imports are drop-in.
"""

from . import allocation

# Before any tensor exists: how the process allocates (huge pages, freed memory kept; see allocation.py).
allocation.configure()

from .config import BigBirdPegasusConfig
from .generation.config import GenerationConfig
from .heads.causal_lm import BigBirdPegasusForCausalLM
from .heads.conditional_generation import BigBirdPegasusForConditionalGeneration
from .heads.question_answering import BigBirdPegasusForQuestionAnswering
from .heads.sequence_classification import BigBirdPegasusForSequenceClassification
from .modeling.cache import CrossAttentionCache
from .modeling.model import BigBirdPegasusModel
from .modeling.pretrained import BigBirdPegasusPreTrainedModel
from .modeling.quantization import quantize_int8, reduce_cross_attention_cache
from .pipeline.summarizer import Summarizer, Summary, summarize
from .text.newlines import decode_newlines, encode_newlines
from .text.tokenizer import PegasusTokenizer

__all__ = [
    "BigBirdPegasusConfig",
    "BigBirdPegasusForCausalLM",
    "BigBirdPegasusForConditionalGeneration",
    "BigBirdPegasusForQuestionAnswering",
    "BigBirdPegasusForSequenceClassification",
    "BigBirdPegasusModel",
    "BigBirdPegasusPreTrainedModel",
    "CrossAttentionCache",
    "GenerationConfig",
    "PegasusTokenizer",
    "Summarizer",
    "Summary",
    "decode_newlines",
    "encode_newlines",
    "quantize_int8",
    "reduce_cross_attention_cache",
    "summarize",
]
