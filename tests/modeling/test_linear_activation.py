"""A feed-forward's first product and its activation in one oneDNN product (fp32 or bf16 on the CPU, inference), and
everything else as the two operations."""

from __future__ import annotations

import warnings

import pytest
import torch

from bigbird_pegasus.modeling.layers import ACTIVATIONS
from bigbird_pegasus.modeling.linear import (FUSABLE_ACTIVATIONS, FUSABLE_DTYPES, ONEDNN, Linear,
                                             linear_then_activation)

pytestmark = pytest.mark.skipif(not ONEDNN, reason="this PyTorch build has no oneDNN")


def layer_and_input(dtype: torch.dtype) -> tuple[Linear, torch.Tensor]:
    torch.manual_seed(0)
    return Linear(64, 128).to(dtype).eval(), torch.randn(2, 137, 64).to(dtype)   # past FEW_ROWS: F.linear unfused


def onednn_products(function) -> int:
    """How many oneDNN products `function()` ran."""
    with torch.profiler.profile() as profile:
        function()
    return sum(event.key == "mkldnn::_linear_pointwise" for event in profile.key_averages())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("activation", sorted(FUSABLE_ACTIVATIONS))
def test_one_product_applies_the_activation(activation, dtype):
    """To float rounding in fp32; in bf16, within bf16 rounding of the exact result, as the two operations are. fp32
    where PyTorch runs AVX-512 code (on AVX2 the two operations are faster); bf16 where oneDNN has bf16 products
    (elsewhere oneDNN refuses the fused call)."""
    layer, x = layer_and_input(dtype)
    apply = ACTIVATIONS[activation]
    avx512 = torch.backends.cpu.get_cpu_capability() == "AVX512"
    fused_here = avx512 if dtype == torch.float32 else torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert (dtype in FUSABLE_DTYPES) == fused_here
    with torch.no_grad():
        products = onednn_products(lambda: linear_then_activation(layer, x, activation=activation, apply=apply))
        assert products == (1 if fused_here else 0)
        fused = linear_then_activation(layer, x, activation=activation, apply=apply)
        separate = apply(layer(x))
        exact = apply(layer.double()(x.double()))
    assert fused.shape == separate.shape and fused.dtype == dtype
    error = (fused.double() - exact).abs().max()
    if dtype == torch.float32:
        assert error <= 1e-5
    else:
        assert error <= 2 * (separate.double() - exact).abs().max() + 1e-2


@pytest.mark.parametrize("case", ["float64", "relu", "gradients"])
def test_otherwise_the_product_then_the_activation(case):
    layer, x = layer_and_input(torch.float64 if case == "float64" else torch.bfloat16)
    activation = "relu" if case == "relu" else "gelu_new"
    apply = ACTIVATIONS[activation]
    with torch.set_grad_enabled(case == "gradients"):
        assert onednn_products(lambda: linear_then_activation(layer, x, activation=activation, apply=apply)) == 0
        assert torch.equal(linear_then_activation(layer, x, activation=activation, apply=apply), apply(layer(x)))


def test_pytorchs_quantized_layers_keep_their_own_product():
    layer, x = layer_and_input(torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        quantized = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(64, 128)),
                                                           {torch.nn.Linear}, dtype=torch.qint8)[0]
    assert not isinstance(quantized.weight, torch.Tensor)      # a method there
    with torch.no_grad():
        actual = linear_then_activation(quantized, x, activation="gelu_new", apply=ACTIVATIONS["gelu_new"])
        expected = ACTIVATIONS["gelu_new"](quantized(x).double())
    # their own product; the GELU the kernels' (in place, where they serve) or PyTorch's: to float rounding
    assert actual.dtype == torch.float32 and (actual.double() - expected).abs().max() <= 1e-5
