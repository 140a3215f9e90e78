"""Batches of model inputs grouped by length, so that little of each batch is padding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

Result = TypeVar("Result")


def length_grouped_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices of `lengths` in batches of at most `batch_size`, longest first, so that each batch holds inputs
    of similar length (ties keep input order)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    return [order[first:first + batch_size] for first in range(0, len(order), batch_size)]


def run_in_batches(rows: Sequence[Sequence[int]], batch_size: int,
                   run_batch: Callable[[list[int]], list[Result]]) -> list[Result]:
    """`run_batch(indices)` over length-grouped batches of `rows`; its results come back in input order."""
    results: list[Result | None] = [None] * len(rows)
    for batch in length_grouped_batches([len(row) for row in rows], batch_size):
        for index, result in zip(batch, run_batch(batch), strict=True):
            results[index] = result
    return results


def padded(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device | str | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """`input_ids` (b, n) right-padded with `pad_id` to the longest row, and `attention_mask` (b, n)."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)                   # (b, n)
    mask = torch.zeros((len(rows), width), dtype=torch.long)                        # (b, n)
    for index, row in enumerate(rows):
        ids[index, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[index, :len(row)] = 1
    return ids.to(device), mask.to(device)
