"""The weight quantizer (fp32 rows to int8 steps, scales and sums in one pass) against the same quantization with
PyTorch's operators, to the bit; where the kernels are off, PyTorch's operators give the same; weights holding NaN or
infinity are refused, by quantize_int8 too."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bigbird_pegasus import kernels, quantize_int8
from bigbird_pegasus.kernels.library import quantized_rows
from bigbird_pegasus.modeling.int8_linear import Int8Linear


def awkward_weight(rows: int, columns: int, *, seed: int) -> torch.Tensor:
    """Random rows, with a row of zeros, a row whose values divide by its scale to exact halves (rounding's ties),
    a row of -0.0 and denormals, and a row whose largest value is negative."""
    weight = 0.05 * torch.randn(rows, columns, generator=torch.Generator().manual_seed(seed))
    weight[0] = 0
    halves = torch.tensor([127.0, 0.5, 1.5, 2.5, -0.5, -1.5, 126.5, -126.5])
    weight[1] = halves.repeat(columns // len(halves) + 1)[:columns]
    weight[2] = -0.0
    weight[2, ::3] = 1e-40
    weight[3, -1] = -1.0
    return weight


@pytest.mark.parametrize("rows, columns", [(4, 8), (7, 2 * kernels.LANES + 5), (300, 1024), (64, 4096)])
def test_the_kernel_is_pytorchs_quantization_to_the_bit(threads, rows, columns):
    weight = awkward_weight(rows, columns, seed=columns)
    steps, scales, sums = kernels.quantize_rows_int8(weight)
    expected_steps, expected_scales, expected_sums = quantized_rows(weight)
    assert torch.equal(steps, expected_steps) and torch.equal(scales, expected_scales)
    assert torch.equal(sums, expected_sums)
    assert steps.dtype == torch.int8 and sums.dtype == torch.int32 and scales[0] == 1.0  # the row of zeros
    assert steps[1, :8].tolist() == [127, 0, 2, 2, 0, -2, 126, -126]                  # ties to even
    assert steps[3].min() == -127 and steps.abs().max() <= 127


def test_where_the_kernels_are_off_pytorchs_operators_give_the_same(monkeypatch):
    weight = awkward_weight(9, 40, seed=1)
    built = kernels.quantize_rows_int8(weight)
    monkeypatch.setenv("BIGBIRD_PEGASUS_KERNELS", "0")
    kernels.reset()
    try:
        assert kernels.unavailable_reason() is not None
        assert all(torch.equal(a, b) for a, b in zip(kernels.quantize_rows_int8(weight), built))
        with pytest.raises(ValueError, match=r"weight of shape \(9, 40\) .* NaN or infinite"):
            kernels.quantize_rows_int8(torch.where(weight > 0.1, float("nan"), weight))
    finally:
        monkeypatch.delenv("BIGBIRD_PEGASUS_KERNELS")
        kernels.reset()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("column", [0, 2 * kernels.LANES + 2])                    # in a vector, in the tail
def test_non_finite_weights_are_refused(bad, column):
    weight = awkward_weight(5, 2 * kernels.LANES + 3, seed=2)
    weight[4, column] = bad
    with pytest.raises(ValueError, match=r"cannot quantize a weight of shape \(5, 35\) to int8: it holds NaN or "
                                         r"infinite values"):
        kernels.quantize_rows_int8(weight)


def test_int8_linear_and_quantize_int8_take_the_kernels_steps():
    layer = nn.Linear(2 * kernels.LANES, 6)
    converted = Int8Linear.from_float(layer)
    steps, scales, sums = quantized_rows(layer.weight.detach())
    assert torch.equal(converted.weight, steps) and torch.equal(converted.weight_scale, scales)
    assert torch.equal(converted.weight_sums, sums)
    with torch.no_grad():
        layer.weight[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantize_int8(nn.Sequential(layer))
