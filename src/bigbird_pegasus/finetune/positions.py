"""Longer inputs than the checkpoint was trained on: grow the learned position tables by copying rows.

This is the recipe the Longformer-Encoder-Decoder (LED) used to extend BART from 1,024 to 16,384
positions: the trained table is repeated until the new length is filled, so every position starts
from an embedding the model already knows and fine-tuning adapts it. Encoder and decoder tables are
both grown, because the checkpoint format (and the reference) gives both `max_position_embeddings` rows.
"""

from __future__ import annotations

import torch
from torch import nn

from ..modeling.pretrained import BigBirdPegasusPreTrainedModel


def extend_position_embeddings(model: BigBirdPegasusPreTrainedModel, length: int) -> None:
    """Grow every `embed_positions` table of `model` to `length` rows (row i = old row i mod old length)
    and set `config.max_position_embeddings`; a table already that long is left alone."""
    if length <= model.config.max_position_embeddings:
        return
    for owner in [m for m in model.modules() if isinstance(getattr(m, "embed_positions", None), nn.Embedding)]:
        owner.embed_positions = _repeated_table(owner.embed_positions, length)
    model.config.max_position_embeddings = length


def _repeated_table(table: nn.Embedding, length: int) -> nn.Embedding:
    """A new (length, d) embedding holding `table`'s rows repeated."""
    old = table.weight.detach()
    grown = nn.Embedding(length, table.embedding_dim, device=old.device, dtype=old.dtype)
    repeats = -(-length // old.shape[0])
    with torch.no_grad():
        grown.weight.copy_(old.repeat(repeats, 1)[:length])                   # (length, d)
    grown.weight.requires_grad_(table.weight.requires_grad)
    return grown
