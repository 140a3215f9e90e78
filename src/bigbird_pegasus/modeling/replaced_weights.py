"""Dropping from the process the memory-mapped pages of the weights that a conversion of a model replaced.

`quantize_int8` reads every fp32 weight it replaces while the embedding and the norms keep the checkpoint's memory
map alive, so the replaced weights stayed resident: 2.2 GB of the large checkpoint, where the int8 model itself
takes 0.7 GB. `releasing_replaced_weights` drops their pages from the process when the conversion is done
(`checkpoint.mapped_pages`: the page cache keeps them; anyone still holding such a weight reads the same bytes).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..checkpoint.mapped_pages import hand_back, storage_span


@contextmanager
def releasing_replaced_weights(model: nn.Module, *, part: nn.Module | None = None) -> Iterator[None]:
    """Within the block, convert `model`'s weights (or those of its submodule `part`) freely; on leaving it, the
    file-mapped pages of the tensors `part` (default: `model`) held on entry and `model` holds no more are dropped
    from the process (`mapped_pages.hand_back`)."""
    held = {storage_span(t): t.detach() for t in _tensors(model if part is None else part)}  # alive to the end
    yield
    kept = _union(storage_span(t) for t in _tensors(model))
    replaced = [tensor for span, tensor in held.items() if not _overlaps(span, kept)]
    hand_back(replaced)


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    return [t for t in (*model.parameters(), *model.buffers()) if t.device.type == "cpu" and t.numel()]


def _union(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The spans [start, end) merged into disjoint ones, in order."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _overlaps(span: tuple[int, int], disjoint: list[tuple[int, int]]) -> bool:
    """Whether span meets any of the disjoint spans (in order)."""
    index = bisect.bisect_right(disjoint, (span[1],)) - 1  # the last one starting before span's end
    return index >= 0 and disjoint[index][1] > span[0]
