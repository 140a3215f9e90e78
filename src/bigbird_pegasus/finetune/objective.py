"""The training objective: summed (label-smoothed) cross-entropy over the target tokens of a batch.

Sums, not means: the trainer divides by the number of target tokens of the whole optimizer step, over
every micro-batch and process, so accumulated, distributed and single big batches give the same gradient.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ..config import BigBirdPegasusConfig
from ..modeling.model import shift_tokens_right
from .data import IGNORED_LABEL, TokenBatch


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on `device` when `bf16`, else nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def summed_loss(model: nn.Module, *, config: BigBirdPegasusConfig, batch: TokenBatch, label_smoothing: float,
                bf16: bool) -> torch.Tensor:
    """Sum over the (b, t) target tokens of the cross-entropy, in fp32; a 0-d tensor.

    `model` is the module to call (possibly a DDP / FSDP one), `config` its BigBirdPegasusConfig."""
    decoder_input_ids = shift_tokens_right(batch.labels, pad_token_id=config.pad_token_id,
                                           decoder_start_token_id=config.decoder_start_token_id)
    with autocast(batch.input_ids.device, bf16):
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                       decoder_input_ids=decoder_input_ids, use_cache=False).logits          # (b, t, vocab)
    return F.cross_entropy(logits.float().flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORED_LABEL,
                           reduction="sum", label_smoothing=label_smoothing)
