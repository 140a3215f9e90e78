"""TrainConfig: every option of `bigbird-pegasus finetune`, its command-line parser and its checks."""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from .errors import FinetuneError

OPTIMIZERS = ("adamw", "adafactor")
# Learning rates when --lr is not given: the Hugging Face Trainer's AdamW default, and the rate the
# `transformers` docs recommend for Adafactor with an external schedule (no relative step).
DEFAULT_LEARNING_RATES = {"adamw": 5e-5, "adafactor": 1e-3}
RESUME_LATEST = "latest"


@dataclass
class TrainConfig:
    """What to train, on what, and how; field names are the command-line options without dashes."""

    model: str
    train: str
    output_dir: str
    validation: str | None = None
    tokenizer: str | None = None
    text_field: str = "document"
    summary_field: str = "summary"
    max_source_length: int = 4096
    max_target_length: int = 256
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 1
    grad_accum: int = 1
    optimizer: str = "adamw"
    lr: float | None = None
    warmup_steps: int = 0
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float = 1.0
    gradient_checkpointing: bool = False
    bf16: bool = False
    seed: int = 42
    eval_every: int = 0
    eval_samples: int = 16
    eval_beams: int = 1
    save_every: int = 500
    keep_last: int = 2
    resume: str | None = None
    fsdp: bool = False
    device: str | None = None
    progress: bool = True

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LEARNING_RATES[self.optimizer]

    def validate(self) -> None:
        """Raise a FinetuneError naming the first bad option."""
        for name in ("max_source_length", "max_target_length", "epochs", "batch_size", "grad_accum",
                     "eval_samples", "eval_beams", "keep_last"):
            _require(getattr(self, name) >= 1, name, "must be a positive integer")
        for name in ("warmup_steps", "eval_every", "save_every"):
            _require(getattr(self, name) >= 0, name, "must be 0 or more")
        _require(self.max_steps is None or self.max_steps >= 1, "max_steps", "must be a positive integer")
        _require(self.optimizer in OPTIMIZERS, "optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
        _require(self.lr is None or self.lr > 0, "lr", "must be positive")
        _require(self.weight_decay >= 0, "weight_decay", "must be 0 or more")
        _require(0 <= self.label_smoothing < 1, "label_smoothing", "must be in [0, 1)")
        _require(self.grad_clip >= 0, "grad_clip", "must be 0 (off) or more")
        for name in ("train", "validation"):
            path = getattr(self, name)
            _require(path is None or os.path.isfile(path), name,
                     f"{path}: {'is a folder, not a file' if path and os.path.isdir(path) else 'no such file'}")

    @classmethod
    def from_any(cls, options: TrainConfig | argparse.Namespace | dict[str, Any] | list[str]) -> TrainConfig:
        """A TrainConfig from itself, parsed command-line arguments, a dict of fields, or an argv list."""
        if isinstance(options, TrainConfig):
            return options
        if isinstance(options, list):
            parser = argparse.ArgumentParser(prog="bigbird-pegasus finetune")
            add_arguments(parser)
            options = parser.parse_args(options)
        values = vars(options) if isinstance(options, argparse.Namespace) else dict(options)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise FinetuneError(f"unknown fine-tuning option(s): {', '.join(unknown)}")
        return cls(**values)


def _require(ok: bool, name: str, reason: str) -> None:
    if not ok:
        raise FinetuneError(f"--{name.replace('_', '-')} {reason}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `finetune` options, with TrainConfig's defaults."""
    default = TrainConfig(model="", train="", output_dir="")
    data = parser.add_argument_group("model and data")
    data.add_argument("--model", required=True, help="checkpoint folder or hub id to start from")
    data.add_argument("--tokenizer", help="tokenizer folder or hub id (default: --model)")
    data.add_argument("--train", required=True, help="JSONL file of training examples, one object a line")
    data.add_argument("--validation", help="JSONL file of validation examples (loss and ROUGE)")
    data.add_argument("--output-dir", required=True, help="checkpoints, the final model and log.jsonl go here")
    data.add_argument("--text-field", default=default.text_field, help="JSON field of the document")
    data.add_argument("--summary-field", default=default.summary_field, help="JSON field of the summary")
    data.add_argument("--max-source-length", type=int, default=default.max_source_length,
                      help="tokens kept per document; above the model's positions the table is extended")
    data.add_argument("--max-target-length", type=int, default=default.max_target_length,
                      help="tokens kept per summary (and generated at evaluation)")

    schedule = parser.add_argument_group("optimisation")
    schedule.add_argument("--epochs", type=int, default=default.epochs)
    schedule.add_argument("--max-steps", type=int, help="optimizer steps in all (overrides --epochs)")
    schedule.add_argument("--batch-size", type=int, default=default.batch_size, help="documents per process")
    schedule.add_argument("--grad-accum", type=int, default=default.grad_accum,
                          help="batches accumulated into one optimizer step")
    schedule.add_argument("--optimizer", choices=OPTIMIZERS, default=default.optimizer)
    schedule.add_argument("--lr", type=float,
                          help="peak learning rate (default: 5e-5 for adamw, 1e-3 for adafactor)")
    schedule.add_argument("--warmup-steps", type=int, default=default.warmup_steps,
                          help="linear warm-up; then linear decay to 0 at the last step")
    schedule.add_argument("--weight-decay", type=float, default=default.weight_decay)
    schedule.add_argument("--label-smoothing", type=float, default=default.label_smoothing)
    schedule.add_argument("--grad-clip", type=float, default=default.grad_clip,
                          help="clip the gradient norm to this (0: no clipping)")
    schedule.add_argument("--seed", type=int, default=default.seed)

    memory = parser.add_argument_group("memory and devices")
    memory.add_argument("--gradient-checkpointing", action="store_true",
                        help="recompute activations in the backward pass: far less memory, ~30%% more time")
    memory.add_argument("--bf16", action="store_true", help="bfloat16 autocast (weights stay fp32)")
    memory.add_argument("--fsdp", action="store_true",
                        help="under torchrun: shard weights and optimizer state across processes")
    memory.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")

    progress = parser.add_argument_group("evaluation, checkpoints and logging")
    progress.add_argument("--eval-every", type=int, default=default.eval_every,
                          help="evaluate every N steps (0: only at the end)")
    progress.add_argument("--eval-samples", type=int, default=default.eval_samples,
                          help="validation documents summarized for ROUGE at each evaluation")
    progress.add_argument("--eval-beams", type=int, default=default.eval_beams,
                          help="beams when generating those summaries")
    progress.add_argument("--save-every", type=int, default=default.save_every,
                          help="write a checkpoint every N steps (0: only at the end)")
    progress.add_argument("--keep-last", type=int, default=default.keep_last,
                          help="checkpoints kept in --output-dir; older ones are deleted")
    progress.add_argument("--resume", nargs="?", const=RESUME_LATEST,
                          help="continue from the latest checkpoint in --output-dir, or from this one")
    progress.add_argument("--no-progress", dest="progress", action="store_false",
                          help="no progress bar (log.jsonl is still written)")
