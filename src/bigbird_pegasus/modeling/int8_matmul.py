"""Products of many rows against int8 weights on PyTorch's int8 matrix product (`torch._int_mm`, oneDNN on the
CPU), each row quantized with its own scale, as the package's few-row int8 kernel does: a row's result does not
depend on the rows it is computed with.

PyTorch runs `torch._int_mm` in oneDNN only on x86-64 CPUs with AVX-512 VNNI (what `torch.cpu._is_vnni_supported`
reports); elsewhere as a plain loop of scalar multiply-adds, exact but slow (a 4096 x 1024 x 4096 product: 30 s
on a 2-core AMD EPYC Zen 3, against 0.24 s for the same product in fp32). oneDNN's int8 products are exact (int32
sums) with VNNI; limited below it (ONEDNN_MAX_CPU_ISA=AVX2) they pair products in int16 (vpmaddubsw) and saturate
for full-range int8 weights. `exact_int8_products` checks, once per process, both: that the product is oneDNN's
and that it is exact for the extreme values.
"""

from __future__ import annotations

import functools
import platform

import torch

# The products' int32 outputs are made a chunk of rows at a time, this many bytes at most, so that they are scaled
# into the fp32 output while still in the cache: the large encoder's products (4096 rows) ran 1.06-1.16x faster
# so than in one piece. But at least this many rows a chunk, since each chunk reads all the weights again (the LM
# head's 98 MB would be read every 10 rows).
CHUNK_BYTES = 4 << 20
MIN_CHUNK_ROWS = 256


@functools.cache
def exact_int8_products() -> bool:
    """Whether `torch._int_mm` on the CPU is oneDNN's and computes int8 products exactly, extreme values included
    (checked once)."""
    # elsewhere than on x86-64 with oneDNN and AVX-512 VNNI, PyTorch's CPU int8 product is a plain loop
    vnni = getattr(torch.cpu, "_is_vnni_supported", lambda: False)()
    if not (hasattr(torch, "_int_mm") and platform.machine().lower() in ("x86_64", "amd64")
            and torch.backends.mkldnn.is_available() and vnni):
        return False
    high, low = torch.full((128,), 127, dtype=torch.int8), torch.full((128,), -128, dtype=torch.int8)
    alternating = torch.stack([high, low], dim=1).view(-1)[:128]                      # 127, -128, 127, ...
    patterns = torch.stack([high, low, alternating, alternating.flip(0)])              # (4, 128)
    rows = weights = patterns.repeat(8, 1)                                            # (32, 128)
    try:
        products = torch._int_mm(rows, weights.t())                                   # (32, 32)
    except RuntimeError:
        return False
    return torch.equal(products.long(), rows.long() @ weights.long().t())


def int8_rows_product(x: torch.Tensor, weight: torch.Tensor, *, scales: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
    """x (rows, in) fp32, each row quantized to int8 with scale max |x| / 127 (rounded to nearest, ties to even),
    times weight (out, in) int8 with `scales` (out,) fp32, + bias (out,) -> (rows, out) fp32. CPU tensors, where
    `exact_int8_products()` holds."""
    rows, out_features = x.shape[0], weight.shape[0]
    out = torch.empty(rows, out_features, dtype=torch.float32)
    chunk = max(MIN_CHUNK_ROWS, CHUNK_BYTES // (4 * out_features))
    for first in range(0, rows, chunk):
        part = x[first:first + chunk]                                                 # (chunk, in)
        largest = torch.maximum(-part.amin(1, keepdim=True), part.amax(1, keepdim=True))  # (chunk, 1) max |x|
        has_values = largest > 0
        quantized = (part * torch.where(has_values, 127 / largest, 0.0)).round_().to(torch.int8)
        products = torch._int_mm(quantized, weight.t())                               # (chunk, out) int32
        scaled = out[first:first + chunk].copy_(products)                             # (chunk, out) fp32
        scaled.mul_(torch.where(has_values, largest / 127, 1.0))  # in two steps: a mixed-dtype mul runs ~2x slower
        if bias is None:
            scaled.mul_(scales)
        else:
            torch.addcmul(bias, scaled, scales, out=scaled)
    return out
