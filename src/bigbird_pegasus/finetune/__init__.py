"""Fine-tuning BigBird-Pegasus on your own documents: `bigbird-pegasus finetune` and `train(...)`.

    from bigbird_pegasus.finetune import train
    train(["--model", "google/bigbird-pegasus-large-arxiv", "--train", "train.jsonl", "--output-dir", "out"])

One process, or many under `torchrun` (DDP, or FSDP with `--fsdp`); see `options.py` for every option.
"""

from .errors import FinetuneError
from .options import TrainConfig, add_arguments
from .positions import extend_position_embeddings
from .trainer import TrainResult, train

__all__ = ["FinetuneError", "TrainConfig", "TrainResult", "add_arguments", "extend_position_embeddings", "train"]
