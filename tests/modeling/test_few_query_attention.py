"""The decoding steps' attention for a few query rows (`few_query_attention`, position-minor cached keys) and the
beam reorder of the self-attention cache, against SDPA and plain indexing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bigbird_pegasus import kernels
from bigbird_pegasus.modeling import attention as attention_module
from bigbird_pegasus.modeling.attention import DecoderAttention, few_query_attention, grouped_attention
from bigbird_pegasus.modeling.cache import DecoderCache
from bigbird_pegasus.modeling.masks import padding_bias

HEADS, HEAD_DIM, SOURCE = 4, 8, 37


def documents(generator: torch.Generator, *, docs: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """keys, values (docs, h, s, d) and a padding bias (docs, 1, 1, s) hiding the last 5 keys of document 1."""
    k, v = (torch.randn(docs, HEADS, SOURCE, HEAD_DIM, generator=generator) for _ in range(2))
    mask = torch.ones(docs, SOURCE, dtype=torch.bool)
    mask[-1, -5:] = False
    return k, v, padding_bias(mask, torch.float32)


@pytest.mark.parametrize("position_minor", [False, True])
def test_few_query_attention_is_sdpa(position_minor):
    generator = torch.Generator().manual_seed(0)
    k, v, bias = documents(generator)
    if position_minor:
        k = k.transpose(-1, -2).contiguous().transpose(-1, -2)
        assert not k.is_contiguous()
    q = torch.randn(2, HEADS, 5, HEAD_DIM, generator=generator)
    expected = F.scaled_dot_product_attention(q, k.contiguous(), v, attn_mask=bias)
    actual = few_query_attention(q, k, v, bias=bias)
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max() <= 1e-6


def test_few_query_attention_in_bfloat16_keeps_the_softmax_in_float32():
    generator = torch.Generator().manual_seed(1)
    k, v, bias = documents(generator)
    q = torch.randn(2, HEADS, 5, HEAD_DIM, generator=generator)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    narrow_bias = bias.clamp(min=torch.finfo(torch.bfloat16).min).bfloat16()
    actual = few_query_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), bias=narrow_bias)
    assert actual.dtype == torch.bfloat16
    assert (actual.float() - expected).abs().max() <= 3e-2


def sdpa_over_copies(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The oracle: every query row (docs * g) attends to its own copy of its document's keys/values."""
    groups = q.shape[0] // k.shape[0]
    k, v, bias = (t.repeat_interleave(groups, dim=0) for t in (k, v, bias))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def test_grouped_attention_takes_the_few_query_path_in_inference_only(monkeypatch):
    generator = torch.Generator().manual_seed(2)
    k, v, bias = documents(generator)
    q = torch.randn(2 * 3, HEADS, 1, HEAD_DIM, generator=generator)          # 2 documents x 3 beams, 1 token
    calls = []
    monkeypatch.setattr(attention_module, "few_query_attention",
                        lambda *args, **kwargs: calls.append(1) or few_query_attention(*args, **kwargs))
    expected = sdpa_over_copies(q, k, v, bias)
    with torch.no_grad():
        assert (grouped_attention(q, k, v, bias=bias) - expected).abs().max() <= 1e-6
    assert calls == [1]

    trained = q.clone().requires_grad_()
    context = grouped_attention(trained, k, v, bias=bias)                       # gradients: SDPA
    context.sum().backward()
    assert calls == [1] and trained.grad is not None
    with torch.no_grad():
        grouped_attention(q, k, v, bias=bias, dropout=0.1)                     # dropout: SDPA
        many = torch.randn(2, HEADS, attention_module.FEW_QUERIES + 1, HEAD_DIM, generator=generator)
        torch.testing.assert_close(grouped_attention(many, k, v, bias=bias), sdpa_over_copies(many, k, v, bias))
    assert calls == [1]


def test_cached_keys_are_position_minor_and_attend_as_contiguous_ones():
    torch.manual_seed(3)
    layer = DecoderAttention(HEADS * HEAD_DIM, num_heads=HEADS, bias=True, dropout=0.0).eval()
    states = torch.randn(2, SOURCE, HEADS * HEAD_DIM)
    x = torch.randn(2 * 3, 1, HEADS * HEAD_DIM)
    _, _, bias = documents(torch.Generator().manual_seed(4))
    cache = DecoderCache(1)
    with torch.no_grad():
        cached = layer.cross_attention(x, encoder_states=states, bias=bias, cache=cache, layer=0)
        uncached = layer.cross_attention(x, encoder_states=states, bias=bias, cache=None, layer=0)
        again = layer.cross_attention(x, encoder_states=states, bias=bias, cache=cache, layer=0)
    keys, values = cache.cross_keys[0], cache.cross_values[0]
    assert keys.shape == values.shape == (2, HEADS, SOURCE, HEAD_DIM)
    assert kernels.key_row_stride(keys) == attention_module._padded_length(SOURCE, 4) and values.is_contiguous()
    assert (cached - uncached).abs().max() <= 1e-6
    assert torch.equal(cached, again)


@pytest.mark.parametrize("case", ["fp32", "no bias", "bf16 cache", "hooked", "bf16 projection"])
def test_cached_keys_are_projected_straight_into_the_position_minor_layout(case, monkeypatch):
    """A plain fp32 projection writes the keys position-minor itself (W @ states^T per document); a hooked or bf16
    one projects, then transposes; either way the keys are the projection's to float rounding."""
    torch.manual_seed(5)
    layer = DecoderAttention(HEADS * HEAD_DIM, num_heads=HEADS, bias=case != "no bias", dropout=0.0).eval()
    states = torch.randn(2, SOURCE, HEADS * HEAD_DIM)
    if case == "bf16 cache":
        layer.cache_dtype = torch.bfloat16
    if case == "hooked":
        layer.k_proj.register_forward_hook(lambda module, inputs, output: output * 2)
    if case == "bf16 projection":
        layer.k_proj.to(torch.bfloat16)
        layer.k_proj.register_forward_pre_hook(lambda module, inputs: (inputs[0].bfloat16(),))
    direct = []
    projected = attention_module._projected_position_minor
    monkeypatch.setattr(attention_module, "_projected_position_minor",
                        lambda *a, **k: direct.append(1) or projected(*a, **k))
    cache = DecoderCache(1)
    with torch.no_grad():
        layer.cross_attention(torch.randn(2, 1, HEADS * HEAD_DIM), encoder_states=states, bias=None, cache=cache,
                              layer=0)
        expected = layer._heads(layer.k_proj(states)).float()                         # (docs, h, s, d)
    keys = cache.cross_keys[0]
    assert len(direct) == (case in ("fp32", "no bias", "bf16 cache"))
    assert keys.dtype == (torch.bfloat16 if case == "bf16 cache" else torch.float32)
    assert keys.shape == (2, HEADS, SOURCE, HEAD_DIM)
    assert kernels.key_row_stride(keys) == attention_module._padded_length(SOURCE, keys.element_size())
    tolerance = {"bf16 cache": 2e-2, "bf16 projection": 0.0}.get(case, 1e-5)
    assert (keys.float() - expected).abs().max() <= tolerance * max(1.0, expected.abs().max().item())


@pytest.mark.parametrize("element_size", [2, 4])
def test_cached_key_rows_take_an_odd_number_of_cache_lines(element_size):
    """Rows an odd number of lines apart fall into different cache sets; no more than 2 lines of padding a row."""
    for s in [1, 15, 16, 17, 37, 1000, 1024, 2048, 4095, 4096, 4097, 8192]:
        padded = attention_module._padded_length(s, element_size)
        lines, left = divmod(padded * element_size, attention_module.CACHE_LINE_BYTES)
        assert left == 0 and lines % 2 == 1 and s <= padded
        assert padded * element_size < s * element_size + 2 * attention_module.CACHE_LINE_BYTES


def test_reorder_moves_the_written_positions_of_the_chosen_rows():
    cache = DecoderCache(2)
    cache.reserve(6)
    generator = torch.Generator().manual_seed(5)
    written = []
    for _ in range(3):
        step = [torch.randn(4, HEADS, 1, HEAD_DIM, generator=generator) for _ in range(2)]
        for layer in range(2):
            cache.append(layer, keys=step[0], values=step[1])
        cache.advance(1)
        written.append(step)
    keys = torch.cat([step[0] for step in written], dim=2)                     # (4, h, 3, d)
    first, second = torch.tensor([2, 2, 0, 3]), torch.tensor([1, 0, 3, 3])
    cache.reorder(first)
    cache.reorder(second)
    for layer in range(2):
        assert torch.equal(cache.self_keys[layer][:, :, :3], keys[first][second])
        assert not cache.self_keys[layer][:, :, 3:].any()
