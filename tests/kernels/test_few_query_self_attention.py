"""The self-attention kernel of a decoding step (each beam's query over its own past, read through the cache's
origins so that beam search moves no keys) against SDPA, the cache's origins against an eager reorder, and beam
search through the kernels against beam search without them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import bigbird_pegasus
from bigbird_pegasus import kernels
from bigbird_pegasus.modeling.cache import DecoderCache
from helpers.cpu import HAS_AVX2

HEADS, HEAD_DIM, CAPACITY = 3, kernels.ATTENTION_HEAD_DIM, 40


def gathered(buffer: torch.Tensor, origins: torch.Tensor, length: int) -> torch.Tensor:
    """The first `length` positions of each row's past: buffer (stored rows, h, capacity, d), origins (rows,
    capacity) -> (rows, h, length, d)."""
    return buffer[origins[:, :length], :, torch.arange(length)].transpose(1, 2)


@pytest.mark.parametrize("rows", [1, 5, 10])
@pytest.mark.parametrize("length", [1, 17, 40])
@pytest.mark.parametrize("bias_rows", [0, 1, "rows"])
@pytest.mark.parametrize("with_origins", [False, True])
def test_self_attention_is_sdpa_over_each_rows_past(rows, length, bias_rows, with_origins):
    generator = torch.Generator().manual_seed(rows * length)
    keys, values = (torch.randn(rows, HEADS, CAPACITY, HEAD_DIM, generator=generator) for _ in range(2))
    q = torch.randn(rows, HEADS, 1, HEAD_DIM, generator=generator)
    origins = torch.randint(0, rows, (rows, CAPACITY), generator=generator) if with_origins else None
    bias = None
    if bias_rows:
        bias = torch.zeros(rows if bias_rows == "rows" else 1, 1, 1, CAPACITY)
        bias[-1, ..., 0] = torch.finfo(torch.float32).min if length > 1 else 0.0
    assert kernels.serves_self_attention(q, keys, values, bias)
    actual = kernels.self_attention(q, keys, values, origins=origins, length=length, bias=bias)
    in_order = torch.arange(rows)[:, None].expand(rows, CAPACITY)
    past_keys, past_values = (gathered(t, in_order if origins is None else origins, length) for t in (keys, values))
    expected = F.scaled_dot_product_attention(q.double(), past_keys.double(), past_values.double(),
                                              attn_mask=None if bias is None else bias[..., :length].double())
    assert actual.shape == q.shape and actual.dtype == torch.float32
    assert (actual.double() - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("case", ["head size 32", "two query positions", "bfloat16 cache", "strided keys",
                                  "bias per head", "gradients", "rows differ"])
def test_serves_self_attention_refuses_what_the_kernel_does_not_take(case):
    keys, values = torch.randn(5, HEADS, CAPACITY, HEAD_DIM), torch.randn(5, HEADS, CAPACITY, HEAD_DIM)
    q, bias = torch.randn(5, HEADS, 1, HEAD_DIM), torch.zeros(1, 1, 1, CAPACITY)
    if case == "head size 32":
        q, keys, values = q[..., :32].contiguous(), keys[..., :32].contiguous(), values[..., :32].contiguous()
    elif case == "two query positions":
        q = torch.randn(5, HEADS, 2, HEAD_DIM)
    elif case == "bfloat16 cache":
        keys, values = keys.bfloat16(), values.bfloat16()
    elif case == "strided keys":
        keys = torch.randn(5, CAPACITY, HEADS, HEAD_DIM).transpose(1, 2)
    elif case == "bias per head":
        bias = torch.zeros(5, HEADS, 1, CAPACITY)
    elif case == "gradients":
        q.requires_grad_()
    else:
        q = torch.randn(4, HEADS, 1, HEAD_DIM)
    assert not kernels.serves_self_attention(q, keys, values, bias)


def test_a_cache_read_through_origins_reorders_them_and_shows_beam_order_to_other_readers():
    """Two caches see the same writes and reorders: one moves its keys at each reorder, the other (read through
    origins by a step) moves only its origins; the kernel over the second equals SDPA over the first."""
    generator = torch.Generator().manual_seed(0)
    eager, by_origins = DecoderCache(2), DecoderCache(2)
    rows = 4
    for cache in (eager, by_origins):
        cache.reserve(6)
    for step in range(5):
        written = [torch.randn(rows, HEADS, 1, HEAD_DIM, generator=generator) for _ in range(4)]
        position = torch.tensor(step)
        for layer in range(2):
            if step == 0:  # a first write, as the prefill's
                for cache in (eager, by_origins):
                    cache.append(layer, keys=written[2 * layer], values=written[2 * layer + 1])
                continue
            eager_keys, eager_values = eager.write_at(layer, keys=written[2 * layer], values=written[2 * layer + 1],
                                                      position=position)
            keys, values, origins = by_origins.stored_for_step(layer, keys=written[2 * layer],
                                                               values=written[2 * layer + 1], position=position)
            q = torch.randn(rows, HEADS, 1, HEAD_DIM, generator=generator)
            actual = kernels.self_attention(q, keys, values, origins=origins, length=step + 1)
            expected = F.scaled_dot_product_attention(q, eager_keys[:, :, :step + 1], eager_values[:, :, :step + 1])
            assert (actual - expected).abs().max() <= 1e-6
        for cache in (eager, by_origins):
            cache.advance(1)
        index = torch.randint(0, rows, (rows,), generator=generator)
        for cache in (eager, by_origins):
            cache.reorder(index)
    assert by_origins._origins is not None                  # the last reorders moved no keys
    for layer in range(2):
        assert torch.equal(by_origins.self_keys[layer][:, :, :5], eager.self_keys[layer][:, :, :5])
        assert torch.equal(by_origins.self_values[layer][:, :, :5], eager.self_values[layer][:, :, :5])
    assert by_origins._origins is None                      # reading them put them in beam order


def test_beam_search_through_the_kernels_gives_the_tokens_of_pytorchs_operators(monkeypatch):
    """A decoder of the published head size (64), its layers run one by one (not in one fused step): its steps
    take both attention kernels (the cross-attention one where AVX2 or AVX-512 is), and the same tokens come out when
    PyTorch's operators serve instead (one document padded, so that a cross-attention bias applies)."""
    config = bigbird_pegasus.BigBirdPegasusConfig(
        vocab_size=97, d_model=128, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, attention_type="original_full",
        max_position_embeddings=256, dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(0)
    model = bigbird_pegasus.BigBirdPegasusForConditionalGeneration(config).eval()
    ids = torch.randint(3, 97, (2, 40), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    monkeypatch.setattr(kernels, "serves_step", lambda *arguments, **keywords: False)
    calls = {"attention": 0, "self_attention": 0}
    for name in calls:
        kernel = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *a, _kernel=kernel, _name=name, **k: calls.__setitem__(
            _name, calls[_name] + 1) or _kernel(*a, **k))
    settings = dict(attention_mask=mask, num_beams=4, max_new_tokens=12, min_new_tokens=12, num_return_sequences=4)
    with torch.no_grad():
        through_kernels = model.generate(ids, **settings)
        assert calls["self_attention"] > 0 and (calls["attention"] > 0) == HAS_AVX2
        monkeypatch.setattr(kernels, "serves_self_attention", lambda *arguments: False)
        monkeypatch.setattr(kernels, "serves_attention", lambda *arguments: False)
        without = model.generate(ids, **settings)
    assert torch.equal(through_kernels, without)
