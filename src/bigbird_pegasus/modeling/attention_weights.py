"""The exact attention path, beside the fast one: attention probabilities, computed only when `output_attentions`
asks for them (the SDPA paths never materialise them).

Block-sparse probabilities come in the reference's format: a dense (b, h, n, n) matrix that holds each query's
weight on every key it sees and zeros elsewhere. Where the layout counts a key block several times (eval-mode
random blocks all point at block 0; some training plans repeat a window block), the softmax counts it that many
times and the matrix holds the weight of one copy, as the reference's does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .block_sparse import BlockLayout, SparseMasks


def eager_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, bias: torch.Tensor | None,
                    is_causal: bool = False, dropout: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention with its probabilities: q (docs * g, h, t, d) over k, v (docs, h, s, d), the g query rows of a
    document sharing its keys; bias broadcastable to (docs | docs * g, h, t, s), or None. Returns the context
    (docs * g, h, t, d) and the probabilities (docs * g, h, t, s), after dropout (those the context used)."""
    docs, _, s, d = k.shape
    b, h, t, _ = q.shape
    groups = b // docs
    grouped = q.view(docs, groups, h, t, d).transpose(1, 2).reshape(docs, h, groups * t, d)  # (docs, h, g*t, d)
    scores = torch.matmul(grouped, k.transpose(-1, -2)) * d ** -0.5                           # (docs, h, g*t, s)
    scores = scores.view(docs, h, groups, t, s).transpose(1, 2).reshape(b, h, t, s)           # (b, h, t, s)
    if is_causal:
        causal = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(s - t)
        scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
    if bias is not None:
        scores = scores + (bias.repeat_interleave(groups, dim=0) if bias.shape[0] == docs != b else bias)
    weights = F.dropout(torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype), dropout, dropout > 0)
    grouped_weights = weights.view(docs, groups, h, t, s).transpose(1, 2).reshape(docs, h, groups * t, s)
    context = torch.matmul(grouped_weights, v)                                                 # (docs, h, g*t, d)
    return context.view(docs, h, groups, t, d).transpose(1, 2).reshape(b, h, t, d), weights


def block_sparse_weights(q: torch.Tensor, k: torch.Tensor, *, masks: SparseMasks, num_heads: int,
                         block_size: int) -> torch.Tensor:
    """The probabilities of block-sparse attention: q, k (b, n, h * d) with n a multiple of block_size -> the
    dense (b, h, n, n) matrix, zero outside the layout and on padded keys."""
    b, n, hidden = q.shape
    d = hidden // num_heads
    q = q.view(b, n, num_heads, d).transpose(1, 2)                                 # (b, h, n, d)
    k = k.view(b, n, num_heads, d).transpose(1, 2)
    scores = torch.matmul(q, k.transpose(-1, -2)) * d ** -0.5                      # (b, h, n, n)
    counts = dense_block_counts(masks.layout)                                      # (H, nb, nb)
    counts = counts.repeat_interleave(block_size, 1).repeat_interleave(block_size, 2).to(scores.device)  # (H, n, n)
    allowed = (counts > 0)[None]                                                   # (1, H, n, n)
    if masks.key_valid is not None:
        allowed = allowed & masks.key_valid[:, None, None, :]                      # (b, H, n, n)
    bias = counts.clamp(min=1).log().to(scores.dtype).masked_fill(~allowed, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores + bias, dim=-1, dtype=torch.float32) / counts.clamp(min=1)
    return weights.masked_fill(~allowed, 0.0).to(q.dtype)


def dense_block_counts(layout: BlockLayout) -> torch.Tensor:
    """How often each query block counts each key block: (H, nb, nb); the global query blocks count every key
    block once. H is 1 when the heads share the layout."""
    rows, heads, _ = layout.key_blocks.shape
    num_blocks = rows + 2
    counts = torch.zeros(heads, num_blocks, num_blocks, device=layout.counts.device)
    middle = counts[:, 1:-1]                                                       # (H, R, nb)
    middle.scatter_add_(2, layout.key_blocks.permute(1, 0, 2), layout.counts.permute(1, 0, 2).float())
    first, last = layout.global_blocks
    counts[:, [first, last]] = 1.0
    return counts
