"""A linear layer with int8 weights: each row of the input quantized on the fly with its own scale, then an int8
product: for a decoding step's few rows the package's int8 kernel (AVX-512 VNNI or AVX2), which reads the int8
weights once (`kernels.int8_linear`), for more rows PyTorch's int8 product (`int8_matmul`)."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .. import kernels
from .int8_matmul import exact_int8_products, int8_rows_product


class Int8Linear(nn.Module):
    """y = x @ (weight * weight_scale[:, None]).T + bias, weight int8 per output channel (symmetric, scale
    max |w| / 127); each row of an fp32 CPU input is quantized to int8 with its own scale (max |x| / 127), so that a
    row's result does not depend on the others: up to `kernels.INT8_MAX_ROWS` rows in the package's int8 kernel,
    more (an encoder's sequence, a batch of more than 8 documents' beams) in PyTorch's int8 product
    (`int8_matmul`), with the kernel's arithmetic (the same numbers, to the bit, where tested). Where that product
    is not oneDNN's exact one (a CPU without AVX-512 VNNI), rows the kernel does not take go to PyTorch's int8
    dynamic product (fbgemm; the input quantized per tensor, 7 bits) over a packed copy of the weights made on the
    first such call; a layer that only runs many rows keeps that copy alone (`keep_only_packed`). Inference
    only."""

    def __init__(self, weight: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None, *,
                 weight_sums: torch.Tensor | None = None) -> None:
        """weight (out, in) int8, weight_scale (out,) fp32, bias (out,) or None; weight_sums (out,) int32, the
        rows' sums, when the caller has them (default: summed here)."""
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.register_buffer("weight", weight.contiguous())
        self.register_buffer("weight_scale", weight_scale.contiguous())
        self.register_buffer("weight_sums", weight.sum(1, dtype=torch.int32) if weight_sums is None else weight_sums)
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous())
        self._packed_for_many_rows = None
        # checked here, eagerly: torch.compile then reads the answer instead of tracing the check
        self._exact_many_rows = exact_int8_products()

    @classmethod
    def from_float(cls, linear: nn.Linear) -> Int8Linear:
        """The int8 counterpart of `linear` (its weight quantized per output channel; a copy, the original kept).
        A ValueError when the weight holds NaN or infinity."""
        steps, scale, sums = kernels.quantize_rows_int8(linear.weight.detach().float())
        return cls(steps, scale, linear.bias, weight_sums=sums)

    def keep_only_packed(self) -> Int8Linear:
        """Make the packed copy for PyTorch's int8 dynamic product now and drop the int8 weight (in place; returns
        self): every row count then takes that product. For layers that run many rows (an encoder's, the
        cross-attention key/value projections) where PyTorch's int8 product is not exact: the weights held once,
        packed before the first input (what `torch.ao`'s dynamic layers hold, made in one packing, not three)."""
        if self._exact_many_rows:
            raise ValueError("PyTorch's int8 product is exact here: many rows go through it, not a packed copy")
        self._packed()
        self.weight = None
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is None:                                                        # keep_only_packed
            if x.device.type != "cpu" or x.dtype != torch.float32:
                raise ValueError(f"this int8 layer holds only weights packed for PyTorch's int8 product on the CPU: "
                                 f"it takes fp32 CPU inputs, not {str(x.dtype).removeprefix('torch.')} on "
                                 f"{x.device}")
        elif not torch.compiler.is_compiling() and kernels.serves_int8_linear(x, self.weight):
            return kernels.int8_linear(x, self.weight, scales=self.weight_scale, sums=self.weight_sums,
                                       bias=self.bias)
        elif x.device.type != "cpu" or x.dtype != torch.float32:
            return F.linear(x, (self.weight.to(x.dtype) * self.weight_scale[:, None].to(x.dtype)),
                            None if self.bias is None else self.bias.to(x.dtype))
        rows = x.reshape(-1, self.in_features)                                         # (rows, in)
        if self._exact_many_rows:
            out = int8_rows_product(rows, self.weight, scales=self.weight_scale, bias=self.bias)  # (rows, out)
        else:
            out = torch.ops.quantized.linear_dynamic(rows, self._packed(), reduce_range=True)  # (rows, out)
        return out.reshape(*x.shape[:-1], self.out_features)

    def _packed(self) -> torch.ScriptObject:
        """The weights packed for PyTorch's int8 dynamic product (as its quantized Linear holds them), made once."""
        if self._packed_for_many_rows is None:
            zero_points = torch.zeros(self.out_features, dtype=torch.long)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # quantized tensors announce their move to torchao on every use
                weight = torch._make_per_channel_quantized_tensor(self.weight, self.weight_scale.double(),
                                                                  zero_points, 0)
                self._packed_for_many_rows = torch.ops.quantized.linear_prepack(weight, self.bias)
        return self._packed_for_many_rows

    def extra_repr(self) -> str:
        packed = ", packed only" if self.weight is None else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}{packed}"
