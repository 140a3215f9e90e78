"""Random queries, keys and values for the block-sparse attention tests, the second row right-padded."""

from __future__ import annotations

import torch

BLOCK, HEADS, HEAD_DIM = 8, 4, 16


def inputs(num_blocks: int, padding: int, seed: int = 0):
    """(q, k, v) each (2, num_blocks * BLOCK, HEADS * HEAD_DIM), and key_valid (2, n) False on the second row's
    last `padding` positions."""
    generator = torch.Generator().manual_seed(seed)
    n = num_blocks * BLOCK
    q, k, v = (torch.randn(2, n, HEADS * HEAD_DIM, generator=generator) for _ in range(3))
    key_valid = torch.ones(2, n, dtype=torch.bool)
    key_valid[1, n - padding:] = False
    return q, k, v, key_valid
