"""The attention values kernel (a decoding step's cross-attention over values cached in bf16, second product)
against torch.matmul, what it refuses, and that few_query_attention takes it (over bf16 values only)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bigbird_pegasus import kernels
from bigbird_pegasus.modeling.attention import few_query_attention

HEADS, HEAD_DIM = 4, kernels.VALUES_HEAD_DIM


@pytest.mark.parametrize("rows", [1, 4, 5, 6, 11, 16])
@pytest.mark.parametrize("positions", [1, 37, 4096])
def test_attention_values_is_matmul_in_float32(rows, positions):
    generator = torch.Generator().manual_seed(rows)
    weights = torch.softmax(torch.randn(2, HEADS, rows, positions, generator=generator), -1)
    values = torch.randn(2, HEADS, positions, HEAD_DIM, generator=generator).to(torch.bfloat16)
    assert kernels.serves_attention_values(weights, values)
    actual = kernels.attention_values(weights, values)
    assert actual.shape == (2, HEADS, rows, HEAD_DIM) and actual.dtype == torch.float32
    assert torch.allclose(actual, weights @ values.float(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("case", ["head size 32", "strided values", "float64 weights", "float32 values",
                                  "gradients", "heads differ"])
def test_serves_attention_values_refuses_what_the_kernel_does_not_take(case):
    weights, values = torch.rand(1, HEADS, 5, 37), torch.randn(1, HEADS, 37, HEAD_DIM).bfloat16()
    if case == "head size 32":
        values = torch.randn(1, HEADS, 37, 32).bfloat16()
    elif case == "strided values":
        values = torch.randn(1, HEADS, HEAD_DIM, 37).bfloat16().transpose(-1, -2)
    elif case == "float64 weights":
        weights = weights.double()
    elif case == "float32 values":
        values = values.float()
    elif case == "gradients":
        values.requires_grad_()
    else:
        values = torch.randn(1, HEADS + 1, 37, HEAD_DIM).bfloat16()
    assert not kernels.serves_attention_values(weights, values)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_few_query_attention_takes_the_kernel_over_bfloat16_values_and_equals_sdpa(monkeypatch, dtype):
    calls = []
    kernel = kernels.attention_values
    monkeypatch.setattr(kernels, "attention_values", lambda *a: calls.append(a) or kernel(*a))
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(2, HEADS, 5, HEAD_DIM, generator=generator).to(dtype)
    k, v = (torch.randn(2, HEADS, 300, HEAD_DIM, generator=generator).to(dtype) for _ in range(2))
    bias = torch.zeros(2, 1, 1, 300, dtype=dtype)
    bias[1, ..., -7:] = torch.finfo(dtype).min
    with torch.no_grad():
        actual = few_query_attention(q, k.transpose(-1, -2).contiguous().transpose(-1, -2), v, bias=bias)
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=bias.float())
    assert len(calls) == (dtype == torch.bfloat16) and actual.dtype == dtype
    assert (actual.float() - expected).abs().max() <= (1e-6 if dtype == torch.float32 else 2e-2)
