"""The encoder's block-sparse attention in one kernel (`kernels.block_attention`): against the reference's encoder,
against the gathered path it replaces, where it steps aside, its refusals and its self-check."""

from __future__ import annotations

import sys

import pytest
import torch

from bigbird_pegasus import kernels
from bigbird_pegasus.modeling.block_sparse import block_layout, block_sparse_attention, sparse_masks
from helpers.cpu import needs_avx2
from helpers.reference import max_diff, padded_batch, reference_and_ours

pytestmark = needs_avx2  # the kernel serves where it is built with AVX2 or AVX-512

block_kernel = sys.modules["bigbird_pegasus.kernels.block_sparse_attention"]
HEADS, HEAD_DIM = 2, 64


def counting_calls(monkeypatch) -> list[int]:
    """A list that counts the kernel's calls from now on."""
    calls = []
    attend = kernels.block_attention
    monkeypatch.setattr(kernels, "block_attention", lambda *a, **k: calls.append(1) or attend(*a, **k))
    return calls


def attention_inputs(*, block_size: int, blocks: int, padding: int, dtype=torch.float32):
    """q, k, v (2, n, HEADS x 64) and the eval-mode masks of 3 random blocks, the second row's last `padding`
    positions padding."""
    generator = torch.Generator().manual_seed(block_size)
    n = blocks * block_size
    q, k, v = (torch.randn(2, n, HEADS * HEAD_DIM, generator=generator, dtype=dtype) for _ in range(3))
    key_valid = torch.ones(2, n, dtype=torch.bool)
    key_valid[1, n - padding:] = False
    layout = block_layout(n, block_size=block_size, num_random_blocks=3, num_heads=HEADS, layer_index=0,
                          max_seq_len=4096, seeded=False)
    masks = sparse_masks(layout, key_valid=key_valid, batch_size=2, num_heads=HEADS, block_size=block_size,
                         dtype=dtype)
    return q, k, v, masks


@pytest.mark.parametrize("block_size, random_blocks, length", [(16, 2, 16 * 12 + 5), (64, 3, 64 * 13)])
def test_the_encoder_through_the_kernel_matches_the_reference(tmp_path, block_size, random_blocks, length,
                                                              monkeypatch):
    """The published head size (64) and block size (64), and 16 with a length that is padded to a block."""
    calls = counting_calls(monkeypatch)
    reference, ours = reference_and_ours(
        "BigBirdPegasusForConditionalGeneration", tmp_path, vocab_size=120, d_model=HEADS * HEAD_DIM,
        encoder_layers=2, decoder_layers=1, encoder_attention_heads=HEADS, decoder_attention_heads=HEADS,
        encoder_ffn_dim=96, decoder_ffn_dim=96, block_size=block_size, num_random_blocks=random_blocks,
        max_position_embeddings=4096, attention_type="block_sparse")
    ids, mask = padded_batch(120, length, pad_last=length // 3)
    decoder_ids, _ = padded_batch(120, 5, pad_last=0, seed=3)
    with torch.no_grad():
        theirs = reference(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)
        mine = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)
    assert len(calls) == 2                                                             # each encoder layer
    assert max_diff(mine.encoder_last_hidden_state, theirs.encoder_last_hidden_state) <= 1e-4
    assert max_diff(mine.logits, theirs.logits) <= 1e-4


@pytest.mark.parametrize("block_size", [16, 64])
def test_the_kernel_computes_what_the_gathered_path_does(block_size, monkeypatch):
    q, k, v, masks = attention_inputs(block_size=block_size, blocks=12, padding=block_size + 3)
    calls = counting_calls(monkeypatch)
    with torch.no_grad():
        ours = block_sparse_attention(q, k, v, masks=masks, num_heads=HEADS, block_size=block_size)
        assert len(calls) == 1
        monkeypatch.setattr(kernels, "serves_block_attention", lambda *a, **k: False)
        gathered = block_sparse_attention(q, k, v, masks=masks, num_heads=HEADS, block_size=block_size)
    assert (ours - gathered).abs().max() <= 1e-5
    assert ours[1, -block_size - 3:].abs().max() == 0                                  # padding queries zeroed


def test_bf16_inputs_are_computed_in_fp32_and_rounded_once(monkeypatch):
    q, k, v, masks = attention_inputs(block_size=64, blocks=12, padding=67, dtype=torch.bfloat16)
    fp32_masks = attention_inputs(block_size=64, blocks=12, padding=67)[3]
    calls = counting_calls(monkeypatch)
    with torch.no_grad():
        ours = block_sparse_attention(q, k, v, masks=masks, num_heads=HEADS, block_size=64)
        in_fp32 = block_sparse_attention(q.float(), k.float(), v.float(), masks=fp32_masks, num_heads=HEADS,
                                         block_size=64)
        assert len(calls) == 2
        monkeypatch.setattr(kernels, "serves_block_attention", lambda *a, **k: False)
        gathered = block_sparse_attention(q, k, v, masks=masks, num_heads=HEADS, block_size=64)
    assert ours.dtype == gathered.dtype == torch.bfloat16
    scale = in_fp32.abs().max()
    # one rounding to bf16 (2^-9 of the largest value), and log(4) in bf16 in the biases
    assert (ours.float() - in_fp32).abs().max() <= 4e-3 * scale
    assert (ours.float() - gathered.float()).abs().max() <= 2e-2 * scale
    assert ours[1, -67:].abs().max() == 0                                              # padding queries zeroed


@pytest.mark.parametrize("case", ["fp16", "gradients", "heads_differ", "head_size_32", "block_size_8"])
def test_the_gathered_path_serves_where_the_kernel_does_not(case, monkeypatch):
    calls = counting_calls(monkeypatch)
    heads, block_size, dtype = HEADS, 16, torch.float16 if case == "fp16" else torch.float32
    if case == "head_size_32":
        heads = 4
    if case == "block_size_8":
        block_size = 8
    n = 12 * block_size
    q, k, v = (torch.randn(1, n, HEADS * HEAD_DIM, dtype=dtype, requires_grad=case == "gradients") for _ in range(3))
    layout = block_layout(n, block_size=block_size, num_random_blocks=2, num_heads=heads, layer_index=1,
                          max_seq_len=4096, seeded=case == "heads_differ")
    masks = sparse_masks(layout, key_valid=None, batch_size=1, num_heads=heads, block_size=block_size, dtype=dtype)
    assert (masks.kernel_rows is None) == (case in ("fp16", "heads_differ"))
    out = block_sparse_attention(q, k, v, masks=masks, num_heads=heads, block_size=block_size)
    assert calls == [] and out.shape == q.shape and torch.isfinite(out.float()).all()


def test_block_attention_refuses_what_would_read_or_write_out_of_bounds():
    q, k, v, masks = attention_inputs(block_size=16, blocks=12, padding=0)
    middle, edges = masks.kernel_rows
    packed = torch.empty(2 * q.numel())
    with torch.no_grad(), pytest.raises(ValueError, match="not each of 0..11 once"):
        kernels.block_attention(q, k, v, heads=HEADS, block_size=16, rows=(middle,), packed=packed)
    wrong_bias = kernels.BlockRows(middle.query_blocks, middle.key_blocks, middle.bias[:, :, :16])
    with torch.no_grad(), pytest.raises(ValueError, match=r"bias of shape \(2, 10, 16\) .*, expected \(2, 10, 80\)"):
        kernels.block_attention(q, k, v, heads=HEADS, block_size=16, rows=(wrong_bias, edges), packed=packed)
    past_the_end = kernels.BlockRows(middle.query_blocks, middle.key_blocks + 2, middle.bias)
    with torch.no_grad(), pytest.raises(ValueError, match="the key blocks in 0..11"):
        kernels.block_attention(q, k, v, heads=HEADS, block_size=16, rows=(past_the_end, edges), packed=packed)
    with torch.no_grad(), pytest.raises(ValueError, match=f"at least {2 * q.numel()} floats"):
        kernels.block_attention(q, k, v, heads=HEADS, block_size=16, rows=(middle, edges), packed=packed[:-1])


def test_serves_block_attention_refuses_what_the_kernel_does_not_take():
    q = torch.zeros(1, 64, HEADS * HEAD_DIM)
    with torch.no_grad():
        assert kernels.serves_block_attention(q, q, q, heads=HEADS, block_size=16)
        assert not kernels.serves_block_attention(q, q, q, heads=4, block_size=16)            # heads of 32
        assert not kernels.serves_block_attention(q, q, q, heads=HEADS, block_size=24)        # not of 16
        assert not kernels.serves_block_attention(q[:, :48], q[:, :48], q[:, :48], heads=HEADS, block_size=32)
        assert not kernels.serves_block_attention(q, q.double(), q, heads=HEADS, block_size=16)
        assert not kernels.serves_block_attention(q, q.bfloat16(), q, heads=HEADS, block_size=16)     # mixed
        assert not kernels.serves_block_attention(q.half(), q.half(), q.half(), heads=HEADS, block_size=16)
        assert kernels.serves_block_attention(q.bfloat16(), q.bfloat16(), q.bfloat16(), heads=HEADS, block_size=16)
        assert not kernels.serves_block_attention(q, q.transpose(0, 1), q, heads=HEADS, block_size=16)
        strided = torch.zeros(1, 64, 2 * HEADS * HEAD_DIM)[..., ::2]
        assert not kernels.serves_block_attention(q, strided, q, heads=HEADS, block_size=16)


def test_the_self_check_refuses_a_kernel_that_disagrees_with_torch(monkeypatch):
    """A disagreement at the check (here: PyTorch's side shifted) makes the kernel unavailable: the gathered path
    serves."""
    assert block_kernel._check_block_attention() is None
    expected_rows = block_kernel._expected_rows

    def shifted(*args, out, **kwargs):
        expected_rows(*args, out=out, **kwargs)
        out.add_(1e-3)

    monkeypatch.setattr(block_kernel, "_expected_rows", shifted)
    assert "disagrees" in block_kernel._check_block_attention()
    monkeypatch.setattr(block_kernel, "_checked", {})
    q = torch.zeros(1, 64, HEADS * HEAD_DIM)
    with torch.no_grad():
        assert not kernels.serves_block_attention(q, q, q, heads=HEADS, block_size=16)
