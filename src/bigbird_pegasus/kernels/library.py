"""The built kernels loaded once per process, their C signatures declared, and each checked against PyTorch on
small inputs before it serves; when any of that fails, the reason is kept and warned once."""

from __future__ import annotations

import ctypes
import functools
import warnings

import torch
import torch.nn.functional as F

from .build import KernelsUnavailable, load_library

# Rows one call of the product kernels serves (and the whole-step kernel: a batch of 8 documents' 5 beams): up to 8
# keep rows x (weight rows at a time) sums in registers; more go in groups of 5 against each block of weight rows,
# the weights still read from memory once. Against oneDNN's products for a 4096 x 1024 weight: 0.75 against 1.45 ms
# at 10 rows, 1.34 against 1.89 at 20, 2.45 against 2.76 at 40 (side by side, one slow hour); past 40 they serve.
MAX_ROWS = 40
# The fp32 kernel reads the inner dimension 16 floats at a time; the int8 kernel 64 bytes at a time.
LANES = 16
INT8_LANES = 64
# The head size the attention kernel is written for (the published checkpoints': 1024 / 16 heads).
ATTENTION_HEAD_DIM = 64

# How the kernels' calls show in torch.profiler's tables (a ctypes call is no operator of PyTorch's).
PROFILE_NAMES = {"few_row_linear": "bigbird_pegasus::few_row_linear",
                 "few_row_int8_linear": "bigbird_pegasus::few_row_int8_linear",
                 "few_query_attention_float32": "bigbird_pegasus::few_query_attention",
                 "few_query_attention_bfloat16": "bigbird_pegasus::few_query_attention",
                 "few_query_self_attention": "bigbird_pegasus::few_query_self_attention",
                 "top_k": "bigbird_pegasus::top_k",
                 "bias_activation": "bigbird_pegasus::bias_activation",
                 "quantize_rows_int8": "bigbird_pegasus::quantize_rows_int8",
                 "decoder_step": "bigbird_pegasus::decoder_step",
                 "block_sparse_attention_float32": "bigbird_pegasus::block_sparse_attention",
                 "block_sparse_attention_bfloat16": "bigbird_pegasus::block_sparse_attention"}

_reasons: dict[str, str] = {}


def unavailable_reason(*, int8: bool = False, attention: bool = False) -> str | None:
    """Why the kernels (the int8 kernel with `int8`, the cross-attention kernel with `attention`) do not serve
    here, or None when they do; the first call builds or loads them."""
    library = loaded()
    if library is None:
        return _reasons["library"]
    if int8:
        return _reasons.get("int8")
    return _reasons.get("attention") if attention else None


@functools.cache
def loaded() -> ctypes.CDLL | None:
    """The loaded kernels, self-checked, or None (the reason kept for `unavailable_reason`, warned once)."""
    try:
        library = load_library()
    except KernelsUnavailable as error:
        _give_up(str(error), warn=not str(error).startswith("turned off"))
        return None
    declare(library)
    if (error := _check_linear(library)) is not None:
        _give_up(error, warn=True)
        return None
    if (error := _check_attention(library) or _check_self_attention(library) or _check_top_k(library)
                 or _check_bias_activation(library) or _check_quantize_rows(library)) is not None:
        _give_up(error, warn=True)
        return None
    if not library.few_query_attention_supported():
        _reasons["attention"] = ("built without AVX2 or AVX-512 (for NEON, say), where the attention kernels are "
                                 "not measured against PyTorch's products")
    if not library.few_row_int8_linear_supported():
        _reasons["int8"] = "built without AVX-512 VNNI or AVX2 (the int8 kernel's instructions)"
    elif (error := _check_int8_linear(library)) is not None:
        _reasons["int8"] = error
    return library


def reset() -> None:
    """Forget the loaded kernels and reasons: the next call loads anew (after a change of the environment)."""
    loaded.cache_clear()
    _reasons.clear()


def call(name: str, *arguments, refused_when: int | None = None) -> int:
    """Call kernel `name`, named in torch.profiler's tables while it records, and return its status; a ValueError
    for a refused call (status `refused_when`; by default any but 0)."""
    function = getattr(loaded(), name)
    if torch.autograd._profiler_enabled():
        with torch.profiler.record_function(PROFILE_NAMES[name]):
            status = function(*arguments)
    else:
        status = function(*arguments)
    if status == refused_when or (refused_when is None and status != 0):
        raise ValueError(f"{name}: refused the call (status {status}): sizes outside its range, or out of memory")
    return status


def declare(library: ctypes.CDLL) -> None:
    """The C signatures of the kernels' entry points, set on a loaded `library` (this one's, or another build's)."""
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    library.few_row_linear.argtypes = [pointer] * 4 + [size] * 3 + [ctypes.c_int]
    library.few_row_linear.restype = ctypes.c_int
    library.few_row_int8_linear.argtypes = [pointer] * 6 + [size] * 3 + [ctypes.c_int]
    library.few_row_int8_linear.restype = ctypes.c_int
    library.few_row_int8_linear_supported.argtypes = []
    library.few_row_int8_linear_supported.restype = ctypes.c_int
    for attention in (library.few_query_attention_float32, library.few_query_attention_bfloat16):
        attention.argtypes = [pointer] * 5 + [size] * 5 + [ctypes.c_float, ctypes.c_int]
        attention.restype = ctypes.c_int
    library.few_query_self_attention.argtypes = [pointer] * 5 + [size, pointer] + [size] * 4 + [ctypes.c_float,
                                                                                                 ctypes.c_int]
    library.few_query_self_attention.restype = ctypes.c_int
    library.top_k.argtypes = [pointer] + [size] * 3 + [pointer] * 2 + [ctypes.c_int]
    library.top_k.restype = ctypes.c_int
    library.few_query_attention_supported.argtypes = []
    library.few_query_attention_supported.restype = ctypes.c_int
    library.bias_activation.argtypes = [pointer, pointer, size, size, ctypes.c_int, ctypes.c_int]
    library.bias_activation.restype = ctypes.c_int
    library.quantize_rows_int8.argtypes = [pointer] * 4 + [size] * 2 + [ctypes.c_int]
    library.quantize_rows_int8.restype = ctypes.c_int
    library.decoder_step.argtypes = [pointer, size, pointer, pointer]
    library.decoder_step.restype = ctypes.c_int
    for block_sparse in (library.block_sparse_attention_float32, library.block_sparse_attention_bfloat16):
        block_sparse.argtypes = ([pointer] * 4 + [ctypes.c_int] + [pointer] * 4 + [size] * 6
                                 + [ctypes.c_float, ctypes.c_int])
        block_sparse.restype = ctypes.c_int


def _check_linear(library: ctypes.CDLL) -> str | None:
    """The fp32 kernel against F.linear on every row count and a weight with a tail; None when they agree."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(11, 2 * LANES, generator=generator)
    bias = torch.randn(11, generator=generator)
    for rows in range(1, MAX_ROWS + 1):
        x = torch.randn(rows, 2 * LANES, generator=generator)
        out = torch.empty(rows, 11)
        library.few_row_linear(x.data_ptr(), weight.data_ptr(), bias.data_ptr(), out.data_ptr(), rows, 11,
                               2 * LANES, 1)
        if not torch.allclose(out, F.linear(x, weight, bias), atol=1e-4, rtol=1e-4):
            return f"the built few_row_linear disagrees with torch on {rows} rows (a miscompiled kernel?)"
    return None


def _check_attention(library: ctypes.CDLL) -> str | None:
    """The attention kernel against SDPA in fp32 over fp32 and bf16 keys/values: 1 to 11 query rows, 2 documents
    of 75 positions (a tile of 64 and a tail), the second's last 7 masked, the keys' rows padded to 80."""
    generator = torch.Generator().manual_seed(0)
    bias = torch.zeros(2, 1, 1, 75)
    bias[1, ..., -7:] = torch.finfo(torch.float32).min
    for dtype in (torch.float32, torch.bfloat16):
        name = "few_query_attention_float32" if dtype == torch.float32 else "few_query_attention_bfloat16"
        keys, values = (torch.randn(2, 3, 75, ATTENTION_HEAD_DIM, generator=generator).to(dtype) for _ in range(2))
        position_minor = F.pad(keys.transpose(-1, -2), (0, 5)).contiguous()          # (2, 3, d, s + 5)
        for rows in range(1, 12):
            q = torch.randn(2, 3, rows, ATTENTION_HEAD_DIM, generator=generator)
            out = torch.empty_like(q)
            getattr(library, name)(q.data_ptr(), position_minor.data_ptr(), values.data_ptr(), bias.data_ptr(),
                                   out.data_ptr(), 2, 3, rows, 75, 80, ATTENTION_HEAD_DIM ** -0.5, 1)
            expected = F.scaled_dot_product_attention(q, keys.float(), values.float(), attn_mask=bias)
            if not torch.allclose(out, expected, atol=1e-4, rtol=1e-4):
                return f"the built {name} disagrees with torch on {rows} rows (a miscompiled kernel?)"
    return None


def _check_self_attention(library: ctypes.CDLL) -> str | None:
    """The self-attention kernel against SDPA over the positions gathered through random origins: 3 rows, 2 heads,
    1 to 9 of 9 positions, a bias per row hiding row 1's first position."""
    generator = torch.Generator().manual_seed(0)
    keys, values = (torch.randn(3, 2, 9, ATTENTION_HEAD_DIM, generator=generator) for _ in range(2))
    origins = torch.randint(0, 3, (3, 9), generator=generator)
    bias = torch.zeros(3, 1, 1, 9)
    bias[1, ..., 0] = torch.finfo(torch.float32).min
    for length in range(1, 10):
        q = torch.randn(3, 2, 1, ATTENTION_HEAD_DIM, generator=generator)
        out = torch.empty_like(q)
        library.few_query_self_attention(q.data_ptr(), keys.data_ptr(), values.data_ptr(), origins.data_ptr(),
                                         bias.data_ptr(), 3, out.data_ptr(), 3, 2, 9, length,
                                         ATTENTION_HEAD_DIM ** -0.5, 1)
        stored_rows, positions = origins[:, :length], torch.arange(length)
        past_keys, past_values = (t[stored_rows, :, positions].transpose(1, 2) for t in (keys, values))
        expected = F.scaled_dot_product_attention(q, past_keys, past_values, attn_mask=bias[..., :length])
        if not torch.allclose(out, expected, atol=1e-4, rtol=1e-4):
            return f"the built few_query_self_attention disagrees with torch at {length} positions (miscompiled?)"
    return None


def _check_top_k(library: ctypes.CDLL) -> str | None:
    """The top-k kernel against torch.topk on distinct values: 1 to 9 of 300, in 1 and 2 parts; a NaN refused."""
    x = torch.randperm(600, generator=torch.Generator().manual_seed(0)).float().view(2, 300)
    for k in range(1, 10):
        for parts in (1, 2):
            values, indices = torch.empty(2, k), torch.empty(2, k, dtype=torch.int64)
            status = library.top_k(x.data_ptr(), 2, 300, k, values.data_ptr(), indices.data_ptr(), parts)
            expected = torch.topk(x, k)
            if status != 0 or not (torch.equal(values, expected.values) and torch.equal(indices, expected.indices)):
                return f"the built top_k disagrees with torch.topk for k = {k} (a miscompiled kernel?)"
    x[1, 7] = float("nan")
    if library.top_k(x.data_ptr(), 2, 300, 3, values.data_ptr(), indices.data_ptr(), 2) != 2:
        return "the built top_k does not refuse a NaN (a miscompiled kernel?)"
    return None


def _check_bias_activation(library: ctypes.CDLL) -> str | None:
    """The bias-and-activation kernel against PyTorch's GELU, tanh GELU and ReLU of y + bias, 3 rows of 2 x LANES."""
    generator = torch.Generator().manual_seed(0)
    y, bias = 3 * torch.randn(3, 2 * LANES, generator=generator), torch.randn(2 * LANES, generator=generator)
    tanh_gelu = functools.partial(F.gelu, approximate="tanh")
    for code, apply in enumerate((F.gelu, tanh_gelu, F.relu)):                        # GELU, GELU_TANH, RELU
        out = y.clone()
        status = library.bias_activation(out.data_ptr(), bias.data_ptr(), 3, 2 * LANES, code, 2)
        if status != 0 or not torch.allclose(out, apply(y + bias), atol=1e-5, rtol=1e-5):
            return f"the built bias_activation disagrees with torch for activation {code} (a miscompiled kernel?)"
    return None


def _check_quantize_rows(library: ctypes.CDLL) -> str | None:
    """The weight quantizer against `quantized_rows` on 5 rows of 2 x LANES + 3 (a row of zeros among them)."""
    weight = torch.randn(5, 2 * LANES + 3, generator=torch.Generator().manual_seed(0))
    weight[2] = 0
    steps = torch.empty(weight.shape, dtype=torch.int8)
    scales, sums = torch.empty(5), torch.empty(5, dtype=torch.int32)
    status = library.quantize_rows_int8(weight.data_ptr(), steps.data_ptr(), scales.data_ptr(), sums.data_ptr(), 5,
                                        weight.shape[1], 2)
    expected = quantized_rows(weight)
    if status != 0 or not all(torch.equal(a, b) for a, b in zip((steps, scales, sums), expected)):
        return "the built quantize_rows_int8 disagrees with torch (a miscompiled kernel?)"
    return None


def quantized_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the weight quantizer computes, with PyTorch's operators: weight (out, in) fp32 -> its int8 steps
    (out, in), scales (out,) fp32 (max |w| / 127 per row, 1 for a row of zeros) and the steps' sums (out,) int32;
    the steps are weight / scale rounded to the nearest integer (ties to even) and clamped to +-127."""
    largest = torch.maximum(-weight.amin(1), weight.amax(1))                       # (out,) max |w|, no copy
    scales = torch.where(largest > 0, largest / 127, 1.0)
    steps = (weight / scales[:, None]).round_().clamp_(-127, 127)                  # (out, in): one temporary
    return steps.to(torch.int8), scales, steps.to(torch.int32).sum(1, dtype=torch.int32)


def _check_int8_linear(library: ctypes.CDLL) -> str | None:
    """The int8 kernel against the same product in float64 (rows quantized the same way) for 1 to MAX_ROWS rows."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randint(-127, 128, (11, 2 * INT8_LANES), generator=generator, dtype=torch.int8)
    scales, bias = torch.rand(11, generator=generator), torch.randn(11, generator=generator)
    sums = weight.sum(1, dtype=torch.int32)
    for rows in range(1, MAX_ROWS + 1):
        x = torch.randn(rows, 2 * INT8_LANES, generator=generator)
        out = torch.empty(rows, 11)
        library.few_row_int8_linear(x.data_ptr(), weight.data_ptr(), scales.data_ptr(), sums.data_ptr(),
                                    bias.data_ptr(), out.data_ptr(), rows, 11, 2 * INT8_LANES, 1)
        if not torch.allclose(out, quantized_product(x, weight, scales=scales, bias=bias), atol=1e-4, rtol=1e-4):
            return f"the built few_row_int8_linear disagrees with torch on {rows} rows (a miscompiled kernel?)"
    return None


def quantized_product(x: torch.Tensor, weight: torch.Tensor, *, scales: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
    """What the int8 kernel computes, in float64: x (rows, in) quantized per row to int8 (scale max |x| / 127,
    rounded to nearest, ties to even) times weight (out, in) int8 with `scales` (out,) -> (rows, out) fp32."""
    largest = x.abs().amax(1, keepdim=True)                                            # (rows, 1)
    has_values = largest > 0
    x_scales = torch.where(has_values, largest / 127, 1.0)
    quantized = torch.round(x * torch.where(has_values, 127 / largest, 0.0)).double()  # (rows, in)
    out = quantized @ weight.double().t() * x_scales.double() * scales.double()        # (rows, out)
    return (out if bias is None else out + bias.double()).float()


def _give_up(reason: str, *, warn: bool) -> None:
    _reasons["library"] = reason
    if warn:
        warnings.warn(f"bigbird_pegasus: the CPU kernels are unavailable, PyTorch's operators serve (slower "
                      f"decoding): {reason}", RuntimeWarning, stacklevel=4)
