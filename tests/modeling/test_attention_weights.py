"""The exact path's attention probabilities against oracles built from the same layout: the reference's format
(the weight of one copy of a key the layout counts several times), and the attention they give."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bigbird_pegasus.modeling.attention_weights import block_sparse_weights, dense_block_counts, eager_attention
from bigbird_pegasus.modeling.block_sparse import BlockLayout, block_layout, block_sparse_attention, sparse_masks
from helpers.block_inputs import BLOCK, HEAD_DIM, HEADS, inputs


def weights_of(layout: BlockLayout, q, k, key_valid):
    masks = sparse_masks(layout, key_valid=key_valid, batch_size=2, num_heads=HEADS, block_size=BLOCK,
                         dtype=torch.float32)
    return block_sparse_weights(q, k, masks=masks, num_heads=HEADS, block_size=BLOCK), masks


@pytest.mark.parametrize("seeded", [False, True])
@pytest.mark.parametrize("num_blocks", [12, 23])
def test_probabilities_give_the_block_sparse_attention(num_blocks, seeded):
    """Weighted by how often the layout counts each key, the probabilities sum to one and reproduce the fast
    path's context; they are zero outside the layout and on padded keys."""
    layout = block_layout(num_blocks * BLOCK, block_size=BLOCK, num_random_blocks=2, num_heads=HEADS, layer_index=1,
                          max_seq_len=4096, seeded=seeded)
    q, k, v, key_valid = inputs(num_blocks, padding=BLOCK + 3)
    weights, masks = weights_of(layout, q, k, key_valid)
    counts = dense_block_counts(layout).repeat_interleave(BLOCK, 1).repeat_interleave(BLOCK, 2)    # (H, n, n)
    counted = weights * counts                                                                     # (b, h, n, n)
    torch.testing.assert_close(counted.sum(-1), torch.ones(2, HEADS, num_blocks * BLOCK))
    assert not (weights * (counts == 0)).any() and not weights[1, :, :, ~key_valid[1]].any()
    context = counted @ v.view(2, -1, HEADS, HEAD_DIM).transpose(1, 2)                           # (b, h, n, d)
    context = context.transpose(1, 2).reshape(2, -1, HEADS * HEAD_DIM) * key_valid[:, :, None]
    fast = block_sparse_attention(q, k, v, masks=masks, num_heads=HEADS, block_size=BLOCK)
    assert (context - fast).abs().max() <= 1e-5


def test_a_key_counted_several_times_shows_the_weight_of_one_copy():
    """Eval mode: every random block is block 0, which a middle query block then counts 1 + r times; its entry is
    the weight of one copy (the reference's matrix), the other keys' entries their whole weight."""
    layout = block_layout(14 * BLOCK, block_size=BLOCK, num_random_blocks=3, num_heads=HEADS, layer_index=0,
                          max_seq_len=4096, seeded=False)
    q, k, _, key_valid = inputs(14, padding=0)
    weights, _ = weights_of(layout, q, k, key_valid)
    row, window = 6 * BLOCK, slice(5 * BLOCK, 8 * BLOCK)                     # a query of block 6
    query = q.view(2, -1, HEADS, HEAD_DIM)[:, row]                          # (b, h, d)
    scores = torch.einsum("bhd,bjhd->bhj", query, k.view(2, -1, HEADS, HEAD_DIM)) / HEAD_DIM ** 0.5   # (b, h, n)
    first, window_keys, last = scores[..., :BLOCK], scores[..., window], scores[..., -BLOCK:]
    denominator = 4 * first.exp().sum(-1) + window_keys.exp().sum(-1) + last.exp().sum(-1)   # block 0 four times
    torch.testing.assert_close(weights[:, :, row, :BLOCK], first.exp() / denominator[..., None])
    torch.testing.assert_close(weights[:, :, row, window], window_keys.exp() / denominator[..., None])


def test_eager_attention_equals_sdpa_and_shares_keys_between_groups():
    generator = torch.Generator().manual_seed(3)
    q = torch.randn(6, HEADS, 5, HEAD_DIM, generator=generator)           # 2 documents x 3 beams
    k, v = (torch.randn(2, HEADS, 11, HEAD_DIM, generator=generator) for _ in range(2))
    bias = torch.zeros(2, 1, 1, 11).masked_fill_(torch.arange(11) >= 9, torch.finfo(torch.float32).min)
    context, weights = eager_attention(q, k, v, bias=bias)
    expanded = [t.repeat_interleave(3, dim=0) for t in (k, v, bias)]
    expected = F.scaled_dot_product_attention(q, expanded[0], expanded[1], attn_mask=expanded[2])
    assert (context - expected).abs().max() <= 1e-5
    torch.testing.assert_close(weights.sum(-1), torch.ones(6, HEADS, 5))
    assert not weights[..., 9:].any()
    _, causal = eager_attention(q[:, :, :4], k[:, :, :4].repeat_interleave(3, 0), v[:, :, :4].repeat_interleave(3, 0),
                                bias=None, is_causal=True)
    assert not causal.triu(1).any() and causal[..., 0, 0].eq(1).all()
