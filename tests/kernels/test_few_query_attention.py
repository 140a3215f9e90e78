"""The attention kernel (a decoding step's cross-attention of a few query rows over a document's keys and values,
cached in fp32 or bf16) against SDPA in float64, what it refuses, and that few_query_attention takes it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bigbird_pegasus import kernels
from bigbird_pegasus.modeling import attention as attention_module
from bigbird_pegasus.modeling.attention import few_query_attention, grouped_attention
from helpers.cpu import HAS_AVX2, needs_avx2

HEADS, HEAD_DIM = 3, kernels.ATTENTION_HEAD_DIM


def position_minor(keys: torch.Tensor) -> torch.Tensor:
    """keys (b, h, s, d) stored (b, h, d, s), as the decoder's cache keeps them."""
    return keys.transpose(-1, -2).contiguous().transpose(-1, -2)


def inputs(rows: int, positions: int, dtype: torch.dtype, *, seed: int = 0, spread: float = 1.0):
    """q (2, h, rows, d) fp32, position-minor keys and values (2, h, positions, d) in dtype, and a bias (2, 1, 1, s)
    hiding the last 7 positions (all but one when fewer) of document 1."""
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(2, HEADS, rows, HEAD_DIM, generator=generator) * spread
    keys = (torch.randn(2, HEADS, positions, HEAD_DIM, generator=generator) * spread).to(dtype)
    values = torch.randn(2, HEADS, positions, HEAD_DIM, generator=generator).to(dtype)
    bias = torch.zeros(2, 1, 1, positions)
    bias[1, ..., max(1, positions - 7):] = torch.finfo(torch.float32).min
    return q, position_minor(keys), values, bias


def exact(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.scaled_dot_product_attention(q.double(), k.double(), v.double(),
                                          attn_mask=None if bias is None else bias.double())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 4, 5, 6, 11, 16])
@pytest.mark.parametrize("positions", [1, 37, 64, 130, 4096])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_is_sdpa(dtype, rows, positions, masked):
    q, k, v, bias = inputs(rows, positions, dtype, seed=rows * positions)
    bias = bias if masked else None
    actual = kernels.attention(q, k, v, bias=bias)      # built on every CPU; it serves where AVX2 is (below)
    assert actual.shape == q.shape and actual.dtype == torch.float32
    assert (actual.double() - exact(q, k, v, bias)).abs().max() <= 1e-5


def padded(keys: torch.Tensor, extra: int) -> torch.Tensor:
    """Position-minor keys (b, h, s, d) stored (b, h, d, s + extra): each feature's row padded."""
    stored = F.pad(keys.transpose(-1, -2), (0, extra), value=float("nan"))        # (b, h, d, s + extra)
    return stored[..., :keys.shape[2]].transpose(-1, -2)                           # (b, h, s, d)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("extra", [1, 16, 48])
def test_attention_reads_padded_key_rows_as_their_first_positions(dtype, extra):
    """The padding holds NaN: a kernel reading past a row's positions would return NaN."""
    q, k, v, bias = inputs(5, 130, dtype, seed=extra)
    keys = padded(k, extra)
    assert kernels.key_row_stride(keys) == 130 + extra and kernels.serves_attention(q, keys, v, bias) == HAS_AVX2
    actual = kernels.attention(q, keys, v, bias=bias)
    assert torch.equal(actual, kernels.attention(q, k, v, bias=bias))
    assert (actual.double() - exact(q, k, v, bias)).abs().max() <= 1e-5


@pytest.mark.parametrize("case", ["contiguous", "position-minor", "padded", "one head", "one position",
                                  "a slice of one position"])
def test_key_row_stride_names_the_position_minor_layouts(case):
    """One position contiguous is position-minor too; one sliced out of many is not (its heads lie 37 rows apart)."""
    keys = torch.randn(2, HEADS, 37, HEAD_DIM)
    expected = {"contiguous": None, "position-minor": 37, "padded": 40, "one head": 37, "one position": 1,
                "a slice of one position": None}[case]
    if case == "position-minor":
        keys = position_minor(keys)
    elif case == "padded":
        keys = padded(keys, 3)
    elif case == "one head":
        keys = position_minor(keys[:, :1])
    elif case == "one position":
        keys = keys[:, :, :1].contiguous()
    elif case == "a slice of one position":
        keys = keys[:, :, :1]
    assert kernels.key_row_stride(keys) == expected


def test_the_attention_kernel_serves_exactly_where_the_cpu_has_avx2():
    q, k, v, bias = inputs(5, 37, torch.float32)
    reason = kernels.unavailable_reason(attention=True)
    assert reason is None if HAS_AVX2 else "AVX2" in reason
    assert kernels.serves_attention(q, k, v, bias) == HAS_AVX2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_over_peaked_scores_sends_the_far_ones_to_zero(dtype):
    """Scores spread over hundreds: most e^(x - max) underflow, as in SDPA, whose fp32 error it stays within."""
    q, k, v, bias = inputs(5, 300, dtype, seed=1, spread=6.0)
    expected = exact(q, k, v, bias)
    sdpa_error = (F.scaled_dot_product_attention(q, k.float(), v.float(), attn_mask=bias) - expected).abs().max()
    actual = kernels.attention(q, k, v, bias=bias)
    assert (actual.double() - expected).abs().max() <= 2 * sdpa_error


@pytest.mark.parametrize("case", ["head size 32", "contiguous keys", "bfloat16 queries", "keys and values differ",
                                  "float16 keys", "bias per head", "float64 bias", "gradients", "heads differ"])
def test_serves_attention_refuses_what_the_kernel_does_not_take(case):
    q, k, v, bias = inputs(5, 37, torch.float32)
    if case == "head size 32":
        q, k, v = q[..., :32].contiguous(), position_minor(k[..., :32]), v[..., :32].contiguous()
    elif case == "contiguous keys":
        k = k.contiguous()
    elif case == "bfloat16 queries":
        q = q.bfloat16()
    elif case == "keys and values differ":
        v = v.bfloat16()
    elif case == "float16 keys":
        k, v = position_minor(k.half()), v.half()
    elif case == "bias per head":
        bias = bias.expand(2, HEADS, 5, 37).contiguous()
    elif case == "float64 bias":
        bias = bias.double()
    elif case == "gradients":
        q.requires_grad_()
    else:
        k, v = position_minor(torch.randn(2, HEADS + 1, 37, HEAD_DIM)), torch.randn(2, HEADS + 1, 37, HEAD_DIM)
    assert not kernels.serves_attention(q, k, v, bias)


@pytest.fixture()
def kernel_calls(monkeypatch) -> list[tuple]:
    """The calls `kernels.attention` gets from now on (it still serves them)."""
    calls = []
    kernel = kernels.attention
    monkeypatch.setattr(kernels, "attention", lambda *a, **k: calls.append(a) or kernel(*a, **k))
    return calls


@needs_avx2
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_few_query_attention_takes_the_kernel_and_returns_the_queries_dtype(kernel_calls, dtype):
    q, k, v, bias = inputs(5, 300, dtype, seed=2)
    with torch.no_grad():
        actual = few_query_attention(q, k, v, bias=bias)
    assert len(kernel_calls) == 1 and actual.dtype == torch.float32
    assert (actual.double() - exact(q, k, v, bias)).abs().max() <= 1e-5


def test_few_query_attention_without_the_kernel_narrows_the_queries_to_the_keys_dtype(monkeypatch):
    monkeypatch.setattr(attention_module.kernels, "serves_attention", lambda *arguments: False)
    q, k, v, bias = inputs(5, 300, torch.bfloat16, seed=3)
    with torch.no_grad():
        actual = few_query_attention(q, k, v, bias=bias)
    assert actual.dtype == torch.float32
    assert (actual.double() - exact(q, k, v, bias)).abs().max() <= 2e-2


@needs_avx2
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_beams_of_documents_take_the_kernel_through_grouped_attention(kernel_calls, dtype):
    """A decoding step: 2 documents x 5 beams, one new token each, over the documents' cached keys and values."""
    _, k, v, bias = inputs(1, 300, dtype, seed=4)
    beams = torch.randn(2 * 5, HEADS, 1, HEAD_DIM, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        actual = grouped_attention(beams, k, v, bias=bias)
    expected = exact(beams, *(t.repeat_interleave(5, dim=0) for t in (k, v, bias)))
    assert len(kernel_calls) == 1 and actual.shape == beams.shape
    assert (actual.double() - expected).abs().max() <= 1e-5
