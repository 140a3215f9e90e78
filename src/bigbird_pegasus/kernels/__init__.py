"""Hand-written CPU kernels where PyTorch's operators run below what the machine allows: a decoding step's
products of a few rows (a beam) against a large weight, which read the weight once at near memory bandwidth, in
fp32 and with int8 weights (AVX-512 VNNI or AVX2); the cross-attention of a few query rows over a document's keys and
values, cached in fp32 or bf16, which reads each once; the self-attention of each beam over its own past, read
through the cache's origins (so that beam search moves no keys); beam search's top-k in one pass; and a whole
decoding step through all the decoder's layers in one call (`DecoderStep`: the layer norms, activation and residual
sums between those kernels, without PyTorch's per-operator dispatch); and the encoder's block-sparse attention, each
query block over its key blocks where they lie (`block_attention`: no gathered copies); and a linear layer's bias
and activation in place in one pass (`bias_activation_`: the encoder's feed-forward where oneDNN does not fuse it);
and int8 weights made from fp32 ones in one pass (`quantize_rows_int8`: quantize_int8's conversion).

They are C (few_row_linear.c, few_row_int8_linear.c, few_query_attention.c, top_k.c, activation.c, decoder_step.c,
block_sparse_attention.c, quantize.c; shared vector math in vectors.h), compiled once per machine on
first use with the system's C compiler and cached (build.py), loaded and checked against PyTorch (library.py).
Where that is not possible (no compiler, BIGBIRD_PEGASUS_KERNELS=0) PyTorch's operators serve instead, and
`unavailable_reason()` says why.
"""

from __future__ import annotations

import torch

from .block_sparse_attention import BlockRows, block_attention, serves_block_attention
from .decoder_step import (STEP_ACTIVATIONS, DecoderStep, LayerWeights, LinearWeights, serves_step,
                           unavailable_step_reason)
from .key_layout import key_row_stride
from .library import (ATTENTION_HEAD_DIM, INT8_LANES, LANES, MAX_ROWS, call, loaded, quantized_rows, reset,
                      unavailable_reason)

# Rows the int8 kernel serves (one pass over the weights, each row quantized with its own scale, so that a document's
# numbers do not depend on the others in its batch); past them PyTorch's int8 product, the rows quantized the same
# way (modeling/int8_matmul.py). Measured against fbgemm (the input quantized per tensor), which served past them
# before: at 20 rows as fast (the LM head 9.2 against 8.9 ms); at 40 the kernel slower (17.1 against 12.9), what
# the whole-step kernel saves in dispatch paying for it.
INT8_MAX_ROWS = MAX_ROWS
# The most values `top_k` selects per row (beam search asks for 2 x beams).
MAX_TOP_K = 256

__all__ = ["ATTENTION_HEAD_DIM", "INT8_MAX_ROWS", "LANES", "MAX_ROWS", "MAX_TOP_K", "STEP_ACTIVATIONS", "BlockRows",
           "DecoderStep", "LayerWeights", "LinearWeights", "attention", "bias_activation_", "block_attention",
           "int8_linear", "key_row_stride", "linear", "quantize_rows_int8", "reset", "self_attention",
           "serves_attention",
           "serves_bias_activation", "serves_block_attention", "serves_int8_linear",
           "serves_linear", "serves_self_attention", "serves_step", "serves_top_k", "top_k", "unavailable_reason",
           "unavailable_step_reason"]


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
    call("few_row_linear", flat.data_ptr(), weight.data_ptr(), _pointer(bias), out.data_ptr(), rows,
         weight.shape[0], weight.shape[1], torch.get_num_threads())
    return out.reshape(*x.shape[:-1], weight.shape[0])


def serves_int8_linear(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `int8_linear` takes x (..., in) against an int8 weight (out, in): x fp32 on the CPU, 1 to
    INT8_MAX_ROWS rows, `in` a multiple of 64, and the int8 kernel built (a CPU with AVX-512 VNNI or AVX2)."""
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
    call("few_row_int8_linear", flat.data_ptr(), weight.data_ptr(), scales.data_ptr(), sums.data_ptr(),
         _pointer(bias), out.data_ptr(), rows, weight.shape[0], weight.shape[1], torch.get_num_threads())
    return out.reshape(*x.shape[:-1], weight.shape[0])


def serves_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether `attention` takes q (b, h, r, ATTENTION_HEAD_DIM) fp32 over k, v (b, h, s, ATTENTION_HEAD_DIM) in
    fp32 or bf16 (keys position-minor, as the decoder's cache keeps them, their rows padded or not: see
    `key_row_stride`; values contiguous), bias (b, 1, 1, s) fp32 contiguous or None: on the CPU, no gradients, and
    the kernel built with AVX2 or AVX-512 (`unavailable_reason(attention=True)`)."""
    b, h, r, d = q.shape if q.dim() == 4 else (0, 0, 0, 0)
    s = v.shape[-2] if v.dim() == 4 else 0
    tensors = (q, k, v) if bias is None else (q, k, v, bias)
    return (d == ATTENTION_HEAD_DIM and r > 0 and s > 0 and k.shape == v.shape == (b, h, s, d)
            and q.dtype == torch.float32 and k.dtype == v.dtype and k.dtype in (torch.float32, torch.bfloat16)
            and key_row_stride(k) is not None and v.is_contiguous()
            and (bias is None or (bias.shape == (b, 1, 1, s) and bias.dtype == torch.float32
                                  and bias.is_contiguous()))
            and all(t.device.type == "cpu" for t in tensors)
            and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
            and loaded() is not None and unavailable_reason(attention=True) is None)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, bias: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v: q (b, h, r, d) fp32 over k, v (b, h, s, d) -> (b, h, r, d) fp32, where
    `serves_attention` holds: a decoding step's cross-attention, the keys and the values read once per 5 rows."""
    b, h, r, d = q.shape
    s = v.shape[-2]
    q = q.contiguous()                                                                 # (b, h, r, d)
    out = torch.empty(b, h, r, d, dtype=torch.float32)                                 # (b, h, r, d)
    name = "few_query_attention_float32" if k.dtype == torch.float32 else "few_query_attention_bfloat16"
    call(name, q.data_ptr(), k.data_ptr(), v.data_ptr(), _pointer(bias), out.data_ptr(), b, h, r, s,
         key_row_stride(k), d ** -0.5, torch.get_num_threads())
    return out


def serves_bias_activation(width: int, *, dtype: torch.dtype, device: torch.device, bias: torch.Tensor | None,
                           activation: str) -> bool:
    """Whether `bias_activation_` takes a contiguous (..., width) tensor of `dtype` on `device`: fp32 on the CPU,
    width a multiple of LANES, bias (width,) fp32 contiguous or None, an activation of STEP_ACTIVATIONS (by the
    config's name), no gradients, the kernels built."""
    return (activation in STEP_ACTIVATIONS and width > 0 and width % LANES == 0
            and dtype == torch.float32 and torch.device(device).type == "cpu"
            and (bias is None or (bias.shape == (width,) and bias.dtype == torch.float32 and bias.is_contiguous()
                                  and bias.device.type == "cpu"))
            and not (torch.is_grad_enabled() and bias is not None and bias.requires_grad)
            and loaded() is not None)


def bias_activation_(y: torch.Tensor, *, bias: torch.Tensor | None, activation: str) -> torch.Tensor:
    """y (..., n) contiguous = activation(y + bias) in place, one pass, where `serves_bias_activation` holds (and
    y needs no gradient); returns y."""
    n = y.shape[-1]
    call("bias_activation", y.data_ptr(), _pointer(bias), y.numel() // n, n, STEP_ACTIVATIONS[activation],
         torch.get_num_threads())
    return y


def quantize_rows_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """weight (out, in) fp32 quantized to int8 per row, symmetrically: its steps (out, in) int8, scales (out,) fp32
    and the steps' sums (out,) int32, as `library.quantized_rows` computes them (to the bit): in one pass over the
    weight where the kernels are built and it is on the CPU, with PyTorch's operators elsewhere. A ValueError when
    the weight holds NaN or infinity (no scale represents it)."""
    if weight.device.type == "cpu" and loaded() is not None:
        weight = weight.contiguous()                                                   # (out, in)
        steps = torch.empty(weight.shape, dtype=torch.int8)                            # (out, in)
        scales = torch.empty(weight.shape[0], dtype=torch.float32)                     # (out,)
        sums = torch.empty(weight.shape[0], dtype=torch.int32)                         # (out,)
        finite = call("quantize_rows_int8", weight.data_ptr(), steps.data_ptr(), scales.data_ptr(), sums.data_ptr(),
                      weight.shape[0], weight.shape[1], torch.get_num_threads(), refused_when=1) == 0
    else:
        finite = bool(torch.isfinite(weight).all())
        steps, scales, sums = quantized_rows(weight)
    if not finite:
        raise ValueError(f"cannot quantize a weight of shape {tuple(weight.shape)} to int8: it holds NaN or infinite "
                         "values")
    return steps, scales, sums


def serves_self_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                          bias: torch.Tensor | None) -> bool:
    """Whether `self_attention` takes one query per row q (b, h, 1, ATTENTION_HEAD_DIM) fp32 over a decoder's
    self-attention buffers keys, values (b, h, capacity, ATTENTION_HEAD_DIM) fp32 contiguous, bias (1 or b, 1, 1,
    capacity) fp32 contiguous or None: on the CPU, no gradients, and the kernels built."""
    b, h, t, d = q.shape if q.dim() == 4 else (0, 0, 0, 0)
    capacity = keys.shape[2] if keys.dim() == 4 else 0
    tensors = (q, keys, values) if bias is None else (q, keys, values, bias)
    return (d == ATTENTION_HEAD_DIM and t == 1 and b > 0 and keys.shape == values.shape == (b, h, capacity, d)
            and all(tensor.dtype == torch.float32 and tensor.device.type == "cpu" for tensor in tensors)
            and keys.is_contiguous() and values.is_contiguous()
            and (bias is None or (bias.shape in ((1, 1, 1, capacity), (b, 1, 1, capacity)) and bias.is_contiguous()))
            and not (torch.is_grad_enabled() and any(tensor.requires_grad for tensor in tensors))
            and loaded() is not None)


def self_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, *, origins: torch.Tensor | None,
                   length: int, bias: torch.Tensor | None = None) -> torch.Tensor:
    """A decoding step's self-attention, where `serves_self_attention` holds: q (b, h, 1, d) over the first `length`
    positions of keys, values (b, h, capacity, d) as stored, row i's position p read from stored row
    origins[i, p] (origins (b, capacity) int64; None: row i), + bias[i or 0, p] -> (b, h, 1, d) fp32."""
    b, h, _, d = q.shape
    q = q.contiguous()                                                                 # (b, h, 1, d)
    out = torch.empty(b, h, 1, d, dtype=torch.float32)                                 # (b, h, 1, d)
    origins = None if origins is None else origins.to(torch.int64).contiguous()        # (b, capacity)
    call("few_query_self_attention", q.data_ptr(), keys.data_ptr(), values.data_ptr(), _pointer(origins),
         _pointer(bias), 0 if bias is None else bias.shape[0], out.data_ptr(), b, h, keys.shape[2], length,
         d ** -0.5, torch.get_num_threads())
    return out


def serves_top_k(x: torch.Tensor, k: int) -> bool:
    """Whether `top_k` takes x (rows, n) fp32 contiguous on the CPU, 1 <= k <= min(n, MAX_TOP_K), no gradients,
    and the kernels built."""
    return (x.dim() == 2 and 1 <= k <= min(x.shape[1], MAX_TOP_K) and x.dtype == torch.float32
            and x.device.type == "cpu" and x.is_contiguous() and not (torch.is_grad_enabled() and x.requires_grad)
            and loaded() is not None)


def top_k(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest values of each row of x (rows, n) and their indices, (rows, k) each, sorted descending, equal
    values in index order (torch.topk leaves their order unspecified), where `serves_top_k` holds; x holding a NaN
    goes to torch.topk (which ranks NaN highest)."""
    values = torch.empty(x.shape[0], k, dtype=torch.float32)                          # (rows, k)
    indices = torch.empty(x.shape[0], k, dtype=torch.int64)                            # (rows, k)
    if call("top_k", x.data_ptr(), x.shape[0], x.shape[1], k, values.data_ptr(), indices.data_ptr(),
            torch.get_num_threads(), refused_when=1) == 2:
        return torch.topk(x, k)
    return values, indices


def _rows(x: torch.Tensor) -> int:
    return x.numel() // x.shape[-1] if x.shape[-1] else 0


def _pointer(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()
