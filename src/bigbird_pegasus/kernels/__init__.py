"""Hand-written CPU kernels where PyTorch's operators run below what the machine allows: a decoding step's
products of a few rows (a beam) against a large weight, which read the weight once at near memory bandwidth, in
fp32 and with int8 weights (AVX-512 VNNI), and the cross-attention's product of a few rows of weights with a
document's values cached in bf16.

They are C (few_row_linear.c, few_row_int8_linear.c, few_query_values.c), compiled once per machine on first use
with the system's C compiler and cached (build.py), loaded and checked against PyTorch (library.py). Where that is
not possible (no compiler, BIGBIRD_PEGASUS_KERNELS=0) PyTorch's operators serve instead, and
`unavailable_reason()` says why.
"""

from __future__ import annotations

import torch

from .library import INT8_LANES, LANES, MAX_ROWS, VALUES_HEAD_DIM, loaded, reset, unavailable_reason

# Rows the int8 kernel serves (one pass over the weights); past them PyTorch's fbgemm, which reads the weights once
# for all rows, is as fast (the large decoder's layers: 5 rows 27.7 against 41.6 ms, 10 rows 48.2 against 47.7 in
# two passes).
INT8_MAX_ROWS = MAX_ROWS
# How the kernels' calls show in torch.profiler's tables (a ctypes call is no operator of PyTorch's).
PROFILE_NAMES = {"few_row_linear": "bigbird_pegasus::few_row_linear",
                 "few_row_int8_linear": "bigbird_pegasus::few_row_int8_linear",
                 "few_query_values_bfloat16": "bigbird_pegasus::few_query_values"}

__all__ = ["INT8_MAX_ROWS", "LANES", "MAX_ROWS", "VALUES_HEAD_DIM", "attention_values", "int8_linear", "linear",
           "reset", "serves_attention_values", "serves_int8_linear", "serves_linear", "unavailable_reason"]


def serves_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether `linear` takes x (..., in) @ weight (out, in).T + bias: fp32 on the CPU, 1 to MAX_ROWS rows, a
    contiguous weight whose `in` is a multiple of LANES, no gradients, and the kernels built."""
    tensors = (x, weight) if bias is None else (x, weight, bias)
    return (0 < _rows(x) <= MAX_ROWS and weight.shape[1] % LANES == 0 and weight.is_contiguous()
            and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
            and (bias is None or bias.is_contiguous())
            and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
            and loaded() is not None)


def linear(x: torch.Tensor, weight: torch.Tensor, *, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (..., in) @ weight (out, in).T + bias (out,) -> (..., out), contiguous, where `serves_linear` holds."""
    rows = _rows(x)
    flat = x.reshape(rows, x.shape[-1]).contiguous()                                   # (rows, in)
    out = torch.empty(rows, weight.shape[0], dtype=x.dtype)                            # (rows, out)
    _call("few_row_linear", flat.data_ptr(), weight.data_ptr(), _pointer(bias), out.data_ptr(), rows,
          weight.shape[0], weight.shape[1], torch.get_num_threads())
    return out.reshape(*x.shape[:-1], weight.shape[0])


def serves_int8_linear(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `int8_linear` takes x (..., in) against an int8 weight (out, in): x fp32 on the CPU, 1 to
    INT8_MAX_ROWS rows, `in` a multiple of 64, and the int8 kernel built (a CPU with AVX-512 VNNI)."""
    return (0 < _rows(x) <= INT8_MAX_ROWS and weight.shape[1] % INT8_LANES == 0 and weight.is_contiguous()
            and x.dtype == torch.float32 and weight.dtype == torch.int8
            and x.device.type == weight.device.type == "cpu" and unavailable_reason(int8=True) is None)


def int8_linear(x: torch.Tensor, weight: torch.Tensor, *, scales: torch.Tensor, sums: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (..., in) fp32 times weight (out, in) int8 with a scale per weight row, `scales` (out,) fp32, and `sums`
    (out,) int32 (weight.sum(1)), + bias (out,) -> (..., out) fp32, where `serves_int8_linear` holds. Each row of x
    is quantized to int8 on the fly with its own scale (max |x| / 127), as `library.quantized_product` does in
    float64."""
    rows = _rows(x)
    flat = x.reshape(rows, x.shape[-1]).contiguous()                                   # (rows, in)
    out = torch.empty(rows, weight.shape[0], dtype=torch.float32)                      # (rows, out)
    _call("few_row_int8_linear", flat.data_ptr(), weight.data_ptr(), scales.data_ptr(), sums.data_ptr(),
          _pointer(bias), out.data_ptr(), rows, weight.shape[0], weight.shape[1], torch.get_num_threads())
    return out.reshape(*x.shape[:-1], weight.shape[0])


def serves_attention_values(weights: torch.Tensor, values: torch.Tensor) -> bool:
    """Whether `attention_values` takes weights (b, h, r, s) fp32 @ values (b, h, s, VALUES_HEAD_DIM) bf16 (values
    cached in bf16: PyTorch's bf16 product reads them slower; over fp32 values its product is as fast): both
    contiguous on the CPU, no gradients, and the kernels built."""
    return (weights.dim() == values.dim() == 4 and values.shape[-1] == VALUES_HEAD_DIM
            and weights.shape[:2] == values.shape[:2] and weights.shape[-1] == values.shape[-2]
            and weights.dtype == torch.float32 and values.dtype == torch.bfloat16
            and weights.device.type == values.device.type == "cpu"
            and weights.is_contiguous() and values.is_contiguous()
            and not (torch.is_grad_enabled() and (weights.requires_grad or values.requires_grad))
            and loaded() is not None)


def attention_values(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """weights (b, h, r, s) fp32 @ values (b, h, s, d) bf16 -> (b, h, r, d) fp32, where `serves_attention_values`
    holds: the second product of a decoding step's cross-attention, the values read once per 5 rows."""
    b, h, r, s = weights.shape
    out = torch.empty(b, h, r, values.shape[-1], dtype=torch.float32)                  # (b, h, r, d)
    _call("few_query_values_bfloat16", weights.data_ptr(), values.data_ptr(), out.data_ptr(), b * h, r, s,
          torch.get_num_threads())
    return out


def _rows(x: torch.Tensor) -> int:
    return x.numel() // x.shape[-1] if x.shape[-1] else 0


def _pointer(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def _call(name: str, *arguments) -> None:
    """Call kernel `name`, named in torch.profiler's tables while it records; a ValueError for a refused call."""
    function = getattr(loaded(), name)
    if torch.autograd._profiler_enabled():
        with torch.profiler.record_function(PROFILE_NAMES[name]):
            status = function(*arguments)
    else:
        status = function(*arguments)
    if status != 0:
        raise ValueError(f"{name}: refused the call (status {status}): rows or inner size outside its range")
