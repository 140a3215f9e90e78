"""The layout the attention kernels read cached keys in: position-minor, with a row stride."""

from __future__ import annotations

import torch


def key_row_stride(keys: torch.Tensor) -> int | None:
    """The elements from one feature's row of positions to the next in keys (b, h, s, d) stored position-minor
    (b, h, d, stride), each row's first s elements the positions (stride >= s: rows may be padded); None when the
    keys are laid out otherwise."""
    if keys.dim() != 4:
        return None
    b, h, s, d = keys.shape
    stride = keys.stride(-1) if d > 1 else s
    expected = (h * d * stride, d * stride, 1, stride)                                 # strides of (b, h, s, d)
    fits = all(size == 1 or actual == wanted for size, actual, wanted in zip(keys.shape, keys.stride(), expected))
    return stride if fits and stride >= s else None
