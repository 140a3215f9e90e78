"""Fine-tuning BigBird-Pegasus on your own documents: `bigbird-pegasus finetune` and `train(...)`.

    from bigbird_pegasus.finetune import train
    train(["--model", "google/bigbird-pegasus-large-arxiv", "--train", "train.jsonl", "--output-dir", "out"])

One process, or many under `torchrun` (DDP, or FSDP with `--fsdp`); see `options.py` for every option.
"""

from .errors import FinetuneError
from .options import TrainConfig, add_arguments

__all__ = ["FinetuneError", "TrainConfig", "TrainResult", "add_arguments", "extend_position_embeddings", "train"]


def __getattr__(name: str):
    # The trainer pulls in torch.distributed's checkpoint and FSDP modules (about a second): the CLI imports
    # this package to list the subcommand's options, so they are imported on first use only.
    if name in ("train", "TrainResult"):
        from . import trainer
        return getattr(trainer, name)
    if name == "extend_position_embeddings":
        from .positions import extend_position_embeddings
        return extend_position_embeddings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
