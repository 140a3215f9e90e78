"""Which key blocks each query block of the block-sparse encoder sees.

Over `nb = seq_len / block_size` blocks, query blocks 0 and nb-1 are global: they see every key. Every
other query block q sees key block 0, its window (q-1, q, q+1), `num_random_blocks` random blocks and
key block nb-1; blocks 1 and nb-2 have the narrower edge sets ({0, 1, 2, nb-1} and {0, nb-3, nb-2, nb-1}).

The random blocks follow the reference exactly: in training it draws them per layer from numpy's
legacy generator seeded with the layer index (one of two plans, by length); in eval mode it points them
all at block 0, so block 0 enters the softmax 1 + r times. The reference counts duplicates, so the
layout keeps each distinct key block once with its multiplicity: `score + log(count)` reproduces the
softmax. Everything here is a pure function of its arguments, cached, and never runs inside `forward`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

# The reference uses the BigBird paper's plan for these padded lengths: random blocks are drawn from
# the first 1024 tokens of a `max_position_embeddings`-long plan.
PAPER_PLAN_LENGTHS = (1024, 3072, 4096)
PAPER_PLAN_LAST_TOKEN = 1024


@dataclass(frozen=True)
class BlockLayout:
    """Key blocks of the middle query blocks 1 .. nb-2 (R = nb - 2 rows) of one layer.

    key_blocks: (R, H, W) long, H = 1 when every head shares the layout.
    counts: (R, H, W) float, how often the reference counts that key block; 0 marks an unused slot.
    """

    key_blocks: torch.Tensor
    counts: torch.Tensor

    @property
    def shared_by_heads(self) -> bool:
        return self.key_blocks.shape[1] == 1


def block_layout(
    seq_len: int,
    block_size: int,
    num_random_blocks: int,
    num_heads: int,
    layer_index: int,
    max_seq_len: int,
    seeded: bool,
    device: torch.device | str = "cpu",
) -> BlockLayout:
    """The layout of one layer for a padded length; `seeded` draws the training-mode random blocks,
    otherwise every random block is block 0 (the reference's eval mode). Under `torch.compile` the
    result is a constant of the graph (it depends on Python values only)."""
    layout = _cpu_layout(seq_len, block_size, num_random_blocks, num_heads if seeded else 1,
                         layer_index if seeded else 0, max_seq_len, seeded)
    if torch.device(device).type == "cpu":
        return layout
    return _device_layout(layout, str(device))


# What `torch.compiler.assume_constant_result(block_layout)` does, without importing torch._dynamo at
# import time (seconds and ~80 MiB): under torch.compile the layout becomes a constant of the graph.
# tests/test_compile.py compiles the encoder with fullgraph=True, which fails if this stops working.
block_layout._dynamo_marked_constant = True


@functools.lru_cache(maxsize=256)
def _device_layout(layout: BlockLayout, device: str) -> BlockLayout:
    return BlockLayout(layout.key_blocks.to(device), layout.counts.to(device))


@functools.lru_cache(maxsize=256)
def _cpu_layout(seq_len, block_size, num_random_blocks, num_heads, seed, max_seq_len, seeded) -> BlockLayout:
    num_blocks = seq_len // block_size
    if seeded:
        random = random_blocks(seq_len, block_size, num_random_blocks, num_heads, seed, max_seq_len)
    else:
        random = np.zeros((1, num_blocks - 2, num_random_blocks), dtype=np.int64)
    return _layout_from_random(num_blocks, torch.from_numpy(random.astype(np.int64)))


def _layout_from_random(num_blocks: int, random: torch.Tensor) -> BlockLayout:
    """Multisets of key blocks per (row, head) -> distinct blocks with their counts.

    random: (H, R, r) random key blocks of rows 1 .. nb-2, -1 where a row drew fewer than r.
    """
    heads, rows, _ = random.shape
    q = torch.arange(1, num_blocks - 1)                                   # query blocks, (R,)
    last = num_blocks - 1
    window = torch.stack([q - 1, q, q + 1], dim=1)                        # (R, 3)
    window[0, 0] = -1                       # row 1: {0, 1, 2}; block 0 is its global block already
    window[-1, -1] = -1                     # row nb-2: {nb-3, nb-2, nb-1}; nb-1 is already global
    fixed = torch.cat([torch.zeros(rows, 1, dtype=torch.long), window, torch.full((rows, 1), last)], dim=1)
    every = torch.cat([fixed.expand(heads, rows, 5), random], dim=2)     # (H, R, 5 + r)
    counts = torch.zeros(heads, rows, num_blocks + 1)                     # last column collects the -1s
    counts.scatter_add_(2, every.where(every >= 0, num_blocks), torch.ones(every.shape))
    counts = counts[..., :num_blocks]                                     # (H, R, nb)
    present = counts > 0
    width = int(present.sum(-1).max())
    key_blocks = torch.argsort(present.to(torch.int8), dim=-1, descending=True, stable=True)[..., :width]
    key_counts = counts.gather(-1, key_blocks)                            # (H, R, W); 0 in unused slots
    key_blocks = key_blocks.masked_fill(key_counts == 0, 0)
    return BlockLayout(key_blocks.transpose(0, 1).contiguous(), key_counts.transpose(0, 1).contiguous())


def random_blocks(seq_len: int, block_size: int, num_random: int, num_heads: int, seed: int,
                  max_seq_len: int) -> np.ndarray:
    """The reference's training-mode random key blocks: (heads, nb - 2, num_random), -1 where fewer.

    Drawn from a private numpy RandomState seeded with `seed` (the layer index), in the reference's order,
    so the blocks are identical to those the reference draws after seeding numpy's global generator; the
    global generator itself is never touched.
    """
    rng = np.random.RandomState(seed)
    num_blocks = seq_len // block_size
    if seq_len in PAPER_PLAN_LENGTHS:
        plan_blocks = max_seq_len // block_size
        rows = [_paper_plan(rng, plan_blocks, block_size, num_random)[: num_blocks - 2] for _ in range(num_heads)]
        return np.stack(rows)
    return _banded_plan(rng, num_blocks, num_random, num_heads)


def _paper_plan(rng: np.random.RandomState, num_blocks: int, block_size: int, num_random: int) -> np.ndarray:
    """One head of the paper's plan over `num_blocks` blocks: random blocks from the first 1024 tokens,
    away from the row's window. The edge rows keep the reference's off-by-one choices (its comments
    "Missing -3" / "Missing -4"), so they can repeat a window block."""
    middle = np.arange(1, num_blocks - 1, dtype=np.int32)
    last = num_blocks - 1
    if PAPER_PLAN_LAST_TOKEN > 2 * block_size:
        last = PAPER_PLAN_LAST_TOKEN // block_size - 1
    out = np.full((num_blocks - 2, num_random), -1, dtype=np.int64)
    for row in range(1, num_blocks - 1):
        start, end = row - 2, row
        if row == 1:
            choices = middle[2:last]
        elif row == 2:
            choices = middle[3:last]
        elif row in (num_blocks - 3, num_blocks - 2):
            choices = middle[:last]
        elif start > last:
            choices = middle[:last]
        elif end + 1 == last:
            choices = middle[:start]
        else:
            choices = np.concatenate((middle[:start], middle[end + 1:last]))
        picked = rng.permutation(choices)[:num_random]
        out[row - 1, : len(picked)] = picked
    return out


def _banded_plan(rng: np.random.RandomState, num_blocks: int, num_random: int, num_heads: int) -> np.ndarray:
    """The reference's plan for other lengths, for inputs long enough for block-sparse attention
    (more than 2r + 5 blocks): every row draws its random blocks from the first 2r + 5 blocks, avoiding
    its window, the two global blocks and, for the edge rows, the mirrored second block."""
    plan_end = 2 * num_random + 5
    out = np.full((num_heads, num_blocks - 2, num_random), -1, dtype=np.int64)
    if num_random == 0:
        return out
    for row in range(1, num_blocks - 1):
        for head in range(num_heads):
            perm = rng.permutation(np.arange(0, plan_end, dtype=np.int32))
            illegal = {row - 1, row, row + 1, 0, plan_end - 1}
            if row == 1:
                illegal.add(plan_end - 2)
            if row == plan_end - 2:
                illegal.add(1)
            picked = [block for block in perm if block not in illegal][:num_random]
            out[head, row - 1, : len(picked)] = picked
    return out
