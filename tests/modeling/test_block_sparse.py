"""Block-sparse attention against a dense oracle built from the same layout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bigbird_pegasus.modeling.block_sparse import BlockLayout, block_layout, block_sparse_attention, sparse_masks
from helpers.block_inputs import BLOCK, HEAD_DIM, HEADS, inputs


def dense_counts(layout: BlockLayout, num_blocks: int) -> torch.Tensor:
    """(H, nb, nb): how many times query block q counts key block k; the edge query blocks see all."""
    heads = layout.key_blocks.shape[1]
    counts = torch.zeros(heads, num_blocks, num_blocks)
    counts[:, 0] = counts[:, -1] = 1
    for row in range(num_blocks - 2):
        for head in range(heads):
            for block, count in zip(layout.key_blocks[row, head].tolist(), layout.counts[row, head].tolist()):
                counts[head, row + 1, block] += count
    return counts


def oracle(q, k, v, counts, key_valid):
    """softmax(q k^T / sqrt(d) + log(count)) v over every key, padding keys excluded, padding queries 0."""
    b, n, _ = q.shape
    q, k, v = (t.view(b, n, HEADS, HEAD_DIM).transpose(1, 2) for t in (q, k, v))          # (b, h, n, d)
    token_counts = counts.repeat_interleave(BLOCK, 1).repeat_interleave(BLOCK, 2)           # (H, n, n)
    scores = q @ k.transpose(-1, -2) / HEAD_DIM ** 0.5 + token_counts.log()
    scores = scores.masked_fill(~key_valid[:, None, None, :], float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, -1)
    return out * key_valid[:, :, None]


@pytest.mark.parametrize("seeded", [False, True])
@pytest.mark.parametrize("num_random", [0, 2, 3])
@pytest.mark.parametrize("num_blocks", [12, 16, 23])
def test_matches_dense_oracle(num_blocks, num_random, seeded):
    if num_blocks <= 5 + 2 * num_random:
        pytest.fail("a test length must be long enough for block-sparse attention")
    layout = block_layout(num_blocks * BLOCK, block_size=BLOCK, num_random_blocks=num_random, num_heads=HEADS, layer_index=1,
                          max_seq_len=4096, seeded=seeded)
    q, k, v, key_valid = inputs(num_blocks, padding=2 * BLOCK + 3)
    masks = sparse_masks(layout, key_valid=key_valid, batch_size=2, num_heads=HEADS, block_size=BLOCK,
                         dtype=torch.float32)
    ours = block_sparse_attention(q, k, v, masks=masks, num_heads=HEADS, block_size=BLOCK)
    expected = oracle(q, k, v, dense_counts(layout, num_blocks), key_valid)
    assert (ours - expected).abs().max() <= 1e-5


def test_eval_layout_counts_block_zero_once_per_random_block():
    layout = block_layout(20 * BLOCK, block_size=BLOCK, num_random_blocks=3, num_heads=HEADS, layer_index=0,
                          max_seq_len=4096, seeded=False)
    counts = dense_counts(layout, 20)
    assert layout.shared_by_heads
    assert torch.equal(counts[0, 1:-1, 0], torch.full((18,), 4.0))          # 1 global + 3 random
    assert torch.equal(counts[0, 5, 1:], torch.tensor([0, 0, 0, 1, 1, 1] + [0] * 12 + [1.0]))
    assert torch.equal(counts[0, 1, 1:], torch.tensor([1.0, 1] + [0] * 16 + [1]))   # edge row: {0,1,2,last}


def test_layout_covering_every_block_equals_full_attention():
    num_blocks = 10
    every_block = torch.arange(num_blocks).expand(num_blocks - 2, 1, num_blocks)
    layout = BlockLayout(every_block.contiguous(), torch.ones(num_blocks - 2, 1, num_blocks), (0, num_blocks - 1))
    q, k, v, key_valid = inputs(num_blocks, padding=13)
    masks = sparse_masks(layout, key_valid=key_valid, batch_size=2, num_heads=HEADS, block_size=BLOCK,
                         dtype=torch.float32)
    ours = block_sparse_attention(q, k, v, masks=masks, num_heads=HEADS, block_size=BLOCK)
    heads = [t.view(2, -1, HEADS, HEAD_DIM).transpose(1, 2) for t in (q, k, v)]
    bias = torch.zeros(2, 1, 1, num_blocks * BLOCK).masked_fill(~key_valid[:, None, None, :], float("-inf"))
    full = F.scaled_dot_product_attention(*heads, attn_mask=bias).transpose(1, 2).reshape(2, -1, HEADS * HEAD_DIM)
    assert (ours - full * key_valid[:, :, None]).abs().max() <= 1e-5


def test_layouts_are_cached_pure_functions():
    args = dict(block_size=BLOCK, num_random_blocks=3, num_heads=HEADS, max_seq_len=4096)
    length = 24 * BLOCK
    assert block_layout(length, layer_index=3, seeded=True, **args) is block_layout(length, layer_index=3, seeded=True,
                                                                                    **args)
    first = block_layout(length, layer_index=3, seeded=True, **args)
    second = block_layout(length, layer_index=4, seeded=True, **args)
    assert not torch.equal(first.key_blocks, second.key_blocks)
    # eval-mode layouts do not depend on the layer: every layer shares one
    assert block_layout(length, layer_index=3, seeded=False, **args) is block_layout(length, layer_index=9,
                                                                                     seeded=False, **args)


def test_gradients_flow_through_block_sparse_attention():
    layout = block_layout(16 * BLOCK, block_size=BLOCK, num_random_blocks=2, num_heads=HEADS, layer_index=0,
                          max_seq_len=4096, seeded=True)
    q, k, v, key_valid = inputs(16, padding=5)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    masks = sparse_masks(layout, key_valid=key_valid, batch_size=2, num_heads=HEADS, block_size=BLOCK,
                         dtype=torch.float32)
    block_sparse_attention(*leaves, masks=masks, num_heads=HEADS, block_size=BLOCK).square().sum().backward()
    expected_leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    oracle(*expected_leaves, dense_counts(layout, 16), key_valid).square().sum().backward()
    for ours, expected in zip(leaves, expected_leaves):
        assert (ours.grad - expected.grad).abs().max() <= 1e-4


def test_the_layout_carries_its_global_blocks_and_the_shortest_sparse_input():
    layout = block_layout(12 * BLOCK, block_size=BLOCK, num_random_blocks=2, num_heads=HEADS, layer_index=0,
                          max_seq_len=4096, seeded=True)
    assert layout.global_blocks == (0, 11)
    # Every middle row sees both global blocks.
    assert ((layout.key_blocks == 0) & (layout.counts > 0)).any(-1).all()
    assert ((layout.key_blocks == 11) & (layout.counts > 0)).any(-1).all()
    # The reference's threshold: 2 global + 3 window + 2 * r random blocks.
    assert BlockLayout.min_length(BLOCK, 2) == 9 * BLOCK and BlockLayout.min_length(64, 3) == 704
