"""The bias-and-activation kernel (a linear layer's bias and GELU, tanh GELU or ReLU in one pass, in place) against
PyTorch in float64, what it refuses, and which feed-forwards take it (`linear_then_activation`)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bigbird_pegasus import kernels
from bigbird_pegasus.modeling.int8_linear import Int8Linear
from bigbird_pegasus.modeling.layers import ACTIVATIONS
from bigbird_pegasus.modeling.linear import (FEW_ROWS, FUSABLE_ACTIVATIONS, FUSABLE_DTYPES, ONEDNN, Linear,
                                             linear_then_activation)

ACTIVATION_NAMES = ["gelu", "gelu_new", "relu"]


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("shape", [(1, kernels.LANES), (3, 5, 2 * kernels.LANES), (300, 1024)])
def test_bias_activation_is_pytorchs_activation_of_y_plus_bias(threads, activation, with_bias, shape):
    generator = torch.Generator().manual_seed(shape[-1] + len(shape))
    y = 4 * torch.randn(*shape, generator=generator)                      # GELU's tails and its middle
    bias = torch.randn(shape[-1], generator=generator) if with_bias else None
    expected = ACTIVATIONS[activation]((y if bias is None else y + bias).double())
    assert kernels.serves_bias_activation(shape[-1], dtype=y.dtype, device=y.device, bias=bias, activation=activation)
    out = kernels.bias_activation_(y, bias=bias, activation=activation)
    assert out.data_ptr() == y.data_ptr()                                 # in place
    assert (out.double() - expected).abs().max() <= 2e-6 * max(1.0, expected.abs().max().item())


@pytest.mark.parametrize("case", ["silu", "width not a multiple of LANES", "float64", "bias of another width",
                                  "float64 bias", "a bias needing gradients"])
def test_serves_bias_activation_refuses_what_the_kernel_does_not_take(case):
    width, dtype, bias, activation = 64, torch.float32, torch.randn(64), "gelu_new"
    if case == "silu":
        activation = "silu"
    elif case == "width not a multiple of LANES":
        width, bias = 60, torch.randn(60)
    elif case == "float64":
        dtype = torch.float64
    elif case == "bias of another width":
        bias = torch.randn(32)
    elif case == "float64 bias":
        bias = bias.double()
    else:
        bias.requires_grad_()
    assert not kernels.serves_bias_activation(width, dtype=dtype, device=torch.device("cpu"), bias=bias,
                                              activation=activation)


def kernel_and_fused_calls(function) -> tuple[int, int]:
    """How many bias_activation kernels and oneDNN products `function()` ran."""
    with torch.profiler.profile() as profile:
        function()
    keys = [event.key for event in profile.events()]
    return keys.count("bigbird_pegasus::bias_activation"), keys.count("mkldnn::_linear_pointwise")


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_a_many_row_fp32_feed_forward_takes_the_kernel_where_onednn_does_not_fuse(activation):
    """Fused where fp32 is in FUSABLE_DTYPES (AVX-512) and oneDNN has the activation; elsewhere the product without
    its bias, then the kernel: the same values to float rounding."""
    torch.manual_seed(0)
    layer, x = Linear(64, 128).eval(), torch.randn(2, FEW_ROWS, 64)        # 256 rows
    apply = ACTIVATIONS[activation]
    fused = ONEDNN and torch.float32 in FUSABLE_DTYPES and activation in FUSABLE_ACTIVATIONS
    with torch.no_grad():
        calls = kernel_and_fused_calls(lambda: linear_then_activation(layer, x, activation=activation, apply=apply))
        actual = linear_then_activation(layer, x, activation=activation, apply=apply)
    assert calls == ((0, 1) if fused else (1, 0))
    expected = apply(F.linear(x.double(), layer.weight.double(), layer.bias.double()))
    assert actual.shape == (2, FEW_ROWS, 128) and (actual.double() - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("case", ["few rows", "silu", "gradients", "a forward hook", "a pre-hook"])
def test_otherwise_the_layer_then_the_activation(case):
    """Few rows (the few-row product kernel takes those with their bias), an activation the kernel lacks, training,
    and hooked layers (which must be called) run the layer, then the activation: exactly apply(layer(x))."""
    torch.manual_seed(1)
    layer, x = Linear(64, 128).eval(), torch.randn(2, FEW_ROWS if case != "few rows" else 3, 64)
    activation = "silu" if case == "silu" else "gelu_new"
    apply = ACTIVATIONS[activation]
    called = []
    if case == "a forward hook":
        layer.register_forward_hook(lambda module, inputs, output: called.append(1) or output * 2)
    elif case == "a pre-hook":
        layer.register_forward_pre_hook(lambda module, inputs: called.append(1) or (inputs[0] * 2,))
    with torch.set_grad_enabled(case == "gradients"):
        calls = kernel_and_fused_calls(lambda: linear_then_activation(layer, x, activation=activation, apply=apply))
        actual = linear_then_activation(layer, x, activation=activation, apply=apply)
        expected = apply(layer(x))
    assert calls == (0, 0) and torch.equal(actual, expected)
    assert len(called) == (3 if "hook" in case else 0)                  # the profiled call, this one, the oracle's


def int8_layer(packed_only: bool) -> Int8Linear:
    layer = Int8Linear.from_float(Linear(64, 128)).eval()
    return layer.keep_only_packed() if packed_only else layer


@pytest.mark.parametrize("packed_only", [False, True])
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_a_many_row_int8_feed_forward_takes_the_kernel_over_the_layers_output(packed_only, activation):
    """quantize_int8's layers (no float weight): the layer's own output (its bias in it), then the kernel's
    activation in place: apply(layer(x)) to float rounding."""
    torch.manual_seed(2)
    layer, x = int8_layer(packed_only), torch.randn(2, FEW_ROWS, 64)           # 256 rows
    apply = ACTIVATIONS[activation]
    with torch.no_grad():
        calls = kernel_and_fused_calls(lambda: linear_then_activation(layer, x, activation=activation, apply=apply))
        actual = linear_then_activation(layer, x, activation=activation, apply=apply)
        expected = apply(layer(x).double())
    assert calls == (1, 0)
    assert actual.shape == (2, FEW_ROWS, 128) and (actual.double() - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("case", ["few rows", "silu", "a forward hook keeping the output"])
def test_an_int8_layer_otherwise_then_the_activation(case):
    """Few rows, an activation the kernel lacks, and a hooked layer (whose hook may keep the output the kernel
    would overwrite) run the layer, then PyTorch's activation: exactly apply(layer(x)), the kept output intact."""
    torch.manual_seed(3)
    layer, x = int8_layer(False), torch.randn(2, FEW_ROWS if case != "few rows" else 3, 64)
    activation = "silu" if case == "silu" else "gelu_new"
    apply = ACTIVATIONS[activation]
    kept = []
    if case == "a forward hook keeping the output":
        layer.register_forward_hook(lambda module, inputs, output: kept.append(output))
    with torch.no_grad():
        calls = kernel_and_fused_calls(lambda: linear_then_activation(layer, x, activation=activation, apply=apply))
        actual = linear_then_activation(layer, x, activation=activation, apply=apply)
        expected = apply(layer(x))
    assert calls == (0, 0) and torch.equal(actual, expected)
    if kept:
        assert torch.equal(kept[1], kept[2]) and not torch.equal(kept[1], actual)   # not overwritten by the GELU
