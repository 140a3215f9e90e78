"""The int8 kernel (AVX-512 VNNI or AVX2) against the same product written out in float64, and what it refuses. On
a CPU with neither the kernel is not built: the tests of its products are skipped there (and say so)."""

from __future__ import annotations

import pytest
import torch
from helpers.cpu import HAS_INT8_KERNEL, needs_int8_kernel

from bigbird_pegasus import kernels


def expected_product(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor,
                     bias: torch.Tensor | None) -> torch.Tensor:
    """Each row of x quantized to int8 with scale max |x| / 127 (127 / max |x| applied, nearest, ties to even),
    multiplied exactly by the int8 weight, scaled back: the kernel's arithmetic, in float64."""
    largest = x.abs().amax(1, keepdim=True)
    quantized = torch.round(x * (127 / largest)).double()
    exact = quantized @ weight.double().t()                                            # integers, exact
    out = exact * (largest / 127).double() * scales.double()
    return (out if bias is None else out + bias.double()).float()


def int8_weight(out_features: int, in_features: int, generator: torch.Generator):
    weight = torch.randint(-127, 128, (out_features, in_features), generator=generator, dtype=torch.int8)
    return weight, torch.rand(out_features, generator=generator) / 100, weight.sum(1, dtype=torch.int32)


def test_the_int8_kernel_serves_exactly_where_the_cpu_has_avx512_vnni_or_avx2():
    reason = kernels.unavailable_reason(int8=True)
    assert reason is None if HAS_INT8_KERNEL else "VNNI" in reason


@needs_int8_kernel
@pytest.mark.parametrize("rows", [*range(1, 9), 9, 12, 20, 33, kernels.INT8_MAX_ROWS])
@pytest.mark.parametrize("out_features, in_features", [(4099, 64), (6, 1024)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_int8_linear_is_the_quantized_product(rows, out_features, in_features, with_bias):
    generator = torch.Generator().manual_seed(rows)
    weight, scales, sums = int8_weight(out_features, in_features, generator)
    bias = torch.randn(out_features, generator=generator) if with_bias else None
    x = torch.randn(rows, in_features, generator=generator)
    assert kernels.serves_int8_linear(x, weight)
    actual = kernels.int8_linear(x, weight, scales=scales, sums=sums, bias=bias)
    assert actual.shape == (rows, out_features) and actual.dtype == torch.float32
    assert torch.allclose(actual, expected_product(x, weight, scales, bias), rtol=1e-5, atol=1e-5)


@needs_int8_kernel
@pytest.mark.parametrize("rows", [7, 20])
def test_each_row_of_a_batch_gets_what_it_gets_alone(rows):
    """Each row is quantized with its own scale and its products are exact integers: a document's numbers do not
    depend on the others in its batch, to the bit."""
    generator = torch.Generator().manual_seed(rows)
    weight, scales, sums = int8_weight(1027, 256, generator)
    bias = torch.randn(1027, generator=generator)
    x = torch.randn(rows, 256, generator=generator) * torch.rand(rows, 1, generator=generator) * 10
    batch = kernels.int8_linear(x, weight, scales=scales, sums=sums, bias=bias)
    alone = torch.cat([kernels.int8_linear(row[None], weight, scales=scales, sums=sums, bias=bias) for row in x])
    assert torch.equal(batch, alone)


@needs_int8_kernel
def test_int8_linear_keeps_leading_dimensions_and_is_close_to_the_float_product():
    generator = torch.Generator().manual_seed(0)
    weight, scales, sums = int8_weight(256, 128, generator)
    x = torch.randn(2, 3, 128, generator=generator)                                    # (b, t, in)
    actual = kernels.int8_linear(x, weight, scales=scales, sums=sums)
    assert actual.shape == (2, 3, 256)
    float_product = x @ (weight.float() * scales[:, None]).t()
    assert (actual - float_product).abs().max() < 0.02 * float_product.abs().max()  # int8 inputs: ~1% of range


@needs_int8_kernel
@pytest.mark.parametrize("case", ["too many rows", "inner size not a multiple of 64", "no inner size",
                                  "float64 input", "float weight", "strided weight"])
def test_serves_int8_linear_refuses_what_the_kernel_does_not_take(case):
    x, weight = torch.randn(5, 64), torch.zeros(8, 64, dtype=torch.int8)
    if case == "too many rows":
        x = torch.randn(kernels.INT8_MAX_ROWS + 1, 64)
    elif case == "inner size not a multiple of 64":
        x, weight = torch.randn(5, 32), torch.zeros(8, 32, dtype=torch.int8)
    elif case == "no inner size":
        x, weight = torch.randn(5, 0), torch.zeros(8, 0, dtype=torch.int8)
    elif case == "float64 input":
        x = x.double()
    elif case == "float weight":
        weight = weight.float()
    else:
        weight = torch.zeros(64, 8, dtype=torch.int8).t()
    assert not kernels.serves_int8_linear(x, weight)


@needs_int8_kernel
def test_the_kernel_refuses_an_empty_inner_size_instead_of_reading_past_the_weights():
    weight, scales, sums = int8_weight(4, 64, torch.Generator().manual_seed(0))
    x, out = torch.randn(3, 64), torch.empty(3, 4)                                    # k = 0 given, 64 there
    with pytest.raises(ValueError, match="few_row_int8_linear: refused"):
        kernels.call("few_row_int8_linear", x.data_ptr(), weight.data_ptr(), scales.data_ptr(), sums.data_ptr(),
                     None, out.data_ptr(), 3, 4, 0, 1)
