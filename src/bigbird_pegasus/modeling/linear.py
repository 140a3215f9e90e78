"""nn.Linear with a faster CPU path for inputs of a few rows: the decoder's steps and the LM head."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import kernels

# Up to this many rows, the few-row path beats F.linear on the CPU: F.linear then runs far below memory
# bandwidth. Measured on a 2-core AMD EPYC (MKL) on the large config's shapes with `weight @ x.T`: 5 rows (a
# beam of 5) 2.9x faster for 4096x1024, 3.1x for the 96103x1024 LM head, 1.3x for 1024x1024; no gain left by
# 256 rows.
FEW_ROWS = 128

# oneDNN's inner product (PyTorch's own op, the one torch.compile uses on the CPU) streams a plain (out, in) fp32
# weight faster than MKL's sgemm for a few rows: measured here (2-core Xeon, 5 rows) 19.0 vs 14.3 GB/s for the
# 96103x1024 LM head, 13.8 vs 13.2 GB/s over the large decoder's layer weights. It has no backward, so it serves
# inference only.
ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class Linear(nn.Linear):
    """The same parameters, state-dict names and product as nn.Linear; few-row CPU inputs take a faster
    path (the summation order differs: results agree to float rounding)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
        if x.device.type != "cpu" or not 0 < rows <= FEW_ROWS:
            return F.linear(x, self.weight, self.bias)
        return few_row_linear(x, self.weight, bias=self.bias)


def few_row_linear(x: torch.Tensor, weight: torch.Tensor, *, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (..., in) @ weight (out, in).T + bias (out,) -> (..., out), contiguous, for a few rows on the CPU."""
    # under torch.compile, inductor picks its own kernel for the product (it lowers this op for frozen weights only)
    if not torch.compiler.is_compiling() and kernels.serves_linear(x, weight, bias):
        return kernels.linear(x, weight, bias=bias)
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if ONEDNN and x.dtype == weight.dtype == torch.float32 and not needs_grad and not torch.compiler.is_compiling():
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    rows = x.numel() // x.shape[-1]
    # (rows, out), made contiguous (a few rows: cheap): SDPA's fast kernels need unit last-dim stride
    out = torch.mm(weight, x.reshape(rows, -1).t()).t().contiguous()
    if bias is not None:
        out = out + bias
    return out.reshape(*x.shape[:-1], weight.shape[0])


# The activations (config names) oneDNN applies to a product's output as it writes it: its post-op, algorithm.
FUSABLE_ACTIVATIONS = {"gelu": ("gelu", "none"), "gelu_python": ("gelu", "none"), "gelu_new": ("gelu", "tanh"),
                       "gelu_fast": ("gelu", "tanh"), "gelu_pytorch_tanh": ("gelu", "tanh")}
# The dtypes oneDNN has products for on this CPU: fp32; bf16 and fp16 on AVX-512 and later x86 CPUs. On an AVX2
# CPU (an AMD EPYC Zen 3 here) it has no primitive for those and PyTorch's own loops serve them: a bf16 F.linear of
# 256 x 1024 by 1024 x 1024 ran at 14-19 GFLOP/s against 97-135 in fp32.
ONEDNN_DTYPES = (torch.float32,) + tuple(
    dtype for dtype, supported in ((torch.bfloat16, "_is_mkldnn_bf16_supported"),
                                   (torch.float16, "_is_mkldnn_fp16_supported"))
    if ONEDNN and hasattr(torch.ops.mkldnn, supported) and getattr(torch.ops.mkldnn, supported)())
# The dtypes of the fused products (oneDNN refuses them in a dtype it has no products for). fp32 only where PyTorch
# runs AVX-512 code: there the fused product paid (a Xeon, above); on an AVX2 CPU (a 2-core AMD EPYC Zen 3) oneDNN's
# fused fp32 product of the large encoder's feed-forward at 4096 tokens took 0.377 s against 0.285 s for MKL's
# product and then PyTorch's GELU (medians of 10, alternating; the whole encoder 16.6 against 17.8 s).
FUSABLE_DTYPES = tuple(dtype for dtype in ONEDNN_DTYPES if dtype != torch.float16
                       and (dtype != torch.float32 or torch.backends.cpu.get_cpu_capability() == "AVX512"))


def slow_products_reason(dtype: torch.dtype | None) -> str | None:
    """Why a CPU model in `dtype` runs several times slower here than in fp32 (None: it does not): bf16 or fp16
    where oneDNN has no products in it (ONEDNN_DTYPES)."""
    if dtype not in (torch.bfloat16, torch.float16) or dtype in ONEDNN_DTYPES:
        return None
    name = str(dtype).removeprefix("torch.")
    return (f"this CPU has no {name} matrix products in oneDNN (no AVX-512 BF16/FP16 or AMX: an AVX2 CPU, say), "
            f"so PyTorch's own loops run them, several times slower than fp32 (5-10x measured): use float32 here")


def linear_then_activation(linear: nn.Linear, x: torch.Tensor, *, activation: str,
                           apply: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """apply(linear(x)), x (..., in) -> (..., out), where `apply` is the config's `activation`. On the CPU, at
    inference, for a layer without hooks: in FUSABLE_DTYPES, one oneDNN product applies a GELU as it writes its
    output, which is then not read and written again (the large encoder's feed-forward at 4096 tokens: the bf16 GELU
    alone took 0.47 of 3.4 s; in fp32 a layer's product and GELU 133-146 against 161-167 ms; the same values to
    float rounding, ~5e-6 there); elsewhere, past FEW_ROWS fp32 rows, the product without its bias, then the bias
    and the activation in one pass of the kernels' (`kernels.bias_activation_`; the same values to float rounding:
    on a 2-core AMD EPYC Zen 3, a 4096-token layer's product, bias and tanh GELU 298 against 350 ms, the bias and
    GELU alone 16 against PyTorch's 100 ms for the GELU, scratch `/tmp/s28/act/run.py`); and a layer without a
    float weight (quantize_int8's) computes its output, which the kernels' activation then overwrites in place
    (`_activates_in_place`)."""
    post_op = FUSABLE_ACTIVATIONS.get(activation)
    weight = getattr(linear, "weight", None)  # a method on PyTorch's quantized layers
    plain = not (linear._forward_hooks or linear._forward_pre_hooks) and not torch.compiler.is_compiling()
    at_inference = (plain and isinstance(weight, torch.Tensor) and x.device.type == "cpu" and x.dtype == weight.dtype
                    and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)))
    if at_inference and post_op is not None and ONEDNN and x.dtype in FUSABLE_DTYPES:
        return torch.ops.mkldnn._linear_pointwise(x, weight, linear.bias, post_op[0], [], post_op[1])
    many_rows = x.shape[-1] > 0 and x.numel() // x.shape[-1] > FEW_ROWS
    if at_inference and many_rows and kernels.serves_bias_activation(weight.shape[0], dtype=x.dtype, device=x.device,
                                                                     bias=linear.bias, activation=activation):
        return kernels.bias_activation_(F.linear(x, weight), bias=linear.bias, activation=activation)
    y = linear(x)
    float_weight = isinstance(weight, torch.Tensor) and weight.is_floating_point()
    if plain and many_rows and not float_weight and _activates_in_place(y, activation):
        return kernels.bias_activation_(y, bias=None, activation=activation)
    return apply(y)


def _activates_in_place(y: torch.Tensor, activation: str) -> bool:
    """Whether the kernels' activation may overwrite y (..., out), the fresh output of a layer without a float
    weight (quantize_int8's, whose own bias it holds) and without hooks that could keep it: fp32 on the CPU,
    contiguous, no gradient. The large encoder's int8 feed-forward at 4096 tokens on the AMD EPYC Zen 3: PyTorch's
    tanh GELU took 89 ms a layer (1.43 of 12.1 s), the kernel's ~14 (the same values to float rounding)."""
    return (y.is_contiguous() and not (torch.is_grad_enabled() and y.requires_grad)
            and kernels.serves_bias_activation(y.shape[-1], dtype=y.dtype, device=y.device, bias=None,
                                               activation=activation))
