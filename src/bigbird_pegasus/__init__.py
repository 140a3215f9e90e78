"""bigbird_pegasus: a fast, standalone PyTorch implementation of BigBird-Pegasus.

The public names are those of `transformers`, so that imports are drop-in.
"""

from .config import BigBirdPegasusConfig
from .heads import (
    BigBirdPegasusForCausalLM,
    BigBirdPegasusForConditionalGeneration,
    BigBirdPegasusForQuestionAnswering,
    BigBirdPegasusForSequenceClassification,
)
from .model import BigBirdPegasusModel, BigBirdPegasusPreTrainedModel

__all__ = [
    "BigBirdPegasusConfig",
    "BigBirdPegasusForCausalLM",
    "BigBirdPegasusForConditionalGeneration",
    "BigBirdPegasusForQuestionAnswering",
    "BigBirdPegasusForSequenceClassification",
    "BigBirdPegasusModel",
    "BigBirdPegasusPreTrainedModel",
]
